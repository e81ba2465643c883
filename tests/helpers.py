"""Helpers the tests and the benches share: one copy of each. The benches import this module
(``bench/_common.py`` puts ``tests/`` on the path); nothing here imports a bench.
"""

from __future__ import annotations

# --- faces and mouths (test_face, bench_face, bench_visemes) -----------------------------------


def band_envelope(audio, sr: int, fps: float, n: int):
    """300-3000 Hz natural-log energy of ``audio`` (C, T) tensor at ``sr`` Hz, one value per video frame
    (frame i averages samples [i * sr / fps, (i + 1) * sr / fps)), (n,) float64 numpy; a 4th-order
    Butterworth band-pass run forwards and backwards (no delay).

    ``lipsync_models.sync.band_envelope`` does not do this job: it reads 16 kHz mono at 100 Hz (25 ms Hann
    windows, log10, floored 60 dB under the peak), so comparing it with a per-frame mouth track needs a
    resampling step and another floor, and the figures of test_face / bench_face were measured with this one.
    """
    import numpy as np
    from scipy import signal

    x = audio.numpy().mean(axis=0).astype(np.float64)
    sos = signal.butter(4, [300, 3000], btype="band", fs=sr, output="sos")
    y = signal.sosfiltfilt(sos, x)
    hop = sr / fps
    return np.array([np.log(np.mean(y[int(i * hop):int((i + 1) * hop)] ** 2) + 1e-10) for i in range(n)])


def best_lag(a, b, max_lag: int = 3) -> tuple[float, int]:
    """Pearson r of ``a[t]`` with ``b[t - lag]`` (1-D numpy, same length), maximised over
    ``|lag| <= max_lag`` -> (r, lag); a positive lag means ``a`` follows ``b``."""
    import numpy as np

    a = (a - a.mean()) / (a.std() + 1e-12)
    b = (b - b.mean()) / (b.std() + 1e-12)
    n = len(a)
    rs = {lag: float(np.corrcoef(a[max(0, lag):n + min(0, lag)], b[max(0, -lag):n - max(0, lag)])[0, 1])
          for lag in range(-max_lag, max_lag + 1)}
    lag = max(rs, key=rs.get)
    return rs[lag], lag



# --- sync (test_sync, bench_sync, bench_e2e) ---------------------------------------------------


# --- phonemes and visemes (test_phonemes, bench_phonemes, test_visemes, bench_visemes) ---------
