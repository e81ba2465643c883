"""Wav2Lip's log-mel front end (constants read from its ``hparams.py``/``audio.py``; this is our own
implementation): preemphasis 0.97; STFT with n_fft 800, hop 200, Hann window 800, centred with
reflection padding (librosa 0.7, which Wav2Lip pins); magnitude through an 80-band Slaney mel
filterbank from 55 to 7600 Hz (area-normalised); ``20*log10(max(1e-5, x)) - 20`` dB; then mapped
linearly from [-100, 0] dB to [-4, 4] and clipped. That gives 80 mel frames per second, and
video frame ``i`` at ``fps`` reads the 16 mel frames starting at ``int(i * 80 / fps)``."""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from ..errors import InputError
from ..types import ANALYSIS_RATE, MEL_BINS, MEL_STEPS

# --- Wav2Lip audio constants -----------------------------------------------------------------
N_FFT = 800
HOP = 200
WIN = 800
FMIN = 55.0
FMAX = 7600.0
PREEMPHASIS = 0.97
REF_LEVEL_DB = 20.0
MIN_LEVEL_DB = -100.0
MAX_ABS_VALUE = 4.0
MEL_FPS = ANALYSIS_RATE / HOP  # 80 mel frames per second
MEL_SILENCE = -MAX_ABS_VALUE
"""Normalised mel value of digital silence (the floor of the [-4, 4] range)."""


def hz_to_mel(f: torch.Tensor) -> torch.Tensor:
    """Slaney mel scale: linear 3 mels per 200 Hz below 1 kHz, logarithmic above (27 mels per
    factor 6.4), so 1000 Hz = 15 mel."""
    f = torch.as_tensor(f, dtype=torch.float64)
    lin = f * 3.0 / 200.0
    log_part = 15.0 + torch.log(f.clamp_min(1e-10) / 1000.0) / (math.log(6.4) / 27.0)
    return torch.where(f >= 1000.0, log_part, lin)


def mel_to_hz(m: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`hz_to_mel`."""
    m = torch.as_tensor(m, dtype=torch.float64)
    lin = m * 200.0 / 3.0
    log_part = 1000.0 * torch.exp((m - 15.0) * (math.log(6.4) / 27.0))
    return torch.where(m >= 15.0, log_part, lin)


@functools.lru_cache(maxsize=4)
def mel_filterbank(sr: int = ANALYSIS_RATE, n_fft: int = N_FFT, n_mels: int = MEL_BINS,
                   fmin: float = FMIN, fmax: float = FMAX) -> torch.Tensor:
    """(n_mels, n_fft//2 + 1) float64 triangular Slaney filterbank, area-normalised.

    Band k rises from ``edges[k]`` to a peak at ``edges[k+1]`` and falls to ``edges[k+2]``,
    where ``edges`` are n_mels + 2 frequencies equally spaced on the Slaney mel scale between
    fmin and fmax; each triangle is scaled by ``2 / (edges[k+2] - edges[k])``.
    """
    freqs = torch.linspace(0, sr / 2, n_fft // 2 + 1, dtype=torch.float64)
    edges = mel_to_hz(torch.linspace(float(hz_to_mel(torch.tensor(fmin))), float(hz_to_mel(torch.tensor(fmax))),
                                     n_mels + 2, dtype=torch.float64))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rise = (freqs[None] - lo) / (mid - lo)
    fall = (hi - freqs[None]) / (hi - mid)
    tri = torch.minimum(rise, fall).clamp_min(0)
    return tri * (2.0 / (hi - lo))


def mel_edges(sr: int = ANALYSIS_RATE, n_mels: int = MEL_BINS, fmin: float = FMIN, fmax: float = FMAX) -> torch.Tensor:
    """(n_mels + 2,) band edge frequencies in Hz of :func:`mel_filterbank`."""
    return mel_to_hz(torch.linspace(float(hz_to_mel(torch.tensor(fmin))), float(hz_to_mel(torch.tensor(fmax))),
                                    n_mels + 2, dtype=torch.float64))


def preemphasis(wave: torch.Tensor, k: float = PREEMPHASIS) -> torch.Tensor:
    """y[n] = x[n] - k x[n-1] along the last axis (x[-1] = 0)."""
    prev = F.pad(wave[..., :-1], (1, 0))
    return wave - k * prev


def num_mel_frames(n_samples: int) -> int:
    """Mel frames :func:`log_mel` makes from ``n_samples`` (centred STFT: 1 + N // 200)."""
    return 1 + int(n_samples) // HOP


def log_mel(wave16k: torch.Tensor, chunk_frames: int = 4096) -> torch.Tensor:
    """Wav2Lip log-mel spectrogram of a 16 kHz mono waveform.

    wave16k: (N,) float, roughly in [-1, 1]. Returns (80, 1 + N // 200) float32 on the same
    device, values in [-4, 4] (-4 = silence). Long inputs are processed in chunks of
    ``chunk_frames`` mel frames; the result is the same as in one piece.
    """
    if not isinstance(wave16k, torch.Tensor) or wave16k.ndim != 1:
        raise InputError(f"log_mel: wave16k must be a (N,) tensor, got "
                         f"{tuple(wave16k.shape) if isinstance(wave16k, torch.Tensor) else type(wave16k).__name__}.")
    dev = wave16k.device
    x = preemphasis(wave16k.to(torch.float32))
    n = x.shape[0]
    pad = N_FFT // 2
    if n > pad:
        xp = F.pad(x[None, None], (pad, pad), mode="reflect")[0, 0]
    else:  # too short to reflect: zero padding
        xp = F.pad(x, (pad, pad))
    frames = num_mel_frames(n)
    window = torch.hann_window(WIN, periodic=True, dtype=torch.float32, device=dev)
    basis = mel_filterbank().to(torch.float32).to(dev)
    min_level = 10.0 ** (MIN_LEVEL_DB / 20.0)
    out = []
    for f0 in range(0, frames, chunk_frames):
        f1 = min(f0 + chunk_frames, frames)
        seg = xp[f0 * HOP:(f1 - 1) * HOP + N_FFT]
        spec = torch.stft(seg, n_fft=N_FFT, hop_length=HOP, win_length=WIN, window=window,
                          center=False, return_complex=True).abs()
        db = 20.0 * torch.log10(torch.clamp(basis @ spec, min=min_level)) - REF_LEVEL_DB
        out.append(db)
    s = torch.cat(out, dim=1)
    span = -MIN_LEVEL_DB
    return torch.clamp(2 * MAX_ABS_VALUE * (s - MIN_LEVEL_DB) / span - MAX_ABS_VALUE, -MAX_ABS_VALUE, MAX_ABS_VALUE)


def mel_starts(fps: float, num_frames: int) -> torch.Tensor:
    """(T,) int64 first mel frame of each video frame: floor(i * 80 / fps), each computed from i
    alone (no drift), so that exact multiples are not lost to rounding (25 fps: 0, 3, 6, 9, 12, 16,
    ...; 30000/1001 given as a float still reaches 1001 at frame 375)."""
    i = torch.arange(int(num_frames), dtype=torch.float64)
    return torch.floor(i * MEL_FPS / float(fps) + 1e-6).to(torch.int64)


def mel_windows(mel: torch.Tensor, fps: float, num_frames: int, pad_value: float = MEL_SILENCE) -> torch.Tensor:
    """Per-video-frame mel windows. mel: (80, M) from :func:`log_mel` -> (T, 80, 16).

    Window ``i`` holds mel frames ``int(i * 80 / fps)`` .. ``+15``; frames past the end of
    ``mel`` are filled with ``pad_value`` (silence), so every window has 16 steps.
    """
    if not isinstance(mel, torch.Tensor) or mel.ndim != 2:
        raise InputError(f"mel_windows: mel must be a (80, M) tensor, got "
                         f"{tuple(mel.shape) if isinstance(mel, torch.Tensor) else type(mel).__name__}.")
    if fps <= 0 or num_frames < 0:
        raise InputError(f"mel_windows: fps must be positive and num_frames >= 0, got fps {fps}, num_frames {num_frames}.")
    starts = mel_starts(fps, num_frames).to(mel.device)
    idx = starts[:, None] + torch.arange(MEL_STEPS, device=mel.device)[None]  # (T, 16)
    need = int(idx.max()) + 1 if num_frames > 0 else 0
    if need > mel.shape[1]:
        mel = F.pad(mel, (0, need - mel.shape[1]), value=pad_value)
    return mel[:, idx].permute(1, 0, 2).contiguous()
