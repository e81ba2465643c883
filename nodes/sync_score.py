"""SyncScore: measure the audio-to-lips offset and confidence of a clip."""

from __future__ import annotations

import logging
import os

from ..lipsync_models import sync, ui_payload
from ..lipsync_models.backends import stablesyncnet, syncnet
from ..lipsync_models.errors import InputError
from ..lipsync_models.types import DRIVER, FACE_TRACK, PHONEMES
from . import _comfy

log = logging.getLogger("comfyui_lipsync")

WHO = "SyncScore"
# ComfyUI's "unload models" (and a GPU request still short) also drops the judges' networks
_comfy.register_release(syncnet.release)
_comfy.register_release(stablesyncnet.release)
ARTICULATION = "articulation (no weights)"
ARTICULATION_PHONEMES = "articulation + phonemes (no weights)"


STABLE = "articulation + StableSyncNet: "
"""Scorer entries ``STABLE + file``: the articulation scorer, with LatentSync's StableSyncNet
(``file`` in models/syncnet) reported beside it."""


def _scorers() -> list[str]:
    stable = _comfy.stablesyncnet_files()
    return ([ARTICULATION, ARTICULATION_PHONEMES] + [f for f in _comfy.model_files("syncnet") if f not in stable]
            + [STABLE + f for f in stable])


def _stablesyncnet_path(scorer: str) -> str | None:
    """The stable_syncnet.pt file of a ``STABLE`` scorer entry (None for the other scorers)."""
    if not scorer.startswith(STABLE):
        return None
    name = scorer[len(STABLE):]
    path = _comfy.model_path("syncnet", name, WHO)
    if path is None:
        raise InputError(f"{WHO}: StableSyncNet checkpoint {name!r} is not in models/syncnet any more. "
                         f"Pick another scorer (available: {', '.join(_scorers())}).")
    return path


def _syncnet_path(scorer: str) -> str | None:
    """The checkpoint file of a SyncNet scorer entry (None for the articulation scorers)."""
    if scorer in (ARTICULATION, ARTICULATION_PHONEMES) or scorer.startswith(STABLE):
        return None
    path = _comfy.model_path("syncnet", scorer, WHO)
    if path is None:
        raise InputError(f"{WHO}: SyncNet checkpoint {scorer!r} is not in models/syncnet any more. "
                         f"Pick another scorer (available: {', '.join(_scorers())}).")
    return path


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
        "exactly as syncnet_python does. Memory: it reads only a window around the mouth of each frame "
        "and adds about 0.1 GB to the IMAGE batch it is given (250 frames of 1080x1920)."
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
                                  "tooltip": "Frame rate of the images (frames per second), exactly: 29.97, "
                                             "59.94 or 23.976 as the clip has it, never rounded. The offset "
                                             "comes back in frames of this rate (and in ms)."}),
                "search_range": ("INT", {"default": 15, "min": 1, "max": 150,
                                         "tooltip": "Offsets tried, in frames of the clip's rate either way (15 = "
                                                    "+-0.6 s at 25 fps, as SyncNet; the same +-0.6 s is 36 at "
                                                    "60 fps)."}),
                "scorer": (_scorers(), {"default": ARTICULATION,
                                        "tooltip": "articulation: no model needed; the lips (landmarks and optical "
                                                   "flow) against the audio's 300-3000 Hz envelope; the most exact "
                                                   "offset. + phonemes: adds the mouth predicted from recognised "
                                                   "phonemes: slower, offsets less exact on our tests, but better at "
                                                   "telling foreign or shifted audio (score at offset 0). Other entries "
                                                   "are SyncNet checkpoints (syncnet_v2) found in models/syncnet; "
                                                   "'articulation + StableSyncNet: <file>' adds LatentSync 1.6's "
                                                   "stable_syncnet.pt as a second judge, its offset and "
                                                   "confidence in the report beside the articulation ones."}),
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
        path, stable = _syncnet_path(scorer), _stablesyncnet_path(scorer)
        for model in (path, stable):
            if model is not None:
                _comfy.free_memory_for_model(2 * os.path.getsize(model))
        result, notes = sync.score_clip(images, fps, audio=audio, driver=driver, face_track=face_track,
                                        phonemes=phonemes, search_range=int(search_range), window_s=float(window_s),
                                        use_phonemes=scorer == ARTICULATION_PHONEMES,
                                        syncnet_path=path, device=_comfy.compute_device(),
                                        on_progress=_comfy.Progress(sync.STEPS, WHO),
                                        stablesyncnet_path=stable)
        report = result.report() + "".join("\nnote: " + s for s in notes)
        log.info("SyncScore: %s", report.split("\n")[0])
        plot = sync.plot(result).to(_comfy.intermediate_device())
        ui = {"images": _comfy.preview_images(plot, "lipsync_sync"), "text": [report]}
        ui.update(ui_payload.sync_ui(result.offset_frames, result.offset_ms, result.confidence,
                                     result.lags, result.scores, float(fps), visual=result.visual, audio=result.audio,
                                     windows=[{k: w[k] for k in ("start", "end", "offset_frames", "confidence")}
                                              for w in result.windows],
                                     method=result.method, raw_peak=result.raw_peak,
                                     natural_lead=result.natural_lead, uncertain=result.uncertain,
                                     certainty=result.peak_confidence))
        return {"ui": ui, "result": (int(result.offset_frames), float(result.offset_ms), float(result.confidence),
                                     report, plot)}


NODE_CLASS_MAPPINGS = {"LipSyncSyncScore": SyncScore}
NODE_DISPLAY_NAME_MAPPINGS = {"LipSyncSyncScore": "SyncScore"}
