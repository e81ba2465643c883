"""The built-in generator's re-rendered mouth: colours sampled from the crop (lips, the skin
beside the corners), the clip's own lips mapped onto the target lips (:func:`_lip_texture`), and
a synthetic inner mouth (cavity, upper teeth, tongue; :func:`_inner_mouth`). Tones come from
:mod:`.calibration`.
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F

from .calibration import (CAVITY_CURVE, CAVITY_DEEP, CAVITY_MID, CAVITY_SHALLOW, INNER_LIP, JAW_MAX, TEETH_MAX,
                          TEETH_TINT, TEETH_TONE, TONGUE_TONE)
from .mouth_shape import (LIP_MAX, LIP_MIN, MouthRest, _Maps, _Mouth, _measure, _mouth_frame, _profile, _smoothstep,
                          _to_crop, _to_local)

# --- colours -------------------------------------------------------------------------------

_BOX = torch.tensor([(dx, dy) for dy in (-2.0, 0.0, 2.0) for dx in (-2.0, 0.0, 2.0)])


def _sample(crops: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
    """Colours (B, N, 3) at crop-pixel points (B, N, 2), each averaged over a 5x5-px patch."""
    b, n, _ = pts.shape
    s = crops.shape[-1]
    p = pts[:, :, None] + _BOX.to(pts)[None, None]
    grid = (p / (s - 1) * 2 - 1).reshape(b, n * 9, 1, 2)
    c = F.grid_sample(crops, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return c[..., 0].reshape(b, 3, n, 9).mean(-1).transpose(1, 2)


def _beside_corners(m: _Mouth, w) -> torch.Tensor:
    """Two skin points (B, 2, 2), local coords: a quarter mouth width ``w`` beside each corner."""
    return torch.stack((
        torch.stack((m.left[:, 0] - 0.25 * w, m.left[:, 1]), -1),
        torch.stack((m.right[:, 0] + 0.25 * w, m.right[:, 1]), -1),
    ), 1)


def _skin_beside(crops, m: _Mouth, w, centre, ex, ey) -> torch.Tensor:
    """Mean colour (B, 3) of the skin beside both mouth corners (:func:`_beside_corners`)."""
    return _sample(crops, _to_crop(_beside_corners(m, w), centre, ex, ey)).mean(1)


def _lip_texture(x, src: _Mouth, tgt: _Mouth, rest: MouthRest, rm: _Maps, centre, ex, ey, rest_w):
    """The reference frame's lips mapped onto the target lips over the ROI: (B, 3, h, w).

    Each ROI pixel gets lip coordinates in the target mouth (fraction across the mouth, and
    depth into the upper or lower lip from its inner edge, as a share of the lip's thickness);
    the same coordinates in the reference mouth give where to read its crop. The reference's
    lip thickness is the clip's (``rest.upper``/``rest.lower``) like the target's. Its colours
    are scaled by the skin beside the mouth corners, this frame over the reference frame, so
    a change of light across the clip carries over (gain 0.7-1.4 per channel)."""
    b = x.shape[0]
    ref_crop = rest.ref_crop.to(x)[None]
    rmouth = rest.ref_mouth.to(x)[None]
    rc, rex, rey, _ = _mouth_frame(rmouth)
    ref = _measure(_to_local(rmouth, rc, rex, rey))
    if rest.upper is not None and rest.lower is not None:
        w1 = rest_w[:1]
        ref = replace(ref, up_out=(ref.up_in - rest.upper.to(x)).clamp(ref.up_in - LIP_MAX * w1, ref.up_in - LIP_MIN * w1),
                      lo_out=(ref.lo_in + rest.lower.to(x)).clamp(ref.lo_in + LIP_MIN * w1, ref.lo_in + LIP_MAX * w1))
    view = (b, 1, 1)
    sf = rm.sfrac.clamp(-1, 1)
    up_th = ((tgt.up_in - tgt.up_out).view(view) * rm.prof).clamp_min(1e-3)
    lo_th = ((tgt.lo_out - tgt.lo_in).view(view) * rm.prof).clamp_min(1e-3)
    t_up = ((rm.top - rm.v) / up_th).clamp(0, 1.5)
    t_lo = ((rm.v - rm.bot) / lo_th).clamp(0, 1.5)
    upper = rm.v <= (rm.top + rm.bot) / 2
    u_ref, line_ref = ref.base(sf)
    one = (1, 1, 1)
    h_up = ref.up_in.view(one) + t_up * (ref.up_out - ref.up_in).view(one)
    h_lo = ref.lo_in.view(one) + t_lo * (ref.lo_out - ref.lo_in).view(one)
    v_ref = line_ref + torch.where(upper, h_up, h_lo) * _profile(sf)
    px = rc[:, 0].view(one) + u_ref * rex[:, 0].view(one) + v_ref * rey[:, 0].view(one)
    py = rc[:, 1].view(one) + u_ref * rex[:, 1].view(one) + v_ref * rey[:, 1].view(one)
    s = x.shape[-1]
    grid = torch.stack((px, py), -1) * (2.0 / (s - 1)) - 1
    tex = F.grid_sample(ref_crop.expand(b, -1, -1, -1), grid, mode="bilinear", padding_mode="border",
                        align_corners=True)
    gain = (_skin_beside(x, src, rest_w, centre, ex, ey)
            / _skin_beside(ref_crop, ref, rest_w[:1], rc, rex, rey).clamp_min(0.02)).clamp(0.7, 1.4)
    return (tex * gain.view(b, 3, 1, 1)).clamp(0, 1)


def _inner_mouth(x, src, tgt, params, rest_w, centre, ex, ey, rm: _Maps, px_unit):
    """Colours (B, 3, h, w) of a synthetic open mouth over the ROI (cavity, upper teeth, tongue)
    and the frame's lip colour (B, 3)."""
    b = x.shape[0]
    w = rest_w
    # Lip colour: the reddest of a few points across both lips (a tracker that takes teeth for
    # lip must not turn the cavity grey); skin: beside the mouth corners.
    fr = torch.tensor([0.3, 0.5, 0.7], device=x.device, dtype=x.dtype)
    s3 = torch.tensor([-0.4, 0.0, 0.4], device=x.device, dtype=x.dtype)
    lip_loc = []
    for outer, inner in ((src.up_out, src.up_in), (src.lo_out, src.lo_in)):
        h = inner[:, None, None] + (outer - inner)[:, None, None] * fr[None, :, None]  # (B, 3, 1)
        ss = s3[None, None, :].expand(b, 3, 3)
        u, v0 = src.base(ss)
        lip_loc.append(torch.stack((u, v0 + h * _profile(ss)), -1).reshape(b, 9, 2))
    cols = _sample(x, _to_crop(torch.cat(lip_loc + [_beside_corners(src, w)], 1), centre, ex, ey))
    lip_cols, skin = cols[:, :18], cols[:, 18:].mean(1)
    red = lip_cols[..., 0] - 0.5 * (lip_cols[..., 1] + lip_cols[..., 2])
    lip = (lip_cols * torch.softmax(red * 40, dim=1)[..., None]).sum(1)
    lum = (0.299 * skin[:, 0] + 0.587 * skin[:, 1] + 0.114 * skin[:, 2]).clamp(0.05, 1)
    # Trust the sampled lip colour as far as it is lip-red; fill in with a typical inner-lip
    # colour at the face's brightness.
    typ = torch.tensor(INNER_LIP, device=x.device, dtype=x.dtype)
    typical = typ * (lum / 0.6).clamp(0.3, 1.5).view(b, 1)
    red_lip = (lip[:, 0] - 0.5 * (lip[:, 1] + lip[:, 2])).view(b, 1)
    trust = (red_lip / (typ[0] - 0.5 * (typ[1] + typ[2])) / (lum / 0.6).view(b, 1)).clamp(0, 1)
    lip = (typical + trust * (lip - typical)).clamp(0, 1)
    # the colour painted over the lips: the middle of the lip samples' outer two thirds (the
    # reddest sample, used for the inner mouth, is the darker inside of the lip)
    paint = lip_cols.reshape(b, 2, 3, 3, 3)[:, :, 1:].reshape(b, 12, 3).median(1).values

    # A narrow opening shows the lit inside of the lips; a wide one the deep shadow behind the
    # teeth: the cavity darkens as the mouth opens.
    full_gap = (tgt.lo_in - tgt.up_in).clamp_min(0)
    depth_open = (full_gap / (JAW_MAX * w)).clamp(0, 1).view(b, 1)
    shade = CAVITY_SHALLOW + (CAVITY_DEEP - CAVITY_SHALLOW) * depth_open.pow(CAVITY_CURVE)
    cavity = (lip * shade + 0.01).view(b, 3, 1, 1)
    tongue = (lip * torch.tensor(TONGUE_TONE, device=x.device, dtype=x.dtype) + 0.02).view(b, 3, 1, 1)
    teeth_base = torch.tensor(TEETH_TONE, device=x.device, dtype=x.dtype)
    # off-white, in the face's light, and a little of the skin's tint (pure white reads as drawn)
    teeth = (teeth_base * (0.3 + 0.65 * lum.view(b, 1)).clamp(max=1.0) * (1 - TEETH_TINT)
             + TEETH_TINT * skin).clamp(max=1).view(b, 3, 1, 1)

    top, bot, v, sfrac, prof = rm.top, rm.bot, rm.v, rm.sfrac, rm.prof
    gap = (bot - top).clamp_min(0)
    depth = ((v - top) / gap.clamp_min(1e-3)).clamp(0, 1)  # 0 at the upper lip, 1 at the lower
    mid_dark = CAVITY_MID * depth_open.view(b, 1, 1).pow(CAVITY_CURVE)
    col = cavity * (1 - mid_dark * (1 - (2 * depth - 1).square()))[:, None]  # darkest in the middle
    edge = 1.2 * px_unit
    # tongue: a shade rising from the lower lip, only in a well-open mouth
    tongue_h = 0.32 * gap * (full_gap.view(b, 1, 1) / (0.25 * w.view(b, 1, 1))).clamp(0, 1)
    t_alpha = ((v - (bot - tongue_h)) / (2 * edge)).clamp(0, 1) * _smoothstep((1 - sfrac.abs()) * 3)
    col = col + (0.8 * t_alpha)[:, None] * (tongue - col)
    # upper teeth: a band under the upper lip, covering the whole gap for F/V
    teeth_on = params[:, 4].view(b, 1, 1)
    band = torch.minimum(0.35 * gap, TEETH_MAX * w.view(b, 1, 1) * prof)
    band = band + teeth_on * (gap - band)
    in_teeth = ((top + band - v) / edge).clamp(0, 1) * _smoothstep((0.82 - sfrac.abs()) * 5)
    shade = 1 - 0.45 * sfrac.abs().clamp(0, 1).square()  # teeth darken toward the corners
    col = col + in_teeth[:, None] * (teeth * shade[:, None] - col)
    return col, paint
