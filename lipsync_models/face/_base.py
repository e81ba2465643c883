"""What every part of the face package shares: the optional dependencies (OpenCV, mediapipe), the
frame conversions to numpy, the 1-D track filters and the small run/index helpers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from ..checks import runs_text
from ..errors import DependencyError

WHO = "MaskLowerFace"

DETECTORS = ("haar", "mediapipe")
MEDIAPIPE_INSTALL = (
    'pip install --no-deps mediapipe==0.10.21 && pip install absl-py attrs flatbuffers "protobuf<5" matplotlib'
)

ANALYSIS_SIZE = 96
"""Side (px) of the aligned crop on which mouth landmarks and the opening are measured."""

CROP_SCALE = 1.0
"""Aligned-crop side as a multiple of the face width (the Haar-style box width)."""


@dataclass
class RawTrack:
    """What one detector strategy hands to the shared smoothing and measuring (:mod:`.track`), numpy,
    unsmoothed where not said otherwise, ``B`` frames.

    boxes: (B, 4) face boxes x0, y0, x1, y1 (frame px); found: (B,) bool, detected (not interpolated);
    centre: (B, 3) mouth centre x, y (frame px) and mouth-line angle (radians); face_width: (B,) px.
    conf: (B,) contrast of the dark lip line that placed the mouth (frames at or under 0.05 are listed as
    weak), None when the mouth comes from landmarks. angle_trust: share of the (smoothed) mouth-line
    angle the crops rotate by. roll: (B,) radians, smoothed, the crops' rotation instead (eye line), or
    None; roll_note: what happened to it. recentre: centre the crops on the lips' extent afterwards.
    mouth: (B, 8, 2) landmarks replacing the measured ones (face mesh), or None. moved: (B,) bool, the
    frames whose mouth the clip's own mouth template placed (a tilted head, lips._follow_template), or
    None. cuts: (B,) bool, the first frame of each new shot (lips._shot_cuts), or None. note: the report's
    first line; extras: per-frame arrays added to ``FaceTrack.extras``.
    """

    boxes: np.ndarray
    found: np.ndarray
    centre: np.ndarray
    face_width: np.ndarray
    conf: np.ndarray | None
    angle_trust: float
    note: str
    roll: np.ndarray | None = None
    roll_note: str | None = None
    recentre: bool = False
    mouth: np.ndarray | None = None
    moved: np.ndarray | None = None
    cuts: np.ndarray | None = None
    extras: dict = field(default_factory=dict)


def _cv2():
    try:
        import cv2
    except ImportError as e:  # pragma: no cover - cv2 is a hard requirement
        raise DependencyError(
            f"{WHO}: OpenCV is missing. Install it with: pip install 'opencv-python-headless>=4.8,<5'."
        ) from e
    if not hasattr(cv2, "CascadeClassifier") or not hasattr(cv2, "data"):
        raise DependencyError(
            f"{WHO}: this OpenCV ({cv2.__version__}) has no Haar cascades (5.0 removed them). "
            "Install: pip install 'opencv-python-headless>=4.8,<5'."
        )
    return cv2


def _mediapipe_face_mesh():
    try:
        from mediapipe.python.solutions import face_mesh
    except ImportError as e:
        raise DependencyError(
            f"{WHO}: detector 'mediapipe' needs mediapipe 0.10.21 (the last release with the bundled "
            f"face mesh). Install it without touching numpy: {MEDIAPIPE_INSTALL}. Or choose detector 'haar'."
        ) from e
    return face_mesh


def mediapipe_available() -> bool:
    """True when the optional mediapipe face mesh can be imported."""
    try:
        _mediapipe_face_mesh()
    except DependencyError:
        return False
    return True


# --- small numeric helpers -----------------------------------------------------------------

def _to_u8(frames: torch.Tensor) -> np.ndarray:
    """(b, H, W, C) float 0..1 tensor -> (b, H, W, 3) uint8 RGB numpy (alpha dropped)."""
    import cv2

    x = frames[..., :3].detach().to("cpu", torch.float32).numpy()
    out = np.empty(x.shape, np.uint8)
    for i, f in enumerate(x):
        # one clip + one fused scale/round/saturate per frame (cv2 rounds half to even, as
        # torch.round): ~8x faster than four whole-batch torch passes
        cv2.convertScaleAbs(np.clip(f, 0.0, 1.0), out[i], 255.0)
    return out


def _np_float(frames: torch.Tensor) -> np.ndarray:
    """(b, H, W, C) tensor -> (b, H, W, C) float32 numpy; no copy for CPU float32 input."""
    return frames.detach().to("cpu", torch.float32).numpy()


def _f2u8(x: np.ndarray) -> np.ndarray:
    return np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _gauss_smooth(x: np.ndarray, sigma: float, drift: bool = False) -> np.ndarray:
    """Gaussian smoothing along axis 0 (scipy's ``gaussian_filter1d``), sigma in samples (0 = none), the
    ends held; short or unsmoothed tracks are copied. ``drift``: extend the ends by point reflection
    (2 x[0] - x[k]) instead, which keeps a steady motion steady (held ends pulled the first and last boxes
    of a face moving 10 px a frame 30 px into the clip at sigma 5) but also carries a noisy end's slope on,
    so it is for positions interpolated between detections only."""
    if sigma <= 0 or len(x) < 2:
        return x.copy()
    from scipy.ndimage import gaussian_filter1d

    x = x.astype(np.float64)
    if not drift:
        return gaussian_filter1d(x, sigma, axis=0, mode="nearest")
    k = min(int(4 * sigma + 0.5), len(x) - 1)
    padded = np.concatenate([2 * x[:1] - x[k:0:-1], x, 2 * x[-1:] - x[-2:-k - 2:-1]])
    return gaussian_filter1d(padded, sigma, axis=0, mode="nearest")[k:k + len(x)]


def _median_filter(x: np.ndarray, size: int) -> np.ndarray:
    """Running median along axis 0, edges held (scipy's ``median_filter``); the window shrinks to the
    track's length (odd) so a short clip is still filtered, and a track under 3 samples is copied."""
    if size <= 1 or len(x) < 3:
        return x.copy()
    from scipy.ndimage import median_filter

    size = min(size, len(x) if len(x) % 2 else len(x) - 1)
    return median_filter(x, size=(size,) + (1,) * (x.ndim - 1), mode="nearest")



def _nearest_run(on: np.ndarray, pos: np.ndarray, centre: float, max_gap: int) -> np.ndarray:
    """Of the runs of indices ``on`` (gaps up to ``max_gap`` bridged), the one whose positions
    ``pos`` span ``centre``, else the one ending nearest it."""
    runs = np.split(on, np.nonzero(np.diff(on) > max_gap)[0] + 1)
    return min(runs, key=lambda r: 0 if pos[r[0]] <= centre <= pos[r[-1]]
               else min(abs(pos[r[0]] - centre), abs(pos[r[-1]] - centre)))



def _runs(idx: Sequence[int]) -> str:
    """[3,4,5,9] -> '3-5, 9'."""
    return runs_text(idx)


def _found_runs(found: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of True in ``found`` (B,)."""
    edges = np.diff(np.concatenate([[0], found.astype(np.int8), [0]]))
    return list(zip(np.nonzero(edges == 1)[0].tolist(), np.nonzero(edges == -1)[0].tolist()))


def _hold_nearest(x: np.ndarray, found: np.ndarray) -> np.ndarray:
    """``x`` (B, ...) with each frame where ``found`` is False replaced by the nearest found frame's value
    (the earlier one on a tie); a copy."""
    idx = np.nonzero(found)[0]
    t = np.arange(len(found))
    pos = np.searchsorted(idx, t)
    after, before = idx[np.minimum(pos, len(idx) - 1)], idx[np.maximum(pos - 1, 0)]
    near = np.where(np.abs(after - t) < np.abs(t - before), after, before)
    return x[near].copy()


def _per_run(fn, found: np.ndarray, width: int) -> np.ndarray:
    """``fn(lo, hi)`` -> (hi - lo, width) for each run of found frames, the frames between holding the
    nearest run's edge -> (B, width). Filters applied this way never carry one run into the next."""
    out = np.zeros((len(found), width), np.float64)
    for lo, hi in _found_runs(found):
        out[lo:hi] = np.asarray(fn(lo, hi), np.float64).reshape(hi - lo, width)
    return _hold_nearest(out, found)
