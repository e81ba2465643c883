"""SyncScore's per-frame articulation signals: the audio's band envelope, the face track's lip
measurements, closure anchors from timed phonemes, the phoneme-predicted mouth, and the slow
speech-activity pair."""

from __future__ import annotations

import logging

import numpy as np
import torch

from ..calibration import ACTIVITY_SIGMA_S
from ..checks import check_shape
from ..errors import DependencyError
from ..types import ANALYSIS_RATE, FaceTrack, MOUTH_POINTS

log = logging.getLogger("comfyui_lipsync")

ENVELOPE_RATE = 100.0
"""Frames per second of the audio envelope (10 ms hop)."""
BAND_HZ = (300.0, 3000.0)
"""The speech band of the envelope (the telephone band: where articulation shows in the spectrum)."""
FLOOR_DB = 40.0
"""The envelope is floored this far under the clip's peak, so silence and padding agree."""
CLOSURES = ("P", "B", "M")
"""Bilabial phones: the lips are shut for their whole duration, a sharp visual anchor."""
STATIC_STD = 1e-4
"""Visual signals whose spread is below this are constant up to rounding and are left out (each
signal is divided by its spread, which would blow rounding noise up into a random signal)."""

IDX = {name: i for i, name in enumerate(MOUTH_POINTS)}
"""Index of each named mouth point in ``FaceTrack.mouth``."""


def band_envelope(wave16k: torch.Tensor, band: tuple[float, float] = BAND_HZ, floor_db: float = FLOOR_DB) -> np.ndarray:
    """Log energy (log10 power) of ``band`` Hz every 10 ms, 25 ms Hann windows, centred.

    wave16k: (N,) float at 16 kHz. Returns (M,) float64, M = N // 160 + 1, value m describing the
    time m * 0.01 s; floored ``floor_db`` under the clip's maximum (silence and padding agree).
    Any device and float dtype; computed in float32 on the CPU. InputError for another shape.
    """
    check_shape(wave16k, "N", "SyncScore", "waveform")
    x = wave16k.detach().float().cpu()
    n_fft, hop, win = 512, int(ANALYSIS_RATE / ENVELOPE_RATE), 400
    if x.shape[0] < n_fft:
        x = torch.nn.functional.pad(x, (0, n_fft - x.shape[0]))
    spec = torch.stft(x, n_fft, hop, win, torch.hann_window(win), center=True, return_complex=True)
    freqs = torch.fft.rfftfreq(n_fft, 1.0 / ANALYSIS_RATE)
    sel = (freqs >= band[0]) & (freqs < band[1])
    e = torch.log10(spec[sel].abs().square().sum(0).double() + 1e-10)
    return torch.clamp(e, min=float(e.max()) - floor_db / 10.0).numpy()


def visual_signals(track: FaceTrack, fps: float = 25.0) -> dict[str, np.ndarray]:
    """Per-frame visual articulation signals from a face track, each (T,) float64.

    gap: inner-lip gap / mouth width; outer: outer-lip height / mouth width; lip_signal: the
    track's lip signal (:func:`track_lip_signal`: its inner-mouth contrast, or its opening).
    """
    from scipy.ndimage import uniform_filter1d

    m = track.mouth.detach().double().cpu().numpy()
    width = np.linalg.norm(m[:, IDX["corner_left"]] - m[:, IDX["corner_right"]], axis=1)
    # the mouth width changes with rounding and spreading too: divide by its slow trend (2 s),
    # which follows the face's size, not by the per-frame width
    width = np.maximum(uniform_filter1d(width, size=max(int(round(2 * fps)), 1), mode="nearest"), 1e-6)
    gap = np.linalg.norm(m[:, IDX["upper_inner"]] - m[:, IDX["lower_inner"]], axis=1) / width
    outer = np.linalg.norm(m[:, IDX["upper_outer"]] - m[:, IDX["lower_outer"]], axis=1) / width
    return {"gap": gap, "outer": outer, "lip_signal": track_lip_signal(track)}


def track_lip_signal(track: FaceTrack) -> np.ndarray:
    """A face track's lip signal for scoring, (T,) float64: the inner-mouth contrast MaskLowerFace
    stores in ``extras["contrast"]`` (:func:`face.mouth_contrast`), or ``track.opening`` for a
    track without it (made elsewhere); :func:`track_lip_measure` names which. The contrast first,
    because SyncScore's timing was calibrated on it: it rises the moment the lips part and is
    smooth from frame to frame."""
    con = frame_extra(track, "contrast")
    return con if con is not None else track.opening.detach().double().cpu().numpy()


def track_lip_measure(track: FaceTrack) -> str:
    """Which measure :func:`track_lip_signal` reads on this track: "contrast" or "opening"."""
    return "contrast" if frame_extra(track, "contrast") is not None else "opening"


def frame_extra(track: FaceTrack, key: str) -> np.ndarray | None:
    """``track.extras[key]`` as (T,) float64 when it holds one value per frame, else None."""
    v = track.extras.get(key) if isinstance(track.extras, dict) else None
    if v is None or torch.as_tensor(v).numel() != track.num_frames:
        return None
    return torch.as_tensor(v).detach().double().cpu().numpy().reshape(-1)


def closure_signal(track, fps: float, num_frames: int) -> np.ndarray:
    """Lip-closure anchors from timed phonemes: per frame, how much of the frame's time lies in
    a P, B or M (the lips shut), 0..1, with one-frame linear ramps at the phone edges (frame i
    at time i / fps). track: a PhonemeTrack, best from forced alignment with the transcript
    (ExtractPhonemes with a transcript). Returns (T,) float64."""
    t = np.arange(num_frames) / float(fps)
    out = np.zeros(num_frames)
    for p in track.phonemes:
        if p.label.upper() in CLOSURES:
            out += np.clip(np.minimum(t - p.start, p.end - t) * fps + 0.5, 0.0, 1.0)
    return np.clip(out, 0.0, 1.0)


def predicted_mouth(wave16k: torch.Tensor, fps: float, num_frames: int) -> dict[str, np.ndarray] | None:
    """Mouth track predicted from the audio by phoneme recognition + MapVisemes, or None when
    pocketsphinx is missing. Returns jaw (jaw_open) and jaw_close (jaw_open - lip_close), (T,)."""
    from .. import phonemes, visemes
    from ..types import MOUTH_PARAMS

    try:
        track = phonemes.recognize(wave16k.detach().float().cpu())
    except DependencyError as e:
        log.info("SyncScore: phoneme recognition unavailable (%s); using the audio envelope only", e)
        return None
    vt = visemes.map_phonemes(track, fps=fps, num_frames=num_frames)
    p = vt.params.double().cpu().numpy()
    jaw = p[:, MOUTH_PARAMS.index("jaw_open")]
    close = p[:, MOUTH_PARAMS.index("lip_close")]
    return {"jaw": jaw, "jaw_close": jaw - close}


def activity_signals(visual: dict[str, np.ndarray], env: np.ndarray, fps: float,
                     sigma_s: float = ACTIVITY_SIGMA_S) -> tuple[np.ndarray, np.ndarray]:
    """Slow speech-activity signals that break the syllable-rhythm ambiguity of the fine curves.

    Visual: the summed absolute frame-to-frame change of the visual signals (each divided by
    its own spread), Gaussian-smoothed over ``sigma_s``; audio: the envelope above its floor,
    smoothed the same. They correlate broadly but peak only where speech and mouth movement
    start and stop together. Returns ((T,) per frame, (M,) at :data:`ENVELOPE_RATE`).
    """
    from scipy.ndimage import gaussian_filter1d

    moves = []
    for v in visual.values():
        d = np.abs(np.diff(v, axis=0, prepend=v[:1])) / (np.std(v, axis=0) + 1e-9)
        moves.append(d.reshape(d.shape[0], -1).mean(1))
    act_v = gaussian_filter1d(np.sum(moves, 0), sigma_s * fps, mode="nearest")
    act_a = gaussian_filter1d(env - env.min(), sigma_s * ENVELOPE_RATE, mode="nearest")
    return act_v, act_a
