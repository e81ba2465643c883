"""Shared by the bench scripts (run as ``python bench/bench_x.py``, so this folder is on sys.path):
the GRID clips' transcripts and the process-memory readings."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GRID = ROOT.parent / "shared" / "data" / "grid"
GRID_TEXT = {  # from shared/data/README.md
    "bbaf2n": "bin blue at f two now",
    "brbk7n": "bin red by k seven now",
    "lbax4n": "lay blue at x four now",
    "lbbc2a": "lay blue by c two again",
    "lrwp9a": "lay red with p nine again",
    "lwbsza": "lay white by s zero again",
    "swwp2s": "set white with p two soon",
}


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
