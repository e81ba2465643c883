"""SyncScore's lag correlation: every visual x audio signal pair correlated (Pearson) at
sub-frame lags, and the peak of their mean curve read off as an offset."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..calibration import ACTIVITY_WEIGHT
from .common import audio_at
from .mouth_pixels import subspace_curves

LAG_STEP = 0.1
"""Sub-frame resolution of the lag search, in frames."""


def corr_rows(v: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Pearson r between v (T,) and each row of a (L, T); 0 where either is constant."""
    v = v - v.mean()
    a = a - a.mean(1, keepdims=True)
    num = a @ v
    den = np.sqrt((a * a).sum(1) * (v * v).sum())
    return np.where(den > 1e-12, num / np.maximum(den, 1e-300), 0.0)


def lag_curves(visual: dict[str, np.ndarray], audio_hr: dict[str, np.ndarray], audio_fr: dict[str, np.ndarray],
               fps: float, lags: np.ndarray, frames: slice | None = None) -> np.ndarray:
    """Correlation curves of every visual x audio pair at (sub-frame) ``lags``.

    visual: name -> (T,) per frame, or (T, K) components (:func:`.mouth_pixels.subspace_curves`:
    their multiple correlation with each audio signal); audio_hr: name -> (M,) at :data:`ENVELOPE_RATE`, sample m
    at m / rate seconds; audio_fr: name -> (T,) per frame. At lag L the audio is read at frame
    ``i + L`` (time ``(i + L) / fps``), linear interpolation, edge values outside the clip.
    ``frames`` restricts the visual frames used (windows). Returns (P, len(lags)): levels and
    frame-to-frame changes for each pair (P = 2 * pairs).
    """
    t_all = np.arange(next(iter(visual.values())).shape[0], dtype=np.float64)
    t = t_all[frames] if frames is not None else t_all
    sampled = audio_at(audio_hr, audio_fr, fps, t[None, :] + lags[:, None])  # (L, T') each
    out = []
    for v in visual.values():
        if v.ndim == 2:  # the inner mouth's pixel components: one multiple-correlation curve per audio signal
            out.extend(subspace_curves(v, audio_hr, audio_fr, fps, lags, frames))
            continue
        vv = v[frames] if frames is not None else v
        for s in sampled:
            out.append(corr_rows(vv, s))
            out.append(corr_rows(np.diff(vv), np.diff(s, axis=1)))
    return np.stack(out)


class LagScore(NamedTuple):
    """What :func:`score_lags` read off the curve.

    offset: round(raw_peak - lead), clipped to -R..R; peak_confidence: best score minus the
    median of the scores at whole offsets; confidence: the score at offset 0 minus that median;
    at_int: (2R+1,) the curve at whole offsets -R..R; raw_peak: the curve's peak in frames
    (parabolic refinement), before the lead is subtracted; agreement: the share of the pairs'
    reliability (:func:`reliability`) whose own curve peaks within one frame of the combined peak
    (1 = every signal points at the same offset); weights: each pair's share of the combination."""

    offset: int
    peak_confidence: float
    confidence: float
    at_int: np.ndarray
    raw_peak: float
    agreement: float = 1.0
    weights: tuple[float, ...] = ()


def score_lags(visual: dict[str, np.ndarray], audio_hr: dict[str, np.ndarray], audio_fr: dict[str, np.ndarray],
               activity: tuple[np.ndarray, np.ndarray], fps: float, search_range: int, lead: float,
               frames: slice | None = None, activity_weight: float = ACTIVITY_WEIGHT) -> LagScore:
    """The mean of the fine curves (:func:`lag_curves`), each weighted by its reliability on this
    clip (:func:`reliability`), plus ``activity_weight`` times the
    correlation of the activity pair (visual (T,), audio at :data:`ENVELOPE_RATE`), on a grid of
    whole multiples of :data:`LAG_STEP` covering -R-1..R+1 shifted by ``lead`` (the grid points do
    not move with the lead, so the curve's peak is the clip's alone); its peak minus ``lead``,
    rounded, is the offset."""
    R = int(search_range)
    lo = int(np.floor((-R - 1 + lead) / LAG_STEP + 1e-9))
    hi = int(np.ceil((R + 1 + lead) / LAG_STEP - 1e-9))
    fine = np.arange(lo, hi + 1) * LAG_STEP
    ints = np.arange(-R, R + 1)
    curves = lag_curves(visual, audio_hr, audio_fr, fps, fine, frames)
    act = lag_curves({"activity": activity[0]}, {"activity": activity[1]}, {}, fps, fine, frames)[0]
    inside = (fine >= -R - 0.5 + lead) & (fine <= R + 0.5 + lead)
    weights, own_peaks = reliability(curves, inside, fine)
    mean = weights @ curves + activity_weight * act
    j = int(np.nonzero(inside)[0][int(np.argmax(mean[inside]))])
    best_fine = float(fine[j]) + _parabola_step(mean, j) * LAG_STEP
    agreement = agreeing_share(weights, own_peaks, best_fine)
    offset = int(np.clip(np.round(best_fine - lead), -R, R))
    at_int = np.interp(ints + lead, fine, mean)
    med = float(np.median(at_int))
    conf = float(max(mean[inside].max(), at_int.max()) - med)
    return LagScore(offset, conf, float(at_int[R] - med), at_int, best_fine, agreement,
                    tuple(float(w) for w in weights))


def agreeing_share(weights: np.ndarray, own_peaks: np.ndarray, peak: float) -> float:
    """The share of ``weights`` whose pair's ``own_peaks`` lie within one frame of ``peak``, grid rounding
    aside (the lags are multiples of :data:`LAG_STEP`, not exact in binary: 0.1 * 12 - 0.1 * 2 > 1)."""
    return float(np.asarray(weights)[np.abs(np.asarray(own_peaks) - peak) <= 1.0 + 1e-9].sum())


def reliability(curves: np.ndarray, inside: np.ndarray, lags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """How far each correlation curve can be trusted on this clip, from the curve alone.

    curves: (P, L) correlation at ``lags`` (L,); inside: (L,) bool, the searched lags. A pair's
    reliability is how far its own peak stands above its own median, over the spread of its
    values (a peak standing clear of the rest of the curve, not a curve high everywhere or a
    ripple of equal bumps). Returns (weights (P,) summing to 1, equal where no curve has a peak;
    each curve's own peak lag (P,))."""
    c = curves[:, inside]
    peak = c.max(1)
    med = np.median(c, 1)
    spread = c.std(1)
    q = np.maximum(np.where(spread > 1e-9, (peak - med) / np.maximum(spread, 1e-9), 0.0), 0.0)
    w = q / q.sum() if q.sum() > 1e-12 else np.full(len(q), 1.0 / len(q))
    return w, lags[inside][np.argmax(c, 1)]


def _parabola_step(y: np.ndarray, j: int) -> float:
    """Sub-sample position of the peak at ``j`` from the parabola through it and its neighbours,
    in samples, within +-0.5 (0 at the ends or where the three points do not bend down)."""
    if not 0 < j < len(y) - 1:
        return 0.0
    y0, y1, y2 = y[j - 1], y[j], y[j + 1]
    den = y0 - 2 * y1 + y2
    return float(np.clip(0.5 * (y0 - y2) / den, -0.5, 0.5)) if den < 0 else 0.0
