"""Phone recognition without a transcript (pocketsphinx allphone search with the phone language
model shipped in the ``pocketsphinx`` wheel; English acoustic model), and the clean-up that turns
breaths and clicks heard as voiceless consonants back into pause.

The feature front end (noise estimate, cepstral mean) keeps state between utterances, so it is
re-initialised before every decode: the same audio always gives the same phonemes, whatever was
decoded before.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch

from .. import g2p
from ..calibration import NOISE_ISLAND_BELOW_DB, RECOGNIZE_LANGUAGE_WEIGHT
from ..errors import InputError
from ..types import ANALYSIS_RATE, Phoneme, PhonemeTrack
from .common import FRAME_RATE, SILENCE_DBFS, ProgressFn, _as_wave, _frame_dbfs, _pcm, _silent_track
from .sphinx import _confidence, _cover, _decoder, _label, _merge_sil

RECOGNIZE_CHUNK_S = 30.0
"""Long audio is recognised in pieces of at most this length, cut at the quietest 10 ms near
each boundary, so memory stays flat for hour-long files."""


def _chunks(x: np.ndarray, max_s: float) -> list[tuple[int, int]]:
    n, step = len(x), int(max_s * ANALYSIS_RATE)
    if n <= step:
        return [(0, n)]
    db = _frame_dbfs(x)
    hop = ANALYSIS_RATE // FRAME_RATE
    cuts, start = [], 0
    while n - start > step:
        lo, hi = (start + step * 2 // 3) // hop, (start + step) // hop
        cut = (lo + int(np.argmin(db[lo:hi]))) * hop
        cuts.append((start, cut))
        start = cut
    cuts.append((start, n))
    return cuts


def recognize(wave16k: torch.Tensor, lw: float = RECOGNIZE_LANGUAGE_WEIGHT, beam: float = 1e-20,
              pbeam: float = 1e-20, pip: float = 1.0, on_progress: ProgressFn | None = None) -> PhonemeTrack:
    """Phone recognition without a transcript (English acoustic model).

    wave16k: (N,) float waveform at 16 kHz in [-1, 1]; lw: phone language-model weight (around
    2; lower inserts more phones, higher deletes more); beam/pbeam: pruning beams; pip: phone
    insertion probability. Returns a PhonemeTrack (backend "recognize"); silent audio gives a
    single SIL phoneme. Breaths and clicks heard as a few voiceless consonants between pauses
    are turned back into pause (:func:`_drop_noise_islands`).
    """
    who = "ExtractPhonemes (recognize)"
    x = _as_wave(wave16k, who)
    dur = len(x) / ANALYSIS_RATE
    if _frame_dbfs(x).max() < SILENCE_DBFS:
        return _silent_track(dur, "recognize")
    if not (0.1 <= lw <= 20):
        raise InputError(f"{who}: language weight must be in [0.1, 20], got {lw}. Around 2 works best.")
    dec, lock = _decoder("allphone", lw=float(lw), beam=float(beam), pbeam=float(pbeam), pip=float(pip))
    pieces = _chunks(x, RECOGNIZE_CHUNK_S)
    phonemes: list[Phoneme] = []
    for i, (a, b) in enumerate(pieces):
        with lock:
            dec.reinit_feat()  # fresh noise/CMN state: the result must not depend on earlier calls
            dec.start_utt()
            dec.process_raw(_pcm(x[a:b]), full_utt=True)
            dec.end_utt()
            lmath = dec.get_logmath()
            segs = [(_label(s.word), s.start_frame, s.end_frame + 1,
                     _confidence(lmath.log(s.ascore), s.end_frame + 1 - s.start_frame)) for s in dec.seg()]
        phonemes += _cover(segs, b - a, "recognize", offset=a / ANALYSIS_RATE)
        if on_progress is not None:
            on_progress(i + 1, len(pieces))
    return PhonemeTrack(tuple(_drop_noise_islands(_merge_sil(phonemes), x)), dur, "recognize")


_VOICED_CORE = g2p.VOWELS | frozenset({"M", "N", "NG", "L", "R", "W", "Y"})


def _drop_noise_islands(ph: list[Phoneme], x: np.ndarray) -> list[Phoneme]:
    """Recognised phones that cannot be a word, turned back into the pause they sit in.

    The phone recogniser hears a breath or a lip click between phrases as voiceless consonants
    ("T K" before a line); the mouth would open for them, then shut again before the breath
    that really comes before the speech (:func:`mark_breaths`, which then sees one pause). A run
    of phones bounded by pauses (or the ends) is dropped when it has no vowel and no sonorant
    (every English word has a voiced core; "shh" and "psst" are the exceptions and are loud)
    and its loudest 10 ms stays :data:`NOISE_ISLAND_BELOW_DB` under the speech."""
    db = _frame_dbfs(x)
    if not len(db):
        return ph
    quiet = float(np.percentile(db, 98)) - NOISE_ISLAND_BELOW_DB
    out: list[Phoneme] = []
    for pause, group in itertools.groupby(ph, key=lambda p: p.label == "SIL"):
        run = list(group)
        if not pause and not {p.label for p in run} & _VOICED_CORE:
            f0 = int(run[0].start * FRAME_RATE)
            f1 = max(int(math.ceil(run[-1].end * FRAME_RATE)), f0 + 1)
            if float(db[f0:f1].max(initial=-np.inf)) < quiet:
                run = [Phoneme("SIL", run[0].start, run[-1].end, min(p.confidence for p in run))]
        out += run
    return _merge_sil(out)
