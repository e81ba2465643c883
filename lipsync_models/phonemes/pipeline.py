"""The front door: run one backend by name, mark the breaths, and the notes for the user."""

from __future__ import annotations

import torch

from ..calibration import RECOGNIZE_LANGUAGE_WEIGHT
from ..errors import InputError
from ..types import PhonemeTrack
from .alignment import align
from .breaths import mark_breaths
from .classifier import acoustic
from .common import FRAME_RATE, SILENCE_DBFS, ProgressFn, _as_wave, _frame_dbfs
from .recognition import recognize

BACKENDS = ("auto", "recognize", "align", "acoustic")

def extract(wave16k: torch.Tensor, backend: str = "auto", transcript: str = "",
            lw: float = RECOGNIZE_LANGUAGE_WEIGHT, on_progress: ProgressFn | None = None,
            breaths: bool = True) -> PhonemeTrack:
    """Run one backend by name (see :data:`BACKENDS`), then :func:`mark_breaths` (unless
    ``breaths`` is False).

    "auto" aligns when ``transcript`` has words, else recognises; it never switches to the
    acoustic backend on its own. Returns a PhonemeTrack.
    """
    if backend not in BACKENDS:
        raise InputError(f"ExtractPhonemes: unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}.")
    transcript = transcript or ""
    if backend == "auto":
        backend = "align" if transcript.strip() else "recognize"
    if backend == "align":
        track = align(wave16k, transcript, on_progress=on_progress)
    elif backend == "recognize":
        track = recognize(wave16k, lw=lw, on_progress=on_progress)
    else:
        track = acoustic(wave16k, on_progress=on_progress)
    return mark_breaths(track, wave16k) if breaths else track


def report(track: PhonemeTrack, wave16k: torch.Tensor) -> list[str]:
    """Notes for the user about a result: silent audio, or speech where nothing was recognised."""
    notes = []
    x = _as_wave(wave16k, "report")
    db = _frame_dbfs(x)
    spoken = [p for p in track.phonemes if p.label not in ("SIL", "BREATH")]
    if db.max() < SILENCE_DBFS:
        notes.append(f"note: the audio is silent (loudest 10 ms at {db.max():.0f} dBFS); only SIL was produced.")
    elif not spoken:
        loud = float((db > db.max() - 30).mean() * len(db) / FRAME_RATE)
        notes.append(f"note: backend {track.backend} found no phonemes although about {loud:.1f} s of the audio "
                     "is loud. For non-English speech, singing or noises try backend 'acoustic'; for speech "
                     "with a known text type the transcript.")
    elif track.words:
        low = [w for w, s, e in track.words if e - s < 0.05]
        if low:
            notes.append(f"note: words aligned to under 50 ms ({', '.join(low[:5])}): the transcript may not "
                         "match the audio.")
    return notes
