"""Aligned face crops out of frames, and generated crops pasted back in.

Conventions
-----------
``track.transform`` (B, 2, 3) maps frame pixels to crop pixels (kornia ``warp_affine`` layout,
pixel centres at integer coordinates, ``align_corners=True``). Frames are ComfyUI IMAGE tensors
(B, H, W, C) with C = 3 or 4; an alpha channel is never changed.

Paste-back (:func:`composite`) touches one region per frame: the part of the frame under the
blend mask. Everything else is a plain copy of the input, so pixels where the mask is 0 are
bit-identical to it. The work is done on a window of the crop around the mask, and only the
final blend at frame resolution:

1. The original pixels are cropped again exactly as :func:`crop_faces` does (``recrop``), and the
   *difference* ``crop - recrop`` is what gets pasted. Untouched crops give a difference of zero,
   hence the input back; the frame's own fine detail (lost in the round trip through a crop that
   may be smaller than the face) is kept wherever the generator did not change the picture, and
   replaced where it did (``keep_detail``), so no ghost of the old mouth shows through a new one.
2. Colour matching: per frame and channel, gain and offset that give the generated crop the mean
   and spread of the original skin in a ring just inside the mask edge.
3. Blending: feathered alpha (``blend="alpha"``), or multi-band (``blend="laplacian"``): the change
   is split into Laplacian bands, each blended with its own mask, sharp for fine detail and as
   wide as the feathered mask for the low frequencies; every band mask stays inside the mask, so
   pixels outside it are still untouched.
4. One bilinear back-warp (inverse transform) of the weighted change and the blend weight, then
   ``out = rgb * (1 - weight) + weighted change`` on the frame region.

The default mask is a feathered ellipse over the lower face (below the nose, cheek to cheek, past
the chin) placed from the track's mouth landmarks in crop space, limited by a feathered
footprint of the crop (their minimum) so that no box edge can show.
"""

from __future__ import annotations

import logging
import math
from typing import Callable

import torch
import torch.nn.functional as F
from kornia.geometry.transform import warp_affine

from .checks import check_images
from .errors import InputError, LengthMismatchError
from .types import FaceTrack

log = logging.getLogger("comfyui_lipsync")

WHO = "Composite"
BLENDS = ("alpha", "laplacian")
CHUNK_PIXELS = 1_500_000
"""Frame-region pixels worked on per chunk when ``chunk`` is not given (about 100 MB of
temporaries; about 19 frames of a 1080p face with a 256-px crop)."""
DETAIL_TOLERANCE = 0.06
"""Change (0..1) at which the frame's own fine detail is mostly dropped under a generated crop."""

ProgressFn = Callable[[int, int], None] | None


# --- geometry helpers ------------------------------------------------------------------------

def _affine64(track: FaceTrack) -> torch.Tensor:
    """(B, 3, 3) float64 CPU homogeneous frame->crop matrices."""
    m = track.transform.detach().cpu().double()
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


def _theta(mat: torch.Tensor, src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> torch.Tensor:
    """(b, 3, 3) float64 src->dst pixel matrices -> (b, 2, 3) ``affine_grid`` thetas (dst
    normalised -> src normalised, ``align_corners=True``), the normalisation kornia uses."""
    def norm(hw):
        h, w = hw
        n = torch.eye(3, dtype=torch.float64)
        n[0, 0], n[0, 2] = 2.0 / max(w - 1, 1), -1.0
        n[1, 1], n[1, 2] = 2.0 / max(h - 1, 1), -1.0
        return n
    theta = norm(src_hw) @ torch.linalg.inv(mat) @ torch.linalg.inv(norm(dst_hw))
    return theta[:, :2]


def _warp(src: torch.Tensor, mat: torch.Tensor, dsize: tuple[int, int], padding: str) -> torch.Tensor:
    """Bilinear warp of (b, c, h, w) ``src`` by (b, 3, 3) float64 src->dst pixel matrices
    (kornia ``warp_affine`` semantics, ``align_corners=True``), grid built in one pass."""
    theta = _theta(mat, tuple(src.shape[-2:]), dsize).to(src.dtype).to(src.device)  # cast on the CPU (MPS: no float64)
    b, (h, w) = src.shape[0], dsize
    xs = torch.linspace(-1.0, 1.0, w, device=src.device, dtype=src.dtype) if w > 1 else src.new_zeros(1)
    ys = torch.linspace(-1.0, 1.0, h, device=src.device, dtype=src.dtype) if h > 1 else src.new_zeros(1)
    grid = torch.empty((b, h, w, 2), device=src.device, dtype=src.dtype)
    for k in range(2):  # one pass per coordinate: (b, 1, w) + (b, h, 1)
        row = theta[:, k, 0, None, None] * xs[None, None, :]
        col = theta[:, k, 1, None, None] * ys[None, :, None] + theta[:, k, 2, None, None]
        torch.add(row, col, out=grid[..., k])
    return F.grid_sample(src, grid, mode="bilinear", padding_mode=padding, align_corners=True)


def _gather(frames: torch.Tensor, idx, offsets: torch.Tensor, rh: int, rw: int,
            device: torch.device, channels: int | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Cut one (rh, rw) window per frame of (B, H, W, C) ``frames`` (or of its only frame when
    B = 1) at ``offsets[i]`` (x, y) -> (b, channels, rh, rw) ``dtype`` on ``device``."""
    c = frames.shape[-1] if channels is None else channels
    buf = torch.empty((len(idx), c, rh, rw), dtype=frames.dtype, device=frames.device)
    for j, i in enumerate(idx):
        x, y = int(offsets[i, 0]), int(offsets[i, 1])
        buf[j] = frames[i if frames.shape[0] > 1 else 0, y:y + rh, x:x + rw, :c].permute(2, 0, 1)
    return buf.to(device=device, dtype=dtype, non_blocking=True)


def _smoothstep(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _window_coords(offsets: torch.Tensor, ch: int, cw: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop coordinates (u, v), each (b, ch, cw), of the pixels of crop windows at ``offsets``."""
    off = offsets.to(device=device, dtype=torch.float32)
    u = torch.arange(cw, device=device, dtype=torch.float32)[None, None, :] + off[:, 0, None, None]
    v = torch.arange(ch, device=device, dtype=torch.float32)[None, :, None] + off[:, 1, None, None]
    return u.expand(-1, ch, cw), v.expand(-1, ch, cw)


# --- the lower-face mask in crop space -------------------------------------------------------

def lower_face_ellipses(track: FaceTrack) -> torch.Tensor:
    """(B, 4) float64 ellipse cx, cy, ax, ay in crop pixels covering the lower face.

    Placed from the mouth landmarks mapped into the crop: horizontally centred on the mouth,
    semi-axis 1.3 x mouth width (cheek to cheek), at most 0.38 x the crop side (the crop is one
    face width wide, so a wide smile cannot push the blend past the cheeks); vertically from the nose point down to 15 % of
    the nose-chin distance below the chin (room for an opening jaw). Frames whose landmarks are
    unusable (not finite, mouth narrower than 2 px, nose not above chin, centre outside the crop)
    get a fixed ellipse for a mouth-centred crop: centre (0.5, 0.58) S, semi-axes (0.42, 0.36) S.
    """
    s = track.crop_size
    pts = _apply(_affine64(track), track.mouth.detach().cpu().double())
    left, right, nose, chin = pts[:, 0], pts[:, 1], pts[:, 6], pts[:, 7]
    width = (right - left).norm(dim=1)
    top = nose[:, 1]
    bottom = chin[:, 1] + 0.15 * (chin[:, 1] - nose[:, 1])
    cx = 0.5 * (left[:, 0] + right[:, 0])
    cy = 0.5 * (top + bottom)
    ell = torch.stack([cx, cy, (1.3 * width).clamp(max=0.38 * s), 0.5 * (bottom - top)], 1)
    ok = (torch.isfinite(pts).all(2).all(1) & (width >= 2) & (ell[:, 3] >= 1)
          & (cx > 0) & (cx < s - 1) & (cy > 0) & (cy < s - 1))
    fallback = torch.tensor([0.5 * (s - 1), 0.58 * s, 0.42 * s, 0.36 * s], dtype=torch.float64)
    if not bool(ok.all()):
        log.info("Composite: %d of %d frames have unusable mouth landmarks; default lower-face "
                 "ellipse used there", int((~ok).sum()), len(ok))
    return torch.where(ok[:, None], ell, fallback)


def _ellipse_weight(u: torch.Tensor, v: torch.Tensor, ell: torch.Tensor, width: float) -> torch.Tensor:
    """Feathered ellipse: 1 deeper than ``width`` crop px inside the edge, 0 outside.

    The distance to the edge is (1 - r) / |grad r| with r the normalised radius: exact on both
    axes, close elsewhere.
    """
    e = ell.float().to(u.device)
    cx, cy, ax, ay = (e[:, k, None, None] for k in range(4))
    x, y = u - cx, v - cy
    r = torch.sqrt((x / ax) ** 2 + (y / ay) ** 2)
    slope = torch.sqrt((x / (ax * ax)) ** 2 + (y / (ay * ay)) ** 2)  # = r |grad r|
    dist = torch.where(r > 1e-6, (1.0 - r) * r / slope.clamp_min(1e-12), torch.minimum(ax, ay))
    if width <= 0:
        return (dist > 0).float()
    return _smoothstep(dist / width)


def _footprint(u: torch.Tensor, v: torch.Tensor, size: int, width: float) -> torch.Tensor:
    """1 inside the crop deeper than ``width`` px from its edge, easing to 0 on its outer pixels
    (so nothing beyond the crop can be touched)."""
    edge = torch.minimum(torch.minimum(u, v), torch.minimum(size - 1 - u, size - 1 - v))
    return _smoothstep(edge / max(width, 1.0))


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
    m = track.transform.detach().cpu().double()
    det = torch.linalg.det(m[:, :, :2])
    bad = (~torch.isfinite(m).all(2).all(1)) | (det.abs() < 1e-12)
    if bool(bad.any()):
        first = torch.nonzero(bad)[:, 0].tolist()
        raise InputError(
            f"{who}: the face track's transform is not invertible (or not finite) in {len(first)} of "
            f"{b} frames, first frame {first[0]}. Re-run MaskLowerFace to get a valid track."
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
            crop = warp_affine(roi, local[:, :2].float().to(dev), (s, s),
                               padding_mode="border", align_corners=True)
            keep = valid[idx.start:idx.stop].to(dev)[:, None, None, None]
            out[idx.start:idx.stop] = torch.where(keep, crop.permute(0, 2, 3, 1), 0.0).to(frames.dtype)
        if on_progress is not None:
            on_progress(idx.stop, b)
    return out


# --- paste-back ------------------------------------------------------------------------------

_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def _blur5(x: torch.Tensor) -> torch.Tensor:
    """Separable 5-tap binomial blur [1 4 6 4 1] / 16 with reflected edges. x: (b, c, h, w).

    Written as shifted sums: PyTorch's grouped (depthwise) CPU convolution is far slower here.
    """
    for dim in (-1, -2):
        n = x.shape[dim]
        mode = "reflect" if n > 2 else "replicate"
        pad = (2, 2, 0, 0) if dim == -1 else (0, 0, 2, 2)
        p = F.pad(x, pad, mode=mode)
        t = lambda k: p.narrow(dim, k, n)  # noqa: E731
        x = (t(0) + t(4) + 4.0 * (t(1) + t(3)) + 6.0 * t(2)) * (1.0 / 16.0)
    return x


def _up(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def band_masks(mask: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """Blend masks for ``levels`` Laplacian bands (finest first) and the low-pass rest.

    The low-pass rest uses ``mask`` itself (the widest transition allowed); band k uses ``mask``
    sharpened around 0.5 with slope min(2 ** (levels - k), 8), so fine detail switches over a
    narrow strip. Each is 0 wherever ``mask`` is 0.
    """
    out = []
    for k in range(levels):
        slope = float(min(2 ** (levels - k), 8))
        out.append(((mask - 0.5) * slope + 0.5).clamp(0.0, 1.0) * (mask > 0))
    out.append(mask)
    return out


def _multiband(delta: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Blend the change ``delta`` (b, c, h, w) band by band with :func:`band_masks` of ``mask``
    (b, 1, h, w). With a 0/1 mask, or one level, this equals ``mask * delta``."""
    h, w = delta.shape[-2:]
    levels = max(1, min(4, int(math.log2(max(min(h, w), 1) / 8)))) if min(h, w) >= 16 else 1
    gauss = [delta]
    for _ in range(levels):
        gauss.append(_blur5(gauss[-1])[..., ::2, ::2])
    sizes = [g.shape[-2:] for g in gauss]
    bands = [gauss[k] - _up(gauss[k + 1], sizes[k]) for k in range(levels)] + [gauss[-1]]
    out = torch.zeros_like(delta)
    for k, (band, weight) in enumerate(zip(bands, band_masks(mask, levels))):
        for j in range(k - 1, -1, -1):
            band = _up(band, sizes[j])
        out += weight * band
    return out


def _color_params(gen: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor,
                  max_gain: float = 2.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per frame and channel gain a and offset b so that ``a * gen + b`` has the mean and spread
    of ``ref`` in the ring just inside the mask edge (weights 4 m (1 - m); the whole mask when it
    has no soft edge). gen, ref: (b, c, h, w); mask (b, 1, h, w). Returns (b, c, 1, 1) each."""
    ring = 4.0 * mask * (1.0 - mask)
    hard = ring.sum((2, 3), keepdim=True) < 16.0
    ring = torch.where(hard, mask, ring).flatten(2).transpose(1, 2)  # (b, N, 1)
    g, r = gen.flatten(2), ref.flatten(2)  # (b, c, N)
    total = ring.sum(1, keepdim=True)  # (b, 1, 1)
    empty = total < 1.0
    total = total.clamp_min(1e-6)
    mg, mr = (g @ ring) / total, (r @ ring) / total  # weighted means, (b, c, 1)
    vg = ((g * g) @ ring / total - mg * mg).clamp_min(0.0)
    vr = ((r * r) @ ring / total - mr * mr).clamp_min(0.0)
    flat = vg < 1e-8
    a = torch.where(flat | empty, torch.ones_like(vg), torch.sqrt(vr / vg.clamp_min(1e-8)))
    a = a.clamp(1.0 / max_gain, max_gain)
    b = torch.where(empty, torch.zeros_like(mr), mr - a * mg)
    a, b = a[..., None], b[..., None]  # (b, c, 1, 1)
    return a, b


def _check_composite(frames, crops, track, mask, feather, blend) -> None:
    check_images(frames, WHO, "images")
    check_images(crops, WHO, "crops")
    _check_track(frames, track, WHO)
    b = frames.shape[0]
    if crops.shape[0] != b:
        raise LengthMismatchError(
            f"{WHO}: the images have {b} frames but the crops have {crops.shape[0]}. "
            "Feed the crops LipSyncInference made from these same frames."
        )
    s = track.crop_size
    if tuple(crops.shape[1:3]) != (s, s):
        raise InputError(
            f"{WHO}: the crops are {crops.shape[2]}x{crops.shape[1]} but the face track's crop size is "
            f"{s}x{s}. Use crops made with this face track (same crop size), without resizing."
        )
    if mask is not None:
        if not isinstance(mask, torch.Tensor) or mask.ndim not in (2, 3):
            got = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise InputError(f"{WHO}: mask must be a MASK (B, H, W), got {got}.")
        m = mask if mask.ndim == 3 else mask[None]
        if tuple(m.shape[1:]) != tuple(frames.shape[1:3]) or m.shape[0] not in (1, b):
            raise InputError(
                f"{WHO}: the mask is {tuple(m.shape)} (frames, height, width) but the images are "
                f"{tuple(frames.shape[:3])}. Give one mask per frame (or one for all) at the images' size."
            )
    if not (isinstance(feather, (int, float)) and 0.0 <= feather <= 1.0):
        raise InputError(f"{WHO}: feather must be between 0 and 1 (fraction of the crop size), got {feather}.")
    if blend not in BLENDS:
        raise InputError(f"{WHO}: blend must be one of {', '.join(BLENDS)}, got {blend!r}.")


def _mask_boxes(mask: torch.Tensor, b: int, grow: float, chunk: int) -> torch.Tensor:
    """(B, 4) bounding boxes of mask > 0 per frame (x1 <= x0 when empty), grown by ``grow``."""
    h, w = mask.shape[-2:]
    rows_all, cols_all = [], []
    for start in range(0, mask.shape[0], chunk):
        nz = mask[start:start + chunk] > 0
        rows_all.append(nz.any(2).cpu())
        cols_all.append(nz.any(1).cpu())
    rows, cols = torch.cat(rows_all), torch.cat(cols_all)
    ar_h = torch.arange(h)
    ar_w = torch.arange(w)
    y0 = torch.where(rows, ar_h, h).amin(1) - grow
    y1 = torch.where(rows, ar_h, -1).amax(1) + 1 + grow
    x0 = torch.where(cols, ar_w, w).amin(1) - grow
    x1 = torch.where(cols, ar_w, -1).amax(1) + 1 + grow
    boxes = torch.stack([x0, y0, x1, y1], 1).floor().long()
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
    empty = ~rows.any(1)
    boxes[empty] = 0
    if boxes.shape[0] == 1 and b > 1:
        boxes = boxes.expand(b, 4)
    return boxes


def _gauss_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r = max(1, int(math.ceil(3.0 * sigma)))
    t = torch.arange(-r, r + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    mode = "reflect" if min(x.shape[-2:]) > r else "replicate"
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode=mode), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, r, r), mode=mode), k.view(1, 1, -1, 1))


def composite(frames: torch.Tensor, crops: torch.Tensor, track: FaceTrack,
              mask: torch.Tensor | None = None, feather: float = 0.08, color_match: bool = True,
              blend: str = "alpha", chunk: int | None = None, device: torch.device | str | None = None,
              keep_detail: bool = True, on_progress: ProgressFn = None) -> torch.Tensor:
    """Paste generated face crops back into their frames, inside the lower-face mask only.

    frames: (B, H, W, C) float in 0..1, C = 3 or 4 (alpha is copied unchanged), any device.
    crops:  (B, S, S, 3 or 4) generated crops, S = ``track.crop_size`` (a 4th channel is ignored).
    track:  FaceTrack of these frames; ``track.transform`` maps frame to crop pixels.
    mask:   optional MASK (B, H, W) or (1, H, W) in 0..1 at the frames' size, replacing the default
            lower-face mask; it is softened by ``feather`` and limited to the crop's footprint.
            With ``feather=0`` it is applied exactly, pixel for pixel (and, having no soft edge
            to spread bands over, blended as alpha in both modes).
    feather: soft-edge width as a fraction of the crop size (0 = hard edge; 0.08 = 20 px of a
            256-px crop, i.e. 8 % of the face region whatever its size in the frame).
    color_match: match the crop's colour to the surrounding skin (mean and spread per channel in
            a ring just inside the mask edge).
    blend:  "alpha" (feathered alpha) or "laplacian" (multi-band, see :func:`band_masks`).
    chunk:  frames per chunk (default: as many as keep :data:`CHUNK_PIXELS` frame-region pixels,
            1 to 256); only the mouth region of a chunk is moved to ``device`` (default: the
            crops' device) and worked on. Bigger chunks mean fewer, larger tensor operations.
    keep_detail: keep the frame's own fine detail where the crop did not change the picture.
    on_progress: ``on_progress(done, total)`` after each chunk.

    Returns (B, H, W, C) on the frames' device and dtype; pixels where the blend mask is 0 are
    bit-identical to ``frames``. Extra memory: the output plus one chunk's mouth regions.

    The work is done on a window of the crop around the mask (colour statistics, the change,
    the mask) and on the matching region of the frame (the final blend), so a 1080p frame costs
    little more than its copy.
    """
    _check_composite(frames, crops, track, mask, feather, blend)
    dev = torch.device(device) if device is not None else crops.device
    b, h, w, c = frames.shape
    s = track.crop_size
    scan_chunk = max(int(chunk), 1) if chunk else 16
    mat = _affine64(track)
    inv = torch.linalg.inv(mat)
    scale = torch.sqrt(torch.linalg.det(mat[:, :2, :2]).abs()).clamp_min(1e-6)  # crop px per frame px
    margin = math.ceil(1.5 / float(scale.min())) + 2  # frame px around the region for the re-crop
    width = float(feather) * s  # soft edge in crop pixels
    sigma = width / 3.0 if mask is not None else 0.0  # softening of a given mask, crop pixels

    # crop windows: where the blend mask can be non-zero, in crop pixels, plus a zero border
    if mask is None:
        ell = lower_face_ellipses(track)
        lo, hi = ell[:, :2] - ell[:, 2:], ell[:, :2] + ell[:, 2:]
        corners = torch.stack([lo, hi], 1)
        valid_mask = torch.ones(b, dtype=torch.bool)
    else:
        mask = mask if mask.ndim == 3 else mask[None]
        ell = None
        fb = _mask_boxes(mask, b, 0.0, scan_chunk).to(torch.float64)
        valid_mask = (fb[:, 2] > fb[:, 0]) & (fb[:, 3] > fb[:, 1])
        x0, y0, x1, y1 = fb[:, 0] - 0.5, fb[:, 1] - 0.5, fb[:, 2] - 0.5, fb[:, 3] - 0.5
        quad = torch.stack([torch.stack([x0, y0], 1), torch.stack([x1, y0], 1),
                            torch.stack([x1, y1], 1), torch.stack([x0, y1], 1)], 1)
        corners = _apply(mat, quad)
    win = _boxes(corners, math.ceil(3.0 * sigma) + 2, s, s)
    win[~valid_mask] = 0
    valid_w, woff, ch, cw = _layout(win, s, s)
    # frame regions: the crop windows mapped into the frame, plus the re-crop margin
    wq = woff.to(torch.float64) - 0.5
    quad = torch.stack([wq, wq + torch.tensor([cw, 0.0]), wq + torch.tensor([cw, ch], dtype=torch.float64),
                        wq + torch.tensor([0.0, ch])], 1)
    valid_f, foff, rh, rw = _layout(_boxes(_apply(inv, quad), margin, h, w), h, w)
    valid = valid_w & valid_f
    # ROI pixel -> crop-window pixel, per frame
    to_win = mat.clone()
    to_win[:, :2, 2] += (mat[:, :2, :2] @ foff.to(torch.float64)[:, :, None])[:, :, 0] - woff.to(torch.float64)
    chunk = max(int(chunk), 1) if chunk else max(1, min(256, CHUNK_PIXELS // max(rh * rw, 1)))
    log.debug("%s: crop window %dx%d, frame region %dx%d, %d of %d frames, chunks of %d", WHO, cw, ch,
              rw, rh, int(valid.sum()), b, chunk)

    work = torch.float64 if frames.dtype == torch.float64 else torch.float32  # holds frames exactly
    out = torch.empty_like(frames)
    for start in range(0, b, chunk):
        stop = min(start + chunk, b)
        out[start:stop].copy_(frames[start:stop])
        idx = [i for i in range(start, stop) if bool(valid[i])]
        if idx and rh and rw and ch and cw:
            rgb = _gather(frames, idx, foff, rh, rw, dev, channels=3, dtype=work)
            fwd = to_win[idx]
            recrop = _warp(rgb.float(), fwd, (ch, cw), "border")
            gen = _gather(crops, idx, woff, ch, cw, dev, channels=3)
            u, v = _window_coords(woff[idx], ch, cw, dev)
            weight = _footprint(u, v, s, width)[:, None]
            exact = None  # a given hard mask is applied at frame resolution, exactly
            if ell is None:
                exact = _gather(mask[..., None], idx, foff, rh, rw, dev, dtype=work).clamp(0.0, 1.0)
                m = _warp(exact.float(), fwd, (ch, cw), "zeros")
                if sigma > 0:
                    weight = weight * _gauss_blur(m, sigma).clamp(0.0, 1.0)
                    exact = None
                    stats_weight = weight
                else:
                    stats_weight = weight * m
            else:
                weight = torch.minimum(weight, _ellipse_weight(u, v, ell[idx], width)[:, None])
                stats_weight = weight
            if color_match:
                gain, offset = _color_params(gen, recrop, stats_weight)
                diff = torch.addcmul(offset, gain, gen) - recrop
            else:
                diff = gen - recrop
            if keep_detail:  # 1 where the crop changed the picture: there the frame's detail goes
                renew = 1.0 - torch.exp(-(diff.abs().amax(1, keepdim=True) / DETAIL_TOLERANCE) ** 2)
            else:
                renew = torch.ones_like(weight)
            # result = rgb + weight * (diff + renew * (recrop - rgb)); in multi-band mode the diff
            # term is blended band by band. Everything is weighted here, in the crop window, and
            # one back-warp brings it to the frame: rgb * (1 - [w renew]) + [w diff + w renew recrop].
            lap = blend == "laplacian" and exact is None  # a hard mask has no soft edge to spread
            w_renew = weight * renew
            value = torch.addcmul(_multiband(diff, weight) if lap else weight * diff, w_renew, recrop)
            bwd = torch.linalg.inv(fwd)
            back = _warp(torch.cat([value, w_renew], 1), bwd, (rh, rw), "border").to(work)
            if exact is None:
                res = torch.addcmul(back[:, :3], rgb, 1.0 - back[:, 3:4]).clamp_(0.0, 1.0)
            else:
                res = torch.addcmul(rgb, exact, torch.addcmul(back[:, :3], back[:, 3:4], rgb, value=-1.0))
                res.clamp_(0.0, 1.0)
            lo, hi = torch.aminmax(rgb)
            if lo < 0 or hi > 1:  # out-of-range input: keep it exactly where nothing is blended
                wb = _warp(weight, bwd, (rh, rw), "border").to(work)
                res = torch.where(wb * (1.0 if exact is None else exact) > 0, res, rgb)
            res = res.to(device=out.device, dtype=out.dtype)
            for j, i in enumerate(idx):
                x, y = int(foff[i, 0]), int(foff[i, 1])
                out[i, y:y + rh, x:x + rw, :3] = res[j].permute(1, 2, 0)
        if on_progress is not None:
            on_progress(stop, b)
    return out
