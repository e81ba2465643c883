"""What the face tracker does with unusual IMAGE pixels: grey frames are read as RGB, a few NaN/Inf
pixels away from the face are tracked as black and named in the report, any other NaN/Inf is refused
with its count and frames (NaN spreads through every blend after it)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..checks import check_images, nonfinite_text, runs_text
from ..errors import InputError
from ._base import WHO

NONFINITE_FEW = 256
"""Most NaN/Inf values one frame may hold for the tracker to go on (they must also lie off the face):
a few stray pixels from a broken decode or an upstream division; a block (a NaN patch over the face in the
sweep held 22,725) is refused before tracking."""

FACE_MARGIN = 0.25
"""Around the face box, this many face widths still count as "on the face" for NaN/Inf pixels."""

FIX = "Fix the node that made them (a division by zero, a broken decode) or replace them before MaskLowerFace."


@dataclass(frozen=True)
class BadPixels:
    """NaN/Inf pixels left in the frames: ``count`` values, ``points`` frame -> (k, 2) x, y px."""

    count: int
    frames: tuple[int, ...]
    points: dict
    num_frames: int

    @property
    def note(self) -> str:
        return (f"{self.count} NaN/Inf values in frames {runs_text(self.frames)} (of {self.num_frames}), away "
                "from the face: tracked as black; nodes after this one may refuse them")


def finite_frames(frames: torch.Tensor) -> tuple[torch.Tensor, BadPixels | None]:
    """Checked IMAGE frames for tracking: grey (C=1) expanded to RGB (a view), a few NaN/Inf pixels set to
    0 (a copy, only then), and where they were; InputError (count and frames) when a frame holds more
    than :data:`NONFINITE_FEW` of them."""
    scan = check_images(frames, WHO, "images", finite=False, channels=(1, 3, 4))
    if frames.shape[-1] == 1:
        frames = frames.expand(-1, -1, -1, 3)
    if not scan.nonfinite:
        return frames, None
    bad = list(scan.bad_frames)
    mask = ~torch.isfinite(frames[bad])
    per = mask.flatten(1).sum(1)
    if int(per.max()) > NONFINITE_FEW:
        worst = bad[int(torch.argmax(per))]
        raise InputError(f"{WHO}: images hold {nonfinite_text(scan, frames.shape[0])}, {int(per.max())} in frame "
                         f"{worst} alone. {FIX}")
    points = {f: torch.nonzero(m.any(-1)).flip(1).cpu().numpy().astype(np.float64) for f, m in zip(bad, mask)}
    clean = frames.clone()
    clean[bad] = torch.nan_to_num(frames[bad], nan=0.0, posinf=0.0, neginf=0.0)
    return clean, BadPixels(scan.nonfinite, tuple(bad), points, int(frames.shape[0]))


def check_nonfinite_off_face(bad: BadPixels | None, boxes: np.ndarray, found: np.ndarray, num_frames: int) -> None:
    """InputError when any NaN/Inf pixel of ``bad`` lies on the face (its box widened by
    :data:`FACE_MARGIN` face widths) in a frame where the face was found."""
    if bad is None:
        return
    on = []
    for f, pts in bad.points.items():
        x0, y0, x1, y1 = boxes[f]
        m = FACE_MARGIN * (x1 - x0)
        if found[f] and ((pts[:, 0] >= x0 - m) & (pts[:, 0] <= x1 + m)
                         & (pts[:, 1] >= y0 - m) & (pts[:, 1] <= y1 + m)).any():
            on.append(f)
    if on:
        raise InputError(f"{WHO}: images hold {bad.count} NaN/Inf values in frames {runs_text(bad.frames)} (of "
                         f"{num_frames}), on the face in frames {runs_text(on)}: the mouth cannot be measured or "
                         f"replaced there. {FIX}")
