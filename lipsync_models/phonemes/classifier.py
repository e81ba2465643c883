"""The model-free backend: 10 ms frames classified into six mouth classes from energy, spectral
shape, voicing and LPC formants. Works for any language, singing or noises, but only knows the
classes of :data:`ACOUSTIC_CLASSES`."""

from __future__ import annotations

import numpy as np
import torch

from ..audio import resample
from ..errors import InputError
from ..types import ANALYSIS_RATE, Phoneme, PhonemeTrack
from .common import SILENCE_DBFS, ProgressFn, _as_wave, _frame_dbfs, _silent_track

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
    """A frame whose class occurs once in its 5-frame window takes the window's majority; a tie
    goes to the class met first in the window (in time order, so the result never depends on
    Python's string hashing, which set iteration order does)."""
    out = list(classes)
    for t in range(len(classes)):
        window = classes[max(0, t - 2): t + 3]
        if window.count(classes[t]) < 2:
            out[t] = max(dict.fromkeys(window), key=window.count)
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
