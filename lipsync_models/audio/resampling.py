"""Band-limited resampling (polyphase Kaiser-windowed sinc), on the input's device."""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from ..errors import InputError

@functools.lru_cache(maxsize=16)
def _sinc_kernel(up: int, down: int, zeros: int, rolloff: float, beta: float) -> tuple[torch.Tensor, int]:
    """Polyphase Kaiser-windowed sinc filter: (up, 1, L) float64 and the left padding ``W``.

    Phase j computes output samples at input position ``q*down + j*down/up``; tap k of that
    phase weighs input sample ``q*down + k - W``.
    """
    fc = min(1.0, up / down) * rolloff  # cut-off as a fraction of the input Nyquist rate
    width = int(math.ceil(zeros / fc))  # half-width in input samples
    extra = down  # phase j sits j*down/up (< down) input samples after the block start
    taps = torch.arange(2 * width + extra + 1, dtype=torch.float64)
    shift = torch.arange(up, dtype=torch.float64)[:, None] * down / up
    t = taps[None, :] - width - shift  # (up, L) distance to the output instant, input samples
    inside = t.abs() <= width
    ratio = (t / width).clamp(-1, 1)
    window = torch.special.i0(beta * torch.sqrt(1 - ratio**2)) / torch.special.i0(torch.tensor(beta, dtype=torch.float64))
    h = fc * torch.sinc(fc * t) * window * inside
    return h[:, None, :], width


def resample(wave: torch.Tensor, sr_in: int, sr_out: int, chunk: int = 1 << 20) -> torch.Tensor:
    """Band-limited resampling of ``wave`` (C, N) from ``sr_in`` to ``sr_out`` Hz.

    Polyphase Kaiser-windowed sinc (16 zero crossings, cut-off at 0.95 of the lower Nyquist
    rate, beta 8.6: stop band below about -80 dB), so content above the new Nyquist rate is
    removed, not aliased. Returns (C, ceil(N * sr_out / sr_in)) with the input's device and
    floating dtype; long inputs are processed in chunks of about ``chunk`` output samples.
    """
    if not isinstance(wave, torch.Tensor) or wave.ndim != 2:
        raise InputError(f"resample: wave must be a (C, N) tensor, got "
                         f"{tuple(wave.shape) if isinstance(wave, torch.Tensor) else type(wave).__name__}.")
    sr_in, sr_out = int(sr_in), int(sr_out)
    if sr_in <= 0 or sr_out <= 0:
        raise InputError(f"resample: sample rates must be positive, got {sr_in} -> {sr_out}.")
    dtype = wave.dtype if wave.is_floating_point() else torch.float32
    if sr_in == sr_out:
        return wave.to(dtype)
    g = math.gcd(sr_in, sr_out)
    up, down = sr_out // g, sr_in // g
    h, width = _sinc_kernel(up, down, 16, 0.95, 8.6)
    work = torch.float64 if dtype == torch.float64 else torch.float32
    h = h.to(work).to(wave.device)  # cast on the CPU first: MPS has no float64
    c, n = wave.shape
    m = -(-n * up // down)  # output length
    if n == 0:
        return wave.new_zeros((c, 0), dtype=dtype)
    q_total = -(-m // up)  # output positions per phase
    length = h.shape[-1]
    x = wave.to(work).reshape(c, 1, n)
    pad_right = max((q_total - 1) * down + length - width - n, 0)
    x = F.pad(x, (width, pad_right))
    q_chunk = max(chunk // up, 1)
    outs = []
    for q0 in range(0, q_total, q_chunk):
        q1 = min(q0 + q_chunk, q_total)
        seg = x[:, :, q0 * down:(q1 - 1) * down + length]
        y = F.conv1d(seg, h, stride=down)  # (C, up, q1 - q0)
        outs.append(y.transpose(1, 2).reshape(c, -1))
    return torch.cat(outs, dim=1)[:, :m].to(dtype)
