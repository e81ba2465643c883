"""The lower-face mask: a feathered superellipse below the nose, cheek to cheek, down to the chin,
drawn from a :class:`~lipsync_models.types.FaceTrack` (torch, on any device)."""

from __future__ import annotations

import torch

from ..calibration import MASK_HALF_WIDTH
from ..errors import InputError
from ..types import FaceTrack

MASK_POWER = 4
"""Shape of the mask's lower outline (fixed): 2 would be a half-ellipse; 4 keeps the cheeks full
down to the mouth corners and rounds the chin."""


def lower_face_mask(track: FaceTrack, expand: float = 0.0, feather: float = 0.08,
                    device: torch.device | str | None = None, chunk: int = 16) -> torch.Tensor:
    """Feathered mask of the lower face: below the nose, cheek to cheek, down to the chin.

    track:   a FaceTrack. expand: grow (> 0) or shrink (< 0) the region by this fraction of the
    face width. feather: width of the soft edge as a fraction of the face width (0 = hard edge).
    Returns (B, H, W) float32 in 0..1 on ``device`` (default the track's device). The region is
    the lower half of a superellipse (power :data:`MASK_POWER`: square-ish cheeks, round chin)
    hanging from the bottom of the nose, 0.76 face widths across, rotated with the mouth. Frames
    whose face the track did not find (``track.found`` False) get an empty mask (0), as Composite
    leaves them unchanged.
    """
    if feather < 0:
        raise InputError(f"lower_face_mask: feather must be >= 0, got {feather}.")
    if expand <= -0.5:
        raise InputError(f"lower_face_mask: expand must be above -0.5 (face widths), got {expand}.")
    dev = torch.device(device) if device is not None else track.boxes.device
    h, w = track.frame_size
    g = _face_frame(track, dev, expand, feather)
    out = torch.zeros((track.num_frames, h, w), dtype=torch.float32, device=dev)
    # only a window around the face is computed; the rest stays 0
    reach = (torch.sqrt(g["half_w"] ** 2 + torch.maximum(g["top"].abs(), g["bottom"].abs()) ** 2) + g["fea"] + 2).detach()
    cx, cy = g["centre"][:, 0], g["centre"][:, 1]
    lo_x, hi_x = ((cx - reach).floor().clamp(0, w).long().cpu(), (cx + reach).ceil().clamp(0, w).long().cpu())
    lo_y, hi_y = ((cy - reach).floor().clamp(0, h).long().cpu(), (cy + reach).ceil().clamp(0, h).long().cpu())
    for s0 in range(0, track.num_frames, chunk):
        sl = slice(s0, s0 + chunk)
        x0, x1 = int(lo_x[sl].min()), int(hi_x[sl].max())
        y0, y1 = int(lo_y[sl].min()), int(hi_y[sl].max())
        if x1 > x0 and y1 > y0:
            out[sl, y0:y1, x0:x1] = _paint({k: v[sl][:, None, None] for k, v in g.items()}, (y0, y1, x0, x1), feather > 0)
    lost = ~track.found.to(dev, torch.bool)
    if bool(lost.any()):
        out[lost] = 0.0
    return out


def _face_frame(track: FaceTrack, dev: torch.device, expand: float, feather: float) -> dict[str, torch.Tensor]:
    """The mask's geometry per frame, each (B,) float32 on ``dev`` ("centre" (B, 2)): the mouth centre
    (the crop centre of the smoothed aligned-crop transform) in frame px, cos/sin of the face's roll, and
    in the face's own frame (u along the mouth line, v downwards, px from the centre): the top (bottom of
    the nose), the bottom (chin), the half width and the feather width."""
    mouth = track.mouth.to(dev, torch.float32)
    boxes = track.boxes.to(dev, torch.float32)
    fw = track.extras.get("face_width")
    fw = fw.to(dev, torch.float32) if isinstance(fw, torch.Tensor) else boxes[:, 2] - boxes[:, 0]
    ang = track.extras.get("angle")
    if isinstance(ang, torch.Tensor):
        ang = ang.to(dev, torch.float32)
    else:
        d = mouth[:, 1] - mouth[:, 0]
        ang = torch.atan2(d[:, 1], d[:, 0])
    t = track.transform.to(dev, torch.float32)
    a_inv = torch.linalg.inv(t[:, :, :2])
    half_c = track.crop_size / 2.0 - 0.5
    centre = torch.einsum("bij,bj->bi", a_inv, half_c - t[:, :, 2])
    cos, sin = torch.cos(ang), torch.sin(ang)

    def to_v(p):
        d = p - centre
        return -sin * d[:, 0] + cos * d[:, 1]

    return {"centre": centre, "cos": cos, "sin": sin,
            "top": to_v(mouth[:, 6]) - expand * fw,          # the bottom of the nose
            "bottom": to_v(mouth[:, 7]) + expand * fw,       # the chin
            "half_w": (MASK_HALF_WIDTH + expand) * fw,       # cheek to cheek
            "fea": (feather * fw).clamp(min=1e-3)}


def _paint(g: dict[str, torch.Tensor], window: tuple[int, int, int, int], soft: bool) -> torch.Tensor:
    """The mask over the frame window (y0, y1, x0, x1) for a chunk of frames, (n, Y, X) float32; ``g``
    holds :func:`_face_frame`'s values of those frames, shaped (n, 1, 1) ("centre" (n, 1, 1, 2))."""
    y0, y1, x0, x1 = window
    dev = g["top"].device
    ys = torch.arange(y0, y1, device=dev, dtype=torch.float32).view(1, -1, 1)
    xs = torch.arange(x0, x1, device=dev, dtype=torch.float32).view(1, 1, -1)
    dx, dy = xs - g["centre"][..., 0], ys - g["centre"][..., 1]
    cos, sin, t_top, a = g["cos"], g["sin"], g["top"], g["half_w"]
    bb = (g["bottom"] - t_top).clamp(min=1.0)
    # in place on fresh (chunk, Y, X) buffers: the mask is a pure function of the track, no
    # autograd through it, and the window is the cost of MaskLowerFace
    u = cos * dx + sin * dy
    d_top = (cos * dy - sin * dx).sub_(t_top)  # v - top
    # signed distance (approx., px) inside the lower superellipse below `top`
    ua = u.div_(a).square_().square_()                  # |u/a|^4
    vb = d_top.clamp(min=0).div_(bb).square_().square_()  # ((v-top)+/bb)^4
    d_ell = ua.add_(vb).sqrt_().sqrt_().neg_().add_(1).mul_(torch.minimum(a, bb))
    f = g["fea"]
    if soft:  # outline feathered across the edge; the nose line only downwards, over
        # half the width (a smile's upper lip starts about 0.08 face widths below the nose)
        return torch.minimum(d_ell.add_(f / 2).div_(f).clamp_(0, 1), d_top.mul_(2).div_(f).clamp_(0, 1))
    return ((d_ell >= 0) & (d_top >= 0)).float()
