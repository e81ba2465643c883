"""Aligned face crops out of frames, and generated crops pasted back in.

Conventions
-----------
``track.transform`` (B, 2, 3) maps frame pixels to crop pixels (kornia ``warp_affine`` layout,
pixel centres at integer coordinates, ``align_corners=True``). Frames are ComfyUI IMAGE tensors
(B, H, W, C) with C = 3 or 4; an alpha channel is never changed.

Paste-back (:func:`composite`) works on one region of interest (ROI) per frame: the bounding box
of the blend mask, mapped into the frame. Everything else is a plain copy of the input, so pixels
outside the mask are bit-identical to it. Inside the ROI:

1. The original pixels are cropped again exactly as :func:`crop_faces` does (``recrop``), and the
   *difference* ``crop - recrop`` is warped back with the inverse transform. Untouched crops give
   a difference of zero, hence the input back; the frame's own fine detail (lost by the round trip
   through a smaller crop) is kept wherever the generator did not change the picture, and dropped
   where it did (``keep_detail``), so no ghost of the old mouth shows through a new one.
2. Colour matching: per frame and channel, the generated crop's mean and spread in a ring just
   inside the mask edge are matched to those of the original skin in the same ring.
3. Blending: feathered alpha (``blend="alpha"``), or multi-band (``blend="laplacian"``): the change
   is split into Laplacian bands and each band is blended with its own mask, sharp for fine detail
   and as wide as the feathered mask for the low frequencies; every band mask stays inside the mask,
   so the pixels outside are still untouched.

The default mask is a feathered ellipse over the lower face (below the nose, cheek to cheek, past
the chin) placed from the track's mouth landmarks in crop space, multiplied by a feathered
footprint of the crop so that no box edge can show.
"""

from __future__ import annotations

import logging
import math
from typing import Callable

import torch
import torch.nn.functional as F
from kornia.geometry.transform import invert_affine_transform, warp_affine

from .checks import check_images, check_shape
from .errors import InputError, LengthMismatchError
from .types import FaceTrack

log = logging.getLogger("comfyui_lipsync")

WHO = "Composite"
BLENDS = ("alpha", "laplacian")
DETAIL_TOLERANCE = 0.06
"""Change (0..1) at which the frame's own fine detail is mostly dropped under a generated crop."""

ProgressFn = Callable[[int, int], None] | None


# --- geometry helpers ------------------------------------------------------------------------

def _affine64(track: FaceTrack) -> torch.Tensor:
    """(B, 3, 3) float64 CPU homogeneous frame->crop matrices."""
    m = track.transform.detach().to("cpu", torch.float64)
    out = torch.zeros(m.shape[0], 3, 3, dtype=torch.float64)
    out[:, :2] = m
    out[:, 2, 2] = 1.0
    return out


def _apply(mat: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
    """Apply (B, 3, 3) affine matrices to (B, K, 2) points."""
    return pts @ mat[:, :2, :2].transpose(1, 2) + mat[:, None, :2, 2]


def _resize_matrix(size: int, crop_size: int) -> torch.Tensor:
    """Crop of ``crop_size`` -> crop of ``size`` covering the same area (pixel areas aligned)."""
    k = size / crop_size
    return torch.tensor([[k, 0.0, 0.5 * (k - 1)], [0.0, k, 0.5 * (k - 1)], [0.0, 0.0, 1.0]], dtype=torch.float64)


def _square(size: int) -> torch.Tensor:
    """(4, 2) corners of a ``size`` x ``size`` crop (outer pixel edges)."""
    lo, hi = -0.5, size - 0.5
    return torch.tensor([[lo, lo], [hi, lo], [hi, hi], [lo, hi]], dtype=torch.float64)


def _boxes(corners: torch.Tensor, margin: float, h: int, w: int) -> torch.Tensor:
    """(B, K, 2) frame points -> (B, 4) integer boxes x0, y0, x1, y1 (exclusive), grown by
    ``margin`` pixels and clipped to the frame (may be empty: x1 <= x0)."""
    lo = torch.floor(corners.amin(1) - margin)
    hi = torch.ceil(corners.amax(1) + margin) + 1
    x0 = lo[:, 0].clamp(0, w)
    y0 = lo[:, 1].clamp(0, h)
    x1 = hi[:, 0].clamp(0, w)
    y1 = hi[:, 1].clamp(0, h)
    return torch.stack([x0, y0, x1, y1], 1).long()


def _layout(boxes: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """One ROI size for the whole clip (so results do not depend on the chunking) and per-frame
    offsets placing it over each box inside the frame. Returns (valid (B,), offsets (B, 2) x, y,
    roi_h, roi_w)."""
    valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    if not bool(valid.any()):
        return valid, torch.zeros(boxes.shape[0], 2, dtype=torch.long), 0, 0
    vb = boxes[valid]
    rw = int((vb[:, 2] - vb[:, 0]).max().clamp(max=w))
    rh = int((vb[:, 3] - vb[:, 1]).max().clamp(max=h))
    ox = boxes[:, 0].clamp(0, w - rw)
    oy = boxes[:, 1].clamp(0, h - rh)
    return valid, torch.stack([ox, oy], 1), rh, rw


def _local(mat: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Frame->crop matrices (B, 3, 3) re-based so ROI pixel (0, 0) is frame pixel ``offsets``."""
    out = mat.clone()
    out[:, :2, 2] += (mat[:, :2, :2] @ offsets.to(torch.float64)[:, :, None])[:, :, 0]
    return out


def _gather(frames: torch.Tensor, idx: range, offsets: torch.Tensor, rh: int, rw: int,
            device: torch.device) -> torch.Tensor:
    """Cut one (rh, rw) window per frame -> (b, C, rh, rw) float32 on ``device``."""
    buf = torch.empty((len(idx), rh, rw, frames.shape[-1]), dtype=frames.dtype, device=frames.device)
    for j, i in enumerate(idx):
        x, y = int(offsets[i, 0]), int(offsets[i, 1])
        buf[j] = frames[i, y:y + rh, x:x + rw]
    return buf.to(device=device, dtype=torch.float32, non_blocking=True).permute(0, 3, 1, 2)


def _smoothstep(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _crop_coords(local: torch.Tensor, rh: int, rw: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop-space coordinates (u, v), each (b, rh, rw), of every ROI pixel."""
    m = local.to(device=device, dtype=torch.float32)
    ys = torch.arange(rh, device=device, dtype=torch.float32)[None, :, None]
    xs = torch.arange(rw, device=device, dtype=torch.float32)[None, None, :]
    u = m[:, 0, 0, None, None] * xs + m[:, 0, 1, None, None] * ys + m[:, 0, 2, None, None]
    v = m[:, 1, 0, None, None] * xs + m[:, 1, 1, None, None] * ys + m[:, 1, 2, None, None]
    return u, v


# --- the lower-face mask in crop space -------------------------------------------------------

def lower_face_ellipses(track: FaceTrack) -> torch.Tensor:
    """(B, 4) float64 ellipse cx, cy, ax, ay in crop pixels covering the lower face.

    Placed from the mouth landmarks mapped into the crop: horizontally centred on the mouth,
    semi-axis 1.1 x mouth width (cheek to cheek); vertically from the nose point down to 15 % of
    the nose-chin distance below the chin (room for an opening jaw). Frames whose landmarks are
    unusable (not finite, mouth narrower than 2 px, nose not above chin, centre outside the crop)
    get a fixed ellipse for a mouth-centred crop: centre (0.5, 0.58) S, semi-axes (0.42, 0.36) S.
    """
    s = track.crop_size
    pts = _apply(_affine64(track), track.mouth.detach().to("cpu", torch.float64))
    left, right, nose, chin = pts[:, 0], pts[:, 1], pts[:, 6], pts[:, 7]
    width = (right - left).norm(dim=1)
    top = nose[:, 1]
    bottom = chin[:, 1] + 0.15 * (chin[:, 1] - nose[:, 1])
    cx = 0.5 * (left[:, 0] + right[:, 0])
    cy = 0.5 * (top + bottom)
    ell = torch.stack([cx, cy, 1.1 * width, 0.5 * (bottom - top)], 1)
    ok = (torch.isfinite(pts).all(2).all(1) & (width >= 2) & (ell[:, 3] >= 1)
          & (cx > 0) & (cx < s - 1) & (cy > 0) & (cy < s - 1))
    fallback = torch.tensor([0.5 * (s - 1), 0.58 * s, 0.42 * s, 0.36 * s], dtype=torch.float64)
    if not bool(ok.all()):
        log.info("Composite: %d of %d frames have unusable mouth landmarks; default lower-face "
                 "ellipse used there", int((~ok).sum()), len(ok))
    return torch.where(ok[:, None], ell, fallback)


def _ellipse_weight(u: torch.Tensor, v: torch.Tensor, ell: torch.Tensor, width: float) -> torch.Tensor:
    """Feathered ellipse: 1 deeper than ``width`` crop px inside the edge, 0 outside."""
    e = ell.to(device=u.device, dtype=torch.float32)
    cx, cy, ax, ay = (e[:, k, None, None] for k in range(4))
    du, dv = (u - cx) / ax, (v - cy) / ay
    f = du * du + dv * dv - 1.0
    grad = 2.0 * torch.sqrt((du / ax) ** 2 + (dv / ay) ** 2).clamp_min(1e-6)
    dist = -f / grad  # first-order distance to the edge, positive inside
    if width <= 0:
        return (dist > 0).float()
    return _smoothstep(dist / width)


def _footprint(u: torch.Tensor, v: torch.Tensor, size: int, width: float) -> torch.Tensor:
    """1 inside the crop deeper than ``width`` px from its edge, easing to 0 at the edge."""
    edge = torch.minimum(torch.minimum(u + 0.5, v + 0.5), torch.minimum(size - 0.5 - u, size - 0.5 - v))
    return _smoothstep(edge / max(width, 1.0))


def crop_mask(track: FaceTrack, feather: float = 0.1, size: int | None = None) -> torch.Tensor:
    """The default blend mask in crop space: (B, S, S) float32 in [0, 1] on the track's device.

    Shows a generator which part of its crop :func:`composite` will use (``feather`` as there).
    """
    s = size or track.crop_size
    dev = track.transform.device
    b = track.num_frames
    ell = lower_face_ellipses(track)
    if s != track.crop_size:
        k = s / track.crop_size
        ell = torch.stack([ell[:, 0] * k + 0.5 * (k - 1), ell[:, 1] * k + 0.5 * (k - 1), ell[:, 2] * k, ell[:, 3] * k], 1)
    v, u = torch.meshgrid(torch.arange(s, device=dev, dtype=torch.float32),
                          torch.arange(s, device=dev, dtype=torch.float32), indexing="ij")
    u, v = u.expand(b, s, s), v.expand(b, s, s)
    width = feather * s
    return _ellipse_weight(u, v, ell, width) * _footprint(u, v, s, width)


# --- crops -----------------------------------------------------------------------------------

def _check_track(frames: torch.Tensor, track: FaceTrack, who: str) -> None:
    if not isinstance(track, FaceTrack):
        raise InputError(f"{who}: face_track must be a FaceTrack (from MaskLowerFace), got {type(track).__name__}.")
    b, h, w = frames.shape[:3]
    if track.num_frames != b:
        raise LengthMismatchError(
            f"{who}: the images have {b} frames but the face track has {track.num_frames}. "
            "Track the same frames you composite onto (same clip, same frame range)."
        )
    if tuple(track.frame_size) != (h, w):
        raise InputError(
            f"{who}: the face track was made on {track.frame_size[1]}x{track.frame_size[0]} frames but "
            f"the images are {w}x{h}. Run MaskLowerFace on these frames (no resize in between)."
        )


def crop_faces(frames: torch.Tensor, track: FaceTrack, size: int | None = None, *,
               device: torch.device | str | None = None, chunk: int = 32,
               on_progress: ProgressFn = None) -> torch.Tensor:
    """Aligned, mouth-centred face crops.

    frames: (B, H, W, C) float in 0..1 (C = 3 or 4), any device.
    track:  FaceTrack of the same B frames and frame size.
    size:   crop side in pixels; default ``track.crop_size`` (another size covers the same area).
    device: where the crops are made and returned (default: the frames' device); frames are moved
            there one chunk (and only the face region) at a time.
    Returns (B, S, S, C) in the frames' dtype. Pixels beyond the frame edge repeat the edge.
    """
    who = "crop_faces"
    check_images(frames, who, "frames")
    _check_track(frames, track, who)
    s = int(size or track.crop_size)
    if s < 1:
        raise InputError(f"{who}: size must be at least 1, got {s}.")
    dev = torch.device(device) if device is not None else frames.device
    b, h, w, c = frames.shape
    mat = _affine64(track)
    if s != track.crop_size:
        mat = _resize_matrix(s, track.crop_size) @ mat
    inv = torch.linalg.inv(mat)
    corners = _apply(inv, _square(s).expand(b, 4, 2))
    valid, offsets, rh, rw = _layout(_boxes(corners, 2.0, h, w), h, w)
    out = torch.zeros((b, s, s, c), dtype=frames.dtype, device=dev)
    if rh == 0:
        log.warning("%s: every crop lies outside the frame; crops are black", who)
    chunk = max(int(chunk), 1)
    for start in range(0, b, chunk):
        idx = range(start, min(start + chunk, b))
        if rh:
            roi = _gather(frames, idx, offsets, rh, rw, dev)
            local = _local(mat[idx.start:idx.stop], offsets[idx.start:idx.stop])
            crop = warp_affine(roi, local[:, :2].to(dev, torch.float32), (s, s),
                               padding_mode="border", align_corners=True)
            keep = valid[idx.start:idx.stop].to(dev)[:, None, None, None]
            out[idx.start:idx.stop] = torch.where(keep, crop.permute(0, 2, 3, 1), 0.0).to(frames.dtype)
        if on_progress is not None:
            on_progress(idx.stop, b)
    return out
