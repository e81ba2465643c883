"""Composite: paste the generated mouth crops back into the original frames."""

from __future__ import annotations

from ..lipsync_models import composite as comp
from ..lipsync_models.errors import InputError
from ..lipsync_models.types import FACE_TRACK
from . import _comfy

BLEND_MODES = {"feathered alpha": "alpha", "multi-band": "laplacian"}


class Composite:
    DESCRIPTION = (
        "Pastes the generated face crops back into the original frames, inside the lower-face mask "
        "only: each crop is warped back with the face track's inverse transform, colour-matched to "
        "the surrounding skin and blended with a feathered edge. Everything outside the mask keeps "
        "its original pixels; resolution and frame count are those of the input. Holds the output batch "
        "(one copy of the frames) and, beyond it, only a few frames' mask windows at a time."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The original frames (any resolution) the face track was made on."}),
                "crops": ("IMAGE", {"tooltip": "Generated face crops, one per frame, at the face track's crop size "
                                               "(LipSyncInference's output)."}),
                "face_track": (FACE_TRACK, {"tooltip": "Face track from MaskLowerFace (passed on by LipSyncInference): "
                                                       "where each crop belongs in its frame."}),
                "feather": ("FLOAT", {"default": 0.08, "min": 0.0, "max": 0.5, "step": 0.01,
                                      "tooltip": "Soft-edge width as a fraction of the crop size (0.08 = 8 %). "
                                                 "Also softens a connected mask; 0 = hard edge."}),
                "color_match": ("BOOLEAN", {"default": True,
                                            "tooltip": "Match the crop's colour to the surrounding skin (mean and "
                                                       "contrast per channel in a ring inside the mask edge, read "
                                                       "where crop and frame agree, so hair or shadow at the edge "
                                                       "does not set it; contrast changed by at most 1.25x; "
                                                       "the clip's own mouths, already in their frame's light, "
                                                       "get the mean alone)."}),
                "blend": (list(BLEND_MODES), {"default": "feathered alpha",
                                              "tooltip": "feathered alpha: one soft edge. multi-band: fine detail "
                                                         "switches over a narrow strip, colour over the whole soft edge "
                                                         "(Laplacian pyramid blend)."}),
            },
            "optional": {
                "mask": ("MASK", {"tooltip": "Optional override of the blend region (e.g. MaskLowerFace's mask or "
                                             "your own), at the images' size; limited to the crop's footprint. "
                                             "Leave empty for the built-in lower-face mask."}),
            },
        }

    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    OUTPUT_TOOLTIPS = ("The frames with the new mouth pasted in: same size and frame count as the input.",)
    FUNCTION = "run"
    CATEGORY = "lipsync/generate"

    def run(self, images, crops, face_track, feather=0.08, color_match=True, blend="feathered alpha", mask=None):
        if blend not in BLEND_MODES:
            raise InputError(f"Composite: blend must be one of {', '.join(BLEND_MODES)}, got {blend!r}.")
        total = images.shape[0] if hasattr(images, "shape") and images.ndim == 4 else 1
        out = comp.composite(
            images, crops, face_track, mask=mask, feather=feather, color_match=color_match,
            blend=BLEND_MODES[blend], device=_comfy.compute_device(),
            on_progress=_comfy.Progress(total, "Composite"),
        )
        return (out.to(_comfy.intermediate_device()),)


NODE_CLASS_MAPPINGS = {"LipSyncComposite": Composite}
NODE_DISPLAY_NAME_MAPPINGS = {"LipSyncComposite": "Composite"}
