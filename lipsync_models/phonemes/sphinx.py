"""The pocketsphinx side of the recognise and align backends: the cached decoders, its unit names
and scores turned into our labels and confidences, and frame segments into a covering track.

Pocketsphinx decoders take 0.2-0.5 s to build, so they are built once per process and kept in
a module-level cache; each one is used under its own lock (a decoder is not re-entrant), which
makes concurrent node executions safe.
"""

from __future__ import annotations

import logging
import math
import threading

from .. import g2p
from ..errors import DependencyError
from ..types import ANALYSIS_RATE, Phoneme
from .common import FRAME_RATE

log = logging.getLogger("comfyui_lipsync")

_SCORE_NATS = 1024 * math.log(1.0001)
"""One pocketsphinx acoustic score unit in nats (log base 1.0001, shifted right by 10 bits)."""

_CACHE: dict[tuple, tuple[object, threading.Lock]] = {}
_CACHE_LOCK = threading.Lock()


def _model_dir() -> str:
    try:
        import pocketsphinx
    except ImportError as e:  # pragma: no cover - pocketsphinx is in requirements.txt
        raise DependencyError("ExtractPhonemes: the recognize/align backends need the 'pocketsphinx' "
                              "package (pip install pocketsphinx), or choose backend 'acoustic'.") from e
    return pocketsphinx.get_model_path()


def _decoder(kind: str, **params) -> tuple[object, threading.Lock]:
    """Cached pocketsphinx Decoder and its lock. kind: "allphone" or "align"."""
    key = (kind,) + tuple(sorted(params.items()))
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
        from pocketsphinx import Decoder

        mdir = _model_dir()
        common = dict(hmm=f"{mdir}/en-us/en-us", samprate=ANALYSIS_RATE, loglevel="FATAL")
        if kind == "allphone":
            dec = Decoder(allphone=f"{mdir}/en-us/en-us-phone.lm.bin", lm=None, **common, **params)
        else:
            dec = Decoder(dict=f"{mdir}/en-us/cmudict-en-us.dict", lm=None, bestpath=False, **common, **params)
        _CACHE[key] = (dec, threading.Lock())
        log.debug("ExtractPhonemes: built pocketsphinx %s decoder %s", kind, params)
        return _CACHE[key]


def _label(name: str) -> str:
    """pocketsphinx unit -> our label: fillers (SIL, +NSN+, +SPN+, <sil>) -> SIL."""
    if name.startswith("+") or name.startswith("<") or name.upper() == "SIL":
        return "SIL"
    return g2p.strip_stress(name.upper())


def _confidence(score: float, frames: int) -> float:
    """Segment acoustic score (pocketsphinx units, relative to the best senone) -> [0, 1]."""
    if frames <= 0:
        return 0.0
    return float(min(1.0, math.exp(min(0.0, score) * _SCORE_NATS / frames)))


def _cover(segs: list[tuple[str, int, int, float]], n_samples: int, backend: str,
           offset: float = 0.0, words: tuple = ()) -> list[Phoneme]:
    """Frame segments (label, first frame, end frame exclusive, conf) -> Phonemes in seconds
    covering [offset, offset + n_samples/16k], gaps filled with SIL, SIL neighbours merged."""
    dur = n_samples / ANALYSIS_RATE
    out: list[Phoneme] = []
    t = 0.0
    for label, f0, f1, conf in segs:
        s, e = min(f0 / FRAME_RATE, dur), min(f1 / FRAME_RATE, dur)
        if e <= s:
            continue
        if s > t + 1e-9:
            out.append(Phoneme("SIL", offset + t, offset + s, 1.0))
        out.append(Phoneme(label, offset + max(s, t), offset + e, conf))
        t = e
    if t < dur - 1e-9:
        if out and out[-1].label != "SIL" and dur - t < 1.5 / FRAME_RATE:
            last = out[-1]  # pocketsphinx drops the last partial frame: stretch, do not add a stub
            out[-1] = Phoneme(last.label, last.start, offset + dur, last.confidence)
        else:
            out.append(Phoneme("SIL", offset + t, offset + dur, 1.0))
    return _merge_sil(out)


def _merge_sil(ph: list[Phoneme]) -> list[Phoneme]:
    out: list[Phoneme] = []
    for p in ph:
        if out and p.label == "SIL" and out[-1].label == "SIL":
            a = out[-1]
            w0, w1 = a.end - a.start, p.end - p.start
            conf = (a.confidence * w0 + p.confidence * w1) / max(w0 + w1, 1e-9)
            out[-1] = Phoneme("SIL", a.start, p.end, conf)
        else:
            out.append(p)
    return out
