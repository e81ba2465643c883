"""MapVisemes: timed phonemes -> a per-frame mouth track (viseme weights + mouth parameters)."""

from __future__ import annotations

import logging
import math

import torch

from ..lipsync_models import ui_payload, visemes
from ..lipsync_models.errors import InputError
from ..lipsync_models.types import DRIVER, PHONEMES, VISEMES
from . import _comfy

log = logging.getLogger("comfyui_lipsync")

WHO = "MapVisemes"


def _float(default: float, lo: float, hi: float, step: float, tooltip: str) -> tuple:
    """One FLOAT widget of INPUT_TYPES."""
    return ("FLOAT", {"default": default, "min": lo, "max": hi, "step": step, "tooltip": tooltip})


class MapVisemes:
    DESCRIPTION = ("Turns timed phonemes into a mouth track at the video's frame rate: weights over a viseme "
                   "set (Rhubarb/Preston Blair A-H+X, Meta/Oculus 15, Microsoft/Azure 22) and five mouth "
                   "parameters (jaw open, lip spread, lip rounding, lip closure, teeth on lip) for the "
                   "generators. Applies the rules animators use: shapes lead the sound, short shapes are "
                   "held, neighbours blend, lips close fully on P/B/M and open on the release, short pauses "
                   "are bridged and long ones rest. Also writes the cues as Rhubarb JSON and TSV for "
                   "Blender, After Effects or Spine rigs.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "phonemes": (PHONEMES, {"tooltip": "Timed phonemes from ExtractPhonemes."}),
                "viseme_set": (list(visemes.VISEME_SETS), {
                    "default": "rhubarb",
                    "tooltip": "Mouth-shape vocabulary: rhubarb = Rhubarb Lip Sync / Preston Blair A-H and X "
                               "(2D rigs); oculus15 = Meta/Oculus OVR visemes (sil, PP, FF ... ou; Ready Player "
                               "Me, VRChat); azure22 = Microsoft Azure viseme ids 0-21."}),
                "fps": _float(25.0, 1.0, 240.0, 0.001, "Video frame rate. Ignored when a driver is connected (its "
                              "fps is used)."),
                "frame_count": ("INT", {"default": 0, "min": 0, "max": 1_000_000,
                                        "tooltip": "Frames in the track. 0 = the driver's frame count, or the "
                                                   "phonemes' duration x fps without a driver."}),
                "anticipation_ms": _float(visemes.ANTICIPATION_MS, 0.0, 500.0, 5.0,
                                          "How early each mouth shape starts before its sound. 0 = with the "
                                          "sound: filmed lips follow the timed phonemes best (GRID: a lead "
                                          "lowers the match). 40 ms = one frame at 25 fps, the 2D-animation "
                                          "habit for stylised rigs."),
                "min_hold_ms": _float(60.0, 0.0, 1000.0, 5.0,
                                      "Shortest time a shape is shown; shorter phonemes are stretched into "
                                      "their neighbours so no shape flickers. P/B/M closures always show for "
                                      "at least one frame."),
                "blend_ms": _float(60.0, 0.0, 1000.0, 5.0, "Cross-fade length between neighbouring shapes. 0 = "
                                   "hard cuts (classic 2D replacement animation)."),
                "strength": _float(1.0, 0.0, 1.0, 0.05, "How far the mouth moves: 1 = full shapes, 0.5 = "
                                   "halfway between rest and each shape, 0 = rest pose throughout."),
                "smoothing": _float(0.5, 0.0, 1.0, 0.05, "Extra smoothing of the track over time (zero-phase, "
                                    "no delay): 0 = none, 1 = a Gaussian of 60 ms. Closures stay fully closed."),
                "bridge_pause_ms": _float(150.0, 0.0, 5000.0, 10.0,
                                          "Pauses shorter than this keep the mouth moving between the shapes "
                                          "around them; longer pauses go to the rest shape."),
                "breath_open": _float(visemes.BREATH_OPEN, 0.0, 1.0, 0.05,
                                      "How far the lips part on an audible in-breath before a line "
                                      "(ExtractPhonemes labels it BREATH), as a share of the open shape: "
                                      "filmed speakers breathe in through the mouth. 0 = the mouth stays at "
                                      "rest in every pause."),
            },
            "optional": {
                "driver": (DRIVER, {"tooltip": "Audio driver from LoadAudioDriver: gives the fps, the frame "
                                               "count and the waveform drawn in the preview."}),
            },
        }

    RETURN_TYPES = (VISEMES, "IMAGE", "STRING", "STRING")
    RETURN_NAMES = ("visemes", "preview", "rhubarb_json", "rhubarb_tsv")
    OUTPUT_TOOLTIPS = (
        "Per-frame mouth track for LipSyncInference: viseme weights (frames x visemes) and mouth parameters.",
        "Timeline picture: the shapes over the waveform, the phonemes, and the mouth-parameter curves.",
        "Mouth cues in Rhubarb Lip Sync's JSON format (mouthCues start/end/value), in the set's own names.",
        "Mouth cues in Rhubarb Lip Sync's TSV format (start time TAB shape, ending with the rest shape).",
    )
    FUNCTION = "map"
    CATEGORY = "lipsync/audio"

    def map(self, phonemes, viseme_set="rhubarb", fps=25.0, frame_count=0, anticipation_ms=visemes.ANTICIPATION_MS,
            min_hold_ms=60.0, blend_ms=60.0, strength=1.0, smoothing=0.5, bridge_pause_ms=150.0, driver=None,
            breath_open=visemes.BREATH_OPEN, preview=True):
        """``preview`` (not a widget: ComfyUI always draws it) False skips the timeline picture, for
        callers that never show it (the headless runner): ``preview`` is then a 1x1 black IMAGE."""
        fps = float(fps)
        frames = int(frame_count or 0)
        if frames < 0:
            raise InputError(f"{WHO}: frame_count must be 0 (automatic) or more, got {frame_count}.")
        waveform, sound = None, ""
        if driver is not None:
            if abs(float(driver.fps) - fps) > 1e-6:
                log.info("%s: using the driver's fps %.3f instead of the fps widget %.3f.", WHO, driver.fps, fps)
            fps = float(driver.fps)
            frames = frames or int(driver.num_frames)
            waveform, sound = driver.waveform, getattr(driver, "name", "")
        if not math.isfinite(fps) or fps <= 0:
            raise InputError(f"{WHO}: fps must be positive, got {fps}. Use the video's frame rate (e.g. 25).")
        track = visemes.map_phonemes(
            phonemes, fps, frames or None, viseme_set=viseme_set, anticipation_ms=float(anticipation_ms),
            min_hold_ms=float(min_hold_ms), blend_ms=float(blend_ms), strength=float(strength),
            smoothing=float(smoothing), bridge_pause_ms=float(bridge_pause_ms), breath_open=float(breath_open),
            device=_comfy.compute_device(), who=WHO)
        if preview:
            image = visemes.preview(track, waveform, phonemes).to(_comfy.intermediate_device())
        else:
            image = torch.zeros((1, 1, 1, 3), device=_comfy.intermediate_device())
        text_json = visemes.to_rhubarb_json(track, sound)
        text_tsv = visemes.to_tsv(track)
        ui = {"images": _comfy.preview_images(image, "lipsync_visemes") if preview else [], "text": [summary(track)],
              **ui_payload.cues_ui(track.cues, track.names, track.viseme_set, track.fps,
                                   track.param("jaw_open"), track.num_frames / track.fps)}
        return {"ui": ui, "result": (track, image, text_json, text_tsv)}


def summary(track) -> str:
    """One readable line about the track plus how long each shape shows."""
    counts = {}
    for s, e, v in track.cues:
        counts[v] = counts.get(v, 0.0) + (e - s)
    top = ", ".join(f"{k} {v:.2f}s" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])[:6])
    return (f"{track.num_frames} frames at {track.fps:g} fps, {track.viseme_set} "
            f"({len(track.names)} visemes), {len(track.cues)} cues; most shown: {top}")


NODE_CLASS_MAPPINGS = {"LipSyncMapVisemes": MapVisemes}
NODE_DISPLAY_NAME_MAPPINGS = {"LipSyncMapVisemes": "MapVisemes"}
