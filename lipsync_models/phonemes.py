"""Timed phonemes from 16 kHz speech: recognition, forced alignment, or a model-free classifier.

Backends (all return a :class:`~.types.PhonemeTrack` covering ``[0, duration]``):

* :func:`recognize` - pocketsphinx phone recognition (allphone search with the phone language
  model shipped in the ``pocketsphinx`` wheel). English acoustic model; no transcript needed.
* :func:`align` - pocketsphinx forced alignment of a typed transcript (word and phone timings).
  Words the dictionary lacks get pronunciations from :mod:`.g2p`.
* :func:`acoustic` - no model at all: 10 ms frames classified into mouth classes from energy,
  spectral shape, voicing and LPC formants. Works for any language, singing or noises, but
  only knows six mouth classes (see :data:`ACOUSTIC_CLASSES`).
* :func:`extract` - picks one by name; ``"auto"`` aligns when a transcript is given, else
  recognises. It never falls back to another backend on its own.

Labels are ARPAbet without stress digits; silence and noise are ``"SIL"``. :func:`extract` then
marks audible in-breaths just before speech as ``"BREATH"`` (:func:`mark_breaths`): filmed
speakers part their lips to breathe in before a line, and MapVisemes opens the mouth a little
there.

Confidence (pocketsphinx backends): the segment's acoustic log-likelihood relative to the best
senone of each frame, averaged over its frames and exponentiated: ``exp(mean_t(log p(x_t |
phone) - log p(x_t | best senone)))`` in [0, 1]; 1 means the phone's model explains its frames as
well as the best model of all, 0.1 means ten times worse per frame. It is a relative fit, not a
calibrated posterior (pocketsphinx's allphone search has no lattice to give one).

Pocketsphinx decoders take 0.2-0.5 s to build, so they are built once per process and kept in
a module-level cache; each one is used under its own lock (a decoder is not re-entrant), which
makes concurrent node executions safe. The feature front end (noise estimate, cepstral mean)
keeps state between utterances, so it is re-initialised before every decode: the same audio
always gives the same phonemes, whatever was decoded before. Audio goes to pocketsphinx as 16-bit PCM at 16 kHz.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
from typing import Callable

import numpy as np
import torch

from . import g2p
from .errors import DependencyError, InputError, SilentAudioError
from .types import ANALYSIS_RATE, Phoneme, PhonemeTrack

log = logging.getLogger("comfyui_lipsync")

BACKENDS = ("auto", "recognize", "align", "acoustic")
FRAME_RATE = 100
"""pocketsphinx analyses 100 frames per second (10 ms hop)."""

_SCORE_NATS = 1024 * math.log(1.0001)
"""One pocketsphinx acoustic score unit in nats (log base 1.0001, shifted right by 10 bits)."""

SILENCE_DBFS = -60.0
"""Audio whose loudest 10 ms is below this level is treated as silent."""

ProgressFn = Callable[[int, int], None]


# --- input handling -------------------------------------------------------------------------

def _as_wave(wave16k: torch.Tensor, who: str) -> np.ndarray:
    """(N,) float tensor at 16 kHz -> float32 numpy in [-1, 1] (copy; the input is untouched)."""
    if not isinstance(wave16k, torch.Tensor):
        raise InputError(f"{who}: the waveform must be a torch tensor, got {type(wave16k).__name__}.")
    if wave16k.ndim == 2 and wave16k.shape[0] == 1:
        wave16k = wave16k[0]
    if wave16k.ndim != 1:
        raise InputError(f"{who}: the waveform must be mono with shape (N,), got {tuple(wave16k.shape)}. "
                         "Mix channels down first (LoadAudioDriver does).")
    if wave16k.numel() < ANALYSIS_RATE // 10:
        raise InputError(f"{who}: the audio is too short ({wave16k.numel()} samples = "
                         f"{wave16k.numel() / ANALYSIS_RATE * 1000:.0f} ms at 16 kHz); give at least 0.1 s.")
    x = wave16k.detach().to("cpu", torch.float32).numpy()
    if not np.isfinite(x).all():
        raise InputError(f"{who}: the waveform holds NaN or infinite samples; check the audio source.")
    return np.clip(x, -1.0, 1.0)


def to_analysis_rate(waveform: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Mono mix and anti-aliased resampling to 16 kHz.

    waveform: (N,), (C, N) or (B, C, N) float; the first batch item is used -> (N,) float32 on
    the input's device.
    """
    x = waveform
    if x.ndim == 3:
        x = x[0]
    if x.ndim == 2:
        x = x.float().mean(0)
    if x.ndim != 1:
        raise InputError(f"ExtractPhonemes: audio waveform must be (B, C, N), got {tuple(waveform.shape)}.")
    if int(sample_rate) == ANALYSIS_RATE:
        return x.float()
    from .audio import resample

    return resample(x.float()[None], int(sample_rate), ANALYSIS_RATE)[0]


def _pcm(x: np.ndarray) -> bytes:
    return (x * 32767.0).round().astype("<i2").tobytes()


def _frame_dbfs(x: np.ndarray, hop: int = ANALYSIS_RATE // FRAME_RATE) -> np.ndarray:
    n = len(x) // hop
    if n == 0:
        return np.full(1, -120.0)
    e = (x[: n * hop].reshape(n, hop).astype(np.float64) ** 2).mean(1)
    return 10 * np.log10(e + 1e-12)


def is_silent(wave16k: torch.Tensor) -> bool:
    """True when no 10 ms frame reaches :data:`SILENCE_DBFS`."""
    return bool(_frame_dbfs(_as_wave(wave16k, "is_silent")).max() < SILENCE_DBFS)


def _silent_track(duration: float, backend: str) -> PhonemeTrack:
    return PhonemeTrack((Phoneme("SIL", 0.0, duration, 1.0),), duration, backend)


# --- decoder cache --------------------------------------------------------------------------

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


# --- recognition ----------------------------------------------------------------------------

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


def recognize(wave16k: torch.Tensor, lw: float = 2.0, beam: float = 1e-20, pbeam: float = 1e-20,
              pip: float = 1.0, on_progress: ProgressFn | None = None) -> PhonemeTrack:
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


NOISE_ISLAND_BELOW_DB = 20.0
"""A recognised run between pauses with no vowel or sonorant is noise when its loudest 10 ms
stays this far below the speech (98th percentile of the 10 ms levels). GRID: the breaths and
clicks the recogniser hears as "T K", "K", "TH" peak 25-36 dB below; words peak at or above it."""

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


# --- forced alignment -----------------------------------------------------------------------

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
    if not isinstance(transcript, str) or not transcript.strip():
        raise InputError(f"{who}: the transcript is empty. Type the spoken line into 'transcript', "
                         "or choose backend 'recognize' (no transcript needed).")
    words = transcript_words(transcript)
    if not words:
        raise InputError(f"{who}: the transcript {transcript[:60]!r} holds no speakable words after "
                         "normalisation. Type the words as spoken.")
    x = _as_wave(wave16k, who)
    dur = len(x) / ANALYSIS_RATE
    db = _frame_dbfs(x)
    if db.max() < SILENCE_DBFS:
        raise SilentAudioError(f"{who}: the audio is silent (loudest 10 ms below {SILENCE_DBFS:.0f} dBFS), "
                               f"so the {len(words)} transcript words cannot be placed. Check the audio input.")
    n_frames = len(x) // (ANALYSIS_RATE // FRAME_RATE)
    phones = [max(len(p), 1) for _, p, _ in words]
    if sum(phones) * 3 > n_frames:  # pocketsphinx HMMs take >= 3 frames per phone
        raise InputError(f"{who}: the transcript ({len(words)} words) is too long for {dur:.2f} s of audio. "
                         "Check that the transcript belongs to this audio.")
    hop = ANALYSIS_RATE // FRAME_RATE
    chunk = int(ALIGN_CHUNK_S * FRAME_RATE)
    guard = int(min(ALIGN_GUARD_S, ALIGN_CHUNK_S / 3) * FRAME_RATE)
    level, noise = float(np.percentile(db, 98)), float(np.percentile(db, 10))
    speech = db[:n_frames] > max(level - SILENCE_BELOW_DB, min(noise + 10.0, level - CLOSURE_BELOW_DB))
    speech_left = np.concatenate([np.cumsum(speech[::-1])[::-1], [0]])  # speech frames from f to the end

    dec, lock = _decoder("align")
    segs: list[tuple[str, int, int, float]] = []
    wordlist: list[tuple[str, float, float]] = []
    pos, wi = 0, 0
    with lock:
        for w, ph, source in words:
            if dec.lookup_word(w) is None:
                dec.add_word(w, " ".join(ph), True)
                log.info("ExtractPhonemes: %r not in the dictionary; %s pronunciation %s", w, source, " ".join(ph))
        while wi < len(words):
            last = n_frames - pos <= chunk
            end = n_frames if last else pos + chunk
            if last:
                give = len(words) - wi
            else:
                share = (speech_left[pos] - speech_left[end]) / max(speech_left[pos], 1)
                want = sum(phones[wi:]) * share * 0.8  # too few words is safe, too many fails
                give, got = 0, 0
                while wi + give < len(words) and got + phones[wi + give] <= want:
                    got += phones[wi + give]
                    give += 1
                give = max(give, 1)
            piece = x[pos * hop: (len(x) if last else end * hop)]
            res = _align_piece(dec, piece, words[wi:wi + give])
            while res is None and not last and give > 1:
                give = give * 2 // 3  # the window could not hold them all: ask for fewer
                res = _align_piece(dec, piece, words[wi:wi + give])
            if res is None:
                raise InputError(f"{who}: could not align the transcript ({len(words)} words) to {dur:.2f} s "
                                 f"of audio (failed at {pos / FRAME_RATE:.1f} s, word {wi + 1} "
                                 f"{words[wi][0]!r}). Check that the transcript matches the speech, or use "
                                 "backend 'recognize'.")
            psegs, pwords = res
            if last:
                keep, cut = len(pwords), n_frames - pos + 1
            else:
                keep = sum(1 for _, _, e in pwords if e <= end - pos - guard)
                keep = max(min(keep, len(pwords) - 1), 1)  # the last given word may be stretched: redo it
                cut = pwords[keep - 1][2]
            for name, f0, f1 in pwords[:keep]:
                wordlist.append((name, (pos + f0) / FRAME_RATE, min((pos + f1) / FRAME_RATE, dur)))
            for label, f0, f1, conf in psegs:
                if f0 < cut:
                    segs.append((label, pos + f0, pos + min(f1, cut), conf))
            wi += keep
            pos += cut
            if on_progress is not None:
                on_progress(min(pos, n_frames), n_frames)
            if last:
                break
    return PhonemeTrack(tuple(_cover(segs, len(x), "align")), dur, "align", tuple(wordlist))


# --- model-free acoustic classes ------------------------------------------------------------

ACOUSTIC_CLASSES = {
    "silence": "SIL",
    "closure": "M",      # lips closed or nearly: voiced closure / nasal murmur ("P" when unvoiced)
    "fricative": "S",    # noisy, high-frequency energy: s, sh, f, th, h, breath
    "open": "AA",        # voiced, high first formant (jaw open): a, o, ae, ah, aw
    "spread": "IY",      # voiced, low F1 and high F2: i, e, ee (lips spread)
    "rounded": "UW",     # voiced, low F1 and low F2: u, oo, o, w (lips rounded)
}
"""Mouth class -> the representative ARPAbet phoneme the acoustic backend labels it with."""

_VOWEL_PROTOTYPES = {  # (F1, F2) in Hz: broad adult averages of each mouth class's vowels
    "open": (700.0, 1700.0),     # a, ae, ah, o: high F1 (jaw open)
    "spread": (380.0, 2400.0),   # i, e: low F1, high F2 (tongue front, lips spread)
    "rounded": (400.0, 1300.0),  # u, oo, w: low F1, low F2 (lip rounding lowers F2)
}

SILENCE_BELOW_DB = 25.0
"""Frames this many dB below the speech level (98th percentile of frame levels), or within
10 dB of the noise floor (10th percentile), are silence."""
CLOSURE_BELOW_DB = 15.0
"""Non-silent frames this far below the speech level without fricative noise are closures
(lips or tongue closed: stop gaps, nasal murmurs)."""
CLOSURE_DIP_DB = 12.0
"""...or whose 300-4000 Hz band sits this many dB below its maximum within +-100 ms (nasal
murmur, voiced closure: the mouth closes while the voice goes on)."""
FRICATIVE_HIGH = 0.3
"""Share of spectral power above 3 kHz above which a frame is fricative noise."""


def _frames(x: np.ndarray, hop: int, win: int) -> np.ndarray:
    pad = np.pad(x, (win // 2, win // 2))
    hop = int(hop)
    n = max(1, 1 + (len(x) - 1) // hop)
    idx = np.arange(win)[None, :] + hop * np.arange(n)[:, None]
    return pad[np.minimum(idx, len(pad) - 1)]


def _lpc_formants(frames: np.ndarray, sr: int, order: int = 12) -> np.ndarray:
    """(T, win) frames -> (T, 2) first two formant frequencies in Hz (NaN when not found).

    Pre-emphasis, Hamming window, autocorrelation LPC (Levinson-Durbin, all frames at once),
    roots of the predictor polynomial (eigenvalues of its companion matrix); resonances with
    bandwidth < 500 Hz between 200 Hz and 0.44 * sr are formants."""
    T, win = frames.shape
    y = np.concatenate([frames[:, :1], frames[:, 1:] - 0.97 * frames[:, :-1]], axis=1) * np.hamming(win)
    spec = np.fft.rfft(y, 2 * win, axis=1)
    r = np.fft.irfft(np.abs(spec) ** 2, axis=1)[:, : order + 1]
    r[:, 0] *= 1.0 + 1e-6
    out = np.full((T, 2), np.nan)
    live = r[:, 0] > 1e-10
    if not live.any():
        return out
    r = r[live]
    n = len(r)
    a = np.zeros((n, order + 1))
    a[:, 0] = 1.0
    err = r[:, 0].copy()
    for i in range(1, order + 1):
        k = -(r[:, i] + (a[:, 1:i] * r[:, i - 1:0:-1]).sum(1)) / np.maximum(err, 1e-20)
        a[:, 1:i + 1] = a[:, 1:i + 1] + k[:, None] * a[:, i - 1::-1][:, :i]
        err = err * np.clip(1.0 - k * k, 1e-9, None)
    comp = np.zeros((n, order, order))
    comp[:, 0, :] = -a[:, 1:]
    comp[:, np.arange(1, order), np.arange(order - 1)] = 1.0
    roots = np.linalg.eigvals(comp)  # (n, order)
    freqs = np.angle(roots) * sr / (2 * np.pi)
    bws = -np.log(np.abs(roots) + 1e-12) * sr / np.pi
    ok = (np.imag(roots) > 0) & (freqs > 200) & (freqs < 0.44 * sr) & (bws < 500)
    f = np.where(ok, freqs, np.inf)
    f.sort(axis=1)
    res = f[:, :2]
    res[~np.isfinite(res)] = np.nan
    out[live] = res
    return out


def acoustic_features(x: np.ndarray, fps: float = 100.0) -> dict[str, np.ndarray]:
    """Per-frame features of a 16 kHz waveform, each (T,) with T = ceil(N / hop):

    dbfs: frame level; high: share of power above 3 kHz; voicing: normalised autocorrelation
    peak for pitch 70-400 Hz in [0, 1]; dip: how many dB the 300-4000 Hz band sits below its
    maximum within +-100 ms (lips or tongue closing cut that band first); f1, f2: the first two
    LPC formants in Hz (order 10 on the signal decimated to 8 kHz), NaN where none is found.
    """
    sr = ANALYSIS_RATE
    hop = max(1, int(round(sr / fps)))
    win = 400  # 25 ms
    fr = _frames(x.astype(np.float64), hop, win)
    dbfs = 10 * np.log10((fr ** 2).mean(1) + 1e-12)
    spec = np.abs(np.fft.rfft(fr * np.hanning(win), axis=1)) ** 2
    freqs = np.fft.rfftfreq(win, 1 / sr)
    total = spec[:, freqs >= 80].sum(1) + 1e-12
    high = spec[:, freqs >= 3000].sum(1) / total
    band = 10 * np.log10(spec[:, (freqs >= 300) & (freqs < 4000)].sum(1) + 1e-12)
    k = max(1, int(round(0.1 * fps)))
    padded = np.pad(band, (k, k), mode="edge")
    local_max = np.lib.stride_tricks.sliding_window_view(padded, 2 * k + 1).max(1)[: len(band)]
    dip = local_max - band
    c = (fr - fr.mean(1, keepdims=True)) * np.hanning(win)
    ac = np.fft.irfft(np.abs(np.fft.rfft(c, 2 * win, axis=1)) ** 2, axis=1)[:, :win]
    w_ac = np.fft.irfft(np.abs(np.fft.rfft(np.hanning(win), 2 * win)) ** 2)[:win]
    lo, hi = sr // 400, sr // 70
    voicing = np.clip((ac[:, lo:hi] / w_ac[lo:hi]).max(1) / (ac[:, 0] / w_ac[0] + 1e-12), 0, 1)
    from .audio import resample

    x8 = resample(torch.from_numpy(x.astype(np.float32))[None], sr, sr // 2)[0].double().numpy()
    fr8 = _frames(x8, max(1, hop // 2), win // 2)[: len(dbfs)]
    if len(fr8) < len(dbfs):
        fr8 = np.concatenate([fr8, np.zeros((len(dbfs) - len(fr8), fr8.shape[1]))])
    formants = _lpc_formants(fr8, sr // 2, order=10)
    return {"dbfs": dbfs, "high": high, "dip": dip, "voicing": voicing,
            "f1": formants[:, 0], "f2": formants[:, 1]}


def _classify(feat: dict[str, np.ndarray], level: float | None = None, noise: float | None = None
              ) -> tuple[list[str], np.ndarray]:
    """Frame classes (keys of :data:`ACOUSTIC_CLASSES`) and per-frame confidence in [0, 1].

    Decision per frame, first match wins: silence (level, see :data:`SILENCE_BELOW_DB`) ->
    fricative (high-band share > :data:`FRICATIVE_HIGH`) -> closure (level or band dip, see
    :data:`CLOSURE_BELOW_DB`, :data:`CLOSURE_DIP_DB`) -> the nearest vowel prototype in log (F1, F2), F1 weighted
    twice. Confidence: how far the deciding feature is from its threshold, or for vowels
    1 - d_best / (d_best + d_second), mapped into [0, 1].
    """
    db, high, f1, f2 = (feat[k] for k in ("dbfs", "high", "f1", "f2"))
    level = float(np.percentile(db, 98)) if level is None else level
    noise = float(np.percentile(db, 10)) if noise is None else noise
    thr_sil = max(level - SILENCE_BELOW_DB, min(noise + 10.0, level - CLOSURE_BELOW_DB), SILENCE_DBFS)
    rel = db - level
    cls = np.empty(len(db), dtype=object)
    conf = np.zeros(len(db))
    sil = db < thr_sil
    fric = ~sil & (high > FRICATIVE_HIGH)
    dip = feat["dip"]
    clos = ~sil & ~fric & ((rel < -CLOSURE_BELOW_DB) | (dip > CLOSURE_DIP_DB))
    vowel = ~sil & ~fric & ~clos
    cls[sil] = "silence"
    conf[sil] = np.clip(0.5 + (thr_sil - db[sil]) / 20.0, 0, 1)
    cls[fric] = "fricative"
    conf[fric] = np.clip(0.5 + (high[fric] - FRICATIVE_HIGH), 0, 1)
    cls[clos] = "closure"
    conf[clos] = np.clip(0.5 + np.maximum(-CLOSURE_BELOW_DB - rel[clos], dip[clos] - CLOSURE_DIP_DB) / 10.0, 0, 1)
    names = list(_VOWEL_PROTOTYPES)
    proto = np.log(np.array([_VOWEL_PROTOTYPES[k] for k in names]))  # (3, 2)
    g1 = np.where(np.isnan(f1), 550.0, f1)
    g2 = np.where(np.isnan(f2), 1700.0, f2)
    g = np.log(np.stack([g1, g2], 1))[:, None, :]  # (T, 1, 2)
    d = (((g - proto[None]) ** 2) * np.array([2.0, 1.0])).sum(-1)  # (T, 3)
    order = np.argsort(d, axis=1)
    best = order[:, 0]
    d0 = np.take_along_axis(d, order[:, :1], 1)[:, 0]
    d1 = np.take_along_axis(d, order[:, 1:2], 1)[:, 0]
    vconf = 1.0 - d0 / (d0 + d1 + 1e-9)
    vconf = np.where(np.isnan(f1), 0.3, vconf)
    for i, k in enumerate(names):
        m = vowel & (best == i)
        cls[m] = k
        conf[m] = vconf[m]
    return list(cls), conf


def _majority5(classes: list[str]) -> list[str]:
    """A frame whose class occurs once in its 5-frame window takes the window's majority."""
    out = list(classes)
    for t in range(len(classes)):
        window = classes[max(0, t - 2): t + 3]
        if window.count(classes[t]) < 2:
            out[t] = max(set(window), key=window.count)
    return out


def _runs(classes: list[str]) -> list[list]:
    """[class, first frame, end frame (exclusive)] for each run of equal classes."""
    runs: list[list] = []
    for t, c in enumerate(classes):
        if runs and runs[-1][0] == c:
            runs[-1][2] = t + 1
        else:
            runs.append([c, t, t + 1])
    return runs


def _absorb_short_runs(runs: list[list], min_frames: int) -> list[list]:
    """Runs shorter than ``min_frames`` go to their longer neighbour; equal neighbours merge.
    One left-to-right pass (linear in the number of runs)."""
    def short(r):
        return r[2] - r[1] < min_frames

    out: list[list] = []
    for r in runs:
        r = list(r)
        if out and out[-1][0] == r[0]:
            out[-1][2] = r[2]
            continue
        out.append(r)
        while len(out) >= 3 and short(out[-2]):
            prev, mid, nxt = out[-3], out[-2], out[-1]
            if prev[2] - prev[1] >= nxt[2] - nxt[1]:
                prev[2] = mid[2]
            else:
                nxt[1] = mid[1]
            del out[-2]
            if out[-2][0] == out[-1][0]:
                out[-2][2] = out[-1][2]
                del out[-1]
        if len(out) == 2 and short(out[0]) and not short(out[1]):
            out[1][1] = out[0][1]  # a short first run joins the next one
            del out[0]
    if len(out) >= 2 and short(out[-1]):
        out[-2][2] = out[-1][2]
        del out[-1]
    return out


ACOUSTIC_CHUNK_S = 60.0
"""The acoustic backend analyses long audio in pieces of this length (memory stays flat)."""


def acoustic(wave16k: torch.Tensor, fps: float = 100.0, min_ms: float = 50.0,
             on_progress: ProgressFn | None = None) -> PhonemeTrack:
    """Model-free mouth classes for any language, singing or non-speech sound.

    wave16k: (N,) float at 16 kHz; fps: analysis frames per second (hop = 16000/fps samples,
    25 ms windows); min_ms: segments shorter than this are absorbed by a neighbour.
    Labels (see :data:`ACOUSTIC_CLASSES`): SIL silence, M closure/nasal (P when unvoiced), S
    fricative, AA open vowel, IY spread vowel, UW rounded vowel. Confidence: the class decision
    margin per frame, averaged over the segment.
    """
    who = "ExtractPhonemes (acoustic)"
    x = _as_wave(wave16k, who)
    if not (10 <= fps <= 400):
        raise InputError(f"{who}: fps must be in [10, 400], got {fps}.")
    dur = len(x) / ANALYSIS_RATE
    if _frame_dbfs(x).max() < SILENCE_DBFS:
        return _silent_track(dur, "acoustic")
    hop = ANALYSIS_RATE / fps
    # speech level and noise floor over the whole audio (10 ms frames), then long audio in
    # chunks so the framed copy stays small
    db_all = _frame_dbfs(x)
    level, noise = float(np.percentile(db_all, 98)), float(np.percentile(db_all, 10))
    step = max(1, int(round(ACOUSTIC_CHUNK_S * fps))) * int(round(hop))
    pieces = [(a, min(a + step, len(x))) for a in range(0, len(x), step)]
    classes: list[str] = []
    conf_parts, voiced_parts = [], []
    for i, (a, b) in enumerate(pieces):
        feat = acoustic_features(x[a:b], fps)
        c, cf = _classify(feat, level, noise)
        classes += c
        conf_parts.append(cf)
        voiced_parts.append(feat["voicing"] > 0.45)
        if on_progress is not None:
            on_progress(i + 1, len(pieces))
    conf = np.concatenate(conf_parts)
    voiced = np.concatenate(voiced_parts)
    frame_s = int(round(hop)) / ANALYSIS_RATE  # the real hop (whole samples), so long files do not drift
    runs = _absorb_short_runs(_runs(_majority5(classes)), max(1, int(round(min_ms / 1000 / frame_s))))
    phonemes = []
    for c, s, e in runs:
        label = ACOUSTIC_CLASSES[c]
        if c == "closure" and voiced[s:e].mean() < 0.5:
            label = "P"
        start, end = min(s * frame_s, dur), min(e * frame_s, dur)
        if end > start:
            phonemes.append(Phoneme(label, start, end, float(conf[s:e].mean())))
    if phonemes:
        last = phonemes[-1]
        phonemes[-1] = Phoneme(last.label, last.start, dur, last.confidence)
    return PhonemeTrack(tuple(phonemes), dur, "acoustic")


# --- audible in-breaths ----------------------------------------------------------------------

BREATH_ABOVE_FLOOR_DB = 10.0
"""A silent stretch counts as breath where its high-passed 10 ms level is at least this far
above the recording's noise floor (10th percentile of all 10 ms levels)."""
BREATH_MIN_SNR_DB = 30.0
"""Breaths are looked for only when speech (98th percentile level) stands at least this far
above the noise floor: on noisy recordings room noise would pass for breath."""
BREATH_DIGITAL_SILENCE_DBFS = -90.0
"""A 10th-percentile level below this is digital silence (synthetic speech, muted edits), not a
room: no microphone and preamp are that quiet (16-bit self-noise alone is about -96 dBFS)."""
BREATH_FLOOR_MAX_DB = 60.0
"""Over digital silence the floor is taken no lower than this far below the speech, so faint
synthetic tails do not turn into breath. A real room's noise is the floor however far below the
speech it lies (GRID swwp2s: 65 dB; its breath, 10-15 dB above the room, was lost to this cap
when it applied to every recording)."""
BREATH_BEFORE_S = 1.0
"""Only sound in the last this-many seconds of a pause before speech is an in-breath; noise
after speech or early in a long pause is left as silence."""
BREATH_AFTER_SPEECH_S = 0.1
"""In a pause between two phrases, the first this-many seconds are the previous sound's tail
(decay, room reverberation), not breath."""
BREATH_MIN_S = 0.06
"""Shortest audible breath (loud frames in one burst)."""
BREATH_JOIN_S = 0.1
"""Loud frames this close together belong to one burst of breath."""
BREATH_HOLD_S = 0.5
"""A breath ending this close to the speech onset holds until it (the lips stay parted)."""


def _breath_levels(x: np.ndarray) -> np.ndarray:
    """10 ms levels (dBFS) after the pre-emphasis high-pass (:func:`.audio.preemphasis`), which
    keeps the hiss of breath and drops hum and rumble."""
    from .audio import preemphasis

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


# --- front door -----------------------------------------------------------------------------

def extract(wave16k: torch.Tensor, backend: str = "auto", transcript: str = "", lw: float = 2.0,
            on_progress: ProgressFn | None = None, breaths: bool = True) -> PhonemeTrack:
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
