"""Helpers the tests and the benches share: one copy of each. The benches import this module
(``bench/_common.py`` puts ``tests/`` on the path); nothing here imports a bench.
"""

from __future__ import annotations

# --- faces and mouths (test_face, bench_face, bench_visemes) -----------------------------------


# --- sync (test_sync, bench_sync, bench_e2e) ---------------------------------------------------


# --- phonemes and visemes (test_phonemes, bench_phonemes, test_visemes, bench_visemes) ---------

def levenshtein(a, b) -> int:
    """Edit distance between two sequences (insertions, deletions, substitutions all cost 1)."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def frame_envelope(wave16k, fps: float, n: int):
    """The speech envelope at video frames: ``lipsync_models.sync.band_envelope`` (log energy of
    300-3000 Hz every 10 ms) read at the centres of ``n`` frames at ``fps`` -> (n,) float64 numpy."""
    import numpy as np

    from comfyui_lipsync.lipsync_models.sync import ENVELOPE_RATE, band_envelope

    env = band_envelope(wave16k)
    idx = np.round((np.arange(n) + 0.5) / fps * ENVELOPE_RATE).astype(int)
    return env[np.clip(idx, 0, len(env) - 1)]


def leave_one_out(per_clip: dict, higher_is_better: bool = True) -> tuple[float, list]:
    """Leave-one-clip-out figure of a constant chosen from a candidate grid.

    per_clip: candidate value -> its figure on each clip (same clip order for every value). For
    each clip in turn the value with the best mean over the other clips is picked and its figure on
    the held-out clip kept. Returns (mean held-out figure, the value picked for each clip)."""
    values = list(per_clip)
    n = len(per_clip[values[0]])
    sign = 1.0 if higher_is_better else -1.0
    held, picks = [], []
    for i in range(n):
        best = max(values, key=lambda v: sign * sum(per_clip[v][j] for j in range(n) if j != i))
        picks.append(best)
        held.append(per_clip[best][i])
    return sum(held) / n, picks
