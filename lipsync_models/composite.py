"""Generated face crops pasted back into their frames (the crops themselves: :mod:`.crops`).

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
   and spread of the original skin in a ring just inside the mask edge, read where crop and frame
   agree (hair or shadow at the edge of one of them does not count) and changing the spread by at
   most :data:`.blend.SPREAD_GAIN_MAX`. Crops of the clip's own pixels (a track marked
   :data:`..types.OWN_PIXELS`: the clip's own mouths, which their generator already brought to each
   frame's light) get the mean alone: a ring that differs in spread there is another expression (a
   smile's shadows), not another light, and matching it gave deep red lips. Their mouth region
   (:func:`mouth_ellipses`) is renewed whatever its difference, so no detail of the frame's own
   mouth stays under a chosen mouth that differs little from it.
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
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from einops import rearrange

from .blend import SPREAD_GAIN_MAX, _color_params, _gauss_blur, _multiband, band_masks  # noqa: F401 (band_masks: public here too)
from .calibration import (DETAIL_TOLERANCE, ELLIPSE_BELOW_CHIN, ELLIPSE_FALLBACK, ELLIPSE_HALF_WIDTH,
                          ELLIPSE_MAX_HALF_WIDTH)
from .checks import check_images
from .crops import (  # noqa: F401 (crop_faces: public here too, as before)
    _affine64, _apply, _boxes, _check_track, _gather, _layout, _warp, crop_faces)
from .errors import InputError, LengthMismatchError
from .types import OWN_PIXELS, FaceTrack

log = logging.getLogger("comfyui_lipsync")

WHO = "Composite"
BLENDS = ("alpha", "laplacian")
CHUNK_PIXELS = 1_500_000
"""Frame-region pixels worked on per chunk when ``chunk`` is not given (about 100 MB of
temporaries; about 19 frames of a 1080p face with a 256-px crop)."""

ProgressFn = Callable[[int, int], None] | None


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

def _mouth_in_crop(track: FaceTrack) -> tuple[torch.Tensor, torch.Tensor]:
    """The mouth landmarks (B, 8, 2) float64 in crop pixels (CPU) and the mouth width (B,) there."""
    pts = _apply(_affine64(track), track.mouth.detach().cpu().double())
    return pts, (pts[:, 1] - pts[:, 0]).norm(dim=1)


def lower_face_ellipses(track: FaceTrack) -> torch.Tensor:
    """(B, 4) float64 ellipse cx, cy, ax, ay in crop pixels covering the lower face.

    Placed from the mouth landmarks mapped into the crop: horizontally centred on the mouth,
    semi-axis :data:`~.calibration.ELLIPSE_HALF_WIDTH` x mouth width (cheek to cheek), at most
    ``ELLIPSE_MAX_HALF_WIDTH`` x the crop side S; vertically from the nose point down to
    ``ELLIPSE_BELOW_CHIN`` of the nose-chin distance below the chin (room for an opening jaw). Frames
    whose landmarks are unusable (not finite, mouth narrower than 2 px, nose not above chin, centre
    outside the crop) get the fixed ellipse ``ELLIPSE_FALLBACK`` of a mouth-centred crop.
    """
    s = track.crop_size
    pts, width = _mouth_in_crop(track)
    left, right, nose, chin = pts[:, 0], pts[:, 1], pts[:, 6], pts[:, 7]
    top = nose[:, 1]
    bottom = chin[:, 1] + ELLIPSE_BELOW_CHIN * (chin[:, 1] - nose[:, 1])
    cx = 0.5 * (left[:, 0] + right[:, 0])
    cy = 0.5 * (top + bottom)
    ell = torch.stack([cx, cy, (ELLIPSE_HALF_WIDTH * width).clamp(max=ELLIPSE_MAX_HALF_WIDTH * s), 0.5 * (bottom - top)], 1)
    ok = (torch.isfinite(pts).all(2).all(1) & (width >= 2) & (ell[:, 3] >= 1)
          & (cx > 0) & (cx < s - 1) & (cy > 0) & (cy < s - 1))
    fy, fax, fay = ELLIPSE_FALLBACK
    fallback = torch.tensor([0.5 * (s - 1), fy * s, fax * s, fay * s], dtype=torch.float64)
    if not bool(ok.all()):
        log.info("Composite: %d of %d frames have unusable mouth landmarks; default lower-face "
                 "ellipse used there", int((~ok).sum()), len(ok))
    return torch.where(ok[:, None], ell, fallback)


MOUTH_REGION = (0.75, 0.55)
"""Semi-axes of :func:`mouth_ellipses`, in mouth widths: an ellipse inside the 1.5 x 1.1 mouth-width
box that the realness measure reads as the mouth (``tests/helpers.MOUTH``, from the face geometry,
not fitted); fully renewed within half the mask's feather of its edge."""


def mouth_ellipses(track: FaceTrack) -> torch.Tensor:
    """(B, 4) float64 ellipse cx, cy, ax, ay in crop pixels over the mouth: centred between the mouth
    corners and between the outer lips, :data:`MOUTH_REGION` mouth widths; frames with unusable
    landmarks get one centred in the crop, a fifth of its side across."""
    s = track.crop_size
    pts, width = _mouth_in_crop(track)
    left, right, top, bottom = pts[:, 0], pts[:, 1], pts[:, 2], pts[:, 3]
    ell = torch.stack([0.5 * (left[:, 0] + right[:, 0]), 0.5 * (top[:, 1] + bottom[:, 1]),
                       MOUTH_REGION[0] * width, MOUTH_REGION[1] * width], 1)
    ok = torch.isfinite(ell).all(1) & (width >= 2)
    fallback = torch.tensor([0.5 * (s - 1), 0.5 * (s - 1), 0.1 * s, 0.1 * s], dtype=torch.float64)
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


# --- paste-back ------------------------------------------------------------------------------

def _check_composite(frames, crops, track, mask, feather, blend, scan: bool = True) -> None:
    if scan:  # every pixel of the frames: NaN/Inf and the value range
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
        _check_mask_finite(m)
    if not (isinstance(feather, (int, float)) and 0.0 <= feather <= 1.0):
        raise InputError(f"{WHO}: feather must be between 0 and 1 (fraction of the crop size), got {feather}.")
    if blend not in BLENDS:
        raise InputError(f"{WHO}: blend must be one of {', '.join(BLENDS)}, got {blend!r}.")


def _check_mask_finite(mask: torch.Tensor, chunk: int = 16) -> None:
    """InputError naming how many NaN/Inf values the mask holds and in which frames (a NaN would
    spread through the blend into the output). Scanned a few frames at a time: no full-size copy."""
    bad, frames = 0, []
    for start in range(0, mask.shape[0], chunk):
        per = (~torch.isfinite(mask[start:start + chunk])).flatten(1).sum(1)
        bad += int(per.sum())
        frames += [start + int(i) for i in torch.nonzero(per).flatten()]
    if bad:
        shown = ", ".join(map(str, frames[:5])) + (f" and {len(frames) - 5} more" if len(frames) > 5 else "")
        raise InputError(
            f"{WHO}: the mask holds {bad} NaN/Inf value(s) in {len(frames)} of its {mask.shape[0]} frame(s) "
            f"(frame {shown}); they would spread into the output. Fix the node that made the mask "
            f"(e.g. a division by zero), or leave 'mask' empty for the built-in lower-face mask.")


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


def composite(frames: torch.Tensor, crops: torch.Tensor, track: FaceTrack,
              mask: torch.Tensor | None = None, feather: float = 0.08, color_match: bool = True,
              blend: str = "alpha", chunk: int | None = None, device: torch.device | str | None = None,
              keep_detail: bool = True, on_progress: ProgressFn = None, *, out: torch.Tensor | None = None,
              check: bool = True) -> torch.Tensor:
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
            a ring just inside the mask edge, weighted toward the pixels where crop and frame agree;
            the spread by at most :data:`.blend.SPREAD_GAIN_MAX`; the mean alone for crops of the
            clip's own pixels, a track marked :data:`..types.OWN_PIXELS`).
    blend:  "alpha" (feathered alpha) or "laplacian" (multi-band, see :func:`band_masks`).
    chunk:  frames per chunk (default: as many as keep :data:`CHUNK_PIXELS` frame-region pixels,
            1 to 256); only the mouth region of a chunk is moved to ``device`` (default: the
            crops' device) and worked on. Bigger chunks mean fewer, larger tensor operations.
    keep_detail: keep the frame's own fine detail where the crop did not change the picture.
    on_progress: ``on_progress(done, total)`` after each chunk.
    out:    where the result goes (a tensor like ``frames``), ``frames`` itself included: each chunk is
            read before it is written (default: a new tensor).
    check:  False when the caller knows the frames are finite and in 0..1 (e.g. made from uint8):
            their pixels are then not scanned (the crops, shapes, track and options still are).

    Returns (B, H, W, C) on the frames' device and dtype; pixels where the blend mask is 0, and
    every pixel of a frame whose face the track did not find (``track.found`` False), are
    bit-identical to ``frames``. Extra memory: the output plus one chunk's mouth regions.

    The work is done on a window of the crop around the mask (colour statistics, the change,
    the mask) and on the matching region of the frame (the final blend), so a 1080p frame costs
    little more than its copy.
    """
    _check_composite(frames, crops, track, mask, feather, blend, scan=check)
    if out is not None and (out.shape != frames.shape or out.dtype != frames.dtype):
        raise InputError(f"{WHO}: out must be like the images ({tuple(frames.shape)} {frames.dtype}), got "
                         f"{tuple(out.shape)} {out.dtype}.")
    b = frames.shape[0]
    out = torch.empty_like(frames) if out is None else out
    for start, stop, plan, idx, res in _chunks(frames, crops, track, mask, feather, color_match, blend, chunk,
                                               device, keep_detail):
        if out is not frames:
            out[start:stop].copy_(frames[start:stop])
        if idx:
            res = res.to(device=out.device, dtype=out.dtype)
            for j, i in enumerate(idx):
                x, y = int(plan.foff[i, 0]), int(plan.foff[i, 1])
                out[i, y:y + plan.rh, x:x + plan.rw, :3] = rearrange(res[j], "c h w -> h w c")
        if on_progress is not None:
            on_progress(stop, b)
    return out


def composite_windows(frames: torch.Tensor, crops: torch.Tensor, track: FaceTrack,
                      mask: torch.Tensor | None = None, feather: float = 0.08, color_match: bool = True,
                      blend: str = "alpha", chunk: int | None = None, device: torch.device | str | None = None,
                      keep_detail: bool = True, *, check: bool = True) -> Iterator[tuple[int, int, int, torch.Tensor]]:
    """:func:`composite` without the copy of the frames: yields, for each frame with something to
    blend, (frame index, x, y, window): the blended region (rh, rw, 3) whose top-left pixel is at
    (x, y) of that frame, on the frames' device. Every pixel outside the windows is the frame's own,
    as in :func:`composite`'s output; inside them the values equal that output's.

    frames may also be uint8 (B, H, W, 3) (0..255, read as ``x / 255``, which is what a float copy
    ``frames.float() / 255`` would give :func:`composite`): the windows are then uint8, rounded to
    nearest, and no float copy of the frames is made (the headless runner's frames: the blend
    touches about a third of a 1080p face region). Other arguments as :func:`composite`."""
    u8 = frames.dtype == torch.uint8
    if u8 and (frames.ndim != 4 or frames.shape[-1] != 3):
        raise InputError(f"{WHO}: uint8 images must be (B, H, W, 3), got {tuple(frames.shape)}.")
    _check_composite(frames, crops, track, mask, feather, blend, scan=check and not u8)  # uint8: in range
    for _, _, plan, idx, res in _chunks(frames, crops, track, mask, feather, color_match, blend, chunk, device,
                                        keep_detail):
        if not idx:
            continue
        res = rearrange(res, "b c h w -> b h w c")
        if u8:
            res = res.mul_(255.0).add_(0.5).clamp_(0, 255).to(torch.uint8)
        res = res.to(device=frames.device, dtype=frames.dtype)
        for j, i in enumerate(idx):
            yield i, int(plan.foff[i, 0]), int(plan.foff[i, 1]), res[j]


def _chunks(frames, crops, track, mask, feather, color_match, blend, chunk, device, keep_detail):
    """The blend of :func:`composite`, chunk by chunk: (start, stop, plan, indices of the chunk's
    frames with something to blend, their blended regions (b, 3, rh, rw) or None)."""
    dev = torch.device(device) if device is not None else crops.device
    mask = mask if mask is None or mask.ndim == 3 else mask[None]
    plan = _plan(frames, track, mask, feather, chunk)
    b = frames.shape[0]
    work = torch.float64 if frames.dtype == torch.float64 else torch.float32  # holds frames exactly
    for start in range(0, b, plan.chunk):
        stop = min(start + plan.chunk, b)
        idx = [i for i in range(start, stop) if bool(plan.valid[i])]
        if idx and plan.rh and plan.rw and plan.ch and plan.cw:
            res = _blend_chunk(frames, crops, mask, plan, idx, dev, work, color_match=color_match,
                               keep_detail=keep_detail, laplacian=blend == "laplacian")
            yield start, stop, plan, idx, res
        else:
            yield start, stop, plan, [], None


@dataclass(frozen=True)
class _Plan:
    """Where :func:`composite` works, fixed once for the whole clip (so results do not depend on
    the chunking): per frame a crop window (``woff``, ``ch`` x ``cw`` crop px) where the blend mask
    can be non-zero, the frame region (``foff``, ``rh`` x ``rw`` frame px) it maps to, and
    ``to_win`` (B, 3, 3), frame-region pixel -> crop-window pixel."""

    ell: torch.Tensor | None  # (B, 4) lower-face ellipses, or None when a mask is given
    width: float  # soft edge, crop px
    sigma: float  # softening of a given mask, crop px
    size: int  # crop side
    woff: torch.Tensor
    ch: int
    cw: int
    foff: torch.Tensor
    rh: int
    rw: int
    valid: torch.Tensor  # (B,) bool: frames with something to blend
    to_win: torch.Tensor
    chunk: int
    own: torch.Tensor | None = None  # (B,) bool: frames wearing another frame's lower face (OWN_PIXELS)
    mouth: torch.Tensor | None = None  # (B, 4) their mouth ellipses, renewed whatever their change


def _mask_corners(track: FaceTrack, mask: torch.Tensor | None, scan_chunk: int):
    """Crop-space corners (B, K, 2) of where the blend mask can be non-zero, the default
    ellipses (None with a given mask) and which frames have any mask at all (B,)."""
    b = track.num_frames
    if mask is None:
        ell = lower_face_ellipses(track)
        lo, hi = ell[:, :2] - ell[:, 2:], ell[:, :2] + ell[:, 2:]
        return torch.stack([lo, hi], 1), ell, torch.ones(b, dtype=torch.bool)
    fb = _mask_boxes(mask, b, 0.0, scan_chunk).to(torch.float64)
    valid = (fb[:, 2] > fb[:, 0]) & (fb[:, 3] > fb[:, 1])
    x0, y0, x1, y1 = fb[:, 0] - 0.5, fb[:, 1] - 0.5, fb[:, 2] - 0.5, fb[:, 3] - 0.5
    quad = torch.stack([torch.stack([x0, y0], 1), torch.stack([x1, y0], 1),
                        torch.stack([x1, y1], 1), torch.stack([x0, y1], 1)], 1)
    return _apply(_affine64(track), quad), None, valid


def _plan(frames: torch.Tensor, track: FaceTrack, mask: torch.Tensor | None, feather: float,
          chunk: int | None) -> _Plan:
    """The crop windows and frame regions of :func:`composite` (see :class:`_Plan`)."""
    b, h, w, _ = frames.shape
    s = track.crop_size
    mat = _affine64(track)
    inv = torch.linalg.inv(mat)
    scale = torch.sqrt(torch.linalg.det(mat[:, :2, :2]).abs()).clamp_min(1e-6)  # crop px per frame px
    margin = math.ceil(1.5 / float(scale.min())) + 2  # frame px around the region for the re-crop
    width = float(feather) * s  # soft edge in crop pixels
    sigma = width / 3.0 if mask is not None else 0.0  # softening of a given mask, crop pixels

    # crop windows: where the blend mask can be non-zero, in crop pixels, plus a zero border
    corners, ell, valid_mask = _mask_corners(track, mask, max(int(chunk), 1) if chunk else 16)
    # frames where the face was not found pass through unchanged (the track only interpolates there)
    valid_mask = valid_mask & track.found.detach().cpu().bool()
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
    own = track.extras.get(OWN_PIXELS)
    own = own.detach().cpu().bool() if isinstance(own, torch.Tensor) and own.shape == (b,) else None
    own = own if own is not None and bool(own.any()) else None
    return _Plan(ell, width, sigma, s, woff, ch, cw, foff, rh, rw, valid, to_win, chunk,
                 own=own, mouth=mouth_ellipses(track) if own is not None else None)


def _chunk_weights(mask: torch.Tensor | None, plan: _Plan, idx: list[int], fwd: torch.Tensor,
                   dev: torch.device, work: torch.dtype):
    """Blend weight (b, 1, ch, cw) in the crop windows of frames ``idx``, the weight the colour
    statistics use, ``exact``: a given hard mask (b, 1, rh, rw) applied at frame resolution (None
    otherwise), and ``cap``: a given soft mask at frame resolution, which the blend's alpha may not
    exceed (the softened weight spreads past the mask's edge; None without a given soft mask)."""
    u, v = _window_coords(plan.woff[idx], plan.ch, plan.cw, dev)
    weight = _footprint(u, v, plan.size, plan.width)[:, None]
    if plan.ell is not None:
        weight = torch.minimum(weight, _ellipse_weight(u, v, plan.ell[idx], plan.width)[:, None])
        return weight, weight, None, None
    exact = _gather(mask[..., None], idx, plan.foff, plan.rh, plan.rw, dev, dtype=work).clamp(0.0, 1.0)
    m = _warp(exact.float(), fwd, (plan.ch, plan.cw), "zeros")
    if plan.sigma > 0:
        weight = weight * _gauss_blur(m, plan.sigma).clamp(0.0, 1.0)
        return weight, weight, None, exact
    return weight, weight * m, exact, None


def _blend_chunk(frames: torch.Tensor, crops: torch.Tensor, mask: torch.Tensor | None, plan: _Plan,
                 idx: list[int], dev: torch.device, work: torch.dtype, *, color_match: bool,
                 keep_detail: bool, laplacian: bool) -> torch.Tensor:
    """The blended frame regions (b, 3, rh, rw) of frames ``idx`` (steps 1-4 of the module doc)."""
    rh, rw = plan.rh, plan.rw
    rgb = _gather(frames, idx, plan.foff, rh, rw, dev, channels=3, dtype=work)
    if frames.dtype == torch.uint8:  # 0..255: as the frames' float copy (x / 255) would give them
        rgb = rgb.div_(255.0)
    fwd = plan.to_win[idx]
    recrop = _warp(rgb.float(), fwd, (plan.ch, plan.cw), "border")
    gen = _gather(crops, idx, plan.woff, plan.ch, plan.cw, dev, channels=3)
    weight, stats_weight, exact, cap = _chunk_weights(mask, plan, idx, fwd, dev, work)
    if color_match:
        limit = SPREAD_GAIN_MAX if plan.own is None else torch.where(plan.own[idx], 1.0, SPREAD_GAIN_MAX)
        gain, offset = _color_params(gen, recrop, stats_weight, limit)
        diff = torch.addcmul(offset, gain, gen) - recrop
    else:
        diff = gen - recrop
    if keep_detail:  # 1 where the crop changed the picture: there the frame's detail goes
        renew = 1.0 - torch.exp(-(diff.abs().amax(1, keepdim=True) / DETAIL_TOLERANCE) ** 2)
        if plan.own is not None and bool(plan.own[idx].any()):  # another frame's mouth: this one never shows
            u, v = _window_coords(plan.woff[idx], plan.ch, plan.cw, dev)
            mouth = _ellipse_weight(u, v, plan.mouth[idx], 0.5 * plan.width)[:, None]
            renew = torch.maximum(renew, mouth * plan.own[idx].to(dev, mouth.dtype)[:, None, None, None])
    else:
        renew = torch.ones_like(weight)
    # result = rgb + weight * (diff + renew * (recrop - rgb)); in multi-band mode the diff
    # term is blended band by band. Everything is weighted here, in the crop window, and
    # one back-warp brings it to the frame: rgb * (1 - [w renew]) + [w diff + w renew recrop].
    lap = laplacian and exact is None  # a hard mask has no soft edge to spread
    w_renew = weight * renew
    value = torch.addcmul(_multiband(diff, weight) if lap else weight * diff, w_renew, recrop)
    bwd = torch.linalg.inv(fwd)
    back = _warp(torch.cat([value, w_renew], 1), bwd, (rh, rw), "border").to(work)
    if exact is None:
        res = torch.addcmul(back[:, :3], rgb, 1.0 - back[:, 3:4]).clamp_(0.0, 1.0)
    else:
        res = torch.addcmul(rgb, exact, torch.addcmul(back[:, :3], back[:, 3:4], rgb, value=-1.0))
        res.clamp_(0.0, 1.0)
    wb = None
    if cap is not None:  # the change never reaches past the given mask: alpha <= mask, 0 outside
        wb = _warp(weight, bwd, (rh, rw), "border").to(work)
        scale = (cap / wb.clamp_min(1e-6)).clamp(max=1.0)
        res = torch.where(cap > 0, rgb + scale * (res - rgb), rgb)
    lo, hi = (0, 1) if frames.dtype == torch.uint8 else torch.aminmax(rgb)
    if lo < 0 or hi > 1:  # out-of-range input: keep it exactly where nothing is blended
        wb = _warp(weight, bwd, (rh, rw), "border").to(work) if wb is None else wb
        res = torch.where(wb * (1.0 if exact is None else exact) > 0, res, rgb)
    return res
