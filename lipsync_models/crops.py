"""Aligned, mouth-centred face crops out of frames, and the frame <-> crop geometry that
paste-back (:mod:`.composite`) shares.

``track.transform`` (B, 2, 3) maps frame pixels to crop pixels (kornia ``warp_affine`` layout,
pixel centres at integer coordinates, ``align_corners=True``). Frames are ComfyUI IMAGE tensors
(B, H, W, C) with C = 3 or 4. Only the region of the frame a crop covers is moved to the compute
device, one chunk of frames at a time.
"""

from __future__ import annotations

import logging
from typing import Callable

import torch
import torch.nn.functional as F
from einops import rearrange

from .checks import check_images
from .errors import InputError, LengthMismatchError
from .types import FaceTrack

log = logging.getLogger("comfyui_lipsync")

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
        buf[j] = rearrange(frames[i if frames.shape[0] > 1 else 0, y:y + rh, x:x + rw, :c], "h w c -> c h w")
    return buf.to(device=device, dtype=dtype, non_blocking=True)


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
               on_progress: ProgressFn = None, rows=None, unit: bool = False) -> torch.Tensor:
    """Aligned, mouth-centred face crops.

    frames: (B, H, W, C) float in 0..1 (C = 3 or 4), any device; or uint8 0..255 (decoded frames,
            no float copy of them is made): the crops are then uint8 too, rounded to nearest.
    track:  FaceTrack of the same B frames and frame size.
    size:   crop side in pixels; default ``track.crop_size`` (another size covers the same area).
    device: where the crops are made and returned (default: the frames' device); frames are moved
            there one chunk (and only the face region) at a time.
    rows:   only these frames are cut (the others stay 0), each exactly as cutting all B gives it
            (the region is laid out over all B); no frame is copied whole.
    unit:   uint8 frames give float32 crops in 0..1, exactly those of their float copy
            ``frames.float() / 255`` (which is not made).
    Returns (B, S, S, C) in the frames' dtype (float32 for ``unit``). Pixels beyond the frame edge
    repeat the edge.
    """
    who = "crop_faces"
    check_images(frames, who, "frames", uint8=True)
    u8 = frames.dtype == torch.uint8
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
    unit = bool(unit) and u8
    dtype = torch.float32 if unit else frames.dtype
    out = torch.zeros((b, s, s, c), dtype=dtype, device=dev)
    if rh == 0:
        log.warning("%s: every crop lies outside the frame; crops are black", who)
    chunk = max(int(chunk), 1)
    order = list(range(b)) if rows is None else sorted({int(r) for r in rows})
    for start in range(0, len(order), chunk):
        idx = order[start:start + chunk]
        if rh:
            roi = _gather(frames, idx, offsets, rh, rw, dev)
            if unit:
                roi = roi.div_(255.0)
            local = _local(mat[idx], offsets[idx])
            crop = _warp(roi, local, (s, s), "border")  # uint8 frames: warped as 0..255
            if u8 and not unit:
                crop = crop.clamp_(0.0, 255.0).round_()
            keep = valid[idx].to(dev)[:, None, None, None]
            out[idx] = torch.where(keep, rearrange(crop, "b c h w -> b h w c"), 0.0).to(dtype)
        if on_progress is not None:
            on_progress(start + len(idx), len(order))
    return out


def crop_batches(frames: torch.Tensor, track: FaceTrack, step: int, device=None):
    """Yield ``(a, e, crops)`` for frames ``a:e`` of ``frames`` (B, H, W, C) float 0..1 (or uint8, read
    as ``x / 255``), ``step`` at a time: their aligned crops as (e - a, 3, S, S) float32 (the streamed
    neural generators' input)."""
    n = int(frames.shape[0])
    for a in range(0, n, int(step)):
        e = min(a + int(step), n)
        crops = crop_faces(frames[a:e], track.frames(slice(a, e)), device=device, unit=True)
        yield a, e, crops[..., :3].to(torch.float32).permute(0, 3, 1, 2)
