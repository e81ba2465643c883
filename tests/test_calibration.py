"""lipsync_models/calibration.py: one place for every fitted constant, each defined once (two
sections once gave the same name to the face mask's and Composite's half widths, and the later
silently replaced the earlier)."""

import ast
import collections
from pathlib import Path

CAL = Path(__file__).resolve().parents[1] / "lipsync_models" / "calibration.py"


def _assigned():
    tree = ast.parse(CAL.read_text())
    return [t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)]


def test_every_constant_is_defined_once():
    twice = [k for k, v in collections.Counter(_assigned()).items() if v > 1]
    assert not twice, f"calibration.py defines {twice} more than once"


def test_the_check_catches_a_twin(tmp_path):
    src = CAL.read_text() + "\nHEIGHT_GAIN = 1.0\n"
    tree = ast.parse(src)
    names = [t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)]
    assert collections.Counter(names)["HEIGHT_GAIN"] == 2
