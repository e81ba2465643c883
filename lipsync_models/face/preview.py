"""The MaskLowerFace preview: a few frames with the track and the mask drawn on them (OpenCV)."""

from __future__ import annotations

import numpy as np
import torch

from ..types import FaceTrack
from ._base import _cv2, _to_u8
from .geometry import _invert, _apply


def preview(frames: torch.Tensor, track: FaceTrack, mask: torch.Tensor | None = None,
            max_frames: int = 4) -> torch.Tensor:
    """IMAGE (n, H, W, 3) of up to ``max_frames`` evenly spaced frames with the face box (green),
    mouth landmarks (red; nose/chin yellow), aligned-crop outline (blue) and mask (tinted)."""
    cv2 = _cv2()
    b = frames.shape[0]
    n = max(1, min(int(max_frames), b))
    idx = np.unique(np.linspace(0, b - 1, n).round().astype(int))
    imgs = _to_u8(frames[idx]).copy()
    boxes = track.boxes.detach().cpu().numpy()
    mouth = track.mouth.detach().cpu().numpy()
    inv = _invert(track.transform.detach().cpu().double().numpy()[idx])
    cs = track.crop_size - 1
    corners = np.array([[0, 0], [cs, 0], [cs, cs], [0, cs]], np.float64)
    lw = max(1, int(round(max(frames.shape[1:3]) / 400)))
    out = []
    for j, (i, im) in enumerate(zip(idx, imgs)):
        im = im.astype(np.float32)
        if mask is not None:
            mk = mask[i].detach().float().cpu().numpy()[..., None]
            im = im * (1 - 0.45 * mk) + np.array([255, 0, 255], np.float32) * 0.45 * mk
        im = im.clip(0, 255).astype(np.uint8)
        x0, y0, x1, y1 = boxes[i].round().astype(int)
        col = (0, 255, 0) if bool(track.found[i]) else (255, 128, 0)
        cv2.rectangle(im, (x0, y0), (x1, y1), col, lw)
        quad = _apply(inv[j:j + 1], corners[None])[0].round().astype(np.int32)
        cv2.polylines(im, [quad.reshape(-1, 1, 2)], True, (0, 128, 255), lw)
        for k, (x, y) in enumerate(mouth[i]):
            cv2.circle(im, (int(round(x)), int(round(y))), lw + 1, (255, 0, 0) if k < 6 else (255, 255, 0), -1)
        cv2.putText(im, f"{i} open {float(track.opening[i]):.2f}", (5, 5 + 12 * lw), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4 * lw, (255, 255, 255), lw)
        out.append(im)
    return torch.from_numpy(np.stack(out)).float().div(255).to(frames.device)
