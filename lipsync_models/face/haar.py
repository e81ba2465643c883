"""The Haar strategy: OpenCV's bundled frontal-face cascade on key frames (searched near the last box in
between), the mouth placed from the box by the dark lip line, and the head roll from the eye cascade.
:func:`haar_track` returns one :class:`~._base.RawTrack`; :mod:`.track` smooths and measures it."""

from __future__ import annotations

import math

import numpy as np

from ..calibration import ANGLE_TRUST, MOUTH_IN_BOX
from ..errors import DependencyError, NoFaceError
from ._base import WHO, RawTrack, _cv2, _f2u8, _gauss_smooth, _median_filter, _np_float, _per_run
from .choose import FaceChoice, pick, same_face
from .lips import _locate_mouths

DETECT_SIDE = 360
"""Frames are downscaled so their longer side is at most this many pixels for face detection."""

FINE_SIDE = 1080
"""A frame over 1.5x :data:`DETECT_SIDE` in which nothing is found is searched again at this size."""

TRACK_FACE_PX = 80
"""Between full-frame detections the face is searched near its last box, scaled to about this width."""


def haar_track(frames, choice: FaceChoice, chunk: int, step, every: int) -> RawTrack:
    """Faces by the Haar cascade every ``every`` frames, the mouth by the dark lip line (two passes
    over the chunks, each calling ``step``), the crop's roll by the eye line when it is steady."""
    boxes, found = _track_haar(frames, choice, chunk, step, every)
    raw, conf, moved, cuts = _locate_mouths(frames, boxes, chunk, step, MOUTH_IN_BOX, found)
    roll, roll_note = _eye_roll(frames, boxes, every)
    note = (f"detector: OpenCV Haar cascade every {every} frames (searched near the last box "
            "between), mouth from the dark lip line, centred on the lips' edges")
    return RawTrack(boxes=boxes, found=found, centre=raw, face_width=boxes[:, 2] - boxes[:, 0], conf=conf,
                    angle_trust=ANGLE_TRUST, roll=roll, roll_note=roll_note, recentre=True, moved=moved, cuts=cuts,
                    note=note)


class _Haar:
    """OpenCV frontal-face cascade on a downscaled grey frame, or inside a region around the last
    face (the region is scaled so the face is about :data:`TRACK_FACE_PX` wide: fast)."""

    def __init__(self) -> None:
        cv2 = _cv2()
        self.cv2 = cv2
        self.casc = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
        if self.casc.empty():
            raise DependencyError(f"{WHO}: OpenCV's bundled frontal-face cascade could not be loaded.")

    def __call__(self, img: np.ndarray, near: np.ndarray | None = None, side: int = DETECT_SIDE) -> np.ndarray:
        """img float32 RGB (H, W, C) in 0..1 -> (k, 4) boxes x0, y0, x1, y1 in img px.

        near: a previous face box; then only a region 2x its size around it is searched, for
        faces 0.7-1.4x its width. Without it the frame is searched downscaled to ``side`` px, and when
        that finds nothing in a frame over 1.5x that size, once more at :data:`FINE_SIDE` (smaller faces
        in 4K frames: a 220-px face in a 3840-px frame is 20 px at 360)."""
        h, w = img.shape[:2]
        ox = oy = 0
        if near is not None:
            fw = near[2] - near[0]
            ox, oy = int(max(near[0] - 0.5 * fw, 0)), int(max(near[1] - 0.5 * fw, 0))
            ex, ey = int(min(near[2] + 0.5 * fw + 1, w)), int(min(near[3] + 0.5 * fw + 1, h))
            if ex - ox < 16 or ey - oy < 16:
                return np.zeros((0, 4))
            img = img[oy:ey, ox:ex]
            scale = min(1.0, TRACK_FACE_PX / fw)
            lo, hi = int(0.7 * fw * scale), int(1.4 * fw * scale) + 1
        else:
            scale = min(1.0, side / max(h, w))
        g = self._grey(img, scale)
        if near is None:
            lo, hi = max(int(0.08 * min(g.shape)), 20), max(g.shape) + 1
        d = self.casc.detectMultiScale(g, scaleFactor=1.1 if near is None else 1.04, minNeighbors=5,
                                       minSize=(max(lo, 20), max(lo, 20)), maxSize=(hi, hi))
        if len(d) == 0:
            if near is None and side < FINE_SIDE and max(h, w) > 1.5 * side:
                return self(img, side=FINE_SIDE)
            return np.zeros((0, 4))
        d = np.asarray(d, np.float64)
        boxes = np.stack([d[:, 0], d[:, 1], d[:, 0] + d[:, 2], d[:, 1] + d[:, 3]], axis=1) / scale
        return boxes + np.array([ox, oy, ox, oy], np.float64)

    def _grey(self, img: np.ndarray, scale: float) -> np.ndarray:
        """RGB float 0..1 -> grey uint8, resized by ``scale`` (area)."""
        cv2 = self.cv2
        img = img[..., :3]
        if not img.flags.c_contiguous:
            img = np.ascontiguousarray(img)
        g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        if scale < 1.0:
            g = cv2.resize(g, (max(int(round(g.shape[1] * scale)), 1), max(int(round(g.shape[0] * scale)), 1)),
                           interpolation=cv2.INTER_AREA)
        return _f2u8(g)

    def find(self, img: np.ndarray, choice: FaceChoice, prev: np.ndarray | None, lost: int = 0) -> np.ndarray | None:
        """The followed face in one frame: the face last seen at ``prev`` (searched near it, then in the
        whole frame); with no ``prev``, or after ``lost`` >= :data:`REACQUIRE_KEYS` key frames without
        it, the face ``choice`` picks (it may have come back elsewhere)."""
        if prev is not None:
            near = self(img, near=prev)
            j = same_face(prev, near)
            if j is not None:
                return near[j]
        full = self(img)
        if prev is not None:
            j = same_face(prev, full)
            if j is not None:
                return full[j]
            if lost < REACQUIRE_KEYS:
                return None
        j = pick(full, choice)
        return None if j is None else full[j]


REACQUIRE_KEYS = 3
"""Key frames (``detect_every`` frames apart) the followed face may be missing before the choice is applied
again; until then only a face where it was last seen (:func:`.choose.same_face`) continues the track."""


def _track_haar(frames, choice: FaceChoice, chunk, step, every):
    """Haar detection on every ``every``-th frame, the frames around missed key frames checked one by one
    -> (boxes (B, 4) smoothed within each run of found frames, found (B,) bool)."""
    det = _Haar()
    b = frames.shape[0]
    every = max(int(every), 1)
    keys = list(range(0, b, every))
    if keys[-1] != b - 1:
        keys.append(b - 1)
    key_boxes = {}
    prev, lost = None, 0
    for s0 in range(0, b, chunk):
        ks = [k for k in keys if s0 <= k < s0 + chunk]
        for k, im in zip(ks, _np_float(frames[ks]) if ks else ()):
            sel = det.find(im, choice, prev, lost)
            lost = 0 if sel is not None else lost + 1
            if sel is not None:
                key_boxes[k] = prev = sel
        step()
    if not key_boxes:
        raise NoFaceError(
            f"{WHO}: no face found in any of the {b} frames (detector 'haar', {choice.describe()}). Give the "
            "face box in 'manual box' as x0,y0,x1,y1 pixels, try detector 'mediapipe', or check that the face "
            "is frontal and at least 30 px wide."
        )
    found = np.ones(b, bool)
    found[_exact_lost(det, frames, keys, key_boxes, every, choice)] = False
    return _smooth_boxes(key_boxes, found, every), found


def _exact_lost(det, frames, keys, key_boxes: dict, every: int, choice: FaceChoice) -> list[int]:
    """Around each missed key frame, every frame checked on its own for the face seen at the nearest found
    key frame (found ones are added to ``key_boxes``) -> the frames without it, so the spans are exact."""
    b = frames.shape[0]
    seen = np.array(sorted(key_boxes))
    lost = set()
    for k in (k for k in keys if k not in key_boxes):
        for j in range(max(k - every + 1, 0), min(k + every, b)):
            if j in key_boxes or j in lost:
                continue
            ref = key_boxes[int(seen[np.argmin(np.abs(seen - j))])]
            sel = det.find(_np_float(frames[j:j + 1])[0], choice, ref)
            if sel is not None:
                key_boxes[j] = sel
            else:
                lost.add(j)
    return sorted(lost)


DRIFT_PX = 0.5
"""Frame px per frame above which a run's boxes are smoothed keeping their drift to the ends (a still face
is smoothed with its ends held, which keeps key-frame noise from turning into a slope)."""


def _smooth_boxes(key_boxes: dict, found: np.ndarray, every: int) -> np.ndarray:
    """Square boxes (centre + side) median- then Gaussian-smoothed over the key frames and interpolated,
    each run of found frames on its own (nothing is carried across frames without the face, which hold
    the nearest found box) -> (B, 4)."""
    def run(lo: int, hi: int) -> np.ndarray:
        kk = np.array([k for k in sorted(key_boxes) if lo <= k < hi])
        kb = np.stack([key_boxes[k] for k in kk])
        params = np.concatenate([0.5 * (kb[:, :2] + kb[:, 2:]), (kb[:, 2] - kb[:, 0])[:, None]], 1)
        params = _median_filter(params, 3)
        # a face drifting steadily (over DRIFT_PX a frame, on 5+ key frames) keeps its pace to the run's ends
        drift = len(kk) >= 5 and float(np.abs(np.polyfit(kk, params[:, :2], 1)[0]).max()) > DRIFT_PX
        params[:, :2] = _gauss_smooth(params[:, :2], 1.0, drift=drift)
        params[:, 2] = _gauss_smooth(params[:, 2], 2.0)  # Haar sizes come in steps: smooth harder
        t = np.arange(lo, hi)
        return _gauss_smooth(np.stack([np.interp(t, kk, params[:, j]) for j in range(3)], 1), float(every),
                             drift=drift)

    p = _per_run(run, found, 3)
    return np.stack([p[:, 0] - p[:, 2] / 2, p[:, 1] - p[:, 2] / 2, p[:, 0] + p[:, 2] / 2, p[:, 1] + p[:, 2] / 2], 1)


ROLL_MAX = math.radians(20.0)
"""Largest head roll (eye line) applied to the Haar path's crops; beyond it crops stay upright."""
ROLL_STEADY = math.radians(3.0)
"""The eye-line roll is used only when the key frames' angles scatter less than this (median
absolute deviation from their running median) and eyes were found in at least half of them;
single detections come in whole-pixel steps (about 1-2 degrees on a 100-px face)."""


def _eye_pair_angle(det, img: np.ndarray, box: np.ndarray) -> float | None:
    """Angle (radians, image coordinates) of the line from the left to the right eye, from
    OpenCV's bundled eye cascade in the upper part of a face box, or None."""
    cv2 = _cv2()
    x0, y0, x1, y1 = box
    fw = x1 - x0
    h, w = img.shape[:2]
    ox, oy = int(max(x0, 0)), int(max(y0 + 0.15 * fw, 0))
    ex, ey = int(min(x1, w)), int(min(y0 + 0.55 * fw, h))
    if ex - ox < 16 or ey - oy < 8:
        return None
    g = cv2.cvtColor(np.ascontiguousarray(img[oy:ey, ox:ex, :3]), cv2.COLOR_RGB2GRAY)
    sc = min(1.0, 100.0 / fw)
    if sc < 1.0:
        g = cv2.resize(g, None, fx=sc, fy=sc, interpolation=cv2.INTER_AREA)
    lo, hi = max(int(0.15 * fw * sc), 6), max(int(0.4 * fw * sc), 8)
    d = det.detectMultiScale(_f2u8(g), scaleFactor=1.05, minNeighbors=3, minSize=(lo, lo), maxSize=(hi, hi))
    if len(d) < 2:
        return None
    c = np.array([(x + bw / 2, y + bh / 2) for x, y, bw, bh in d], np.float64) / sc + [ox, oy]
    mid = 0.5 * (x0 + x1)
    left, right = c[c[:, 0] < mid], c[c[:, 0] >= mid]
    if not len(left) or not len(right):
        return None
    l, r = np.median(left, axis=0), np.median(right, axis=0)
    if not 0.25 * fw <= r[0] - l[0] <= 0.7 * fw:
        return None
    return math.atan2(r[1] - l[1], r[0] - l[0])


def _eye_roll(frames, boxes, every):
    """Head roll per frame (B,) radians from the eye line on every ``every``-th frame, median
    filtered and smoothed; (None, reason) when the eyes are not found steadily enough (then the
    crops stay upright)."""
    cv2 = _cv2()
    det = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_eye.xml")
    b = len(boxes)
    if det.empty():
        return None, None
    keys = list(range(0, b, max(int(every), 1)))
    got = {}
    for k in keys:
        a = _eye_pair_angle(det, _np_float(frames[k:k + 1])[0], boxes[k])
        if a is not None and abs(a) <= ROLL_MAX:
            got[k] = a
    if len(got) < max(0.5 * len(keys), 1):
        return None, f"crops upright: eyes found in {len(got)} of {len(keys)} key frames"
    kk = np.array(sorted(got))
    ka = np.array([got[k] for k in kk])
    med = _median_filter(ka, 5)
    mad = float(np.median(np.abs(ka - med)))
    if mad > ROLL_STEADY:
        return None, f"crops upright: eye line unsteady ({math.degrees(mad):.1f} deg scatter)"
    ka = _gauss_smooth(med, 2.0)
    roll = _gauss_smooth(np.interp(np.arange(b), kk, ka), float(every))
    return roll, f"crops rolled with the eye line (mean {math.degrees(float(roll.mean())):.1f} deg)"
