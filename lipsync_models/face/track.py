"""``track_faces``: one face followed through a clip. A strategy per detector (Haar cascade, the
mediapipe face mesh, or a manual box) returns one raw track (:class:`~._base.RawTrack`); then the shared
steps smooth it, recentre the crops on the lips (Haar and manual box), measure the mouth on aligned crops
and assemble the :class:`~lipsync_models.types.FaceTrack`."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from ..calibration import ANGLE_TRUST, CHIN_BELOW, NOSE_ABOVE
from ..errors import InputError, NoFaceError
from ..types import CUT, TEMPLATE_MOVED, FaceTrack
from ._base import ANALYSIS_SIZE, CROP_SCALE, DETECTORS, WHO, RawTrack, _gauss_smooth, _median_filter, _np_float, _per_run, _runs
from .choose import FaceChoice, parse_choice
from .geometry import _analysis_crops, _apply, _invert, _similarity
from .haar import haar_track
from .lips import _locate_mouths, _recentre
from .measure import _analyse, _teeth
from .mesh import mesh_track
from .pixels import check_nonfinite_off_face, finite_frames

MANUAL_MOUTH_Y = 0.76
"""Mouth height inside a manual eyebrows-to-chin box, as a fraction of the box height."""

PASSES = {"haar": 4, "manual": 3, "mediapipe": 2}
"""Passes over the clip's chunks per strategy, each one progress step per chunk: Haar detects, locates
the mouth line, recentres on the lips and measures; a manual box skips the detection; the face mesh
tracks and measures."""


def _parse_manual_box(manual_box, h: int, w: int) -> np.ndarray | None:
    """None / "" -> None; "x0,y0,x1,y1" or 4 numbers -> (4,) float64, checked to lie in the h x w frame."""
    if manual_box is None:
        return None
    if isinstance(manual_box, str):
        text = manual_box.strip()
        if not text:
            return None
        try:
            vals = [float(v) for v in text.replace(";", ",").replace(" ", ",").split(",") if v]
        except ValueError:
            raise InputError(f"{WHO}: manual box must be 'x0,y0,x1,y1' in pixels, got {manual_box!r}.") from None
    else:
        vals = [float(v) for v in manual_box]
    if len(vals) != 4:
        raise InputError(f"{WHO}: manual box needs 4 numbers x0,y0,x1,y1, got {len(vals)}: {manual_box!r}.")
    x0, y0, x1, y1 = vals
    if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h) or x1 - x0 < 16 or y1 - y0 < 16:
        raise InputError(
            f"{WHO}: manual box {vals} must lie inside the {w}x{h} frame with x0<x1, y0<y1 and be at "
            "least 16 px wide and high. Give the face from eyebrows to chin, e.g. '"
            f"{w // 3},{h // 4},{2 * w // 3},{3 * h // 4}'."
        )
    return np.array(vals, np.float64)



def progress_steps(num_frames: int, detector: str = "haar", manual: bool = False, chunk: int = 64) -> int:
    """How many ``on_progress`` steps :func:`track_faces` takes for these arguments (a progress bar's size)."""
    return PASSES["manual" if manual else detector] * math.ceil(num_frames / max(int(chunk), 1))


def manual_track(frames, box: np.ndarray, chunk: int, step) -> RawTrack:
    """A drawn box (eyebrows to chin) in every frame; the mouth placed by the box's height, then by the
    dark lip line (one pass over the chunks, calling ``step``)."""
    b = frames.shape[0]
    boxes = np.repeat(box[None], b, axis=0)
    prior = (0.5, MANUAL_MOUTH_Y * (box[3] - box[1]) / (box[2] - box[0]))
    raw, conf, moved, cuts = _locate_mouths(frames, boxes, chunk, step, prior)
    return RawTrack(boxes=boxes, found=np.ones(b, bool), centre=raw, face_width=boxes[:, 2] - boxes[:, 0],
                    conf=conf, angle_trust=ANGLE_TRUST, recentre=True, moved=moved, cuts=cuts,
                    note=f"manual face box {box.round(1).tolist()}")


def track_faces(
    frames: torch.Tensor,
    detector: str = "haar",
    face_index: int = -1,
    manual_box=None,
    crop_size: int = 256,
    chunk: int = 64,
    on_progress: Callable[[int, int], None] | None = None,
    detect_every: int = 5,
    face: str | FaceChoice = "largest",
    point=None,
) -> FaceTrack:
    """Follow one face through a clip and measure its mouth.

    frames:      (B, H, W, C) float 0..1 (IMAGE), C 3 or 4, any device.
    detector:    "haar" (OpenCV cascade + lip chroma, always available) or "mediapipe"
                 (face mesh; raises DependencyError with the install command when missing).
    face:        which face to follow when there are several (:mod:`.choose`): "largest", "index" (the
                 ``face_index``-th from the left, 0 = leftmost) or "point" (the face containing, else
                 nearest, ``point`` "x,y" px). The choice is made where the face first appears and
                 again only after it has been gone for a while; in between the same face is followed.
    face_index:  k >= 0 = the k-th face from the left (also with face "largest": the older signature).
    manual_box:  None / "" for automatic detection, else (x0, y0, x1, y1) or "x0,y0,x1,y1" in
                 frame pixels around the face (eyebrows to chin); mouth still found per frame.
    crop_size:   side of the aligned mouth-centred crop the transform maps to (96, 256, 512).
    chunk:       frames converted at a time (memory bound for 4K / long clips).
    on_progress: callback (done, total) per chunk; ComfyUI's progress bar + interrupt point.
    detect_every: run the face detector on every k-th frame, interpolate and smooth between.

    Returns a :class:`FaceTrack` whose tensors are on ``frames.device``; ``found`` is False in the
    frames without the face (their boxes hold the nearest found frame's, nothing is interpolated across
    them) and the report lists their spans. Raises NoFaceError only when no frame has the face.
    Grey (C=1) frames are read as RGB. NaN/Inf pixels: see :func:`.pixels.finite_frames`.
    """
    frames, bad = finite_frames(frames)
    if detector not in DETECTORS:
        raise InputError(f"{WHO}: detector must be one of {DETECTORS}, got {detector!r}.")
    if int(crop_size) < 16:
        raise InputError(f"{WHO}: crop_size must be at least 16 px, got {crop_size}.")
    b, h, w = (int(v) for v in frames.shape[:3])
    chunk = max(int(chunk), 1)
    box = _parse_manual_box(manual_box, h, w)
    choice = parse_choice(face, face_index, point, (h, w))
    kind = "manual" if box is not None else detector
    step = _stepper(on_progress, progress_steps(b, detector, box is not None, chunk))
    raw = _raw_track(kind, frames, box, choice, chunk, step, detect_every, bad)
    if kind != "manual" and choice.kind != "largest":
        raw.note += f"; following {choice.describe()}"
    check_nonfinite_off_face(bad, raw.boxes, raw.found, frames.shape[0])
    cx, cy, ang, fw_s = _smooth(raw)
    side = CROP_SCALE * fw_s
    mouth_half = None
    if raw.recentre:  # recentre on the lips' extent (corners, top and bottom), see lips._lip_box
        cx, cy, mouth_half = _recentre(frames, cx, cy, ang, side, chunk, step)
    m_an = _similarity(cx, cy, ang, side, ANALYSIS_SIZE)
    opening, contrast, lm, teeth = _measure_mouths(frames, m_an, chunk, step)
    lm = raw.mouth if raw.mouth is not None else _place_landmarks(lm, _invert(m_an), mouth_half)
    dev = frames.device
    f32 = lambda a: torch.as_tensor(np.asarray(a, np.float32), device=dev)
    extras = {"angle": f32(ang), "face_width": f32(fw_s), "contrast": f32(contrast), "teeth": f32(teeth),
              "detector": kind, **{k: f32(v) for k, v in raw.extras.items()}}
    if raw.moved is not None:  # kept per frame, so a track stitched from windows can list them too
        extras[TEMPLATE_MOVED] = f32(raw.moved)
    if raw.cuts is not None:
        extras[CUT] = f32(raw.cuts)
    return FaceTrack(
        boxes=f32(raw.boxes),
        mouth=f32(lm),
        opening=f32(opening),
        transform=f32(_similarity(cx, cy, ang, side, int(crop_size))),
        crop_size=int(crop_size),
        frame_size=(h, w),
        found=torch.as_tensor(raw.found, device=dev),
        report=_report(raw, fw_s, opening) + (f"\n{bad.note}" if bad is not None else ""),
        extras=extras,
    )


def _raw_track(kind: str, frames, box, choice: FaceChoice, chunk: int, step, detect_every: int, bad) -> RawTrack:
    """The strategy's raw track; a NoFaceError also names the NaN/Inf pixels ``bad`` the frames hold."""
    try:
        if kind == "manual":
            return manual_track(frames, box, chunk, step)
        if kind == "mediapipe":
            return mesh_track(frames, choice, chunk, step)
        return haar_track(frames, choice, chunk, step, detect_every)
    except NoFaceError as e:
        if bad is None:
            raise
        raise NoFaceError(f"{e} The images also hold {bad.note.split(', away')[0]}.") from None


def _stepper(on_progress, total: int):
    """A step() that counts one done chunk and tells ``on_progress(done, total)``."""
    done = [0]

    def step():
        done[0] += 1
        if on_progress is not None:
            on_progress(done[0], total)

    return step


def _smooth(raw: RawTrack):
    """Median then Gaussian smoothing over time, each run of found frames on its own (the frames
    without the face hold the nearest found value) -> mouth centre x, y (frame px), crop angle
    (radians: the strategy's roll, else its share of the mouth-line angle, which changes slowly) and
    face width (px), each (B,)."""
    def run(lo: int, hi: int) -> np.ndarray:
        c = raw.centre[lo:hi]
        return np.stack([_gauss_smooth(_median_filter(raw.face_width[lo:hi], 5), 3.0),
                         _gauss_smooth(_median_filter(c[:, 0], 5), 1.5),
                         _gauss_smooth(_median_filter(c[:, 1], 5), 1.5),
                         _gauss_smooth(_median_filter(np.clip(c[:, 2], -0.5, 0.5), 15), 5.0)], 1)

    fw_s, cx, cy, line_ang = _per_run(run, raw.found, 4).T
    ang = raw.roll if raw.roll is not None else raw.angle_trust * line_ang
    return cx, cy, ang, fw_s


def _measure_mouths(frames, m_an: np.ndarray, chunk: int, step):
    """The opening, contrast (B,), six mouth landmarks (B, 8, 2) in frame px (the nose and chin rows
    left 0) and the teeth shown (B,) (``measure._teeth``) on analysis crops through the frame -> crop
    matrices ``m_an`` (B, 2, 3)."""
    b = frames.shape[0]
    inv_an = _invert(m_an)
    opening = np.zeros(b, np.float32)
    contrast = np.zeros(b, np.float32)
    teeth = np.zeros(b, np.float32)
    lm = np.zeros((b, 8, 2), np.float64)
    for s0 in range(0, b, chunk):
        crops = _analysis_crops(_np_float(frames[s0:s0 + chunk]), m_an[s0:s0 + chunk])
        op, con, pts = _analyse(crops)
        opening[s0:s0 + len(crops)] = op
        contrast[s0:s0 + len(crops)] = con
        teeth[s0:s0 + len(crops)] = _teeth(crops)
        lm[s0:s0 + len(crops), :6] = _apply(inv_an[s0:s0 + len(crops)], pts.astype(np.float64))
        step()
    return opening, contrast, lm, teeth


def _place_landmarks(lm: np.ndarray, inv_an: np.ndarray, mouth_half: np.ndarray | None) -> np.ndarray:
    """The corners from the lips' extent (half-width in face widths, smoothed) on the centre row where
    it was measured, and the nose and chin at their fixed distances from the mouth centre."""
    b = len(lm)
    half = ANALYSIS_SIZE / 2 - 0.5
    k = ANALYSIS_SIZE / CROP_SCALE  # analysis px per face width
    if mouth_half is not None:
        hw = mouth_half[:, None] * k
        pts = np.stack([np.concatenate([half - hw, np.full_like(hw, half)], 1),
                        np.concatenate([half + hw, np.full_like(hw, half)], 1)], 1)
        lm[:, :2] = _apply(inv_an, pts)
    extra = np.array([[half, half - NOSE_ABOVE * k], [half, half + CHIN_BELOW * k]])
    lm[:, 6:] = _apply(inv_an, np.broadcast_to(extra, (b, 2, 2)).copy())
    return lm


def cut_note(cuts: list[int]) -> str:
    """The report's line for the cuts to another face."""
    return (f"the clip cuts to another face before frames {', '.join(str(c) for c in cuts[:12])}"
            f"{' ...' if len(cuts) > 12 else ''} ({len(cuts) + 1} shots; the clip's own mouths are chosen "
            "within each shot)")


def template_note(moved: list[int]) -> str:
    """The report's line for the frames whose mouth the clip's own mouth template placed."""
    return (f"mouth found by the clip's own mouth, not by the face box, in {len(moved)} frames "
            f"(head tilted): {_runs(moved)}")


def _report(raw: RawTrack, fw_s: np.ndarray, opening: np.ndarray) -> str:
    """The track's notes: detector, lost frames, weak mouth lines, roll, size and opening."""
    b = len(raw.found)
    notes = [raw.note]
    lost = np.nonzero(~raw.found)[0].tolist()
    if lost:
        notes.append(f"no face in frames {_runs(lost)} ({len(lost)} of {b}): found=False, Composite passes "
                     "them through unchanged")
    else:
        notes.append(f"face found in all {b} frames")
    weak = np.nonzero(raw.conf <= 0.05)[0].tolist() if raw.conf is not None else []
    if weak:
        notes.append(f"no clear mouth line (mouth placed from the face box) in {len(weak)} frames: {_runs(weak)}")
    if raw.moved is not None and raw.moved.any():
        notes.append(template_note(np.nonzero(raw.moved)[0].tolist()))
    if raw.cuts is not None and raw.cuts.any():
        notes.append(cut_note(np.nonzero(raw.cuts)[0].tolist()))
    if raw.roll_note:
        notes.append(raw.roll_note)
    notes.append(f"face width {fw_s.mean():.0f} px, mean opening {opening.mean():.3f}, max {opening.max():.3f}")
    return "\n".join(notes)
