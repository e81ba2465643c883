"""The built-in lip-sync generator: reshapes the mouth in aligned crops; no weights.

Given aligned, mouth-centred crops, the tracked mouth landmarks in crop pixels and the
per-frame mouth parameters of a :class:`~.types.VisemeTrack`, each frame is made in three
steps, all batched on the crops' device:

1. **Where the lips should be.** The tracked landmarks are first brought to a neutral mouth
   (the clip's rest width, the lips closed down to the clip's rest gap), so motion already
   in the footage does not show through; then the mouth parameters move them: ``jaw_open``
   drops the lower lip, the chin and (a little) the corners, ``lip_spread`` and
   ``lip_round`` widen or narrow the mouth (rounding also thickens the lips), ``lip_close``
   presses the lips thinner and cancels the opening, ``teeth_on_lip`` lifts the upper lip
   off the upper teeth, which rest on the lower lip (F, V).
2. **A smooth warp.** Two displacement fields, each a radial-basis interpolant with a
   compactly supported (Wendland) kernel, so the warp is smooth and local: one for the upper
   lip and face (anchored at the nose), one for the lower lip and jaw (moving the chin with
   it), both pinned to zero at fixed points around the mouth. Above the target lip seam the upper field is used,
   below it the lower one, so closing an open mouth meets the real lips edge to edge
   instead of squeezing the mouth cavity into a smear; away from the mouth the two fields
   are blended over a wide band, so cheeks stay smooth.
3. **A re-rendered mouth.** The warp alone would let the footage's own opening show through
   (the tracked inner lips tend to sit on the real lips or teeth, and small openings are
   within the tracker's noise), so the mouth is painted over from the target shape: between
   the target inner lips a synthetic inner mouth (a faint seam when closed; a dark cavity
   with a band of upper teeth and a tongue shade when open), and over the lips, out to 90 %
   of their thickness, lips fading into the warped footage at the outer lip edge and the
   corners: the clip's own lips (texture and colour of its most closed frame, stretched to the
   target lips and lit like this frame; :attr:`MouthRest.ref_crop`, as LipSyncInference
   renders), or without a reference frame the frame's own lip colour, flat.

Frames whose target landmarks equal the tracked ones (parameters at :data:`REST_POSE` on a
face whose mouth is already at rest: tracked gap within 0.4 % of the mouth width of the
clip's rest gap, width within 4 %) are passed through unchanged, bit for bit; every other
frame gets the re-rendered mouth. Crops are (B, 3, S, S)
RGB floats in 0..1, pixel centres at integer coordinates (kornia ``warp_affine`` layout).

Step 1's geometry lives in :mod:`.mouth_shape`, step 3's colours in :mod:`.mouth_paint`; the
shape constants fitted by eye on footage in :mod:`.calibration` (readable here too).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from .calibration import (  # noqa: F401 (the fitted shape constants, readable here as before)
    CAVITY_CURVE, CAVITY_DEEP, CAVITY_MID, CAVITY_SHALLOW, CHIN_SHARE, CORNER_DROP, CORNER_SHARP, GAP_TOLERANCE,
    INNER_LIP, JAW_MAX, LIP_FADE, LIP_REPAINT, LOWER_SHARE, OPEN_NARROW, PRESS_THIN, ROUND, ROUND_THICKEN, SPREAD,
    TEETH_LIFT, TEETH_LIP_DROP, TEETH_MAX, TEETH_TINT, TEETH_TONE, TONGUE_TONE, TRACK_TOLERANCE)
from .checks import check_shape
from .errors import InputError
from .mouth_paint import _inner_mouth, _lip_texture
from .mouth_shape import (  # noqa: F401 (MouthRest and the shape constants are public here)
    ANCHOR_CLEAR, LI, LIP_MAX, LIP_MIN, ROI_BOX, UI, MouthRest, _clear_anchors, _controls, _LOWER_ANCHORS, _maps,
    _measure, _mouth_frame, _roi, _smoothstep, _targets, _to_crop, _to_local, _UPPER_ANCHORS, _vert)
from .types import MOUTH_PARAMS

WHO = "LipSyncInference"

REST_POSE = (0.0, 0.0, 0.0, 0.0, 0.0)
"""Mouth parameters of the rest pose (in :data:`~.types.MOUTH_PARAMS` order): lips closed,
relaxed. Frames at the rest pose on a face whose mouth is at rest come back unchanged."""

RBF_RADIUS = 0.7
"""Support of the warp's radial basis kernel, in rest mouth widths: nothing farther than this
from the lips, nose and chin points moves (the eyes never do)."""
RBF_RIDGE = 1e-4
NOSE_FADE = 0.25
"""The warp fades out over this many rest mouth widths above the nose point (and is 0 beyond)."""
JAW_SIDE = (0.45, -0.12, 0.85)
"""Jaw-line points beside the chin (u, v offset from the chin in rest mouth widths) and the
share of the chin's motion they follow."""


def reference_frame(mouth: torch.Tensor, found: torch.Tensor | None = None) -> int:
    """The frame to borrow the lips from: among the most closed fifth of the frames (smallest
    inner-lip gap) where the face was found, the one whose mouth width is nearest the clip's
    median. mouth: (T, 8, 2) in crop pixels; found: optional (T,) bool."""
    check_shape(mouth, "T 8 2", WHO, "mouth landmarks")
    mouth = mouth.float()
    centre, ex, ey, width = _mouth_frame(mouth)
    loc = _to_local(mouth, centre, ex, ey)
    gap = (loc[:, LI, 1] - loc[:, UI, 1]).clamp_min(0)
    ok = torch.ones_like(gap, dtype=torch.bool) if found is None else found.to(gap.device).bool()
    if not bool(ok.any()):
        ok = torch.ones_like(ok)
    closed = ok & (gap <= torch.quantile(gap[ok], 0.2))
    cost = (width - width[ok].median()).abs() + torch.where(closed, 0.0, float("inf"))
    return int(torch.argmin(cost))


def mouth_rest(mouth: torch.Tensor) -> MouthRest:
    """Rest width and gap of a whole clip from its landmarks in crop pixels.

    mouth: (T, 8, 2). The rest width is the median corner distance; the rest gap the 10th
    percentile of the inner-lip gap (a closed mouth, as this tracker sees it).
    """
    check_shape(mouth, "T 8 2", WHO, "mouth landmarks")
    _, _, _, width = _mouth_frame(mouth)
    loc = _to_local(mouth, *_mouth_frame(mouth)[:3])
    gap = (loc[:, LI, 1] - loc[:, UI, 1]).clamp_min(0)
    m = _measure(loc)
    return MouthRest(width=width.median(), gap=torch.quantile(gap.float(), 0.1).to(gap),
                     upper=(m.up_in - m.up_out).median(), lower=(m.lo_out - m.lo_in).median())


# --- radial basis warp ---------------------------------------------------------------------

def _wendland(r: torch.Tensor) -> torch.Tensor:
    """Wendland's compactly supported C2 kernel (positive definite in 2-D): 0 for r >= 1."""
    t = (1 - r).clamp_min(0)
    return t.pow(4) * (4 * r + 1)


def _solve(a: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """Batched small linear solve. On the CPU through NumPy in float64: torch's threaded LAPACK
    takes hundreds of ms for a batch of 30x30 systems on a busy 2-core machine (measured)."""
    if a.device.type == "cpu":
        out = np.linalg.solve(a.detach().double().numpy(), rhs.detach().double().numpy())
        return torch.from_numpy(out).to(rhs.dtype)
    return torch.linalg.solve(a.double(), rhs.double()).to(rhs.dtype)


def _rbf_fit(ctrl: torch.Tensor, values: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """Weights (B, N, 2) of a compactly supported RBF interpolant through ``values`` (B, N, 2)
    at ``ctrl`` (B, N, 2); ``radius`` (B,) is the kernel's support in the same units."""
    n = ctrl.shape[1]
    k = _wendland(torch.cdist(ctrl, ctrl) / radius.view(-1, 1, 1))
    k = k + RBF_RIDGE * torch.eye(n, dtype=ctrl.dtype, device=ctrl.device)
    return _solve(k, values)


def _rbf_eval(coef: torch.Tensor, ctrl: torch.Tensor, pts: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """Evaluate the interpolant at ``pts`` (B, M, 2) -> (B, M, 2); exactly 0 farther than
    ``radius`` from every control point."""
    return _wendland(torch.cdist(pts, ctrl) / radius.view(-1, 1, 1)) @ coef


# --- the generator -------------------------------------------------------------------------

def target_landmarks(mouth: torch.Tensor, params: torch.Tensor, *, strength: float = 1.0,
                     rest: MouthRest | None = None) -> torch.Tensor:
    """Where the generator puts the landmarks. mouth: (B, 8, 2) in crop pixels; params (B, 5).
    Returns (B, 8, 2) in crop pixels, :data:`~.types.MOUTH_POINTS` order (inner/outer lip points
    at the middle of the mouth)."""
    check_shape(mouth, "B 8 2", WHO, "mouth landmarks")
    check_shape(params, "B P", WHO, "mouth parameters", B=mouth.shape[0], P=len(MOUTH_PARAMS))
    mouth = mouth.float()
    rest = rest if rest is not None else mouth_rest(mouth)
    b = mouth.shape[0]
    centre, ex, ey, _ = _mouth_frame(mouth)
    src = _measure(_to_local(mouth, centre, ex, ey))
    tgt = _targets(src, params.to(mouth).clamp(0, 1), rest.width.to(mouth).expand(b), rest.gap.to(mouth).expand(b), strength, rest)
    mid = (tgt.left + tgt.right) / 2
    loc = torch.stack((tgt.left, tgt.right, mid + _vert(tgt.up_out), mid + _vert(tgt.lo_out),
                       mid + _vert(tgt.up_in), mid + _vert(tgt.lo_in), tgt.nose, tgt.chin), 1)
    return _to_crop(loc, centre, ex, ey)


def generate(crops: torch.Tensor, mouth: torch.Tensor, params: torch.Tensor, *, strength: float = 1.0,
             rest: MouthRest | None = None) -> torch.Tensor:
    """Reshape the mouth of every crop to the requested mouth parameters.

    crops:  (B, 3, S, S) RGB in 0..1, aligned mouth-centred crops.
    mouth:  (B, 8, 2) tracked mouth landmarks in crop pixels (:data:`~.types.MOUTH_POINTS`).
    params: (B, 5) mouth parameters in [0, 1] (:data:`~.types.MOUTH_PARAMS`).
    strength: 0 gives the crops back, 1 the full requested motion (up to 2 exaggerates).
    rest:   the clip's rest mouth (:func:`mouth_rest` over the whole clip); default: from
            this batch.
    Returns (B, 3, S, S) in 0..1, same device and dtype as ``crops``. Deterministic.
    """
    check_shape(crops, "B 3 S S", WHO, "crops")
    b, _, s, _ = crops.shape
    check_shape(mouth, "B 8 2", WHO, "mouth landmarks", B=b)
    check_shape(params, "B P", WHO, "mouth parameters", B=b, P=len(MOUTH_PARAMS))
    if not 0.0 <= float(strength) <= 2.0:
        raise InputError(f"{WHO}: strength must be between 0 and 2, got {strength}.")
    if s < 16:
        raise InputError(f"{WHO}: crops must be at least 16 px, got {s}.")
    dev, dt = crops.device, crops.dtype
    work = torch.float32 if dt in (torch.float16, torch.bfloat16) else dt
    x = crops.to(work)
    mouth = mouth.to(dev, work)
    params = params.to(dev, work).clamp(0, 1)
    if rest is None:
        rest = mouth_rest(mouth)
    rest_w = rest.width.to(dev, work).expand(b)
    rest_gap = rest.gap.to(dev, work).expand(b)

    frame = _MouthFrame(*_mouth_frame(mouth)[:3], rest_w=rest_w, px_unit=s / 256.0)
    src = _measure(_to_local(mouth, frame.centre, frame.ex, frame.ey))
    tgt = _targets(src, params, rest_w, rest_gap, float(strength), rest)
    src, tgt = _clear_anchors(src, tgt, rest_w)
    (src_up, tgt_up), (src_lo, tgt_lo) = _warp_controls(src, tgt, rest_w)
    moved = torch.maximum((tgt_up - src_up).abs().amax((1, 2)), (tgt_lo - src_lo).abs().amax((1, 2))) > 1e-4
    if not bool(moved.any()):
        return crops.clone()
    # 1.-2. two displacement fields on a coarse grid; the whole crop warped with them blended
    coarse, out = _warp_crop(x, src, tgt, frame, ((tgt_up, src_up), (tgt_lo, src_lo)))
    # 3. the mouth region at full resolution: a sharp switch between the fields at the lip seam,
    #    and the re-rendered mouth
    rh, rw, start = _roi(rest_w, frame.centre, frame.ex, frame.ey, s)
    roi, rm = _warp_roi(x, coarse, tgt, frame, rh, rw, start)
    roi = _paint_mouth(x, roi, src, tgt, params, rest, frame, rm)
    for i in range(b):
        if not bool(moved[i]):  # at rest: the crop itself, bit for bit
            out[i] = x[i]
            continue
        x0, y0 = int(start[i, 0]), int(start[i, 1])
        out[i, :, y0:y0 + rh, x0:x0 + rw] = roi[i]
    return out.to(dt)


@dataclass(frozen=True)
class _MouthFrame:
    """Each crop's mouth frame: centre (B, 2), unit axes ex (corner to corner) and ey (down), the
    clip's rest mouth width (B,) and the crop's pixel unit (crop side / 256)."""

    centre: torch.Tensor
    ex: torch.Tensor
    ey: torch.Tensor
    rest_w: torch.Tensor
    px_unit: float


def _warp_controls(src, tgt, rest_w: torch.Tensor):
    """Source and target control points (B, N, 2), local coords, of the upper field and of the
    lower field: the lip points, the jaw line beside the chin, and the fixed anchors."""
    b, dev, work = rest_w.shape[0], rest_w.device, rest_w.dtype
    src_up, src_lo = _controls(src)
    tgt_up, tgt_lo = _controls(tgt)
    # the jaw line beside the chin follows the chin, so the chin stays round as it drops
    side = torch.tensor([[-JAW_SIDE[0], JAW_SIDE[1]], [JAW_SIDE[0], JAW_SIDE[1]]], device=dev, dtype=work)
    side = side[None] * rest_w.view(b, 1, 1)
    jaw_src = src.chin[:, None] + side
    jaw_tgt = jaw_src + JAW_SIDE[2] * (tgt.chin - src.chin)[:, None]
    src_lo, tgt_lo = torch.cat((src_lo, jaw_src), 1), torch.cat((tgt_lo, jaw_tgt), 1)
    # fixed points around the mouth keep the warp local (cheeks, nose, eyes stay put)
    fixed_up = _UPPER_ANCHORS.to(dev, work)[None] * rest_w.view(b, 1, 1)
    fixed_lo = _LOWER_ANCHORS.to(dev, work)[None] * rest_w.view(b, 1, 1)
    return ((torch.cat((src_up, fixed_up), 1), torch.cat((tgt_up, fixed_up), 1)),
            (torch.cat((src_lo, fixed_lo), 1), torch.cat((tgt_lo, fixed_lo), 1)))


def _warp_crop(x: torch.Tensor, src, tgt, frame: _MouthFrame, pairs) -> tuple[torch.Tensor, torch.Tensor]:
    """Steps 1-2: the two displacement fields (target -> source, crop px) on a coarse grid
    (B, 4, g, g), faded out above the nose, and the whole crop warped with them blended at
    coarse resolution (smooth away from the mouth). Returns (coarse fields, warped crops)."""
    b, s = x.shape[0], x.shape[-1]
    dev, work = x.device, x.dtype
    centre, ex, ey, rest_w = frame.centre, frame.ex, frame.ey, frame.rest_w
    radius = RBF_RADIUS * rest_w
    g = max(s // 4, 16)
    lin = torch.linspace(0, s - 1, g, device=dev, dtype=work)
    gy, gx = torch.meshgrid(lin, lin, indexing="ij")
    grid_pts = torch.stack((gx, gy), -1).reshape(1, -1, 2).expand(b, -1, -1)
    fields = []
    for t_loc, s_loc in pairs:
        t_pts = _to_crop(t_loc, centre, ex, ey)
        s_pts = _to_crop(s_loc, centre, ex, ey)
        coef = _rbf_fit(t_pts, s_pts - t_pts, radius)
        fields.append(_rbf_eval(coef, t_pts, grid_pts, radius).reshape(b, g, g, 2))
    coarse = rearrange(torch.cat(fields, -1), "b h w c -> b c h w")  # (B, 4, g, g)
    cm = _maps(tgt, gx.expand(b, g, g), gy.expand(b, g, g), centre, ex, ey, frame.px_unit)
    # nothing above the nose moves: the kernels of the lip points and fixed anchors reach past
    # it on a wide mouth, so the fields fade out over NOSE_FADE rest widths above the nose
    fade_w = (NOSE_FADE * rest_w).view(b, 1, 1)
    coarse = coarse * _smoothstep((cm.v - src.nose[:, 1].view(b, 1, 1) + fade_w) / fade_w)[:, None]
    w_c = cm.w_up[:, None]
    blended = coarse[:, :2] * w_c + coarse[:, 2:] * (1 - w_c)
    # source positions, normalised for grid_sample; bilinear upsampling of (grid + field) is
    # exact for the grid part, so only the coarse field is computed per pixel
    at_coarse = (torch.stack((gx, gy))[None] + blended) * (2.0 / (s - 1)) - 1
    grid = F.interpolate(at_coarse, size=(s, s), mode="bilinear", align_corners=True)
    out = F.grid_sample(x, rearrange(grid, "b c h w -> b h w c"), mode="bilinear", padding_mode="border",
                        align_corners=True)
    return coarse, out


def _warp_roi(x: torch.Tensor, coarse: torch.Tensor, tgt, frame: _MouthFrame, rh: int, rw: int,
              start: torch.Tensor):
    """Step 3, the warp: the mouth region (B, 3, rh, rw) at ``start`` warped at full resolution,
    switching sharply between the two fields at the target lip seam; and its mouth maps."""
    b, s = x.shape[0], x.shape[-1]
    dev, work = x.device, x.dtype
    ry = start[:, 1].view(b, 1, 1).to(work) + torch.arange(rh, device=dev, dtype=work).view(1, rh, 1)
    rx = start[:, 0].view(b, 1, 1).to(work) + torch.arange(rw, device=dev, dtype=work).view(1, 1, rw)
    rx, ry = rx.expand(b, rh, rw), ry.expand(b, rh, rw)
    rm = _maps(tgt, rx, ry, frame.centre, frame.ex, frame.ey, frame.px_unit)
    at = torch.stack((rx, ry), -1) * (2.0 / (s - 1)) - 1
    f = F.grid_sample(coarse, at, mode="bilinear", padding_mode="border", align_corners=True)  # (B, 4, rh, rw)
    wu = rm.w_up[:, None]
    d = f[:, :2] * wu + f[:, 2:] * (1 - wu)
    src_at = rearrange(torch.stack((rx, ry), 1) + d, "b c h w -> b h w c") * (2.0 / (s - 1)) - 1
    roi = F.grid_sample(x, src_at, mode="bilinear", padding_mode="border", align_corners=True)
    return roi, rm


def _paint_mouth(x: torch.Tensor, roi: torch.Tensor, src, tgt, params: torch.Tensor, rest: MouthRest,
                 frame: _MouthFrame, rm) -> torch.Tensor:
    """Step 3, the paint: the mouth is re-rendered, not just warped. The tracked inner lips tend to
    sit inside the real ones and the tracker ignores small openings, so whatever lies between the
    lips in the footage (teeth, cavity) would survive a warp. Between the target inner lips goes a
    synthetic inner mouth (a barely darker seam when closed), and the inner part of each lip
    (:data:`LIP_REPAINT` of its thickness) is painted over in the clip's lips (or the frame's own
    lip colour), fading into the warped footage towards the outer lip edge. Returns the ROI."""
    b = x.shape[0]
    centre, ex, ey, rest_w, px_unit = frame.centre, frame.ex, frame.ey, frame.rest_w, frame.px_unit
    edge = 1.5 * px_unit
    inner, lip = _inner_mouth(x, src, tgt, params, rest_w, centre, ex, ey, rm, px_unit)
    texture = None
    if rest.ref_crop is not None and rest.ref_mouth is not None:
        texture = _lip_texture(x, src, tgt, rest, rm, centre, ex, ey, rest_w)
    up_th = ((tgt.up_in - tgt.up_out).view(b, 1, 1) * rm.prof).clamp_min(0)
    lo_th = ((tgt.lo_out - tgt.lo_in).view(b, 1, 1) * rm.prof).clamp_min(0)
    across = _smoothstep((1 - rm.sfrac.abs()) * CORNER_SHARP)
    in_gap = ((rm.v - rm.top) / edge + 0.5).clamp(0, 1) * ((rm.bot - rm.v) / edge + 0.5).clamp(0, 1)
    up_band = _smoothstep((LIP_REPAINT * up_th + edge - (rm.top - rm.v)) / (LIP_FADE * up_th + edge)) * (rm.v <= rm.top)
    lo_band = _smoothstep((LIP_REPAINT * lo_th + edge - (rm.v - rm.bot)) / (LIP_FADE * lo_th + edge)) * (rm.v >= rm.bot)
    band = torch.maximum(up_band, lo_band)
    if texture is not None:  # the clip's own lips, from its closed-mouth frame
        lip_col = texture
    else:  # one colour; lips darken slightly towards the seam, as real lips do where they turn inwards
        lip_col = lip.view(b, 3, 1, 1) * (1 - 0.15 * band[:, None])
    paint = lip_col + in_gap[:, None] * (inner - lip_col)
    alpha = across * torch.maximum(in_gap, band)
    return (roi + alpha[:, None] * (paint - roi)).clamp(0, 1)
