"""Which face to follow when a frame shows several, and how that face is recognised in the next frame.

A :class:`FaceChoice` picks the face once (the largest, the k-th from the left, or the one containing or
nearest a point the user typed); from then on the tracker keeps the same identity by position and size
(:func:`same_face`), not by re-applying the choice in every frame, which would jump between people
when they move or change size. Only after the face has been gone for a while is the choice applied
again (the face may come back elsewhere)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ._base import WHO

CHOICES = ("largest", "index", "point")
"""How :func:`parse_choice` picks the face; MaskLowerFace adds "speaking" (:mod:`.speaking`)."""

SAME_IOU = 0.3
"""A box overlapping the last one by more than this (intersection over union) is the same face."""
SAME_SHIFT = 0.5
"""... or one whose centre lies within this many face widths of the last centre ..."""
SAME_SIZE = (0.7, 1.45)
"""... and whose width is within this ratio of the last width (Haar widths step by 5-10 % per scale)."""


@dataclass(frozen=True)
class FaceChoice:
    """kind: "largest", "index" (``index`` counted from the left, 0 = leftmost) or "point" (``point``
    (x, y) in frame px: the face containing it, else the nearest)."""

    kind: str = "largest"
    index: int = 0
    point: tuple[float, float] | None = None

    def describe(self) -> str:
        if self.kind == "index":
            return f"face {self.index} from the left"
        if self.kind == "point":
            return f"the face at point {self.point[0]:g},{self.point[1]:g}"
        return "the largest face"


def parse_choice(face="largest", face_index: int = -1, point=None, size: tuple[int, int] | None = None) -> FaceChoice:
    """A FaceChoice from the tracker's arguments: ``face`` "largest" / "index" / "point" (or a ready
    FaceChoice); ``face_index`` k >= 0 with "largest" means "index" k (the older signature); ``point``
    "x,y" or (x, y) in frame px, checked against ``size`` = (H, W)."""
    if isinstance(face, FaceChoice):
        return face
    if face not in CHOICES:
        raise InputError(f"{WHO}: face must be one of {CHOICES}, got {face!r}.")
    if face == "point":
        return FaceChoice("point", point=parse_point(point, size))
    if face == "index" or int(face_index) >= 0:
        if int(face_index) < 0:
            raise InputError(f"{WHO}: face 'index' needs face_index 0 (leftmost) or more, got {face_index}.")
        return FaceChoice("index", index=int(face_index))
    return FaceChoice()


def parse_point(point, size: tuple[int, int] | None = None) -> tuple[float, float]:
    """"x,y" (or two numbers) in frame px -> (x, y); InputError naming the widget and an example."""
    example = "e.g. '320,180'" if size is None else f"e.g. '{size[1] // 2},{size[0] // 3}'"
    try:
        vals = ([float(v) for v in str(point).replace(";", ",").replace(" ", ",").split(",") if v]
                if isinstance(point, str) else [float(v) for v in point])
    except (TypeError, ValueError):
        raise InputError(f"{WHO}: point must be 'x,y' in pixels ({example}), got {point!r}.") from None
    if len(vals) != 2 or not all(np.isfinite(vals)):
        raise InputError(f"{WHO}: point needs two numbers 'x,y' in pixels ({example}), got {point!r}.")
    if size is not None and not (0 <= vals[0] < size[1] and 0 <= vals[1] < size[0]):
        raise InputError(f"{WHO}: point {vals[0]:g},{vals[1]:g} lies outside the {size[1]}x{size[0]} frame "
                         f"({example}).")
    return vals[0], vals[1]


def pick(boxes: np.ndarray, choice: FaceChoice) -> int | None:
    """Index of the chosen face among ``boxes`` (k, 4) x0, y0, x1, y1, or None (no face, or fewer faces
    than the index asks for)."""
    if len(boxes) == 0:
        return None
    if choice.kind == "index":
        order = np.argsort(0.5 * (boxes[:, 0] + boxes[:, 2]), kind="stable")
        return int(order[choice.index]) if choice.index < len(boxes) else None
    if choice.kind == "point":
        x, y = choice.point
        inside = (boxes[:, 0] <= x) & (x <= boxes[:, 2]) & (boxes[:, 1] <= y) & (y <= boxes[:, 3])
        centre = 0.5 * (boxes[:, :2] + boxes[:, 2:])
        dist = np.hypot(centre[:, 0] - x, centre[:, 1] - y)
        return int(np.argmin(np.where(inside, dist - 1e9, dist)))
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return int(np.argmax(area))


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of one box a (4,) with boxes b (k, 4)."""
    x0 = np.maximum(a[0], b[:, 0]); y0 = np.maximum(a[1], b[:, 1])
    x1 = np.minimum(a[2], b[:, 2]); y1 = np.minimum(a[3], b[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda z: (z[..., 2] - z[..., 0]) * (z[..., 3] - z[..., 1])
    return inter / (area(a) + area(b) - inter + 1e-9)


def same_face(prev: np.ndarray, boxes: np.ndarray) -> int | None:
    """Index of the box in ``boxes`` (k, 4) that is the face last seen at ``prev`` (4,): the best
    overlap above :data:`SAME_IOU`, else the nearest centre within :data:`SAME_SHIFT` face widths whose
    width is within :data:`SAME_SIZE`; None when no box qualifies."""
    if len(boxes) == 0:
        return None
    ov = iou(prev, boxes)
    if ov.max() > SAME_IOU:
        return int(np.argmax(ov))
    w0 = prev[2] - prev[0]
    ratio = (boxes[:, 2] - boxes[:, 0]) / max(w0, 1e-6)
    shift = np.hypot(*(0.5 * (boxes[:, :2] + boxes[:, 2:]) - 0.5 * (prev[:2] + prev[2:])).T) / max(w0, 1e-6)
    ok = (shift < SAME_SHIFT) & (ratio > SAME_SIZE[0]) & (ratio < SAME_SIZE[1])
    return int(np.argmin(np.where(ok, shift, np.inf))) if ok.any() else None
