"""Per-video-frame loudness (RMS dBFS) and voicing (normalised autocorrelation) of a 16 kHz
waveform, and the voicing gate."""

from __future__ import annotations


import torch
import torch.nn.functional as F

from ..types import ANALYSIS_RATE

LOUDNESS_FLOOR_DB = -100.0


def frame_samples(fps: float, num_frames: int, sr: int) -> torch.Tensor:
    """(T + 1,) int64 sample where each video frame begins (and the last one ends) at ``sr`` Hz:
    frame k starts at round(k * sr / fps) (halves up), each computed from k alone, so nothing
    accumulates and the rate is never rounded (29.97 fps at 16 kHz: 0, 534, 1068, 1602, 2135, ...).
    A 1e-6 sample slack keeps float rates such as 30000/1001 on the rational value's side of a half."""
    i = torch.arange(int(num_frames) + 1, dtype=torch.float64)
    return torch.floor(i * float(sr) / float(fps) + (0.5 + 1e-6)).to(torch.int64)


_frame_bounds = frame_samples


def frame_loudness(wave16k: torch.Tensor, fps: float, num_frames: int, sr: int = ANALYSIS_RATE) -> torch.Tensor:
    """(T,) RMS level of each video frame's samples in dBFS (full-scale square wave = 0 dB,
    full-scale sine = -3.01 dB), floored at -100 dB. Samples past the end count as silence."""
    dev = wave16k.device
    # float64 running sums (exact over an hour of audio); MPS has no float64, so it works on the CPU
    work = dev if dev.type != "mps" else torch.device("cpu")
    bounds = frame_samples(fps, num_frames, sr).to(work)
    x = wave16k.to(work).to(torch.float64)
    total = int(bounds[-1])
    if x.shape[0] < total:
        x = F.pad(x, (0, total - x.shape[0]))
    csum = F.pad(torch.cumsum(x**2, 0), (1, 0))
    energy = csum[bounds[1:]] - csum[bounds[:-1]]
    count = (bounds[1:] - bounds[:-1]).clamp_min(1).to(torch.float64)
    ms = (energy / count).clamp_min(0)
    db = 10.0 * torch.log10(ms.clamp_min(10.0 ** (LOUDNESS_FLOOR_DB / 10.0)))
    return db.to(torch.float32).to(dev)


VOICING_WINDOW = 800  # 50 ms: three periods of the lowest pitch searched (60 Hz)
VOICING_FMIN = 60.0
VOICING_FMAX = 400.0


def _voicing_strength(frames: torch.Tensor, sr: int) -> torch.Tensor:
    """Peak normalised autocorrelation in the 60-400 Hz lag range, corrected for the Hann
    window (Boersma 1993). frames: (T, L) -> (T,) roughly in [0, 1]."""
    length = frames.shape[1]
    nfft = 1 << (2 * length - 1).bit_length()
    win = torch.hann_window(length, periodic=False, dtype=frames.dtype, device=frames.device)
    x = (frames - frames.mean(dim=1, keepdim=True)) * win
    r = torch.fft.irfft(torch.fft.rfft(x, nfft).abs() ** 2, nfft)[:, :length]
    rw = torch.fft.irfft(torch.fft.rfft(win, nfft).abs() ** 2, nfft)[:length]
    lo, hi = int(sr / VOICING_FMAX), min(int(sr / VOICING_FMIN), length // 2)
    r0 = r[:, :1].clamp_min(1e-12)
    norm = (r[:, lo:hi + 1] / r0) / (rw[lo:hi + 1] / rw[0]).clamp_min(1e-6)
    return norm.max(dim=1).values.clamp(0, 1)


def frame_voicing(wave16k: torch.Tensor, fps: float, num_frames: int, sr: int = ANALYSIS_RATE,
                  chunk: int = 2048) -> torch.Tensor:
    """(T,) voicing of each video frame in [0, 1].

    Pitch strength from the autocorrelation of a 50 ms window centred on the frame (peak
    normalised autocorrelation at lags of 60-400 Hz; 0.35 -> 0, 0.85 -> 1), multiplied by an
    energy gate rising from 0 at :func:`voicing_gate` to 1 ten dB higher (frame RMS), so noise,
    hum and silence read 0 and a sustained vowel reads near 1.
    """
    dev = wave16k.device
    x = wave16k.to(torch.float32)
    bounds = frame_samples(fps, num_frames, sr)
    centres = ((bounds[:-1] + bounds[1:]) // 2).to(dev)
    half = VOICING_WINDOW // 2
    total = int(bounds[-1]) + VOICING_WINDOW
    xp = F.pad(x, (half, max(total - x.shape[0], 0) + half))
    offs = torch.arange(VOICING_WINDOW, device=dev)
    out = []
    for t0 in range(0, int(num_frames), chunk):
        idx = centres[t0:t0 + chunk, None] + offs[None]  # window starts at centre - half in x
        out.append(_voicing_strength(xp[idx], sr))
    strength = torch.cat(out) if out else x.new_zeros(0)
    pitch = ((strength - 0.35) / 0.5).clamp(0, 1)
    loud = frame_loudness(x, fps, num_frames, sr).to(dev)
    lo = voicing_gate(loud)
    gate = ((loud - lo) / 10.0).clamp(0, 1)
    return (pitch * gate).to(torch.float32)


def voicing_gate(loudness: torch.Tensor) -> float:
    """Frame level (dBFS) below which :func:`frame_voicing` reads 0; it reaches full weight 10 dB
    higher. 6 dB above the noise floor (10th percentile of the frame levels, but at least 35 dB
    under the 95th percentile, so speech without pauses is not taken for noise), never below
    -60 dBFS. Background hum (GRID's floor sits near -47 dBFS) is periodic too; this gate keeps
    it from reading as voice."""
    if loudness.numel() == 0:
        return -60.0
    q = torch.quantile(loudness.detach().float().cpu(), torch.tensor([0.10, 0.95]))
    floor = min(float(q[0]), float(q[1]) - 35.0)
    return max(floor + 6.0, -60.0)
