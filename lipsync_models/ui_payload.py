"""JSON-safe ``ui`` payloads that the web extension (``web/lipsync.js``) draws after a run.

ComfyUI sends a node's ``{"ui": {...}}`` dict to the browser as JSON in the ``executed``
message and keeps it in ``/history``. Every value must be a *list* (ComfyUI concatenates the
lists of list-mapped calls) of plain numbers, strings and dicts: no tensors. The key names
and fields are the contract written down in ``docs/UI_KEYS.md``; the nodes work without the
extension, which only reads these keys.

Helpers here never import ComfyUI and take plain tensors / tuples, so the nodes call them as::

    ui = {"text": [track.text()], **ui_payload.phonemes_ui(track, driver.waveform, driver.sample_rate)}
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import torch

WAVE_BINS = 400
"""Number of peak bins sent for the waveform drawing (a few kB of JSON)."""

MAX_CURVE = 2000
"""Longest per-frame series sent; longer ones are decimated by taking every k-th value."""


def _f(x, nd: int = 4) -> float:
    """A finite Python float rounded to ``nd`` decimals (JSON has no NaN/inf)."""
    v = float(x)
    if not math.isfinite(v):
        return 0.0
    return round(v, nd)


def _plain(v):
    """Any scalar (Python, numpy, 0-d tensor) or short sequence as plain JSON values."""
    if isinstance(v, torch.Tensor):
        v = v.detach().cpu().tolist()
    elif hasattr(v, "item") and hasattr(v, "dtype") and getattr(v, "ndim", 0) == 0:  # numpy scalar
        v = v.item()
    elif hasattr(v, "tolist"):
        v = v.tolist()
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        return _f(v)
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    return str(v)


def _series(values, nd: int = 4, limit: int = MAX_CURVE) -> list[float]:
    if isinstance(values, torch.Tensor):
        values = values.detach().float().flatten().cpu().tolist()
    values = list(values)
    if len(values) > limit:
        step = math.ceil(len(values) / limit)
        values = values[::step]
    return [_f(v, nd) for v in values]


def wave_peaks(waveform: torch.Tensor, bins: int = WAVE_BINS) -> list[float]:
    """Peak absolute amplitude per bin. waveform: (N,) or (C, N) in [-1, 1] -> ``bins`` floats in [0, 1]."""
    w = waveform.detach().float()
    if w.ndim > 1:
        w = w.reshape(-1, w.shape[-1]).abs().amax(dim=0)
    else:
        w = w.abs()
    n = int(w.shape[0])
    if n == 0:
        return [0.0] * bins
    bins = max(1, min(bins, n))
    edges = torch.linspace(0, n, bins + 1).round().long().tolist()
    peaks = []
    for i in range(bins):
        lo, hi = edges[i], max(edges[i + 1], edges[i] + 1)
        peaks.append(_f(w[lo:hi].max().clamp(0, 1), 3))
    return peaks


def phonemes_ui(phonemes: Iterable, waveform: torch.Tensor | None, sample_rate: int,
                duration: float | None = None) -> dict:
    """ExtractPhonemes: ``lipsync_phonemes`` (one dict per phoneme) and ``lipsync_wave``.

    phonemes: objects with ``label``, ``start``, ``end`` (s) and optional ``confidence``
    (e.g. :class:`~lipsync_models.types.Phoneme`), or a PhonemeTrack; waveform (N,) or (C, N).
    """
    if hasattr(phonemes, "phonemes"):
        if duration is None:
            duration = float(phonemes.duration)
        phonemes = phonemes.phonemes
    items = [{"label": str(p.label), "start": _f(p.start), "end": _f(p.end),
              "confidence": _f(getattr(p, "confidence", 1.0), 3)} for p in phonemes]
    ui = {"lipsync_phonemes": items}
    if waveform is not None:
        n = int(waveform.shape[-1])
        dur = float(duration) if duration is not None else n / float(sample_rate)
        ui["lipsync_wave"] = [{"duration": _f(dur), "sample_rate": int(sample_rate), "peaks": wave_peaks(waveform)}]
    return ui


def cues_ui(cues: Sequence[tuple[float, float, str]], names: Sequence[str] = (), viseme_set: str = "",
            fps: float | None = None, jaw_open: torch.Tensor | None = None, duration: float | None = None) -> dict:
    """MapVisemes: ``lipsync_cues`` (Rhubarb's mouthCues fields) and ``lipsync_visemes`` (track info)."""
    items = [{"start": _f(s), "end": _f(e), "value": str(v)} for s, e, v in cues]
    info = {"viseme_set": str(viseme_set), "names": [str(n) for n in names]}
    if fps is not None:
        info["fps"] = _f(fps)
    if jaw_open is not None:
        info["jaw_open"] = _series(jaw_open, 3)
    if duration is None and items:
        duration = items[-1]["end"]
    info["duration"] = _f(duration or 0.0)
    return {"lipsync_cues": items, "lipsync_visemes": [info]}


def sync_ui(offset_frames: int, offset_ms: float, confidence: float, lags: Sequence[int], curve,
            fps: float, visual=None, audio=None, windows: Sequence[dict] = (), method: str = "",
            raw_peak: float | None = None, natural_lead: float | None = None,
            uncertain: bool = False, certainty: float | None = None) -> dict:
    """SyncScore: ``lipsync_sync`` with the offset, confidence and the score-vs-lag curve.

    lags: (L,) ints; curve: (L,) scores (higher = better match) at those lags; visual/audio:
    optional (T,) per-frame signals; windows: optional dicts {"start", "end", "offset_frames",
    "confidence"} (seconds) for the per-window offset track; raw_peak, natural_lead: the
    articulation scorer's curve peak and the lead subtracted from it (frames; keys only when
    given: the benches read them, the browser does not); uncertain: the offset is not reliable
    (the badge says "uncertain" with ``certainty``, the offset certainty; keys only when True).
    """
    d = {
        "offset_frames": int(offset_frames),
        "offset_ms": _f(offset_ms, 2),
        "confidence": _f(confidence, 3),
        "fps": _f(fps),
        "lags": [int(v) for v in (lags.tolist() if isinstance(lags, torch.Tensor) else lags)],
        "curve": _series(curve),
        "method": str(method),
    }
    if visual is not None:
        d["visual"] = _series(visual)
    if audio is not None:
        d["audio"] = _series(audio)
    if windows:
        d["windows"] = [{str(k): _plain(v) for k, v in w.items()} for w in windows]
    for key, v in (("raw_peak", raw_peak), ("natural_lead", natural_lead)):
        if v is not None:
            d[key] = _f(v, 4)
    if uncertain:
        d["uncertain"] = True
        d["certainty"] = _f(0.0 if certainty is None else certainty, 3)
    return {"lipsync_sync": [d]}
