"""The MaskLowerFace preview: a few frames with the track and the mask drawn on them (OpenCV)."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import InputError
from ..types import FaceTrack
from ._base import _cv2, _np_float, _to_u8
from .geometry import _invert, _apply


PREVIEW_SIDE = 1024
"""Longest side of a preview frame: larger frames are drawn at their size, then scaled down to it."""


def preview_indices(num_frames: int, max_frames: int = 4) -> np.ndarray:
    """The frames :func:`preview` shows: up to ``max_frames`` evenly spaced, first and last included."""
    n = max(1, min(int(max_frames), int(num_frames)))
    return np.unique(np.linspace(0, int(num_frames) - 1, n).round().astype(int))


def preview(frames: torch.Tensor, track: FaceTrack, mask: torch.Tensor | None = None,
            max_frames: int = 4, others: bool = True) -> torch.Tensor:
    """IMAGE (n, H, W, 3) of up to ``max_frames`` evenly spaced frames with the followed face's box (green,
    "chosen" when other faces show), mouth landmarks (red; nose/chin yellow), aligned-crop outline (blue)
    and mask (tinted); with ``others``, the other faces Haar finds in those frames (grey, "other"). A frame
    without the face says "no face" and has nothing drawn for it. ``mask``: (B, H, W) for every frame, or
    (n, H, W) for just the shown frames (:func:`preview_indices`), which is all that is drawn. Frames
    longer than :data:`PREVIEW_SIDE` px are scaled down to it (n, h, w, 3), the aspect kept."""
    cv2 = _cv2()
    if frames.shape[-1] == 1:
        frames = frames.expand(-1, -1, -1, 3)
    b = frames.shape[0]
    idx = preview_indices(b, max_frames)
    if mask is not None and mask.shape[0] not in (b, len(idx)):
        raise InputError(f"MaskLowerFace preview: the mask has {mask.shape[0]} frames; give one per frame ({b}) "
                         f"or one per shown frame ({len(idx)}).")
    shown = mask is not None and mask.shape[0] == len(idx) != b
    boxes = track.boxes.detach().cpu().numpy()
    mouth = track.mouth.detach().cpu().numpy()
    inv = _invert(track.transform.detach().cpu().double().numpy()[idx])
    cs = track.crop_size - 1
    corners = np.array([[0, 0], [cs, 0], [cs, cs], [0, cs]], np.float64)
    lw = max(1, int(round(max(frames.shape[1:3]) / 400)))
    out = []
    for j, i in enumerate(idx):  # one frame at a time: a slice is a view, frames[idx] a copy of them all
        im = _to_u8(frames[i:i + 1])[0].astype(np.float32)
        if mask is not None:
            mk = mask[j if shown else i].detach().float().cpu().numpy()[..., None]
            im = im * (1 - 0.45 * mk) + np.array([255, 0, 255], np.float32) * 0.45 * mk
        im = im.clip(0, 255).astype(np.uint8)
        rest = _other_faces(frames[i], boxes[i]) if others else []
        for ob in rest:
            _label_box(im, ob, (160, 160, 160), "other", lw)
        if not bool(track.found[i]):
            cv2.putText(im, f"{i} no face", (5, 5 + 12 * lw), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * lw, (255, 128, 0), lw)
            out.append(im)
            continue
        _label_box(im, boxes[i], (0, 255, 0), "chosen" if len(rest) else "", lw)
        quad = _apply(inv[j:j + 1], corners[None])[0].round().astype(np.int32)
        cv2.polylines(im, [quad.reshape(-1, 1, 2)], True, (0, 128, 255), lw)
        for k, (x, y) in enumerate(mouth[i]):
            cv2.circle(im, (int(round(x)), int(round(y))), lw + 1, (255, 0, 0) if k < 6 else (255, 255, 0), -1)
        cv2.putText(im, f"{i} open {float(track.opening[i]):.2f}", (5, 5 + 12 * lw), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4 * lw, (255, 255, 255), lw)
        out.append(im)
    h, w = frames.shape[1:3]
    scale = PREVIEW_SIDE / max(h, w)
    if scale < 1:  # drawn at full size, shown smaller: 4 frames of 1080p are 95 MB as an IMAGE, 27 MB so
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        out = [cv2.resize(im, size, interpolation=cv2.INTER_AREA) for im in out]
    return torch.from_numpy(np.stack(out)).float().div_(255).to(frames.device)


def _label_box(im: np.ndarray, box: np.ndarray, col, text: str, lw: int) -> None:
    cv2 = _cv2()
    x0, y0, x1, y1 = box.round().astype(int)
    cv2.rectangle(im, (x0, y0), (x1, y1), col, lw)
    if text:
        cv2.putText(im, text, (x0 + 2, max(y0 - 3, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * lw, col, lw)


def _other_faces(frame: torch.Tensor, chosen: np.ndarray) -> list:
    """Haar's faces in one frame (H, W, C) that are not the chosen one: overlapping it by under 0.3 IoU, and
    neither holding its centre nor centred inside it (a loose box around two faces is a false detection)."""
    from .choose import iou
    from .haar import _Haar

    def inside(p, b):
        return b[0] <= p[0] <= b[2] and b[1] <= p[1] <= b[3]

    c = 0.5 * (chosen[:2] + chosen[2:])
    found = _Haar()(_np_float(frame[None])[0])
    return [b for b in found if iou(chosen, b[None])[0] < 0.3 and not inside(c, b)
            and not inside(0.5 * (b[:2] + b[2:]), chosen)]
