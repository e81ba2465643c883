"""Forced alignment of a typed transcript (pocketsphinx; word and phone timings). Words the
dictionary lacks get pronunciations from :mod:`..g2p`. Long audio is aligned window by window so
memory stays flat."""

from __future__ import annotations

import logging

import numpy as np
import torch

from .. import g2p
from ..errors import InputError, SilentAudioError
from ..types import ANALYSIS_RATE, PhonemeTrack
from .classifier import CLOSURE_BELOW_DB, SILENCE_BELOW_DB
from .common import FRAME_RATE, SILENCE_DBFS, ProgressFn, _as_wave, _frame_dbfs, _pcm
from .sphinx import _confidence, _cover, _decoder, _label

log = logging.getLogger("comfyui_lipsync")


def transcript_words(transcript: str) -> list[tuple[str, list[str], str]]:
    """Normalised words of a transcript with their phones and where those came from."""
    return [(w,) + tuple(g2p.pronounce(w)) for w in g2p.normalize_text(transcript)]


ALIGN_CHUNK_S = 60.0
"""Audio longer than this is aligned window by window: pocketsphinx's alignment memory grows
with frames times words (measured here in one piece: 21 s +8 MB, 63 s +73 MB, 188 s +524 MB)."""
ALIGN_GUARD_S = 5.0
"""Words a window places in its last ALIGN_GUARD_S seconds are not kept (nor the last word it
was given); the next window, starting after the last kept word, places them again with the
audio that follows."""


def _align_piece(dec, x: np.ndarray, words: list[tuple[str, list[str], str]]):
    """One pocketsphinx alignment (two passes) of ``words`` to ``x``; caller holds the lock.

    Returns (segs [(label, first frame, end frame, confidence)], words [(name, first frame,
    end frame)]) with frames relative to ``x``, or None when pocketsphinx finds no alignment.
    """
    pcm = _pcm(x)
    try:
        dec.set_align_text(" ".join(w for w, _, _ in words))
        dec.reinit_feat()  # fresh noise/CMN state: the result must not depend on earlier calls
        dec.start_utt()
        dec.process_raw(pcm, full_utt=True)
        dec.end_utt()
        dec.set_alignment()
        dec.reinit_feat()
        dec.start_utt()
        dec.process_raw(pcm, full_utt=True)
        dec.end_utt()
        alignment = dec.get_alignment()
    except RuntimeError as e:
        log.warning("ExtractPhonemes: pocketsphinx alignment failed: %s", e)
        return None
    if alignment is None:
        return None
    segs, wordlist = [], []
    for entry in alignment:
        name = entry.name.split("(")[0]
        if not name.startswith("<") and not name.startswith("+"):
            wordlist.append((name, entry.start, entry.start + entry.duration))
        for ph in entry:
            segs.append((_label(ph.name), ph.start, ph.start + ph.duration, _confidence(ph.score, ph.duration)))
    return segs, wordlist


def _checked_words(transcript: str, who: str) -> list[tuple[str, list[str], str]]:
    """The transcript's words with their phones; InputError when it has none."""
    if not isinstance(transcript, str) or not transcript.strip():
        raise InputError(f"{who}: the transcript is empty. Type the spoken line into 'transcript', "
                         "or choose backend 'recognize' (no transcript needed).")
    words = transcript_words(transcript)
    if not words:
        raise InputError(f"{who}: the transcript {transcript[:60]!r} holds no speakable words after "
                         "normalisation. Type the words as spoken.")
    return words


def _check_fits(words, x: np.ndarray, db: np.ndarray, who: str) -> None:
    """SilentAudioError for silent audio, InputError when the words cannot fit its frames."""
    dur = len(x) / ANALYSIS_RATE
    if db.max() < SILENCE_DBFS:
        raise SilentAudioError(f"{who}: the audio is silent (loudest 10 ms below {SILENCE_DBFS:.0f} dBFS), "
                               f"so the {len(words)} transcript words cannot be placed. Check the audio input.")
    n_frames = len(x) // (ANALYSIS_RATE // FRAME_RATE)
    if sum(max(len(p), 1) for _, p, _ in words) * 3 > n_frames:  # pocketsphinx HMMs take >= 3 frames per phone
        raise InputError(f"{who}: the transcript ({len(words)} words) is too long for {dur:.2f} s of audio. "
                         "Check that the transcript belongs to this audio.")


def _speech_left(db: np.ndarray, n_frames: int) -> np.ndarray:
    """(n_frames + 1,) speech frames from frame f to the end (speech: the acoustic backend's
    silence threshold, :data:`.classifier.SILENCE_BELOW_DB`)."""
    level, noise = float(np.percentile(db, 98)), float(np.percentile(db, 10))
    speech = db[:n_frames] > max(level - SILENCE_BELOW_DB, min(noise + 10.0, level - CLOSURE_BELOW_DB))
    return np.concatenate([np.cumsum(speech[::-1])[::-1], [0]])


def _add_missing_words(dec, words) -> None:
    for w, ph, source in words:
        if dec.lookup_word(w) is None:
            dec.add_word(w, " ".join(ph), True)
            log.info("ExtractPhonemes: %r not in the dictionary; %s pronunciation %s", w, source, " ".join(ph))


def _words_to_give(phones: list[int], wi: int, pos: int, end: int, speech_left: np.ndarray) -> int:
    """How many words from ``wi`` on a window [pos, end) gets: 80% of its share of the speech
    left, counted in phones (too few words is safe, too many fails); at least one."""
    share = (speech_left[pos] - speech_left[end]) / max(speech_left[pos], 1)
    want = sum(phones[wi:]) * share * 0.8
    give, got = 0, 0
    while wi + give < len(phones) and got + phones[wi + give] <= want:
        got += phones[wi + give]
        give += 1
    return max(give, 1)


def _align_window(dec, piece: np.ndarray, words, wi: int, give: int, last: bool, where: str, who: str):
    """Align words[wi:wi + give] to ``piece``, asking for fewer (2/3 each time) while the window
    cannot hold them; InputError when even that fails."""
    res = _align_piece(dec, piece, words[wi:wi + give])
    while res is None and not last and give > 1:
        give = give * 2 // 3  # the window could not hold them all: ask for fewer
        res = _align_piece(dec, piece, words[wi:wi + give])
    if res is None:
        raise InputError(f"{who}: could not align the transcript ({len(words)} words) to {where}, word "
                         f"{wi + 1} {words[wi][0]!r}). Check that the transcript matches the speech, or use "
                         "backend 'recognize'.")
    return res


def align(wave16k: torch.Tensor, transcript: str, on_progress: ProgressFn | None = None) -> PhonemeTrack:
    """Forced alignment of ``transcript`` to the audio.

    wave16k: (N,) float waveform at 16 kHz; transcript: the spoken words (any case,
    punctuation, digits). Returns a PhonemeTrack (backend "align") with ``words`` filled
    (normalised words, start, end). Raises InputError for an empty transcript and
    SilentAudioError for silent audio.

    Audio longer than :data:`ALIGN_CHUNK_S` is aligned in windows: each window gets the next
    words, 80% of its share of the speech by phone count (pocketsphinx leaves speech it was
    given no words for as silence, but fails when given more words than fit; then fewer are
    tried), keeps those that end before its last :data:`ALIGN_GUARD_S` seconds except the last
    given word, and the next window starts where the last kept word ends. Memory stays flat
    and time grows linearly.
    """
    who = "ExtractPhonemes (align)"
    words = _checked_words(transcript, who)
    x = _as_wave(wave16k, who)
    dur, db = len(x) / ANALYSIS_RATE, _frame_dbfs(x)
    _check_fits(words, x, db, who)
    hop = ANALYSIS_RATE // FRAME_RATE
    n_frames = len(x) // hop
    phones = [max(len(p), 1) for _, p, _ in words]
    chunk = int(ALIGN_CHUNK_S * FRAME_RATE)
    guard = int(min(ALIGN_GUARD_S, ALIGN_CHUNK_S / 3) * FRAME_RATE)
    speech_left = _speech_left(db, n_frames)
    dec, lock = _decoder("align")
    segs: list[tuple[str, int, int, float]] = []
    wordlist: list[tuple[str, float, float]] = []
    pos, wi = 0, 0
    with lock:
        _add_missing_words(dec, words)
        while wi < len(words):
            last = n_frames - pos <= chunk
            end = n_frames if last else pos + chunk
            give = len(words) - wi if last else _words_to_give(phones, wi, pos, end, speech_left)
            piece = x[pos * hop: (len(x) if last else end * hop)]
            where = f"{dur:.2f} s of audio (failed at {pos / FRAME_RATE:.1f} s"
            psegs, pwords = _align_window(dec, piece, words, wi, give, last, where, who)
            if last:
                keep, cut = len(pwords), n_frames - pos + 1
            else:
                keep = sum(1 for _, _, e in pwords if e <= end - pos - guard)
                keep = max(min(keep, len(pwords) - 1), 1)  # the last given word may be stretched: redo it
                cut = pwords[keep - 1][2]
            wordlist += [(name, (pos + f0) / FRAME_RATE, min((pos + f1) / FRAME_RATE, dur))
                         for name, f0, f1 in pwords[:keep]]
            segs += [(label, pos + f0, pos + min(f1, cut), conf) for label, f0, f1, conf in psegs if f0 < cut]
            wi += keep
            pos += cut
            if on_progress is not None:
                on_progress(min(pos, n_frames), n_frames)
            if last:
                break
    return PhonemeTrack(tuple(_cover(segs, len(x), "align")), dur, "align", tuple(wordlist))
