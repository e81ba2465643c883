"""LatentSync's face geometry: the lower-face mask of its aligned crops, and the alignment itself.

**The mask.** LatentSync 1.5/1.6 inpaint a fixed region of the aligned face (``latentsync/utils/mask.png``,
256 x 256, resized to the crop): two cheek bands from the nose's height down to the crop's middle,
left and right of the nose, and under them the whole lower face, a rounded U down to row 243.
:func:`template_mask` draws that shape from its outline (cheek bands and the U's left and right edges
at every 8th row, straight between), at any crop size: its IoU with the reference's image is 0.993 at
256 px and 0.991 against the reference's 512-px resize (``bench/parity_latentsync.py`` measures it).

**The alignment.** The reference warps each frame by the similarity that sends three InsightFace
points (the two eyebrow centres and the nose centre) to a fixed template, onto a 75 x 100 (x ``res /
256 * 2.8``) face, then stretches that to a square. This pack has no InsightFace: :func:`align_track`
builds the same kind of crop from the pack's own face track (mouth corners, nose, chin): the
similarity that puts the mouth corners' middle, the nose and the chin where they sit on LatentSync's
template face (:data:`..calibration.LATENTSYNC_POINTS`), followed by the same non-square stretch.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from .. import calibration
from ..types import MOUTH_POINTS, FaceTrack

TEMPLATE = 256
"""Side of the mask's own drawing (the reference's mask.png)."""
CHEEK_ROWS = (96.0, 128.0)
CHEEKS = ((9.0, 78.0), (178.0, 247.0))
"""Cheek bands: rows [96, 128), columns [9, 78] and [178, 247] (pixel-centre coordinates, 256 px)."""
U_OUTLINE = (
    (128.5, 9, 248), (136.5, 10, 247), (144.5, 10, 247), (152.5, 11, 246), (160.5, 11, 246),
    (168.5, 12, 245), (176.5, 15, 241), (184.5, 20, 236), (192.5, 26, 231), (200.5, 33, 224),
    (208.5, 40, 217), (216.5, 51, 208), (224.5, 64, 197), (232.5, 80, 181), (240.5, 104, 161),
    (242.5, 131, 153),
)
"""The lower face's outline: (row, left edge, right edge) in 256-px template pixels; rows 128..243."""
U_BOTTOM = 243.0

FACE_W, FACE_H = 75.0, 100.0
"""The reference's aligned face before the square stretch, in template units (x ``size / 256 * 2.8``)."""


def template_mask(size: int, device=None) -> torch.Tensor:
    """(size, size) float32: 1 where the crop is kept, 0 where LatentSync repaints (the mask above)."""
    s = TEMPLATE / float(size)
    c = (torch.arange(size, dtype=torch.float64) + 0.5) * s
    yy, xx = c[:, None].expand(size, size), c[None, :].expand(size, size)
    rows = torch.tensor([r[0] for r in U_OUTLINE], dtype=torch.float64)
    left = _interp(yy, rows, torch.tensor([r[1] for r in U_OUTLINE], dtype=torch.float64))
    right = _interp(yy, rows, torch.tensor([r[2] for r in U_OUTLINE], dtype=torch.float64))
    lower = (yy >= CHEEK_ROWS[1]) & (yy < U_BOTTOM) & (xx >= left) & (xx <= right)
    band = (yy >= CHEEK_ROWS[0]) & (yy < CHEEK_ROWS[1])
    cheeks = band & (((xx >= CHEEKS[0][0]) & (xx <= CHEEKS[0][1])) | ((xx >= CHEEKS[1][0]) & (xx <= CHEEKS[1][1])))
    return (~(lower | cheeks)).to(torch.float32).to(device)


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """numpy.interp for an increasing ``xp`` (values held flat beyond the ends)."""
    i = torch.searchsorted(xp, x.contiguous()).clamp(1, len(xp) - 1)
    x0, x1, y0, y1 = xp[i - 1], xp[i], fp[i - 1], fp[i]
    t = ((x - x0) / (x1 - x0)).clamp(0, 1)
    return y0 + t * (y1 - y0)


def _similarity(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """(B, 2, 3) least-squares similarity (rotation, uniform scale, shift) sending (B, N, 2) src to (N, 2) dst."""
    sc, dc = src.mean(1, keepdim=True), dst.mean(0, keepdim=True)
    s0, d0 = src - sc, (dst - dc).expand_as(src)
    # complex-number form: d = a * s with a = sum(conj(s) d) / sum(|s|^2)
    num_re = (s0[..., 0] * d0[..., 0] + s0[..., 1] * d0[..., 1]).sum(1)
    num_im = (s0[..., 0] * d0[..., 1] - s0[..., 1] * d0[..., 0]).sum(1)
    den = (s0 ** 2).sum((1, 2)).clamp_min(1e-9)
    a, b = num_re / den, num_im / den
    m = torch.zeros(src.shape[0], 2, 3, dtype=src.dtype, device=src.device)
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = a, -b, b, a
    m[:, :, 2] = dc[0] - (m[:, :, :2] @ sc.transpose(1, 2))[..., 0]
    return m


def track_points(track: FaceTrack) -> torch.Tensor:
    """(B, 3, 2) float64 frame-pixel points the alignment uses: mouth corners' middle, nose, chin."""
    p = track.mouth.double()
    idx = MOUTH_POINTS.index
    mid = (p[:, idx("corner_left")] + p[:, idx("corner_right")]) / 2
    return torch.stack([mid, p[:, idx("nose")], p[:, idx("chin")]], 1)


def align_track(track: FaceTrack, size: int) -> FaceTrack:
    """The face track re-aimed at LatentSync's ``size`` x ``size`` aligned crops (for crop_faces and
    Composite): a similarity onto the template face (75 x 100 units), then the stretch to a square."""
    pts = track_points(track)
    dst = torch.tensor(calibration.LATENTSYNC_POINTS, dtype=torch.float64, device=pts.device)
    sim = _similarity(pts, dst)  # frame -> template units
    stretch = torch.tensor([[size / FACE_W, 0.0], [0.0, size / FACE_H]], dtype=torch.float64, device=pts.device)
    m = torch.cat([stretch @ sim[:, :, :2], (stretch @ sim[:, :, 2:])], 2)
    # template units measure pixel edges; the crop's pixel centres sit half a pixel in
    m[:, :, 2] -= 0.5
    return replace(track, transform=m.to(track.transform.dtype), crop_size=int(size))
