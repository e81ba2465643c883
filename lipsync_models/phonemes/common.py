"""What every phoneme backend shares: the waveform check, the 10 ms level frames, the silent
track, and the 16-bit PCM pocketsphinx reads."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ..audio import to_analysis_rate  # noqa: F401  (re-exported: phonemes.to_analysis_rate)
from ..errors import InputError
from ..types import ANALYSIS_RATE, Phoneme, PhonemeTrack

FRAME_RATE = 100
"""pocketsphinx analyses 100 frames per second (10 ms hop)."""

SILENCE_DBFS = -60.0
"""Audio whose loudest 10 ms is below this level is treated as silent."""

ProgressFn = Callable[[int, int], None]


def _as_wave(wave16k: torch.Tensor, who: str) -> np.ndarray:
    """(N,) float tensor at 16 kHz -> float32 numpy in [-1, 1] (copy; the input is untouched)."""
    if not isinstance(wave16k, torch.Tensor):
        raise InputError(f"{who}: the waveform must be a torch tensor, got {type(wave16k).__name__}.")
    if wave16k.ndim == 2 and wave16k.shape[0] == 1:
        wave16k = wave16k[0]
    if wave16k.ndim != 1:
        raise InputError(f"{who}: the waveform must be mono with shape (N,), got {tuple(wave16k.shape)}. "
                         "Mix channels down first (LoadAudioDriver does).")
    if wave16k.numel() < ANALYSIS_RATE // 10:
        raise InputError(f"{who}: the audio is too short ({wave16k.numel()} samples = "
                         f"{wave16k.numel() / ANALYSIS_RATE * 1000:.0f} ms at 16 kHz); give at least 0.1 s.")
    x = wave16k.detach().to("cpu", torch.float32).numpy()
    if not np.isfinite(x).all():
        raise InputError(f"{who}: the waveform holds NaN or infinite samples; check the audio source.")
    return np.clip(x, -1.0, 1.0)


def _pcm(x: np.ndarray) -> bytes:
    return (x * 32767.0).round().astype("<i2").tobytes()


def _frame_dbfs(x: np.ndarray, hop: int = ANALYSIS_RATE // FRAME_RATE) -> np.ndarray:
    n = len(x) // hop
    if n == 0:
        return np.full(1, -120.0)
    e = (x[: n * hop].reshape(n, hop).astype(np.float64) ** 2).mean(1)
    return 10 * np.log10(e + 1e-12)


def _silent_track(duration: float, backend: str) -> PhonemeTrack:
    return PhonemeTrack((Phoneme("SIL", 0.0, duration, 1.0),), duration, backend)
