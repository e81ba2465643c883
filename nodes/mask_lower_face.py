"""MaskLowerFace: track the face, find the mouth, mask the lower face."""

from __future__ import annotations

import logging

import torch

from ..lipsync_models import face as facelib
from ..lipsync_models.errors import InputError
from ..lipsync_models.types import FACE_TRACK
from . import _comfy

log = logging.getLogger("comfyui_lipsync")

CROP_SIZES = ["256", "96", "512"]


class MaskLowerFace:
    DESCRIPTION = (
        "Finds one face in every frame, follows it smoothly, locates the mouth and measures how far "
        "it is open, and outputs a feathered mask of the lower face (below the nose, cheek to cheek, "
        "down to the chin). The face track carries per-frame boxes, mouth landmarks, the opening and "
        "the aligned mouth-crop transform that LipSyncInference and Composite reuse. Works without "
        "any model file (OpenCV Haar face and eye cascades + lip edges and colour); mediapipe's face mesh is an optional, "
        "more precise tracker."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "Video frames [B,H,W,C] in which to find the face."}),
                "detector": (list(facelib.DETECTORS), {
                    "default": "haar",
                    "tooltip": "haar: OpenCV's bundled face and eye cascades, lip edges and colour (always available). "
                               "mediapipe: face mesh, more precise; needs the optional install "
                               f"({facelib.MEDIAPIPE_INSTALL}).",
                }),
                "face": (["largest", "index"], {
                    "default": "largest",
                    "tooltip": "Which face to follow when there are several: the largest, or the one "
                               "at 'face_index' counted from the left.",
                }),
                "face_index": ("INT", {
                    "default": 0, "min": 0, "max": 16,
                    "tooltip": "With face = index: 0 is the leftmost face, 1 the next, and so on.",
                }),
                "manual_box": ("STRING", {
                    "default": "", "multiline": False,
                    "tooltip": "Optional face box 'x0,y0,x1,y1' in pixels (eyebrows to chin) for "
                               "stylised or partly hidden faces the detector misses. Empty = automatic.",
                }),
                "crop_size": (CROP_SIZES, {
                    "default": "256",
                    "tooltip": "Side of the aligned mouth-centred crop the generator works on "
                               "(96 for Wav2Lip-style models, 256 or 512 for larger ones).",
                }),
                "mask_expand": ("FLOAT", {
                    "default": 0.0, "min": -0.3, "max": 0.5, "step": 0.01,
                    "tooltip": "Grow (>0) or shrink (<0) the mask, in fractions of the face width.",
                }),
                "mask_feather": ("FLOAT", {
                    "default": 0.08, "min": 0.0, "max": 0.5, "step": 0.01,
                    "tooltip": "Width of the mask's soft edge, in fractions of the face width (0 = hard).",
                }),
            },
        }

    RETURN_TYPES = ("MASK", FACE_TRACK, "IMAGE", "STRING")
    RETURN_NAMES = ("mask", "face_track", "preview", "report")
    OUTPUT_TOOLTIPS = (
        "Feathered lower-face mask [B,H,W], 1 where the mouth may change.",
        "Per-frame face box, mouth landmarks, mouth opening and aligned-crop transform.",
        "A few frames with the track (box green, mouth red, crop blue) and the mask drawn.",
        "What happened: detector, frames where the face was lost and interpolated, opening range.",
    )
    FUNCTION = "run"
    CATEGORY = "lipsync/face"

    def run(self, images, detector="haar", face="largest", face_index=0, manual_box="", crop_size="256",
            mask_expand=0.0, mask_feather=0.08):
        if face not in ("largest", "index"):
            raise InputError(f"MaskLowerFace: face must be 'largest' or 'index', got {face!r}.")
        if str(crop_size) not in CROP_SIZES:
            raise InputError(f"MaskLowerFace: crop_size must be one of {CROP_SIZES}, got {crop_size!r}.")
        dev = _comfy.compute_device()
        frames = images.to(dev)
        chunk = 64
        steps = facelib.progress_steps(frames.shape[0], detector, bool(str(manual_box or "").strip()), chunk)
        track = facelib.track_faces(
            frames,
            detector=detector,
            face_index=-1 if face == "largest" else int(face_index),
            manual_box=manual_box,
            crop_size=int(crop_size),
            chunk=chunk,
            on_progress=_comfy.Progress(steps, "MaskLowerFace"),
        )
        out_dev = _comfy.intermediate_device()
        mask = facelib.lower_face_mask(track, expand=float(mask_expand), feather=float(mask_feather), device=out_dev)
        prev = facelib.preview(images, track, mask, max_frames=4).to(out_dev)
        report = track.report
        log.info("MaskLowerFace: %s", report.replace("\n", "; "))
        return {"ui": {"images": _comfy.preview_images(prev), "text": [report]},
                "result": (mask, track, prev, report)}


NODE_CLASS_MAPPINGS = {"LipSyncMaskLowerFace": MaskLowerFace}
NODE_DISPLAY_NAME_MAPPINGS = {"LipSyncMaskLowerFace": "MaskLowerFace"}
