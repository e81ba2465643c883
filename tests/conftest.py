"""Load the pack the way ComfyUI does: as a package from its folder, under the alias
``comfyui_lipsync`` (the folder name ``ComfyUI-LipSync`` is not a valid module name).

Tests import everything through that alias so each module exists once:
``from comfyui_lipsync.lipsync_models import audio``.
"""

import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
GRID = SHARED / "data" / "grid"

if "comfyui_lipsync" not in sys.modules:
    _spec = importlib.util.spec_from_file_location(
        "comfyui_lipsync", ROOT / "__init__.py", submodule_search_locations=[str(ROOT)]
    )
    _mod = importlib.util.module_from_spec(_spec)
    sys.modules["comfyui_lipsync"] = _mod
    _spec.loader.exec_module(_mod)

GRID_CLIPS = sorted(p.stem for p in GRID.glob("*.mpg"))
GRID_TEXT = {
    "bbaf2n": "bin blue at f two now",
    "brbk7n": "bin red by k seven now",
    "lbax4n": "lay blue at x four now",
    "lbbc2a": "lay blue by c two again",
    "lrwp9a": "lay red with p nine again",
    "lwbsza": "lay white by s zero again",
    "swwp2s": "set white with p two soon",
}


@pytest.fixture(scope="session")
def grid_dir() -> Path:
    if not GRID.is_dir():
        pytest.fail(f"real test media missing: {GRID} (the shared/ folder must sit beside the repo)")
    return GRID
