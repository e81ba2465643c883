"""ComfyUI-LipSync: make silent AI-generated clips speak.

ComfyUI imports this file from ``custom_nodes/``; it only registers the node classes and the
web extension folder. Nothing heavy (no model, no detector, no subprocess) runs at import.
"""

import importlib
import logging

_log = logging.getLogger("comfyui_lipsync")

# One module per node under nodes/; each defines NODE_CLASS_MAPPINGS and NODE_DISPLAY_NAME_MAPPINGS.
_NODE_MODULES = (
    "load_audio_driver",
    "extract_phonemes",
    "map_visemes",
    "mask_lower_face",
    "lipsync_inference",
    "composite",
    "sync_score",
)

NODE_CLASS_MAPPINGS = {}
NODE_DISPLAY_NAME_MAPPINGS = {}

for _name in _NODE_MODULES:
    try:
        _mod = importlib.import_module(f".nodes.{_name}", __name__)
    except ImportError as _e:  # a node whose module is missing or broken: the rest still load
        _log.error("ComfyUI-LipSync: node module %s failed to load: %s", _name, _e)
        continue
    NODE_CLASS_MAPPINGS.update(_mod.NODE_CLASS_MAPPINGS)
    NODE_DISPLAY_NAME_MAPPINGS.update(_mod.NODE_DISPLAY_NAME_MAPPINGS)

WEB_DIRECTORY = "./web"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
