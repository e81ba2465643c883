"""Helpers the tests and the benches share: one copy of each. The benches import this module
(``bench/_common.py`` puts ``tests/`` on the path); nothing here imports a bench.
"""

from __future__ import annotations

# --- faces and mouths (test_face, bench_face, bench_visemes) -----------------------------------


# --- sync (test_sync, bench_sync, bench_e2e) ---------------------------------------------------


# --- phonemes and visemes (test_phonemes, bench_phonemes, test_visemes, bench_visemes) ---------
