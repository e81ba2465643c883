"""Per-frame tensor ops of MapVisemes (vectorised over the T frames): the box-window share of
each shape, the zero-phase Gaussian, the share of a frame's window in a breath, and the cues (runs
of the dominant shape)."""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import InputError
from ..types import PhonemeTrack

BREATH_LABELS = frozenset({"BREATH", "+BREATH+", "<BREATH>"})
"""Phoneme labels of an audible breath (ExtractPhonemes writes BREATH; pocketsphinx fillers)."""

SMOOTHING_MAX_MS = 60.0
"""smoothing = 1 is a Gaussian of this sigma (ms); smoothing = s scales it linearly."""


def _box_weights(bounds: torch.Tensor, vis: torch.Tensor, V: int, t: torch.Tensor, width: float) -> torch.Tensor:
    """Weights (T, V): the share of each viseme inside the window [t - width/2, t + width/2]
    (clipped to the clip), computed exactly from the piecewise-constant timeline through its
    cumulative time per viseme. width 0 -> the viseme at t (one-hot).

    bounds: (n + 1,) increasing floating times; vis: (n,) int64 viseme index of each segment, in
    [0, V); t: (T,) times, same dtype as bounds. Follows bounds' device and dtype."""
    _check_timeline(bounds, vis, V, t)
    n = vis.shape[0]
    onehot = torch.nn.functional.one_hot(vis, V).to(bounds.dtype)  # (n, V)
    lengths = (bounds[1:] - bounds[:-1]).unsqueeze(1)
    cum = torch.cat([onehot.new_zeros(1, V), torch.cumsum(onehot * lengths, 0)], 0)

    def seg_of(x):
        return torch.searchsorted(bounds[1:-1].contiguous(), x.contiguous(), right=True).clamp_(0, n - 1)

    if width <= 1e-9:
        return onehot[seg_of(t)]

    def cumulative(x):
        k = seg_of(x)
        return cum[k] + onehot[k] * (x - bounds[k]).unsqueeze(1)

    lo = (t - width / 2).clamp(float(bounds[0]), float(bounds[-1]))
    hi = (t + width / 2).clamp(float(bounds[0]), float(bounds[-1]))
    span = (hi - lo).unsqueeze(1)
    w = (cumulative(hi) - cumulative(lo)) / span.clamp_min(1e-12)
    return torch.where(span > 1e-12, w, onehot[seg_of(t)])


def _check_timeline(bounds: torch.Tensor, vis: torch.Tensor, V: int, t: torch.Tensor) -> None:
    who = "visemes._box_weights"
    if not (isinstance(bounds, torch.Tensor) and bounds.ndim == 1 and bounds.is_floating_point()
            and bounds.shape[0] >= 2):
        raise InputError(f"{who}: bounds must be a (n + 1,) floating tensor with n >= 1, got "
                         f"{_describe(bounds)}.")
    if not (isinstance(vis, torch.Tensor) and vis.shape == (bounds.shape[0] - 1,) and vis.dtype == torch.int64):
        raise InputError(f"{who}: vis must be a ({bounds.shape[0] - 1},) int64 tensor (one index per segment), "
                         f"got {_describe(vis)}.")
    if int(vis.min()) < 0 or int(vis.max()) >= V:
        raise InputError(f"{who}: vis holds indices outside [0, V) = [0, {V}): {int(vis.min())}..{int(vis.max())}.")
    if not (isinstance(t, torch.Tensor) and t.ndim == 1 and t.dtype == bounds.dtype):
        raise InputError(f"{who}: t must be a (T,) tensor of the bounds' dtype {bounds.dtype}, got {_describe(t)}.")


def _describe(x) -> str:
    return f"shape {tuple(x.shape)} {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__


def _gauss_smooth(x: torch.Tensor, sigma_frames: float) -> torch.Tensor:
    """Zero-phase Gaussian filter along time of x (T, C) floating, sigma in frames (kernel radius
    ceil(3 sigma)); edges replicate. Rows keep their sum. Follows x's device and dtype; sigma
    under 0.25 frame (or T < 2) returns x itself."""
    if not (isinstance(x, torch.Tensor) and x.ndim == 2 and x.is_floating_point()):
        raise InputError(f"visemes._gauss_smooth: x must be a (T, C) floating tensor, got {_describe(x)}.")
    if not (math.isfinite(sigma_frames) and sigma_frames >= 0):
        raise InputError(f"visemes._gauss_smooth: sigma_frames must be finite and >= 0, got {sigma_frames}.")
    if sigma_frames < 0.25 or x.shape[0] < 2:
        return x
    r = int(math.ceil(3 * sigma_frames))
    k = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (k / sigma_frames) ** 2)
    k = (k / k.sum()).view(1, 1, -1).repeat(x.shape[1], 1, 1)
    y = x.T.unsqueeze(0)  # (1, C, T)
    y = torch.nn.functional.pad(y, (r, r), mode="replicate")
    return torch.nn.functional.conv1d(y, k, groups=x.shape[1])[0].T


def _breath_share(track: PhonemeTrack, fps: float, num_frames: int, blend_ms: float,
                  smoothing: float) -> torch.Tensor | None:
    """(T,) float64 share of each frame's blend window that lies in a BREATH phoneme, smoothed
    like the weights; None when the track has no breath."""
    end_time = num_frames / fps
    spans = sorted((max(float(p.start), 0.0), min(float(p.end), end_time)) for p in track.phonemes
                   if str(p.label).strip().upper() in BREATH_LABELS)
    spans = [(s, e) for s, e in spans if e > s]
    if not spans:
        return None
    bounds, vis, t0 = [0.0], [], 0.0
    for s, e in spans:
        s, e = max(s, t0), max(e, t0)
        if e <= s:
            continue
        if s > t0:
            vis.append(0)
            bounds.append(s)
        vis.append(1)
        bounds.append(e)
        t0 = e
    if t0 < end_time:
        vis.append(0)
        bounds.append(end_time)
    t = (torch.arange(num_frames, dtype=torch.float64) + 0.5) / fps
    w = _box_weights(torch.tensor(bounds, dtype=torch.float64), torch.tensor(vis), 2, t, blend_ms / 1000.0)
    return _gauss_smooth(w, smoothing * SMOOTHING_MAX_MS / 1000.0 * fps)[:, 1]


def _cues(w: torch.Tensor, names, fps: float) -> tuple[tuple[float, float, str], ...]:
    """Runs of the dominant viseme -> (start, end, name) in seconds at frame boundaries."""
    top = torch.argmax(w, dim=1).numpy()
    change = np.flatnonzero(np.diff(top)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [len(top)]])
    vals = top[starts].tolist()
    return tuple((s / fps, e / fps, names[v]) for s, e, v in zip(starts.tolist(), ends.tolist(), vals))
