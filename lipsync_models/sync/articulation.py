"""SyncScore's weight-free scorer: the lips of a face track (and, with the images, the lips
measured on the frames and their optical flow) against the audio's articulation.

Every visual x audio pair is correlated (Pearson) at lags on a 0.1-frame grid, as levels and as
frame-to-frame changes (:mod:`.lags`); the score is the mean of those curves, each weighted by its
own reliability on the clip (:func:`.lags.reliability`), plus a weight of the
correlation of slow speech-activity signals (which stops the syllable rhythm from aliasing the
peak by +-5 frames). The peak, minus the natural audio-to-lips lead
(:data:`calibration.NATURAL_LEAD_FRAMES`), rounded, is the offset. Clips that are too short,
silent or whose lips do not move (with images: by optical flow, :data:`calibration.STATIC_FLOW`)
are flagged as not judgeable (confidence 0).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from ..calibration import ACTIVITY_WEIGHT, NATURAL_LEAD_FRAMES, STATIC_FLOW
from ..checks import check_images
from ..errors import InputError, LengthMismatchError
from ..types import FaceTrack
from .common import WHO, check_inputs, envelope_at_frames, scale01, windows
from .frames import flow_opening, frame_lip_signal, track_matches
from .lags import score_lags
from .mouth_pixels import mouth_components, mouth_patches
from .result import SyncResult
from .signals import (ENVELOPE_RATE, STATIC_STD, activity_signals, band_envelope, closure_signal,
                      predicted_mouth, track_lip_measure, visual_signals)
from .uncertainty import advice, is_uncertain

ProgressFn = Callable[[int, int], None]

VISUAL_SIGNALS = ("gap", "outer", "lip_signal")
"""Visual signals the articulation scorer uses by default without images (see :func:`visual_signals`)."""
VISUAL_SIGNALS_WITH_IMAGES = ("flow", "gap", "outer", "lip_signal")
"""... and with the images: the optical-flow opening (:func:`flow_opening`). Asked for by name
(``visual_names``), "pixels" adds the inner mouth's pixel components in the track's aligned crop
(:mod:`.mouth_pixels`); not a default: on real footage it did not reach issue 18's bars either
(``calibration.NATURAL_LEAD_FRAMES``, the real-footage paragraph)."""
LEAD_FPS = 25.0
"""Frame rate of the footage the constants below and :data:`NATURAL_LEAD_FRAMES` were set on (the
GRID clips). They are times: at another rate they are converted, never applied as frame counts."""
MIN_FRAMES = 20
"""Shorter clips are not judged: 20 frames at 25 fps (:data:`MIN_SECONDS`, too few syllables to lock on)."""
MIN_SECONDS = MIN_FRAMES / LEAD_FPS
MIN_ACTIVE_FRAMES = 8
"""Clips with less sound within 20 dB of their peak than 8 frames at 25 fps (:data:`MIN_ACTIVE_SECONDS`)
are not judged (too little speech)."""
MIN_ACTIVE_SECONDS = MIN_ACTIVE_FRAMES / LEAD_FPS
MESH_NOTE = ("lips measured with the face mesh (a mediapipe track): offsets are less exact on our tests "
             "(GRID injected shifts -8..+8, lead fitted on the other clips: exact 71% vs 100% with a haar "
             "track, both within one frame); leave face_track empty or use "
             "MaskLowerFace's haar detector for the most exact offset")


def natural_lead_for(track: FaceTrack, signals: str, fps: float = LEAD_FPS) -> float:
    """The calibrated natural lead (:data:`calibration.NATURAL_LEAD_FRAMES`) for ``track``'s
    detector and the audio ``signals`` ("envelope", "closures", "phonemes" or "phonemes+closures"),
    in frames at ``fps``: the lead is a time (fitted in 25 fps frames), so 0.35 frame at 25 fps
    (14 ms) is 0.84 frame at 60 fps."""
    det = track.extras.get("detector") if isinstance(track.extras, dict) else None
    return NATURAL_LEAD_FRAMES.get(det, NATURAL_LEAD_FRAMES["haar"])[signals] * float(fps) / LEAD_FPS


def score_articulation(track: FaceTrack, wave16k: torch.Tensor, fps: float, search_range: int = 15,
                       window_s: float = 2.0, use_phonemes: bool = False,
                       natural_lead: float | None = None,
                       visual_names: tuple[str, ...] | None = None,
                       images: torch.Tensor | None = None,
                       phonemes=None,
                       on_progress: ProgressFn | None = None,
                       activity_weight: float = ACTIVITY_WEIGHT, check: bool = True) -> SyncResult:
    """Weight-free sync score from a face track and the clip's audio.

    track: FaceTrack of T frames; wave16k: (N,) 16 kHz mono covering the same T frames;
    fps: frame rate; search_range R: offsets -R..R frames; window_s: per-window track window
    (hop = half a window; 0 = none); use_phonemes: add the phoneme -> viseme predicted mouth;
    natural_lead: frames subtracted from the curve's peak (None: :data:`NATURAL_LEAD_FRAMES` for
    the track's detector, converted to frames at ``fps``); visual_names: which of
    :func:`visual_signals` to use (with images also "flow", and "pixels" when named); images:
    (T, H, W, C) 0..1, the frames scored (their lips are measured on them when
    the track's do not describe them, and their optical flow is added); phonemes: optional
    PhonemeTrack of the audio, timed by forced alignment with the transcript: its P/B/M closures
    (:func:`closure_signal`) are added as sharp anchors (the lips shut while they sound);
    activity_weight: weight of the speech-activity curve (:data:`calibration.ACTIVITY_WEIGHT`);
    check=False: the caller has checked the images already (:func:`checks.check_images` scans every pixel).
    """
    n = track.num_frames
    check_inputs(n, wave16k, fps, search_range, window_s)
    R = int(search_range)
    spans = windows(n, fps, window_s)
    tick = _ticker(on_progress, 3 + len(spans))
    notes = []
    if isinstance(track.extras, dict) and track.extras.get("detector") == "mediapipe":
        notes.append(MESH_NOTE)
    vis_all = _visual(track, images, fps, notes, pixels=bool(visual_names) and "pixels" in visual_names,
                      check=check)
    vis, static = _pick_visual(vis_all, visual_names, images is not None)
    env = band_envelope(wave16k)
    tick()
    audio_fr = _audio_per_frame(wave16k, fps, n, use_phonemes, phonemes, notes)
    tick()
    if natural_lead is None:
        natural_lead = natural_lead_for(track, _signal_set(audio_fr), fps)
    audio_hr = {"band": env}
    activity = activity_signals(vis, env, fps)
    whole = score_lags(vis, audio_hr, audio_fr, activity, fps, R, natural_lead, activity_weight=activity_weight)
    tick()
    judgeable = _judgeable(n, env, fps, static, notes)
    per_window = []
    for s, e in spans:
        w = score_lags(vis, audio_hr, audio_fr, activity, fps, R, natural_lead, slice(s, e), activity_weight)
        ok = _window_ok(env, vis, vis_all, fps, s, e)
        per_window.append({"start": s / fps, "end": e / fps, "offset_frames": w.offset,
                        "confidence": round(w.peak_confidence, 4) if ok else 0.0, "judgeable": ok})
        tick()
    conf, conf0 = (whole.peak_confidence, whole.confidence) if judgeable else (0.0, 0.0)
    unsure = is_uncertain(whole.offset, per_window, judgeable, cross_check=window_s > 0, agreement=whole.agreement)
    offset = whole.offset if judgeable else 0  # a clip that cannot be judged is not told to move
    return SyncResult(
        offset_frames=offset, offset_ms=1000.0 * offset / fps, confidence=conf0, peak_confidence=conf,
        lags=torch.arange(-R, R + 1), scores=torch.from_numpy(whole.at_int.astype(np.float32)),
        visual=scale01(sum((v / (np.std(v) + 1e-9) for v in vis.values() if v.ndim == 1), np.zeros(n))),
        audio=scale01(envelope_at_frames(env, n, fps)), fps=float(fps),
        method="articulation" + (" + phonemes" if "jaw" in audio_fr else "")
        + (" + closures" if "closure" in audio_fr else ""), windows=tuple(per_window),
        judgeable=judgeable, notes=tuple(notes), raw_peak=whole.raw_peak, natural_lead=float(natural_lead),
        agreement=whole.agreement, uncertain=unsure,
        advice=advice(track, n, fps, phonemes is not None) if unsure else (),
    )


def _ticker(on_progress: ProgressFn | None, steps: int) -> Callable[[], None]:
    done = [0]

    def tick() -> None:
        done[0] += 1
        if on_progress is not None:
            on_progress(done[0], steps)
    return tick


def _visual(track: FaceTrack, images: torch.Tensor | None, fps: float, notes: list[str],
            pixels: bool = False, check: bool = True) -> dict[str, np.ndarray]:
    """All visual signals: the track's (:func:`visual_signals`), and with the images the flow
    opening (and with ``pixels`` the inner mouth's pixel components); the track's lip measurements
    are replaced by the lips measured on the frames when they do not describe them (:func:`track_matches`)."""
    vis_all = visual_signals(track, fps)
    if images is None:
        return vis_all
    n = track.num_frames
    if images.shape[0] != n:
        raise LengthMismatchError(f"{WHO}: {images.shape[0]} images but the face track has {n} frames.")
    # the track may describe other pixels than these: LipSyncInference passes on the track of
    # its INPUT frames (only the mouth changed), so its lip measurements are the original
    # mouth's (a still portrait's closed lips, another sentence). Measure the lips on the
    # frames and keep the track's lip measurements only when they agree.
    # checked on every 3rd frame (enough for the correlation; a third of the cost)
    if check:  # once: each measure below would scan every pixel again
        check_images(images, WHO)
    some = np.arange(0, n, 3 if n >= 60 else 1)
    same, r_track = track_matches(track, frame_lip_signal(images, track, frames=some, check=False,
                                                          measure=track_lip_measure(track)), some)
    if not same:
        vis_all = {"lip_signal": frame_lip_signal(images, track, check=False)}
        notes.append(f"the face track's lip measurements do not match these frames (r {r_track:.2f} with the "
                     "same lip signal measured on them; e.g. the track of a generator's input): lips "
                     "measured on the frames, the track used only for where the mouth is")
    vis_all["flow"] = flow_opening(images, track, fps, check=False)
    if pixels:
        vis_all["pixels"] = mouth_components(mouth_patches(images, track, check=False), fps)
    return vis_all


def _pick_visual(vis_all: dict[str, np.ndarray], names: tuple[str, ...] | None,
                 with_images: bool) -> tuple[dict[str, np.ndarray], bool]:
    """The visual signals scored (``names``, default all available) without constant ones, and
    whether the lips are static (flow spread under :data:`STATIC_FLOW`, or no spread at all)."""
    if names is None:
        names = VISUAL_SIGNALS_WITH_IMAGES if with_images else VISUAL_SIGNALS
        names = tuple(v for v in names if v in vis_all)
    bad = [v for v in names if v not in vis_all]
    if bad or not names:
        raise InputError(f"{WHO}: visual signals must be some of {tuple(vis_all)}, got {names}.")
    vis = {k: vis_all[k] for k in names}
    moving = float(sum(np.std(v) for v in vis.values()))
    static = (float(np.std(vis_all["flow"])) < STATIC_FLOW) if "flow" in vis_all else moving < 1e-3
    if len(vis) > 1:  # constant signals carry no timing; divided by their spread they would be noise
        vis = {k: v for k, v in vis.items() if np.std(v) >= STATIC_STD} or vis
    return vis, static


def _audio_per_frame(wave16k: torch.Tensor, fps: float, n: int, use_phonemes: bool, phonemes,
                     notes: list[str]) -> dict[str, np.ndarray]:
    """Per-frame audio signals beside the envelope: the phoneme-predicted mouth (``use_phonemes``,
    keys jaw/jaw_close) and the negated P/B/M closures of ``phonemes`` (key closure)."""
    out: dict[str, np.ndarray] = {}
    if use_phonemes:
        pred = predicted_mouth(wave16k, fps, n)
        if pred is None:
            notes.append("phoneme recognition unavailable (pocketsphinx missing): audio envelope only")
        else:
            out.update(pred)
    closures = closure_signal(phonemes, fps, n) if phonemes is not None else None
    if closures is not None and closures.max() > 0:
        out["closure"] = -closures  # lips shut = small opening
    elif phonemes is not None:
        notes.append("no P/B/M in the phonemes: no closure anchors")
    return out


def _signal_set(audio_fr: dict[str, np.ndarray]) -> str:
    """The :data:`NATURAL_LEAD_FRAMES` column of the audio signals used."""
    base = "phonemes" if "jaw" in audio_fr else ""
    if "closure" in audio_fr:
        return base + "+closures" if base else "closures"
    return base or "envelope"


def _active_seconds(env: np.ndarray, peak: float | None = None) -> float:
    """Seconds of envelope within 20 dB of the clip's peak (0 for a flat envelope)."""
    if peak is None:
        peak = float(env.max())
        if peak - float(env.min()) < 1.0:  # no 10 dB of contrast anywhere: silence or steady noise
            return 0.0
    return float((env > peak - 2.0).sum()) / ENVELOPE_RATE


def _judgeable(n: int, env: np.ndarray, fps: float, static: bool, notes: list[str]) -> bool:
    """Whether the clip can be judged at all; the reasons it cannot go to ``notes``. The bounds are
    times (:data:`MIN_SECONDS`, :data:`MIN_ACTIVE_SECONDS`), the same at every frame rate."""
    ok = True
    active = _active_seconds(env)
    if n / fps < MIN_SECONDS - 1e-9:
        ok = False
        notes.append(f"clip too short: {n} frames, {n / fps:.2f} s at {fps:g} fps (need {MIN_SECONDS:.1f} s, "
                     f"{math.ceil(MIN_SECONDS * fps - 1e-9)} frames)")
    if active < MIN_ACTIVE_SECONDS - 1e-9:
        ok = False
        notes.append(f"too little speech: {active:.2f} s of sound within 20 dB of the peak "
                     f"(need {MIN_ACTIVE_SECONDS:.2f} s)")
    if static:
        ok = False
        notes.append("the mouth does not move (static lips)")
    return ok


def _window_ok(env: np.ndarray, vis: dict[str, np.ndarray], vis_all: dict[str, np.ndarray], fps: float,
               s: int, e: int) -> bool:
    """Whether frames s..e hold enough sound and lip movement for their window offset to count."""
    seg = env[int(math.floor(s / fps * ENVELOPE_RATE)):int(math.ceil(e / fps * ENVELOPE_RATE))]
    if not seg.size or _active_seconds(seg, env.max()) < MIN_ACTIVE_SECONDS / 2 - 1e-9:
        return False
    if "flow" in vis_all:
        return float(np.std(vis_all["flow"][s:e])) >= STATIC_FLOW
    return sum(float(np.std(v[s:e])) for v in vis.values()) > 1e-4
