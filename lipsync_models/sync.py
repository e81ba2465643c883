"""Audio-to-lips offset and confidence of a clip (the SyncScore node's library).

Two scorers share one result type, :class:`SyncResult`:

* :func:`score_articulation` (weight-free default). Visual articulation signals per frame come
  from the face track: the inner-lip gap and the outer-lip height (both divided by the mouth
  width's 2-s trend), the track's inner-mouth contrast (:func:`face.mouth_contrast`, which
  rises the moment the lips part; the track's ``opening`` when it has none) and, when the
  images are given, the lips' parting speed from dense optical flow in a mouth crop
  (:func:`flow_opening`, which needs only the mouth's position, not precise lip points). With
  the images, the track's lip measurements are used only when they describe those images
  (:func:`track_matches`: the track's contrast against the same measure taken on the frames,
  :func:`frame_opening`); otherwise, e.g. the generator's input track wired to its output, the
  lips are measured on the frames and the track gives only where the mouth is. Audio articulation signals come
  from the 16 kHz waveform: the 300-3000 Hz log energy (100 Hz, floored 40 dB under the
  clip's peak) and, optionally (``use_phonemes``), the mouth predicted from recognised
  phonemes by the MapVisemes chain (``jaw_open`` and ``jaw_open - lip_close``, so P/B/M
  closures are sharp dips); and, when timed phonemes are given (best: forced alignment with the
  transcript), their P/B/M closures as sharp anchors (:func:`closure_signal`). Every visual x audio pair is correlated (Pearson) at lags on a
  0.1-frame grid, both as levels and as frame-to-frame changes (changes give sharper peaks);
  the score is the mean of those curves plus half the correlation of slow speech-activity
  signals (which stops the syllable rhythm from aliasing the peak by +-5 frames). The peak
  (parabolic refinement), minus the natural audio-to-lips lead (:data:`NATURAL_LEAD_FRAMES`,
  measured on recorded speech), rounded, is the offset. Clips that are too short, silent or
  whose lips do not move (with images: by optical flow, :data:`STATIC_FLOW`) are flagged as not
  judgeable (confidence 0).
* :func:`score_syncnet`: the SyncNet ``syncnet_v2`` network (``backends.syncnet``): LSE-D and
  LSE-C over +-search_range offsets, computed as syncnet_python does.

Sign convention everywhere: a positive offset means the audio is LATE (delayed against the
lips): the sound of frame ``i`` is heard at frame ``i + offset``.

Confidence answers the artist's question "is this clip in sync as it stands?": the score at
offset 0 minus the median score over the searched lags, i.e. SyncNet's comparison of a point
of the curve with the rest of it, taken at offset 0 (for SyncNet: median distance minus the
distance at offset 0). It is high for in-sync clips and near or below 0 when the audio is
shifted or belongs to someone else. The curve's own peak minus the median (SyncNet's LSE-C
for SyncNet) says how sure the OFFSET is; it is ``peak_confidence`` and in the report. It
cannot tell a shifted clip from a synced one (a shift moves the peak, it does not lower it:
GRID AUC 0.39-0.47), which is why it is not the confidence output.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from .checks import check_images, check_shape
from .errors import DependencyError, InputError, LengthMismatchError
from .types import ANALYSIS_RATE, FaceTrack, MOUTH_POINTS

log = logging.getLogger("comfyui_lipsync")

WHO = "SyncScore"
ProgressFn = Callable[[int, int], None]

ENVELOPE_RATE = 100.0
"""Frames per second of the audio envelope (10 ms hop)."""
BAND_HZ = (300.0, 3000.0)
FLOOR_DB = 40.0
LAG_STEP = 0.1
"""Sub-frame resolution of the lag search, in frames."""
NATURAL_LEAD_FRAMES = {
    "haar": {"envelope": 0.35, "closures": 0.49, "phonemes": -0.28, "phonemes+closures": 0.17},
    "mediapipe": {"envelope": 0.12, "closures": 0.42, "phonemes": -0.39, "phonemes+closures": -0.02},
}
"""Where the score curve peaks on recorded, in-sync speech, in frames, per face detector (the
lip measurements differ) and audio signal set: "envelope" (the default scorer), "closures" (the
envelope plus lip-closure anchors from aligned phonemes, :func:`closure_signal`), "phonemes"
(the phoneme-predicted mouth), "phonemes+closures" (both). Positive: the audio signals peak slightly after the lips they
explain. Measured as the mean peak over the 7 GRID clips in ``../shared/data/grid`` (haar with
the slow lip-colour recentring, ``face.LIP_COLOUR_FRAMES``; per-clip peaks spread over 0.74 frame
with haar, 1.17 with mediapipe, where lbax4n peaks about 0.6 frame before the rest).
``bench/bench_sync.py`` prints the leave-one-out result of this calibration. Tracks of other
detectors ("manual") use the haar values: the same lip finder. "phonemes" depends on MapVisemes'
default anticipation (0 ms), which shapes the predicted mouth.

How thin this is: with haar, each visual signal alone spreads its per-clip peaks over 1.1-1.2
frames like the mesh does; only their combination lands within 0.74 frame. Seven 3-second
clips are all the footage this calibration has seen."""
MESH_NOTE = ("lips measured with the face mesh (a mediapipe track): offsets are less exact on our tests "
             "(GRID injected shifts exact 71% vs 100% with a haar track); leave face_track empty or use "
             "MaskLowerFace's haar detector for the most exact offset")

CLOSURES = ("P", "B", "M")
"""Bilabial phones: the lips are shut for their whole duration, a sharp visual anchor."""

VISUAL_SIGNALS = ("gap", "outer", "opening")
"""Visual signals the articulation scorer uses by default without images (see :func:`visual_signals`)."""
VISUAL_SIGNALS_WITH_IMAGES = ("flow", "gap", "outer", "opening")
"""... and with the images: the optical-flow opening (:func:`flow_opening`)."""
ACTIVITY_WEIGHT = 0.5
"""Weight of the speech-activity curve added to the mean of the fine curves."""
MIN_FRAMES = 20
MIN_ACTIVE_FRAMES = 8

_IDX = {name: i for i, name in enumerate(MOUTH_POINTS)}


@dataclass(frozen=True)
class SyncResult:
    """What a scorer found.

    offset_frames: best offset, positive = audio late; offset_ms: the same in ms.
    confidence:    score at offset 0 minus the median score: whether the clip is in sync as it
                   stands (0 when the clip cannot be judged).
    peak_confidence: best score minus the median score: how sure the offset is (SyncNet: LSE-C).
    lags:   (L,) int offsets -R..R; scores: (L,) score per offset (higher = better match).
    visual, audio: (T,) the main per-frame signals, audio at offset 0, each scaled to 0..1.
    windows: per-window offset track, dicts {start, end, offset_frames, confidence} (s).
    judgeable: False when the clip is too short, too static or silent to judge; notes say why.
    extras: scorer-specific numbers (SyncNet: lse_d, lse_c).
    """

    offset_frames: int
    offset_ms: float
    confidence: float
    peak_confidence: float
    lags: torch.Tensor
    scores: torch.Tensor
    visual: torch.Tensor
    audio: torch.Tensor
    fps: float
    method: str
    windows: tuple[dict, ...] = ()
    judgeable: bool = True
    notes: tuple[str, ...] = ()
    extras: dict = field(default_factory=dict, compare=False)

    def report(self) -> str:
        """Readable summary for the node's text output."""
        sign = "audio late" if self.offset_frames > 0 else ("audio early" if self.offset_frames < 0 else "in sync")
        lines = [
            f"SyncScore ({self.method}): offset {self.offset_frames:+d} frames = {self.offset_ms:+.0f} ms "
            f"({sign}; positive = audio late), in-sync confidence {self.confidence:.3f}",
            f"offset certainty (best score minus median): {self.peak_confidence:.3f}; frames {self.visual.shape[0]} "
            f"at {self.fps:g} fps; searched offsets {int(self.lags[0])}..{int(self.lags[-1])}",
        ]
        for k, v in self.extras.items():
            if isinstance(v, float):
                lines.append(f"{k}: {v:.3f}")
        if not self.judgeable:
            lines.append("NOT JUDGEABLE: " + "; ".join(self.notes))
        elif self.notes:
            lines.extend("note: " + n for n in self.notes)
        if self.windows:
            lines.append("per-window offsets (start-end s: offset frames, offset certainty):")
            for w in self.windows:
                tag = "" if w.get("judgeable", True) else "  (too quiet/static)"
                lines.append(f"  {w['start']:6.2f}-{w['end']:6.2f}: {w['offset_frames']:+3d}  {w['confidence']:.3f}{tag}")
            offs = [w["offset_frames"] for w in self.windows if w.get("judgeable", True)]
            if offs and max(offs) - min(offs) >= 2:
                first = next(w for w in self.windows if w.get("judgeable", True)
                             and abs(w["offset_frames"] - offs[0]) >= 2)
                lines.append(f"drift: the offset changes by {max(offs) - min(offs)} frames; it first moves at {first['start']:.2f} s")
        return "\n".join(lines)


# --- signals ---------------------------------------------------------------------------------

def band_envelope(wave16k: torch.Tensor, band: tuple[float, float] = BAND_HZ, floor_db: float = FLOOR_DB) -> np.ndarray:
    """Log energy (log10 power) of ``band`` Hz every 10 ms, 25 ms Hann windows, centred.

    wave16k: (N,) float at 16 kHz. Returns (M,) float64, M = N // 160 + 1, value m describing the
    time m * 0.01 s; floored ``floor_db`` under the clip's maximum (silence and padding agree).
    """
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

    gap: inner-lip gap / mouth width; outer: outer-lip height / mouth width; opening: the
    track's inner-mouth contrast (:func:`track_contrast`).
    """
    m = track.mouth.detach().double().cpu().numpy()
    width = np.linalg.norm(m[:, _IDX["corner_left"]] - m[:, _IDX["corner_right"]], axis=1)
    # the mouth width changes with rounding and spreading too: divide by its slow trend (2 s),
    # which follows the face's size, not by the per-frame width
    from scipy.ndimage import uniform_filter1d

    width = np.maximum(uniform_filter1d(width, size=max(int(round(2 * fps)), 1), mode="nearest"), 1e-6)
    gap = np.linalg.norm(m[:, _IDX["upper_inner"]] - m[:, _IDX["lower_inner"]], axis=1) / width
    outer = np.linalg.norm(m[:, _IDX["upper_outer"]] - m[:, _IDX["lower_outer"]], axis=1) / width
    return {"gap": gap, "outer": outer, "opening": track_contrast(track)}


def track_contrast(track: FaceTrack) -> np.ndarray:
    """A face track's lip signal for scoring, (T,) float64: the inner-mouth contrast MaskLowerFace
    stores in ``extras["contrast"]`` (:func:`face.mouth_contrast`), or ``track.opening`` for a
    track without it (made elsewhere; see :func:`track_measure`). The contrast, not the opening,
    because SyncScore's timing was calibrated on it: it rises the moment the lips part and is
    smooth from frame to frame."""
    con = _frame_extra(track, "contrast")
    return con if con is not None else track.opening.detach().double().cpu().numpy()


def track_measure(track: FaceTrack) -> str:
    """Which measure :func:`track_contrast` reads on this track: "contrast" or "opening"."""
    return "contrast" if _frame_extra(track, "contrast") is not None else "opening"


def _frame_extra(track: FaceTrack, key: str) -> np.ndarray | None:
    """``track.extras[key]`` as (T,) float64 when it holds one value per frame, else None."""
    v = track.extras.get(key) if isinstance(track.extras, dict) else None
    if v is None or torch.as_tensor(v).numel() != track.num_frames:
        return None
    return torch.as_tensor(v).detach().double().cpu().numpy().reshape(-1)


FLOW_CROP = 64
"""Side (pixels) of the grey mouth crop the optical-flow opening is measured on."""


def flow_opening(images: torch.Tensor, track: FaceTrack, fps: float, chunk: int = 256,
                 on_progress: ProgressFn | None = None) -> np.ndarray:
    """Mouth opening from optical flow, independent of how precise the lip landmarks are.

    A grey crop two mouth-widths wide, centred on the mouth (corner midpoint, median over 5
    frames; size from the clip's median mouth width) is cut from every frame; dense
    Farneback flow between consecutive crops gives the vertical speed of the lower-lip band
    minus that of the upper-lip band, i.e. how fast the lips part (pixels of the crop per
    frame). Its running sum, minus its 1-second moving average, is the opening.

    images: (B, H, W, C) float 0..1; track: the clip's FaceTrack. Returns (B,) float64.
    """
    import cv2
    from scipy.ndimage import median_filter, uniform_filter1d

    check_images(images, WHO)
    b = images.shape[0]
    m = track.mouth.detach().double().cpu().numpy()
    centre = median_filter(0.5 * (m[:, _IDX["corner_left"]] + m[:, _IDX["corner_right"]]), size=(5, 1), mode="nearest")
    width = float(np.median(np.linalg.norm(m[:, _IDX["corner_left"]] - m[:, _IDX["corner_right"]], axis=1)))
    size = FLOW_CROP
    scale = size / max(2.0 * width, 4.0)
    vel = np.zeros(b)
    prev = None
    cols = slice(size // 2 - size // 5, size // 2 + size // 5)
    upper = slice(size // 2 - size // 4, size // 2)
    lower = slice(size // 2, size // 2 + size // 4)
    h, w = int(images.shape[1]), int(images.shape[2])
    reach = size / (2.0 * scale) + 3.0  # source pixels the warp can read around the centre, + margin
    lum = np.array([0.299, 0.587, 0.114], np.float32)
    for s0 in range(0, b, chunk):
        for i in range(s0, min(s0 + chunk, b)):
            # only the mouth region is converted (cost scales with the mouth, not the frame); a
            # slice cut short by the frame edge ends AT the edge, so BORDER_REPLICATE is unchanged
            x0, x1 = _span(centre[i, 0] - reach, centre[i, 0] + reach, w)
            y0, y1 = _span(centre[i, 1] - reach, centre[i, 1] + reach, h)
            block = images[i, y0:y1, x0:x1, :3].detach().to("cpu", torch.float32).numpy()
            # numpy/cv2, not per-frame torch ops (those stall on the thread pool under load)
            g = cv2.convertScaleAbs(np.clip(block @ lum, 0.0, 1.0), alpha=255.0)
            mat = np.array([[scale, 0, size / 2 - scale * (centre[i, 0] - x0)],
                            [0, scale, size / 2 - scale * (centre[i, 1] - y0)]])
            crop = cv2.warpAffine(g, mat, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
            if prev is not None:
                flow = cv2.calcOpticalFlowFarneback(prev, crop, None, 0.5, 2, 9, 3, 5, 1.1, 0)
                vy = flow[..., 1]
                vel[i] = float(vy[lower, cols].mean() - vy[upper, cols].mean())
            prev = crop
        if on_progress is not None:
            on_progress(min(s0 + chunk, b), b)
    opening = np.cumsum(vel)
    return opening - uniform_filter1d(opening, size=max(int(round(fps)), 1), mode="nearest")


def _span(lo: float, hi: float, size: int) -> tuple[int, int]:
    """Whole-pixel slice [a, b) covering ``lo..hi`` inside ``0..size``, at least one pixel."""
    a = int(min(max(math.floor(lo), 0), size - 1))
    return a, int(max(min(math.ceil(hi) + 1, size), a + 1))


TRACK_MATCH_R = 0.9
"""Smallest correlation between a face track's lip signal (:func:`track_contrast`) and the one
measured on the scored frames for the track's lip measurements to count as describing those frames. A track made
on the same frames gives 0.99-1.00; the track of a generator's INPUT frames (what
LipSyncInference passes on, since only the mouth changed) gives 0.1-0.75 on the chain's output
(the original mouth, or a still portrait's closed one)."""

STATIC_FLOW = 0.15
"""With the images, the lips count as static when the optical-flow opening (:func:`flow_opening`,
crop pixels; 1 px = 1/32 of the mouth width) varies less than this. Speaking GRID lips: 0.7-1.5
over a clip, >= 0.5 in every 1-s window; a still frame seen through a jittering face track:
0.01-0.05. (The landmark and opening measures of a still face jitter with the track, by up to
0.007 mouth widths on the astronaut portrait, so they cannot tell.)"""

STATIC_STD = 1e-4
"""Visual signals whose spread is below this are constant up to rounding and are left out (each
signal is divided by its spread, which would blow rounding noise up into a random signal)."""


def frame_opening(images: torch.Tensor, track: FaceTrack, chunk: int = 64,
                  frames: np.ndarray | None = None, measure: str = "contrast") -> np.ndarray:
    """The lip signal measured on ``images`` themselves; the track gives only where the mouth is.

    The inner-mouth contrast MaskLowerFace stores in ``FaceTrack.extras["contrast"]``
    (:func:`face.mouth_contrast`; ``measure="opening"``: :func:`face.mouth_opening`, what it
    stores in ``FaceTrack.opening``), read through a mouth-centred crop rebuilt from the track's
    geometry (mouth-corner midpoint, median over 5 frames; the track's smoothed face width and
    crop angle when it has them, else the box width and upright), so it also works for tracks
    whose ``transform`` frames the whole face (Wav2Lip). images: (B, H, W, C) 0..1; frames:
    optional indices to measure (default all). Returns (B,) float64 (or one value per index).
    """
    import kornia
    from scipy.ndimage import median_filter

    from . import face

    check_images(images, WHO)
    if measure not in ("contrast", "opening"):
        raise InputError(f"{WHO}: measure must be 'contrast' or 'opening', got {measure!r}.")
    fn = face.mouth_contrast if measure == "contrast" else face.mouth_opening
    b = images.shape[0]
    m = track.mouth.detach().double().cpu().numpy()
    centre = median_filter(0.5 * (m[:, _IDX["corner_left"]] + m[:, _IDX["corner_right"]]), size=(5, 1), mode="nearest")
    fw = _frame_extra(track, "face_width")
    if fw is None:
        fw = (track.boxes[:, 2] - track.boxes[:, 0]).detach().double().cpu().numpy()
    fw = np.maximum(fw, 4.0) * face.CROP_SCALE
    ang = _frame_extra(track, "angle")
    if ang is None:
        ang = np.zeros(b)
    # big faces are cut supersampled (mouth_opening area-averages them down), as MaskLowerFace does
    size = face.ANALYSIS_SIZE * int(min(max(math.ceil(float(np.median(fw)) / face.ANALYSIS_SIZE - 0.25), 1), 4))
    s = size / fw
    c, si = np.cos(ang) * s, np.sin(ang) * s  # as MaskLowerFace's crops: rotate by -angle
    half = size / 2.0 - 0.5
    mat = np.zeros((b, 2, 3))
    mat[:, 0, 0], mat[:, 0, 1], mat[:, 1, 0], mat[:, 1, 1] = c, si, -si, c
    mat[:, 0, 2] = half - (c * centre[:, 0] + si * centre[:, 1])
    mat[:, 1, 2] = half - (-si * centre[:, 0] + c * centre[:, 1])
    idx = torch.arange(b) if frames is None else torch.as_tensor(frames, dtype=torch.long)
    h, w = int(images.shape[1]), int(images.shape[2])
    # each crop reads source pixels within half its diagonal of the mouth centre (+ margin); only
    # that box of each chunk is warped, so the cost follows the mouth, not the frame. A box cut
    # short by the frame edge ends AT the edge, so the border padding is unchanged.
    reach = fw * (math.sqrt(0.5) * (size + 1) / size) + 3.0
    sel = idx.numpy()
    out = []
    for s0 in range(0, len(idx), chunk):
        f = sel[s0:s0 + chunk]
        x0, x1 = _span(float((centre[f, 0] - reach[f]).min()), float((centre[f, 0] + reach[f]).max()), w)
        y0, y1 = _span(float((centre[f, 1] - reach[f]).min()), float((centre[f, 1] + reach[f]).max()), h)
        mk = mat[f].copy()
        mk[:, :, 2] += mk[:, :, 0] * x0 + mk[:, :, 1] * y0
        mk = torch.from_numpy(mk).to(images.device, torch.float32)
        x = images[torch.as_tensor(f).to(images.device), y0:y1, x0:x1, :3].permute(0, 3, 1, 2).float()
        crops = kornia.geometry.transform.warp_affine(x, mk, (size, size), mode="bilinear",
                                                      padding_mode="border", align_corners=True)
        out.append(fn(crops.permute(0, 2, 3, 1), WHO).double().cpu().numpy())
    return np.concatenate(out)


def track_matches(track: FaceTrack, measured: np.ndarray, frames: np.ndarray | None = None) -> tuple[bool, float]:
    """Whether the track's lip measurements describe the frames: (match, r) where r is the
    correlation of the track's lip signal (:func:`track_contrast`, at ``frames``, default all)
    with ``measured`` (:func:`frame_opening` at the same frames, measured as the track's signal
    was, ``measure=track_measure(track)``); a match needs r >= :data:`TRACK_MATCH_R`, or both
    to be static and equal."""
    own = track_contrast(track)
    if frames is not None:
        own = own[frames]
    a, b = own - own.mean(), measured - measured.mean()
    den = math.sqrt(float((a * a).sum() * (b * b).sum()))
    if a.std() < STATIC_STD and b.std() < STATIC_STD:
        same = abs(float(own.mean() - measured.mean())) < 0.02
        return same, 1.0 if same else 0.0
    r = float((a * b).sum() / den) if den > 1e-12 else 0.0
    return r >= TRACK_MATCH_R, r


def predicted_mouth(wave16k: torch.Tensor, fps: float, num_frames: int) -> dict[str, np.ndarray] | None:
    """Mouth track predicted from the audio by phoneme recognition + MapVisemes, or None when
    pocketsphinx is missing. Returns jaw (jaw_open) and jaw_close (jaw_open - lip_close), (T,)."""
    from . import phonemes, visemes
    from .types import MOUTH_PARAMS

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


def natural_lead_for(track: FaceTrack, signals: str) -> float:
    """The calibrated natural lead (:data:`NATURAL_LEAD_FRAMES`) for ``track``'s detector and
    the audio ``signals`` ("envelope", "closures", "phonemes" or "phonemes+closures")."""
    det = track.extras.get("detector") if isinstance(track.extras, dict) else None
    return NATURAL_LEAD_FRAMES.get(det, NATURAL_LEAD_FRAMES["haar"])[signals]


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


def activity_signals(visual: dict[str, np.ndarray], env: np.ndarray, fps: float,
                     sigma_s: float = 0.12) -> tuple[np.ndarray, np.ndarray]:
    """Slow speech-activity signals that break the syllable-rhythm ambiguity of the fine curves.

    Visual: the summed absolute frame-to-frame change of the visual signals (each divided by
    its own spread), Gaussian-smoothed over ``sigma_s``; audio: the envelope above its floor,
    smoothed the same. They correlate broadly but peak only where speech and mouth movement
    start and stop together. Returns ((T,) per frame, (M,) at :data:`ENVELOPE_RATE`).
    """
    from scipy.ndimage import gaussian_filter1d

    moves = []
    for v in visual.values():
        d = np.abs(np.diff(v, prepend=v[:1]))
        moves.append(d / (np.std(v) + 1e-9))
    act_v = gaussian_filter1d(np.sum(moves, 0), sigma_s * fps, mode="nearest")
    act_a = gaussian_filter1d(env - env.min(), sigma_s * ENVELOPE_RATE, mode="nearest")
    return act_v, act_a


# --- correlation over lags --------------------------------------------------------------------

def _corr_rows(v: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Pearson r between v (T,) and each row of a (L, T); 0 where either is constant."""
    v = v - v.mean()
    a = a - a.mean(1, keepdims=True)
    num = a @ v
    den = np.sqrt((a * a).sum(1) * (v * v).sum())
    return np.where(den > 1e-12, num / np.maximum(den, 1e-300), 0.0)


def lag_curves(visual: dict[str, np.ndarray], audio_hr: dict[str, np.ndarray], audio_fr: dict[str, np.ndarray],
               fps: float, lags: np.ndarray, frames: slice | None = None) -> np.ndarray:
    """Correlation curves of every visual x audio pair at (sub-frame) ``lags``.

    visual: name -> (T,) per frame; audio_hr: name -> (M,) at :data:`ENVELOPE_RATE`, sample m
    at m / rate seconds; audio_fr: name -> (T,) per frame. At lag L the audio is read at frame
    ``i + L`` (time ``(i + L) / fps``), linear interpolation, edge values outside the clip.
    ``frames`` restricts the visual frames used (windows). Returns (P, len(lags)): levels and
    frame-to-frame changes for each pair (P = 2 * pairs).
    """
    t_all = np.arange(next(iter(visual.values())).shape[0], dtype=np.float64)
    t = t_all[frames] if frames is not None else t_all
    q = t[None, :] + lags[:, None]  # (L, T') frame positions
    sampled = []
    for a in audio_hr.values():
        pos = q / fps * ENVELOPE_RATE
        sampled.append(np.interp(pos.ravel(), np.arange(a.shape[0]), a).reshape(q.shape))
    for a in audio_fr.values():
        sampled.append(np.interp(q.ravel(), np.arange(a.shape[0]), a).reshape(q.shape))
    out = []
    for v in visual.values():
        vv = v[frames] if frames is not None else v
        for s in sampled:
            out.append(_corr_rows(vv, s))
            out.append(_corr_rows(np.diff(vv), np.diff(s, axis=1)))
    return np.stack(out)


def _interp_curve(fine_lags: np.ndarray, curve: np.ndarray, at: np.ndarray) -> np.ndarray:
    return np.interp(at, fine_lags, curve)


def _scale01(x: np.ndarray) -> torch.Tensor:
    x = np.asarray(x, dtype=np.float64)
    lo, hi = np.nanmin(x), np.nanmax(x)
    return torch.from_numpy(((x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)).astype(np.float32))


def _check_inputs(num_frames: int, wave16k: torch.Tensor, fps: float, search_range: int, window_s: float) -> None:
    check_shape(wave16k, "N", WHO, "waveform")
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise InputError(f"{WHO}: fps must be positive, got {fps}. Use the video's frame rate (e.g. 25).")
    if int(search_range) < 1 or int(search_range) > 200:
        raise InputError(f"{WHO}: search_range must be 1..200 frames, got {search_range}.")
    if window_s < 0 or not math.isfinite(window_s):
        raise InputError(f"{WHO}: window_s must be >= 0 s (0 = no per-window track), got {window_s}.")
    audio_frames = wave16k.shape[0] / ANALYSIS_RATE * fps
    if abs(audio_frames - num_frames) > max(2.0, 0.02 * num_frames):
        raise LengthMismatchError(
            f"{WHO}: the audio covers {audio_frames:.1f} frames at {fps:g} fps but there are {num_frames} "
            "frames. Give the audio of this clip (LoadAudioDriver cuts/pads it to the frame count)."
        )


def _active_frames(env: np.ndarray, fps: float, peak: float | None = None) -> int:
    """Video frames' worth of envelope within 20 dB of the clip's peak (0 for a flat envelope)."""
    if peak is None:
        peak = float(env.max())
        if peak - float(env.min()) < 1.0:  # no 10 dB of contrast anywhere: silence or steady noise
            return 0
    return int((env > peak - 2.0).sum() / ENVELOPE_RATE * fps)


def _windows(n: int, fps: float, window_s: float) -> list[tuple[int, int]]:
    if window_s <= 0:
        return []
    w = max(int(round(window_s * fps)), 2)
    if w >= n:
        return []
    hop = max(w // 2, 1)
    starts = list(range(0, n - w + 1, hop))
    if starts[-1] + w < n:
        starts.append(n - w)
    return [(s, s + w) for s in starts]


def score_articulation(track: FaceTrack, wave16k: torch.Tensor, fps: float, search_range: int = 15,
                       window_s: float = 2.0, use_phonemes: bool = False,
                       natural_lead: float | None = None,
                       visual_names: tuple[str, ...] | None = None,
                       images: torch.Tensor | None = None,
                       phonemes=None,
                       on_progress: ProgressFn | None = None) -> SyncResult:
    """Weight-free sync score from a face track and the clip's audio.

    track: FaceTrack of T frames; wave16k: (N,) 16 kHz mono covering the same T frames;
    fps: frame rate; search_range R: offsets -R..R frames; window_s: per-window track window
    (hop = half a window; 0 = none); use_phonemes: add the phoneme -> viseme predicted mouth;
    natural_lead: frames subtracted from the curve's peak (None: :data:`NATURAL_LEAD_FRAMES` for
    the track's detector);
    visual_names: which of :func:`visual_signals` to use; phonemes: optional PhonemeTrack of
    the audio, timed by forced alignment with the transcript: its P/B/M closures
    (:func:`closure_signal`) are added as sharp anchors (the lips shut while they sound).
    """
    n = track.num_frames
    _check_inputs(n, wave16k, fps, search_range, window_s)
    R = int(search_range)
    closures = closure_signal(phonemes, fps, n) if phonemes is not None else None
    if closures is not None and closures.max() <= 0:
        closures = None  # no P/B/M in the line: nothing to anchor on
    calibrated = natural_lead is None
    if natural_lead is None:
        natural_lead = natural_lead_for(track, ("phonemes+closures" if closures is not None else "phonemes")
                                        if use_phonemes else ("closures" if closures is not None else "envelope"))
    steps = 3 + len(_windows(n, fps, window_s))
    done = 0

    def tick():
        nonlocal done
        done += 1
        if on_progress is not None:
            on_progress(done, steps)

    notes = []
    if isinstance(track.extras, dict) and track.extras.get("detector") == "mediapipe":
        notes.append(MESH_NOTE)
    vis_all = visual_signals(track, fps)
    if images is not None:
        if images.shape[0] != n:
            raise LengthMismatchError(f"{WHO}: {images.shape[0]} images but the face track has {n} frames.")
        # the track may describe other pixels than these: LipSyncInference passes on the track of
        # its INPUT frames (only the mouth changed), so its lip measurements are the original
        # mouth's (a still portrait's closed lips, another sentence). Measure the lips on the
        # frames and keep the track's lip measurements only when they agree.
        # checked on every 3rd frame (enough for the correlation; a third of the cost)
        some = np.arange(0, n, 3 if n >= 60 else 1)
        same, r_track = track_matches(track, frame_opening(images, track, frames=some,
                                                           measure=track_measure(track)), some)
        if not same:
            vis_all = {"opening": frame_opening(images, track)}
            notes.append(f"the face track's lip measurements do not match these frames (r {r_track:.2f} with the "
                         "same lip signal measured on them; e.g. the track of a generator's input): lips "
                         "measured on the frames, the track used only for where the mouth is")
        vis_all["flow"] = flow_opening(images, track, fps)
    if visual_names is None:
        visual_names = VISUAL_SIGNALS_WITH_IMAGES if images is not None else VISUAL_SIGNALS
        visual_names = tuple(v for v in visual_names if v in vis_all)
    bad = [v for v in visual_names if v not in vis_all]
    if bad or not visual_names:
        raise InputError(f"{WHO}: visual signals must be some of {tuple(vis_all)}, got {visual_names}.")
    vis = {k: vis_all[k] for k in visual_names}
    moving = float(sum(np.std(v) for v in vis.values()))
    static = (float(np.std(vis_all["flow"])) < STATIC_FLOW) if "flow" in vis_all else moving < 1e-3
    if len(vis) > 1:  # constant signals carry no timing; divided by their spread they would be noise
        vis = {k: v for k, v in vis.items() if np.std(v) >= STATIC_STD} or vis
    env = band_envelope(wave16k)
    tick()
    audio_hr = {"band": env}
    audio_fr: dict[str, np.ndarray] = {}
    if use_phonemes:
        pred = predicted_mouth(wave16k, fps, n)
        if pred is None:
            notes.append("phoneme recognition unavailable (pocketsphinx missing): audio envelope only")
            if calibrated:
                natural_lead = natural_lead_for(track, "closures" if closures is not None else "envelope")
        else:
            audio_fr.update(pred)
    if closures is not None:
        audio_fr["closure"] = -closures  # lips shut = small opening
    elif phonemes is not None:
        notes.append("no P/B/M in the phonemes: no closure anchors")
    tick()

    fine = np.arange(-R - 1 + natural_lead, R + 1 + natural_lead + 1e-9, LAG_STEP)
    ints = np.arange(-R, R + 1)

    act_v, act_a = activity_signals(vis, env, fps)

    def judge(frames: slice | None):
        curves = lag_curves(vis, audio_hr, audio_fr, fps, fine, frames)
        act = lag_curves({"activity": act_v}, {"activity": act_a}, {}, fps, fine, frames)[0]
        mean = curves.mean(0) + ACTIVITY_WEIGHT * act
        inside = (fine >= -R - 0.5 + natural_lead) & (fine <= R + 0.5 + natural_lead)
        j = int(np.nonzero(inside)[0][int(np.argmax(mean[inside]))])
        best_fine = float(fine[j])
        if 0 < j < len(fine) - 1:  # parabola through the peak and its neighbours
            y0, y1, y2 = mean[j - 1], mean[j], mean[j + 1]
            den = y0 - 2 * y1 + y2
            if den < 0:
                best_fine += float(np.clip(0.5 * (y0 - y2) / den, -0.5, 0.5)) * LAG_STEP
        offset = int(np.clip(np.round(best_fine - natural_lead), -R, R))
        at_int = _interp_curve(fine, mean, ints + natural_lead)
        med = float(np.median(at_int))
        conf = float(max(mean[inside].max(), at_int.max()) - med)
        conf0 = float(at_int[R] - med)
        return offset, conf, conf0, at_int, float(best_fine)

    offset, conf, conf0, curve, raw_peak = judge(None)
    tick()

    # can this clip be judged at all?
    judgeable = True
    active = _active_frames(env, fps)
    if n < MIN_FRAMES:
        judgeable = False
        notes.append(f"clip too short: {n} frames (need {MIN_FRAMES}, about {MIN_FRAMES / fps:.1f} s)")
    if active < MIN_ACTIVE_FRAMES:
        judgeable = False
        notes.append(f"too little speech: {active} frames of sound within 20 dB of the peak (need {MIN_ACTIVE_FRAMES})")
    if static:
        judgeable = False
        notes.append("the mouth does not move (static lips)")

    windows = []
    for s, e in _windows(n, fps, window_s):
        w_off, w_conf, _, _, _ = judge(slice(s, e))
        a0 = int(math.floor(s / fps * ENVELOPE_RATE))
        a1 = int(math.ceil(e / fps * ENVELOPE_RATE))
        seg = env[a0:a1]
        ok = bool(seg.size and _active_frames(seg, fps, env.max()) >= MIN_ACTIVE_FRAMES // 2
                  and (float(np.std(vis_all["flow"][s:e])) >= STATIC_FLOW if "flow" in vis_all
                       else sum(float(np.std(v[s:e])) for v in vis.values()) > 1e-4))
        windows.append({"start": s / fps, "end": e / fps, "offset_frames": w_off,
                        "confidence": round(w_conf, 4) if ok else 0.0, "judgeable": ok})
        tick()

    if not judgeable:
        conf = conf0 = 0.0
    env_frames = np.interp(np.arange(n) / fps * ENVELOPE_RATE, np.arange(env.shape[0]), env)
    return SyncResult(
        offset_frames=offset, offset_ms=1000.0 * offset / fps, confidence=conf0, peak_confidence=conf,
        lags=torch.from_numpy(ints), scores=torch.from_numpy(curve.astype(np.float32)),
        visual=_scale01(sum(v / (np.std(v) + 1e-9) for v in vis.values())), audio=_scale01(env_frames), fps=float(fps),
        method="articulation" + (" + phonemes" if use_phonemes and "jaw" in audio_fr else "")
        + (" + closures" if "closure" in audio_fr else ""), windows=tuple(windows),
        judgeable=judgeable, notes=tuple(notes),
        extras={"curve peak before the natural-lead correction (frames)": raw_peak,
                "natural lead subtracted (frames)": float(natural_lead)},
    )


def score_syncnet(net, images: torch.Tensor, track: FaceTrack, wave16k: torch.Tensor, fps: float,
                  search_range: int = 15, window_s: float = 2.0, batch: int = 20,
                  on_progress: ProgressFn | None = None) -> SyncResult:
    """SyncNet scores (LSE-D, LSE-C as syncnet_python) as a :class:`SyncResult`.

    images: (B, H, W, C) 0..1; track: its FaceTrack (boxes give the SyncNet face crops);
    wave16k: (N,) 16 kHz. scores[k] = median distance - mean distance at offset k, so the
    confidence is the score at offset 0 and ``peak_confidence`` equals LSE-C. Offsets are counted in 25 fps SyncNet frames and converted to
    the clip's fps when it differs.
    """
    from .backends import syncnet

    check_images(images, WHO)
    n = images.shape[0]
    if track.num_frames != n:
        raise LengthMismatchError(f"{WHO}: {n} frames but the face track has {track.num_frames}.")
    _check_inputs(n, wave16k, fps, search_range, window_s)
    R = int(search_range)
    s = syncnet.score_clip(net, images, track.boxes, wave16k, fps, vshift=R, batch=batch, on_progress=on_progress)
    ratio = fps / syncnet.SYNCNET_FPS
    # syncnet index j = syncnet offset R - j = pack offset j - R
    med = float(torch.median(s.mdist))
    scores = (med - s.mdist).float()
    offset25 = s.offset
    offset = int(round(offset25 * ratio))
    windows = []
    step = 1.0 / syncnet.SYNCNET_FPS
    rows = s.dists.shape[0]
    for a, b in _windows(rows, syncnet.SYNCNET_FPS, window_s):
        sub = syncnet.scores_from_dists(s.dists[a:b], R)
        windows.append({"start": a * step, "end": (b + 4) * step, "offset_frames": int(round(sub.offset * ratio)),
                        "confidence": round(sub.lse_c, 4), "judgeable": True})
    vis = visual_signals(track, fps)
    env = band_envelope(wave16k)
    env_frames = np.interp(np.arange(n) / fps * ENVELOPE_RATE, np.arange(env.shape[0]), env)
    notes = []
    if abs(ratio - 1.0) > 1e-6:
        notes.append(f"frames resampled from {fps:g} to 25 fps for SyncNet; offsets converted back")
    return SyncResult(
        offset_frames=offset, offset_ms=1000.0 * offset25 / syncnet.SYNCNET_FPS, confidence=float(scores[R]),
        peak_confidence=s.lse_c, lags=torch.arange(-R, R + 1), scores=scores,
        visual=_scale01(vis["gap"] + vis["outer"]), audio=_scale01(env_frames), fps=float(fps),
        method="syncnet", windows=tuple(windows), notes=tuple(notes),
        extras={"LSE-D": s.lse_d, "LSE-C": s.lse_c},
    )


# --- plot ------------------------------------------------------------------------------------

def plot(result: SyncResult, width: int = 900, height: int = 420) -> torch.Tensor:
    """Score against offset (best marked) above the visual and audio signals over time.

    Returns a ComfyUI IMAGE (1, height, width, 3) float32 in 0..1.
    """
    from .plot import Canvas

    cv = Canvas(width, height)
    lags = result.lags.double().numpy()
    sc = result.scores.double().numpy()
    n = result.visual.shape[0]
    t = np.arange(n) / result.fps
    title = (f"{result.method}: offset {result.offset_frames:+d} frames ({result.offset_ms:+.0f} ms, "
             f"+ = audio late), in-sync confidence {result.confidence:.3f}")
    top, bottom = cv.rows(2, heights=(1, 1), titles=[title, "signals over time (audio at offset 0)"],
                          ylabels=["score", "0..1"], gap=40)
    top.set_xlim(float(lags[0]), float(lags[-1]))
    top.xlabel = "offset (frames, + = audio late)"
    top.autoscale_y(sc)
    top.vline(0.0, color="gray")
    top.line(lags, sc, color=0, width=2, label="score")
    best = int(np.nonzero(lags == result.offset_frames)[0][0]) if (lags == result.offset_frames).any() else int(np.argmax(sc))
    top.markers([float(lags[best])], [float(sc[best])], color=3, size=5, label="best")
    top.legend()
    bottom.set_xlim(0.0, max(float(t[-1]), 1e-3))
    bottom.xlabel = "time (s)"
    bottom.set_ylim(-0.05, 1.05)
    bottom.line(t, result.visual.double().numpy(), color=2, width=2, label="lips (visual)")
    bottom.line(t, result.audio.double().numpy(), color=1, width=1, label="audio 300-3000 Hz")
    for w in result.windows:
        bottom.text(w["start"] + 0.02, 0.93, f"{w['offset_frames']:+d}", color="black")
    bottom.legend()
    return cv.to_image()
