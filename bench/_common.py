"""Shared by the bench scripts (run as ``python bench/bench_x.py``, so this folder is on sys.path):
the GRID clips (their transcripts are the tests' own, tests/conftest.py) and the process-memory readings."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from testdata import GRID, GRID_CLIPS, GRID_TEXT  # noqa: E402,F401  (one copy: the tests' data module)


def filmed_opening(track):
    """The mouth-opening track of a clip's FaceTrack as float64 numpy: the face-mesh inner-lip gap /
    mouth width where the track has one (a mediapipe track's ``extras['mesh_gap']``, FACTS.md's
    reference measure of a filmed mouth), else the track's opening measure (``.opening``)."""
    mesh = track.extras.get("mesh_gap")
    return (track.opening if mesh is None else mesh).double().cpu().numpy()


def status_mb(key: str) -> float | None:
    """A /proc/self/status field in MB (e.g. "VmHWM", "VmRSS"); None where there is no /proc."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process; False where not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False
