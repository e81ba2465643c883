"""Load the whole pack (nodes included) as the package ``comfyui_lipsync``, for the headless
runner, the benches and tools, the same way tests and ComfyUI load it: from its folder.

Imports nothing of the pack itself, so ``from lipsync_runner.pack import load_pack`` works with
only the pack folder on ``sys.path``."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ALIAS = "comfyui_lipsync"


def load_pack():
    """Import the pack folder as ``comfyui_lipsync`` (once) and return the module."""
    if ALIAS in sys.modules:
        return sys.modules[ALIAS]
    spec = importlib.util.spec_from_file_location(ALIAS, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
    mod = importlib.util.module_from_spec(spec)
    sys.modules[ALIAS] = mod
    spec.loader.exec_module(mod)
    return mod
