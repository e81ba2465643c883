"""Audible in-breaths before speech, relabelled ``"BREATH"`` inside the pauses of a track: filmed
speakers part their lips to breathe in before a line, and MapVisemes opens the mouth a little
there. The thresholds were fitted on GRID and live in :mod:`..calibration`."""

from __future__ import annotations

import math

import numpy as np
import torch

from ..audio import preemphasis
from ..calibration import (BREATH_ABOVE_FLOOR_DB, BREATH_AFTER_SPEECH_S, BREATH_BEFORE_S, BREATH_FLOOR_MAX_DB,
                           BREATH_HOLD_S, BREATH_JOIN_S, BREATH_MIN_S, BREATH_MIN_SNR_DB)
from ..types import Phoneme, PhonemeTrack
from .common import FRAME_RATE, _as_wave, _frame_dbfs

BREATH_DIGITAL_SILENCE_DBFS = -90.0
"""A 10th-percentile level below this is digital silence (synthetic speech, muted edits), not a
room: no microphone and preamp are that quiet (16-bit self-noise alone is about -96 dBFS)."""


def _breath_levels(x: np.ndarray) -> np.ndarray:
    """10 ms levels (dBFS) after the pre-emphasis high-pass (:func:`.audio.preemphasis`), which
    keeps the hiss of breath and drops hum and rumble."""
    return _frame_dbfs(preemphasis(torch.from_numpy(x)).numpy())


def mark_breaths(track: PhonemeTrack, wave16k: torch.Tensor) -> PhonemeTrack:
    """Relabel audible in-breaths inside pauses as ``"BREATH"``.

    Speakers breathe in through the mouth before a line, and the breath is audible: on the
    GRID recordings 10-25 dB above the room noise and 35-55 dB below the speech, while the
    face-mesh lip gap opens to about half its vowel value (FACTS.md's measure; bench_e2e.py).
    For each pause (SIL) followed by speech: the 10 ms frames of its last
    :data:`BREATH_BEFORE_S` seconds (after the first :data:`BREATH_AFTER_SPEECH_S` of a pause
    between phrases, which hold the previous sound's tail) whose high-passed level is
    :data:`BREATH_ABOVE_FLOOR_DB` above the noise floor (5-frame median, so clicks do not
    count), grouped into bursts; the
    last burst with at least :data:`BREATH_MIN_S` of them becomes BREATH from its first frame,
    up to the speech onset when it ends within :data:`BREATH_HOLD_S` of it, else to its end.
    Recordings whose speech stands less than :data:`BREATH_MIN_SNR_DB` above their floor, and
    synthetic speech with digital silence, get none. Returns a new track (same phonemes
    otherwise).
    """
    x = _as_wave(wave16k, "mark_breaths")
    db = _breath_levels(x)
    if len(db) < 5:
        return track
    level = float(np.percentile(db, 98))
    floor = float(np.percentile(db, 10))
    if floor < BREATH_DIGITAL_SILENCE_DBFS:  # digital silence: -120 dB
        floor = max(floor, level - BREATH_FLOOR_MAX_DB)
    if level - floor < BREATH_MIN_SNR_DB:
        return track
    loud = db > floor + BREATH_ABOVE_FLOOR_DB
    pad = np.pad(loud.astype(np.int8), 2, mode="edge")
    loud = np.lib.stride_tricks.sliding_window_view(pad, 5).sum(1) >= 3  # 5-frame median
    ph = list(track.phonemes)
    out: list[Phoneme] = []
    for i, p in enumerate(ph):
        nxt = ph[i + 1] if i + 1 < len(ph) else None
        if p.label != "SIL" or nxt is None or nxt.label == "SIL":
            out.append(p)
            continue
        onset = float(p.end)
        earliest = float(p.start) + (BREATH_AFTER_SPEECH_S if i > 0 else 0.0)  # i > 0: speech before
        f0 = max(int(math.ceil(max(earliest, onset - BREATH_BEFORE_S) * FRAME_RATE)), 0)
        f1 = min(int(onset * FRAME_RATE), len(loud))
        idx = np.flatnonzero(loud[f0:f1]) + f0 if f1 > f0 else np.zeros(0, int)
        # bursts of loud frames (gaps up to BREATH_JOIN_S); the breath is the last one long enough
        bursts = np.split(idx, np.flatnonzero(np.diff(idx) > BREATH_JOIN_S * FRAME_RATE) + 1) if len(idx) else []
        bursts = [b for b in bursts if len(b) >= BREATH_MIN_S * FRAME_RATE]
        if not bursts:
            out.append(p)
            continue
        idx = bursts[-1]
        start = max(idx[0] / FRAME_RATE, float(p.start))
        end = onset if onset - (idx[-1] + 1) / FRAME_RATE <= BREATH_HOLD_S else (idx[-1] + 1) / FRAME_RATE
        if start > p.start:
            out.append(Phoneme("SIL", p.start, start, p.confidence))
        out.append(Phoneme("BREATH", start, end, 1.0))
        if end < onset:
            out.append(Phoneme("SIL", end, onset, p.confidence))
    return PhonemeTrack(tuple(out), track.duration, track.backend, track.words)
