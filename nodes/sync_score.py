"""SyncScore: measure the audio-to-lips offset and confidence of a clip."""

from __future__ import annotations

import logging
import math
import os

import torch

from ..lipsync_models import sync
from ..lipsync_models.checks import check_images
from ..lipsync_models.errors import InputError
from ..lipsync_models.types import DRIVER, FACE_TRACK, PHONEMES, AudioDriver, FaceTrack, PhonemeTrack
from . import _comfy

log = logging.getLogger("comfyui_lipsync")

WHO = "SyncScore"
ARTICULATION = "articulation (no weights)"
ARTICULATION_PHONEMES = "articulation + phonemes (no weights)"
_NETS: dict[tuple[str, float, str], object] = {}


def _scorers() -> list[str]:
    return [ARTICULATION, ARTICULATION_PHONEMES] + [f for f in _comfy.model_files("syncnet")]


def _load_net(name: str, device: torch.device):
    from ..lipsync_models.backends import syncnet

    path = _comfy.model_path("syncnet", name)
    if path is None:
        raise InputError(f"{WHO}: SyncNet checkpoint {name!r} is not in models/syncnet any more. "
                         f"Pick another scorer (available: {', '.join(_scorers())}).")
    key = (path, os.path.getmtime(path), str(device))
    if key not in _NETS:
        _NETS.clear()
        _NETS[key] = syncnet.load_syncnet(path, device=device, who=WHO)
    return _NETS[key]


def _waveform(images: torch.Tensor, fps: float, audio, driver) -> tuple[torch.Tensor, list[str]]:
    """The clip's 16 kHz mono waveform covering the frames, and notes for the report."""
    n = images.shape[0]
    notes = []
    if driver is not None:
        if not isinstance(driver, AudioDriver):
            raise InputError(f"{WHO}: driver must come from LoadAudioDriver, got {type(driver).__name__}.")
        if abs(driver.fps - fps) > 1e-3:
            raise InputError(f"{WHO}: the driver was made for {driver.fps:g} fps but fps is {fps:g}. "
                             "Set the same fps on both nodes.")
        if driver.num_frames != n:
            raise InputError(f"{WHO}: the driver covers {driver.num_frames} frames but there are {n} images. "
                             "Give LoadAudioDriver the clip's frame count, or score the matching frames.")
        return driver.waveform, notes
    if audio is None:
        raise InputError(f"{WHO}: connect either 'audio' (AUDIO) or 'driver' (LIPSYNC_DRIVER); both are empty.")
    from ..lipsync_models import audio as audiolib

    if not isinstance(audio, dict) or "waveform" not in audio or "sample_rate" not in audio:
        raise InputError(f"{WHO}: audio must be ComfyUI AUDIO {{'waveform': [B,C,T], 'sample_rate'}}, "
                         f"got {type(audio).__name__}.")
    length_s = audio["waveform"].shape[-1] / float(audio["sample_rate"])
    if abs(length_s - n / fps) > 1.0 / fps:
        notes.append(f"audio is {length_s:.2f} s, the frames {n / fps:.2f} s: scored the first {n / fps:.2f} s "
                     "(cut or padded with silence)")
    drv = audiolib.make_driver(audio, fps, num_frames=n, who=WHO)
    return drv.waveform, notes


class SyncScore:
    DESCRIPTION = (
        "Measures how far the audio is from the lips in a clip: the offset in frames and ms "
        "(positive = audio late), a confidence that the clip is in sync as it stands, a per-window offset "
        "track that shows drift, and a plot "
        "of the score against the offset with the lip and audio signals. The default scorer needs no "
        "model: it correlates the tracked lips (gap, lip height, opening, optical-flow lip parting, and "
        "their changes) with the audio's articulation (300-3000 Hz envelope; optionally the mouth predicted "
        "from recognised phonemes). "
        "With a SyncNet checkpoint (syncnet_v2) in models/syncnet it also computes LSE-D and LSE-C "
        "exactly as syncnet_python does."
    )
    # An output node, so ComfyUI runs it (and shows its report and plot) even when nothing is
    # wired after it: a sync check is an end point of the graph.
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The clip's frames [B,H,W,C], e.g. Composite's output."}),
                "fps": ("FLOAT", {"default": 25.0, "min": 1.0, "max": 240.0, "step": 0.001,
                                  "tooltip": "Frame rate of the images (frames per second)."}),
                "search_range": ("INT", {"default": 15, "min": 1, "max": 60,
                                         "tooltip": "Offsets tried, in frames either way (15 = +-0.6 s at 25 fps, "
                                                    "as SyncNet)."}),
                "scorer": (_scorers(), {"default": ARTICULATION,
                                        "tooltip": "articulation: no model needed; the lips (landmarks and optical "
                                                   "flow) against the audio's 300-3000 Hz envelope; the most exact "
                                                   "offset. + phonemes: adds the mouth predicted from recognised "
                                                   "phonemes: slower, offsets less exact on our tests, but better at "
                                                   "telling foreign or shifted audio (score at offset 0). Other entries "
                                                   "are SyncNet checkpoints (syncnet_v2) found in models/syncnet."}),
                "window_s": ("FLOAT", {"default": 2.0, "min": 0.0, "max": 60.0, "step": 0.5,
                                       "tooltip": "Length of the windows of the per-window offset track "
                                                  "(hop = half a window); 0 = whole clip only."}),
            },
            "optional": {
                "audio": ("AUDIO", {"tooltip": "The clip's audio (starts with the first frame). Give this "
                                               "or 'driver'."}),
                "driver": (DRIVER, {"tooltip": "LoadAudioDriver's output for these frames, instead of 'audio'."}),
                "face_track": (FACE_TRACK, {"tooltip": "Where the face is: MaskLowerFace's or LipSyncInference's "
                                                       "track. Its lip measurements are used only if they match "
                                                       "these frames (else the lips are measured on the frames). "
                                                       "Empty = track the face here (Haar: its lip measurements "
                                                       "gave the most exact offsets on our tests)."}),
                "phonemes": (PHONEMES, {"tooltip": "Optional: ExtractPhonemes' output for this audio, best "
                                                   "aligned with the transcript. Its P/B/M (lips shut) become "
                                                   "sharp timing anchors for the articulation scorers (more "
                                                   "exact offsets on our tests). Empty = audio only."}),
            },
        }

    RETURN_TYPES = ("INT", "FLOAT", "FLOAT", "STRING", "IMAGE")
    RETURN_NAMES = ("offset_frames", "offset_ms", "confidence", "report", "plot")
    OUTPUT_TOOLTIPS = (
        "Audio-to-lips offset in frames; POSITIVE = AUDIO LATE (delay the video or advance the audio "
        "by this much to fix it); 0 = in sync.",
        "The same offset in milliseconds (positive = audio late).",
        "In-sync confidence: the score at offset 0 minus the median score over the searched offsets "
        "(SyncNet's comparison with the rest of the curve, taken at offset 0). High (about 0.3-0.6 on "
        "recorded speech) when the clip is in sync as it stands; near or below 0 when the audio is "
        "shifted or belongs to another clip; 0 when the clip is too short, static or silent to judge. "
        "How sure the measured offset is (best minus median; LSE-C with SyncNet) is in the report.",
        "Offset, in-sync confidence, offset certainty, LSE-D/LSE-C with SyncNet, the per-window offsets "
        "and notes.",
        "Score against offset (best marked) above the lip and audio signals over time.",
    )
    FUNCTION = "run"
    CATEGORY = "lipsync/check"

    def run(self, images, fps=25.0, search_range=15, scorer=ARTICULATION, window_s=2.0,
            audio=None, driver=None, face_track=None, phonemes=None):
        check_images(images, WHO)
        fps = float(fps)
        if not math.isfinite(fps) or fps <= 0:
            raise InputError(f"{WHO}: fps must be positive, got {fps}.")
        n = images.shape[0]
        wave, notes = _waveform(images, fps, audio, driver)
        dev = _comfy.compute_device()
        progress = _comfy.Progress(10, WHO)
        if face_track is None:
            from ..lipsync_models import face as facelib

            from ..lipsync_models.errors import NoFaceError

            # Haar first, not the face mesh: its lip measurements put recorded GRID clips' offsets
            # on one calibration (bench/bench_sync.py: exact 100% vs 71% with the mesh); the mesh
            # only for faces Haar does not find (stylised or turned faces)
            detector = "haar"
            try:
                face_track = facelib.track_faces(images.to(dev), detector="haar",
                                                 on_progress=lambda d, t: progress(int(4 * d / max(t, 1)), 10))
            except NoFaceError:
                if not facelib.mediapipe_available():
                    raise
                detector = "mediapipe"
                face_track = facelib.track_faces(images.to(dev), detector="mediapipe",
                                                 on_progress=lambda d, t: progress(int(4 * d / max(t, 1)), 10))
            notes.append(f"face tracked here with the {detector} detector")
        elif not isinstance(face_track, FaceTrack):
            raise InputError(f"{WHO}: face_track must come from MaskLowerFace, got {type(face_track).__name__}.")
        if face_track.num_frames != n:
            raise InputError(f"{WHO}: the face track has {face_track.num_frames} frames but there are {n} images. "
                             "Track the same frames you score.")
        if phonemes is not None:
            if not isinstance(phonemes, PhonemeTrack):
                raise InputError(f"{WHO}: phonemes must come from ExtractPhonemes, got {type(phonemes).__name__}.")
            if abs(phonemes.duration - n / fps) > 0.5:
                raise InputError(f"{WHO}: the phonemes cover {phonemes.duration:.2f} s but the frames {n / fps:.2f} s. "
                                 "Connect ExtractPhonemes' output for this clip's audio.")
        later = lambda d, t: progress(4 + int(6 * d / max(t, 1)), 10)  # noqa: E731
        if scorer in (ARTICULATION, ARTICULATION_PHONEMES):
            result = sync.score_articulation(face_track, wave, fps, search_range=int(search_range),
                                             window_s=float(window_s), use_phonemes=scorer == ARTICULATION_PHONEMES,
                                             images=images, phonemes=phonemes, on_progress=later)
        else:
            net = _load_net(scorer, dev)
            result = sync.score_syncnet(net, images.to(dev), face_track, wave.to(dev), fps,
                                        search_range=int(search_range), window_s=float(window_s),
                                        on_progress=later)
        progress(10, 10)
        report = result.report()
        if notes:
            report += "\n" + "\n".join("note: " + s for s in notes)
        log.info("SyncScore: %s", report.split("\n")[0])
        out_dev = _comfy.intermediate_device()
        plot = sync.plot(result).to(out_dev)
        from ..lipsync_models import ui_payload

        ui = {"images": _comfy.preview_images(plot, "lipsync_sync"), "text": [report]}
        ui.update(ui_payload.sync_ui(result.offset_frames, result.offset_ms, result.confidence,
                                     result.lags, result.scores, fps, visual=result.visual, audio=result.audio,
                                     windows=[{k: w[k] for k in ("start", "end", "offset_frames", "confidence")}
                                              for w in result.windows],
                                     method=result.method))
        return {"ui": ui, "result": (int(result.offset_frames), float(result.offset_ms), float(result.confidence),
                                     report, plot)}


NODE_CLASS_MAPPINGS = {"LipSyncSyncScore": SyncScore}
NODE_DISPLAY_NAME_MAPPINGS = {"LipSyncSyncScore": "SyncScore"}
