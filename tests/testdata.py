"""The real media the tests, benches and tools read: everything lives in ``tests/data/`` of this
repository, so a clone with nothing beside it runs them. One copy of the paths and the GRID
transcripts; the benches import this module (never the reverse).

``tests/data/SHA256SUMS`` lists every file with its checksum: :func:`verify` fails loudly, naming the
file, when one is missing or changed, so no test can pass over an empty folder.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
GRID = DATA / "grid"
OBJECT_INFO = DATA / "comfyui" / "object_info.json"
CHECKSUMS = DATA / "SHA256SUMS"

GRID_TEXT = {
    "bbaf2n": "bin blue at f two now",
    "brbk7n": "bin red by k seven now",
    "lbax4n": "lay blue at x four now",
    "lbbc2a": "lay blue by c two again",
    "lrwp9a": "lay red with p nine again",
    "lwbsza": "lay white by s zero again",
    "swwp2s": "set white with p two soon",
}
"""The sentence each GRID clip reads (its file name is the sentence's GRID code)."""

GRID_CLIPS = sorted(GRID_TEXT)
"""The seven clip names, fixed here (not globbed) so a missing file fails the tests that read it."""


def grid_clip(name: str) -> Path:
    """Path of one GRID clip, e.g. ``grid_clip("bbaf2n")``; raises naming the file when it is missing."""
    path = GRID / f"{name}.mpg"
    if not path.is_file():
        raise FileNotFoundError(f"test data missing: {path} (listed in {CHECKSUMS})")
    return path


def verify() -> list[str]:
    """Check every file of SHA256SUMS; returns the problems, one line each naming the file."""
    if not CHECKSUMS.is_file():
        return [f"test data checksum list missing: {CHECKSUMS}"]
    problems = []
    for line in CHECKSUMS.read_text().splitlines():
        if not line.strip():
            continue
        digest, name = line.split(maxsplit=1)
        path = DATA / name.strip()
        if not path.is_file():
            problems.append(f"test data missing: {path}")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            problems.append(f"test data changed: {path} (sha256 differs from {CHECKSUMS})")
    return problems
