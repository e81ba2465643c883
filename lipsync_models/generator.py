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
2. **A smooth warp.** Two thin-plate-spline displacement fields, one for the upper lip and
   face (anchored at the nose), one for the lower lip and jaw (anchored at the chin), both
   pinned to zero on the crop border. Above the target lip seam the upper field is used,
   below it the lower one, so closing an open mouth meets the real lips edge to edge
   instead of squeezing the mouth cavity into a smear; away from the mouth the two fields
   are blended over a wide band, so cheeks stay smooth.
3. **Inner mouth.** Where the target opening is larger than the opening the footage had,
   a dark cavity with a band of upper teeth and a tongue shade, coloured from the face's
   own lips and skin, is blended in with soft edges.

Frames whose target landmarks equal the tracked ones (parameters at :data:`REST_POSE` on a
face whose mouth is already at rest) are passed through unchanged. Crops are (B, 3, S, S)
RGB floats in 0..1, pixel centres at integer coordinates (kornia ``warp_affine`` layout).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from .checks import check_shape
from .errors import InputError
from .types import MOUTH_PARAMS, MOUTH_POINTS

WHO = "LipSyncInference"

REST_POSE = (0.0, 0.0, 0.0, 0.0, 0.0)
"""Mouth parameters of the rest pose (in :data:`~.types.MOUTH_PARAMS` order): lips closed,
relaxed. Frames at the rest pose on a face whose mouth is at rest come back unchanged."""

# Landmark indices (MOUTH_POINTS order).
CL, CR, UO, LO, UI, LI, NOSE, CHIN = (MOUTH_POINTS.index(n) for n in MOUTH_POINTS)

# Shape constants, in units of the clip's rest mouth width.
JAW_MAX = 0.55
"""Inner-lip gap at jaw_open = 1 (as a fraction of the rest mouth width; a wide 'ah')."""
LOWER_SHARE = 0.85
"""Share of the opening carried by the lower lip (the jaw); the upper lip lifts the rest."""
CHIN_SHARE = 0.8
"""How far the chin drops per unit of opening."""
CORNER_DROP = 0.2
"""How far the mouth corners drop per unit of opening."""
SPREAD = 0.18
ROUND = 0.28
OPEN_NARROW = 0.08
"""Relative mouth-width change at lip_spread = 1, lip_round = 1 and jaw_open = 1."""
ROUND_THICKEN = 0.04
PRESS_THIN = 0.035
TEETH_LIFT = 0.045
TEETH_LIP_DROP = 0.015
"""Lip-thickness and F/V offsets (fractions of the rest width)."""
TEETH_MAX = 0.10
"""Height of the visible upper-teeth band in a wide-open mouth (fraction of the rest width)."""


@dataclass(frozen=True)
class MouthRest:
    """The clip's rest mouth, in crop pixels: ``width`` (corner to corner) and ``gap``
    (inner-lip gap the tracker reports on closed lips). Scalars as 0-d tensors."""

    width: torch.Tensor
    gap: torch.Tensor


def mouth_rest(mouth: torch.Tensor) -> MouthRest:
    """Rest width and gap of a whole clip from its landmarks in crop pixels.

    mouth: (T, 8, 2). The rest width is the median corner distance; the rest gap the 10th
    percentile of the inner-lip gap (a closed mouth, as this tracker sees it).
    """
    check_shape(mouth, "T 8 2", WHO, "mouth landmarks")
    _, _, _, width = _mouth_frame(mouth)
    loc = _to_local(mouth, *_mouth_frame(mouth)[:3])
    gap = (loc[:, LI, 1] - loc[:, UI, 1]).clamp_min(0)
    return MouthRest(width=width.median(), gap=torch.quantile(gap.float(), 0.1).to(gap))


# --- geometry ------------------------------------------------------------------------------

def _mouth_frame(mouth: torch.Tensor):
    """Mouth centre (B, 2), unit axes ex (corner to corner) and ey (down), width (B,)."""
    cl, cr = mouth[:, CL], mouth[:, CR]
    centre = (cl + cr) / 2
    d = cr - cl
    width = d.norm(dim=-1).clamp_min(1e-3)
    ex = d / width[:, None]
    ey = torch.stack((-ex[:, 1], ex[:, 0]), dim=-1)
    return centre, ex, ey, width


def _to_local(p: torch.Tensor, centre, ex, ey) -> torch.Tensor:
    """Points (B, N, 2) in crop pixels -> (u, v) along ex / ey about ``centre``."""
    q = p - centre[:, None]
    return torch.stack(((q * ex[:, None]).sum(-1), (q * ey[:, None]).sum(-1)), dim=-1)


def _to_crop(loc: torch.Tensor, centre, ex, ey) -> torch.Tensor:
    return centre[:, None] + loc[..., :1] * ex[:, None] + loc[..., 1:] * ey[:, None]


def _profile(s: torch.Tensor) -> torch.Tensor:
    """Lip-contour profile across the mouth: 1 at the middle, 0 at the corners (s = -1, 1)."""
    return (1 - s * s).clamp_min(0).sqrt()


@dataclass
class _Mouth:
    """A mouth in local coordinates: corners (B, 2) each, and the heights (B,) of the four
    lip curves above / below the corner line at the middle of the mouth, plus the chin."""

    left: torch.Tensor
    right: torch.Tensor
    up_out: torch.Tensor
    up_in: torch.Tensor
    lo_in: torch.Tensor
    lo_out: torch.Tensor
    chin: torch.Tensor
    nose: torch.Tensor

    def base(self, s: torch.Tensor) -> torch.Tensor:
        """(u, v) on the corner line at fraction s in [-1, 1]; s: broadcastable with (B, ...)."""
        shape = (-1,) + (1,) * (s.ndim - 1)
        t = (s + 1) / 2
        u = self.left[:, 0].view(shape) * (1 - t) + self.right[:, 0].view(shape) * t
        v = self.left[:, 1].view(shape) * (1 - t) + self.right[:, 1].view(shape) * t
        return u, v

    def points(self, curve: str, s: torch.Tensor) -> torch.Tensor:
        """Points (B, len(s), 2) on one lip curve at fractions s (1-d tensor) across the mouth."""
        s = s.to(self.left)[None].expand(self.left.shape[0], -1)
        u, v = self.base(s)
        h = getattr(self, curve)[:, None]
        return torch.stack((u, v + h * _profile(s)), dim=-1)


def _measure(loc: torch.Tensor) -> _Mouth:
    """Read a _Mouth from landmarks in local coordinates (B, 8, 2)."""
    left, right = loc[:, CL], loc[:, CR]
    mid_v = (left[:, 1] + right[:, 1]) / 2
    return _Mouth(left, right, loc[:, UO, 1] - mid_v, loc[:, UI, 1] - mid_v, loc[:, LI, 1] - mid_v,
                  loc[:, LO, 1] - mid_v, loc[:, CHIN], loc[:, NOSE])


def _targets(src: _Mouth, params: torch.Tensor, rest_w: torch.Tensor, rest_gap: torch.Tensor,
             strength: float) -> _Mouth:
    """Where the lips go: neutralise the tracked mouth, then apply the parameters."""
    jaw, spread, rnd, close, teeth = params.unbind(-1)
    w = rest_w
    # 1. neutral: close the footage's own opening down to the rest gap, rest width.
    gap = (src.lo_in - src.up_in).clamp_min(0)
    shut = (gap - rest_gap).clamp_min(0)
    up_shift = (1 - LOWER_SHARE) * shut  # the upper lip comes down by its share
    lo_shift = -LOWER_SHARE * shut       # the lower lip and the jaw come up
    centre_u = (src.left[:, 0] + src.right[:, 0]) / 2
    # 2. the requested mouth.
    d = JAW_MAX * w * jaw * (1 - close)
    half = w / 2 * (1 + SPREAD * spread - ROUND * rnd - OPEN_NARROW * jaw * (1 - close))
    corner_v = CORNER_DROP * d
    left = torch.stack((centre_u - half, corner_v), -1)
    right = torch.stack((centre_u + half, corner_v), -1)
    lift = (1 - LOWER_SHARE) * d + TEETH_LIFT * w * teeth
    drop = LOWER_SHARE * d + TEETH_LIP_DROP * w * teeth
    src_mid = (src.left[:, 1] + src.right[:, 1]) / 2
    # heights are measured from the corner line, which itself moves by corner_v - src_mid
    rebase = src_mid - corner_v
    up_in = src.up_in + up_shift - lift + rebase
    up_out = src.up_out + up_shift - lift - ROUND_THICKEN * w * rnd + PRESS_THIN * w * close + rebase
    lo_in = src.lo_in + lo_shift + drop + rebase
    lo_out = src.lo_out + lo_shift + drop + ROUND_THICKEN * w * rnd - PRESS_THIN * w * close + rebase
    chin = src.chin + torch.stack((torch.zeros_like(d), lo_shift + CHIN_SHARE * d), -1)
    tgt = _Mouth(left, right, up_out, up_in, lo_in, lo_out, chin, src.nose)
    if strength != 1.0:
        tgt = _Mouth(*(a + strength * (b - a) for a, b in zip(_fields(src), _fields(tgt))))
    return tgt


def _fields(m: _Mouth):
    return (m.left, m.right, m.up_out, m.up_in, m.lo_in, m.lo_out, m.chin, m.nose)


_S_SAMPLES = torch.tensor([-0.5, 0.0, 0.5])


def _controls(m: _Mouth):
    """Control points (B, N, 2) of the upper field and the lower field, in local coords."""
    corners = torch.stack((m.left, m.right), 1)
    upper = torch.cat((corners, m.points("up_out", _S_SAMPLES), m.points("up_in", _S_SAMPLES),
                       m.nose[:, None]), 1)
    lower = torch.cat((corners, m.points("lo_out", _S_SAMPLES), m.points("lo_in", _S_SAMPLES),
                       m.chin[:, None]), 1)
    return upper, lower


# --- thin-plate splines --------------------------------------------------------------------

def _tps_kernel(d2: torch.Tensor) -> torch.Tensor:
    return 0.5 * d2 * torch.log(d2.clamp_min(1e-12))


def _tps_fit(ctrl: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Thin-plate spline through ``values`` (B, N, 2) at ``ctrl`` (B, N, 2) (unit-scaled
    coordinates). Returns coefficients (B, N + 3, 2): N kernel weights, then the affine part."""
    b, n, _ = ctrl.shape
    k = _tps_kernel(torch.cdist(ctrl, ctrl).square())
    p = torch.cat((torch.ones_like(ctrl[..., :1]), ctrl), -1)
    a = ctrl.new_zeros(b, n + 3, n + 3)
    a[:, :n, :n] = k + 1e-6 * torch.eye(n, dtype=ctrl.dtype, device=ctrl.device)
    a[:, :n, n:] = p
    a[:, n:, :n] = p.transpose(1, 2)
    rhs = torch.cat((values, values.new_zeros(b, 3, 2)), 1)
    return torch.linalg.solve(a, rhs)


def _tps_eval(coef: torch.Tensor, ctrl: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
    """Evaluate the spline at ``pts`` (B, M, 2) -> (B, M, 2)."""
    n = ctrl.shape[1]
    k = _tps_kernel(torch.cdist(pts, ctrl).square())
    return k @ coef[:, :n] + coef[:, n:n + 1] + pts[..., :1] * coef[:, n + 1:n + 2] + pts[..., 1:] * coef[:, n + 2:n + 3]


def _border_anchors(size: int, per_side: int, device, dtype) -> torch.Tensor:
    t = torch.linspace(0, size - 1, per_side + 1, device=device, dtype=dtype)[:-1]
    e = torch.full_like(t, float(size - 1))
    z = torch.zeros_like(t)
    return torch.cat((torch.stack((t, z), -1), torch.stack((e, t), -1),
                      torch.stack((e - t, e), -1), torch.stack((z, e - t), -1)))


# --- colours -------------------------------------------------------------------------------

def _sample(crops: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
    """Bilinear colours (B, N, 3) at crop-pixel points (B, N, 2), each a 5x5-px average."""
    s = crops.shape[-1]
    small = F.avg_pool2d(crops, 5, stride=1, padding=2, count_include_pad=False)
    grid = (pts / (s - 1) * 2 - 1)[:, :, None]
    return F.grid_sample(small, grid, mode="bilinear", padding_mode="border", align_corners=True)[..., 0].transpose(1, 2)


def _smoothstep(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(0, 1)
    return x * x * (3 - 2 * x)


# --- the generator -------------------------------------------------------------------------

def generate(crops: torch.Tensor, mouth: torch.Tensor, params: torch.Tensor, *, strength: float = 1.0,
             rest: MouthRest | None = None) -> torch.Tensor:
    """Reshape the mouth of every crop to the requested mouth parameters.

    crops:  (B, 3, S, S) RGB in 0..1, aligned mouth-centred crops.
    mouth:  (B, 8, 2) tracked mouth landmarks in crop pixels (:data:`~.types.MOUTH_POINTS`).
    params: (B, 5) mouth parameters in [0, 1] (:data:`~.types.MOUTH_PARAMS`).
    strength: 0 gives the crops back, 1 the full requested motion.
    rest:   the clip's rest mouth (:func:`mouth_rest` over the whole clip); default: from
            this batch.
    Returns (B, 3, S, S) in 0..1, same device and dtype as ``crops``.
    """
    check_shape(crops, "B 3 S S", WHO, "crops")
    b, _, s, _ = crops.shape
    check_shape(mouth, "B 8 2", WHO, "mouth landmarks", B=b)
    check_shape(params, "B P", WHO, "mouth parameters", B=b, P=len(MOUTH_PARAMS))
    if not 0.0 <= strength <= 2.0:
        raise InputError(f"{WHO}: strength must be in 0..2, got {strength}.")
    dev, dt = crops.device, crops.dtype
    work = torch.float32 if dt in (torch.float16, torch.bfloat16) else dt
    x = crops.to(work)
    mouth = mouth.to(dev, work)
    params = params.to(dev, work).clamp(0, 1)
    if rest is None:
        rest = mouth_rest(mouth)
    rest_w = rest.width.to(dev, work).expand(b)
    rest_gap = rest.gap.to(dev, work).expand(b)

    centre, ex, ey, _ = _mouth_frame(mouth)
    src = _measure(_to_local(mouth, centre, ex, ey))
    tgt = _targets(src, params, rest_w, rest_gap, strength)

    src_up, src_lo = _controls(src)
    tgt_up, tgt_lo = _controls(tgt)
    moved = torch.maximum((tgt_up - src_up).abs().amax((1, 2)), (tgt_lo - src_lo).abs().amax((1, 2))) > 1e-4
    if not bool(moved.any()):
        return crops.clone()

    # Displacement fields (target -> source), in crop pixels, evaluated on a coarse grid.
    anchors = _border_anchors(s, 6, dev, work)[None].expand(b, -1, -1)
    scale = 1.0 / s
    g = max(s // 4, 16)
    lin = torch.linspace(0, s - 1, g, device=dev, dtype=work)
    gy, gx = torch.meshgrid(lin, lin, indexing="ij")
    grid_pts = torch.stack((gx, gy), -1).reshape(1, -1, 2).expand(b, -1, -1)
    fields = []
    for t_loc, s_loc in ((tgt_up, src_up), (tgt_lo, src_lo)):
        t_pts = _to_crop(t_loc, centre, ex, ey)
        s_pts = _to_crop(s_loc, centre, ex, ey)
        ctrl = torch.cat((t_pts, anchors), 1) * scale
        vals = torch.cat((s_pts - t_pts, torch.zeros_like(anchors)), 1)
        coef = _tps_fit(ctrl, vals)
        fields.append(_tps_eval(coef, ctrl, grid_pts * scale).reshape(b, g, g, 2))
    disp = torch.cat(fields, -1).permute(0, 3, 1, 2)  # (B, 4, g, g)
    disp = F.interpolate(disp, size=(s, s), mode="bilinear", align_corners=True)

    # Per-pixel local coordinates in the mouth frame.
    pix = torch.arange(s, device=dev, dtype=work)
    px = pix.view(1, 1, s) - centre[:, 0].view(b, 1, 1)
    py = pix.view(1, s, 1) - centre[:, 1].view(b, 1, 1)
    u = px * ex[:, 0].view(b, 1, 1) + py * ex[:, 1].view(b, 1, 1)
    v = px * ey[:, 0].view(b, 1, 1) + py * ey[:, 1].view(b, 1, 1)

    # Target mouth shape at every pixel column u.
    lu, ru = tgt.left[:, 0].view(b, 1, 1), tgt.right[:, 0].view(b, 1, 1)
    half = ((ru - lu) / 2).clamp_min(1e-3)
    sfrac = (u - (lu + ru) / 2) / half
    t = ((sfrac.clamp(-1, 1) + 1) / 2)
    line = tgt.left[:, 1].view(b, 1, 1) * (1 - t) + tgt.right[:, 1].view(b, 1, 1) * t
    # the corner line continues straight beyond the corners
    slope = (tgt.right[:, 1] - tgt.left[:, 1]).view(b, 1, 1) / (2 * half)
    line = line + slope * ((u - ru).clamp_min(0) - (lu - u).clamp_min(0))
    prof = _profile(sfrac)
    top = line + tgt.up_in.view(b, 1, 1) * prof
    bot = line + tgt.lo_in.view(b, 1, 1) * prof
    seam = (top + bot) / 2
    px_unit = s / 256.0
    outside = (sfrac.abs() - 1).clamp_min(0) * half  # distance beyond the corners
    soft = 0.75 * px_unit + 0.8 * outside
    w_up = ((seam - v) / soft + 0.5).clamp(0, 1)
    disp = disp[:, :2] * w_up[:, None] + disp[:, 2:] * (1 - w_up[:, None])

    base_x = pix.view(1, 1, s).expand(b, s, s)
    base_y = pix.view(1, s, 1).expand(b, s, s)
    sx = base_x + disp[:, 0]
    sy = base_y + disp[:, 1]
    grid = torch.stack((sx, sy), -1) * (2.0 / (s - 1)) - 1
    warped = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)

    # Inner mouth where the target opening exceeds the footage's own.
    src_gap = (src.lo_in - src.up_in).clamp_min(0).view(b, 1, 1)
    tgt_gap = (tgt.lo_in - tgt.up_in).view(b, 1, 1)
    extra = ((tgt_gap - src_gap).clamp_min(0) * prof)
    band_top = top + src_gap * prof / 2
    band_bot = bot - src_gap * prof / 2
    edge = 0.9 * px_unit
    inside = torch.minimum(torch.minimum(v - band_top, band_bot - v), (1 - sfrac.abs()) * half)
    alpha = (inside / edge).clamp(0, 1) * (extra > 0)

    if bool((alpha > 0).any()):
        inner = _inner_mouth(x, mouth, src, tgt, params, rest_w, centre, ex, ey, u, v, top, bot, prof, sfrac, px_unit)
        out = warped + alpha[:, None] * (inner - warped)
    else:
        out = warped
    out = torch.where(moved.view(b, 1, 1, 1), out, x).clamp(0, 1)
    return out.to(dt)


def _inner_mouth(x, mouth, src, tgt, params, rest_w, centre, ex, ey, u, v, top, bot, prof, sfrac, px_unit):
    """Colours (B, 3, S, S) of a synthetic open mouth: cavity, upper teeth, tongue."""
    b = x.shape[0]
    # Lip colour: middle of the upper and lower lip; skin: beside the mouth corners.
    lip_pts = torch.stack((
        (mouth[:, UO] + mouth[:, UI]) / 2, (mouth[:, LO] + mouth[:, LI]) / 2,
    ), 1)
    w = rest_w
    skin_loc = torch.stack((
        torch.stack((src.left[:, 0] - 0.25 * w, src.left[:, 1]), -1),
        torch.stack((src.right[:, 0] + 0.25 * w, src.right[:, 1]), -1),
    ), 1)
    skin_pts = _to_crop(skin_loc, centre, ex, ey)
    cols = _sample(x, torch.cat((lip_pts, skin_pts), 1))
    lip = cols[:, :2].mean(1)
    skin = cols[:, 2:].mean(1)
    lum = (0.299 * skin[:, 0] + 0.587 * skin[:, 1] + 0.114 * skin[:, 2]).clamp(0.05, 1)
    cavity = (lip * 0.16 + 0.01).view(b, 3, 1, 1)
    tongue = (lip * torch.tensor([0.62, 0.42, 0.42], device=x.device, dtype=x.dtype) + 0.02).view(b, 3, 1, 1)
    teeth_base = torch.tensor([0.93, 0.90, 0.84], device=x.device, dtype=x.dtype)
    teeth = (teeth_base * (0.35 + 0.75 * lum.view(b, 1)).clamp(max=1.05)).clamp(max=1).view(b, 3, 1, 1)

    gap = (bot - top).clamp_min(0)
    depth = ((v - top) / gap.clamp_min(1e-3)).clamp(0, 1)  # 0 at the upper lip, 1 at the lower
    col = cavity * (1 - 0.35 * (1 - (2 * depth - 1).square()))[:, None]  # darkest in the middle
    edge = 0.9 * px_unit
    # tongue: a shade rising from the lower lip, only in a well-open mouth
    full_gap = (tgt.lo_in - tgt.up_in).clamp_min(0).view(b, 1, 1)
    tongue_h = 0.32 * gap * (full_gap / (0.25 * w.view(b, 1, 1))).clamp(0, 1)
    t_alpha = ((v - (bot - tongue_h)) / (2 * edge)).clamp(0, 1) * _smoothstep((1 - sfrac.abs()) * 3)
    col = col + (0.8 * t_alpha)[:, None] * (tongue - col)
    # upper teeth: a band under the upper lip, covering the whole gap for F/V
    teeth_on = params[:, 4].view(b, 1, 1)
    band = torch.minimum(0.35 * gap, TEETH_MAX * w.view(b, 1, 1) * prof)
    band = band + teeth_on * (gap - band)
    in_teeth = ((top + band - v) / edge).clamp(0, 1) * _smoothstep((0.82 - sfrac.abs()) * 5)
    shade = 1 - 0.45 * sfrac.abs().clamp(0, 1).square()  # teeth darken toward the corners
    col = col + in_teeth[:, None] * (teeth * shade[:, None] - col)
    return col
