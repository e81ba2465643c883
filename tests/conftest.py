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
sys.path.insert(0, str(ROOT / "tests"))
from testdata import GRID, GRID_CLIPS, GRID_TEXT, verify  # noqa: E402,F401

if "comfyui_lipsync" not in sys.modules:
    _spec = importlib.util.spec_from_file_location(
        "comfyui_lipsync", ROOT / "__init__.py", submodule_search_locations=[str(ROOT)]
    )
    _mod = importlib.util.module_from_spec(_spec)
    sys.modules["comfyui_lipsync"] = _mod
    _spec.loader.exec_module(_mod)


def pytest_sessionstart(session):
    """Missing or changed test data stops the run at once, naming each file (tests/data/SHA256SUMS)."""
    problems = verify()
    if problems:
        pytest.exit("\n".join(problems), returncode=1)


@pytest.fixture(scope="session")
def grid_dir() -> Path:
    return GRID


# kornia's recipe: every tensor op runs on each device present (CUDA too when there is one) and in
# the float dtypes it accepts.
DEVICES = ["cpu"] + (["cuda"] if __import__("torch").cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request):
    import torch

    return torch.device(request.param)


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    import torch

    return getattr(torch, request.param)
