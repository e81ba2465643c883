"""The built-in generator's mouth geometry: the tracked mouth read in its own frame (centre,
corner-to-corner axis, lip heights at the middle of the mouth), where the target lips go for a
set of mouth parameters (:func:`_targets`), and the per-pixel maps of the target mouth that the
warp and the painting use. Lengths are crop pixels; shape constants are in rest mouth widths
(the fitted ones come from :mod:`.calibration`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from .calibration import (CHIN_SHARE, CORNER_DROP, GAP_TOLERANCE, JAW_MAX, LOWER_SHARE, OPEN_NARROW, PRESS_THIN,
                          ROUND, ROUND_THICKEN, SPREAD, TEETH_LIFT, TEETH_LIP_DROP, TRACK_TOLERANCE)
from .types import MOUTH_POINTS

# Landmark indices (MOUTH_POINTS order).
CL, CR, UO, LO, UI, LI, NOSE, CHIN = (MOUTH_POINTS.index(n) for n in MOUTH_POINTS)


LIP_MIN = 0.04
LIP_MAX = 0.4
"""Plausible lip thickness (outer to inner edge), in mouth widths."""
ANCHOR_CLEAR = 0.2
"""Least distance of the nose and chin anchors from the lips, in rest mouth widths."""
ROI_BOX = (-0.95, 0.95, -0.75, 1.25)
"""Where the lips can be (u from, to, v from, to in rest mouth widths about the mouth centre):
the region that gets the sharp lip seam and the inner mouth at full resolution."""

@dataclass(frozen=True)
class MouthRest:
    """The clip's rest mouth, in crop pixels: ``width`` (corner to corner) and ``gap``
    (inner-lip gap the tracker reports on closed lips). Scalars as 0-d tensors."""

    width: torch.Tensor
    gap: torch.Tensor
    upper: torch.Tensor | None = None
    lower: torch.Tensor | None = None
    """Median upper and lower lip thickness (outer to inner lip, crop px), or None: each
    frame's own. The re-rendered lips take the clip's thickness, so a tracker whose outer lip
    points move with the opening does not carry that motion into the output."""
    ref_crop: torch.Tensor | None = None
    ref_mouth: torch.Tensor | None = None
    """A closed-mouth frame of the clip (:func:`reference_frame`): its crop (3, S, S) and its
    landmarks (8, 2) in crop pixels. When given, the re-rendered lips carry this frame's own lip
    texture, stretched to the target lips, instead of one flat lip colour; None: flat colour.
    (The inside of the mouth stays drawn: borrowing a clip's most open frame was tried and
    read as more lip on speakers who barely open, whose tracked inner lips lie on the lips.)"""


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
    """Read a _Mouth from landmarks in local coordinates (B, 8, 2).

    Outer lip points are kept within a plausible lip thickness of the inner ones (0.04 to 0.4
    mouth widths), so a stray landmark cannot pin the warp next to the lip it should move."""
    left, right = loc[:, CL], loc[:, CR]
    mid_v = (left[:, 1] + right[:, 1]) / 2
    w = (right[:, 0] - left[:, 0]).abs().clamp_min(1e-3)
    up_in, lo_in = loc[:, UI, 1] - mid_v, loc[:, LI, 1] - mid_v
    lo_in = torch.maximum(lo_in, up_in)
    up_out = (loc[:, UO, 1] - mid_v).clamp(up_in - LIP_MAX * w, up_in - LIP_MIN * w)
    lo_out = (loc[:, LO, 1] - mid_v).clamp(lo_in + LIP_MIN * w, lo_in + LIP_MAX * w)
    return _Mouth(left, right, up_out, up_in, lo_in, lo_out, loc[:, CHIN], loc[:, NOSE])


def _clear_anchors(src: _Mouth, tgt: _Mouth, w: torch.Tensor) -> tuple[_Mouth, _Mouth]:
    """Keep the nose anchor at least :data:`ANCHOR_CLEAR` mouth widths above both upper lips and
    the chin that far below both lower lips (a smooth warp cannot hold a fixed point right next
    to a moving one; trackers sometimes put these points on the lips)."""
    def absolute(m: _Mouth, h: torch.Tensor) -> torch.Tensor:
        return (m.left[:, 1] + m.right[:, 1]) / 2 + h

    top = torch.minimum(absolute(src, src.up_out), absolute(tgt, tgt.up_out)) - ANCHOR_CLEAR * w
    nose = torch.stack((src.nose[:, 0], torch.minimum(src.nose[:, 1], top)), -1)
    floor = absolute(src, src.lo_out) + ANCHOR_CLEAR * w
    lift = (floor - src.chin[:, 1]).clamp_min(0)
    src_chin = src.chin + _vert(lift)
    tgt_chin = tgt.chin + _vert(lift)
    floor_t = absolute(tgt, tgt.lo_out) + ANCHOR_CLEAR * w
    tgt_chin = tgt_chin + _vert((floor_t - tgt_chin[:, 1]).clamp_min(0))
    return replace(src, nose=nose, chin=src_chin), replace(tgt, nose=nose, chin=tgt_chin)


def _targets(src: _Mouth, params: torch.Tensor, rest_w: torch.Tensor, rest_gap: torch.Tensor,
             strength: float, rest: MouthRest | None = None) -> _Mouth:
    """Where the lips go: neutralise the tracked mouth, then apply the parameters."""
    jaw, spread, rnd, close, teeth = params.unbind(-1)
    w = rest_w
    if rest is not None and rest.upper is not None:
        # the clip's lip thickness, where it is plausible for this frame
        tol_th = TRACK_TOLERANCE * w
        up_out = src.up_out - _deadzone(rest.upper.to(w) - (src.up_in - src.up_out), tol_th)
        lo_out = src.lo_out + _deadzone(rest.lower.to(w) - (src.lo_out - src.lo_in), tol_th)
        up_out = up_out.clamp(src.up_in - LIP_MAX * w, src.up_in - LIP_MIN * w)
        lo_out = lo_out.clamp(src.lo_in + LIP_MIN * w, src.lo_in + LIP_MAX * w)
        src = replace(src, up_out=up_out, lo_out=lo_out)
    # 1. neutral: close the footage's own opening down to the rest gap, rest width.
    gap = (src.lo_in - src.up_in).clamp_min(0)
    tol = TRACK_TOLERANCE * w
    shut = _deadzone((gap - rest_gap).clamp_min(0), GAP_TOLERANCE * w)
    src_w = src.right[:, 0] - src.left[:, 0]
    base_w = src_w + _deadzone(w - src_w, tol)
    up_shift = (1 - LOWER_SHARE) * shut  # the upper lip comes down by its share
    lo_shift = -LOWER_SHARE * shut       # the lower lip and the jaw come up
    centre_u = (src.left[:, 0] + src.right[:, 0]) / 2
    # 2. the requested mouth.
    d = JAW_MAX * w * jaw * (1 - close)
    half = base_w / 2 * (1 + SPREAD * spread - ROUND * rnd - OPEN_NARROW * jaw * (1 - close))
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


def _deadzone(x: torch.Tensor, tol: torch.Tensor) -> torch.Tensor:
    """0 within +-tol (tracker noise), x itself beyond +-2 tol, a continuous ramp between."""
    return x * ((x.abs() - tol) / tol.clamp_min(1e-6)).clamp(0, 1)


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


_UPPER_ANCHORS = torch.tensor([(-0.6, -0.6), (0.6, -0.6), (-1.2, -0.5), (1.2, -0.5), (-1.6, -0.05), (1.6, -0.05)])
_LOWER_ANCHORS = torch.tensor([(-1.6, -0.05), (1.6, -0.05), (-1.5, 0.7), (1.5, 0.7)])
"""Fixed (never moving) points of the upper and lower warp, in rest mouth widths about the
mouth centre (u along the mouth, v down)."""


def _vert(h: torch.Tensor) -> torch.Tensor:
    return torch.stack((torch.zeros_like(h), h), -1)



def _smoothstep(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(0, 1)
    return x * x * (3 - 2 * x)




# --- per-pixel mouth maps ------------------------------------------------------------------

@dataclass
class _Maps:
    """Target mouth shape at pixels (all (B, ...)): u, v local coords; sfrac across the mouth
    (-1..1 between the corners); prof lip profile; top/bot inner lip edges; w_up weight of the
    upper displacement field."""

    u: torch.Tensor
    v: torch.Tensor
    sfrac: torch.Tensor
    prof: torch.Tensor
    top: torch.Tensor
    bot: torch.Tensor
    half: torch.Tensor
    w_up: torch.Tensor


def _maps(tgt: _Mouth, px: torch.Tensor, py: torch.Tensor, centre, ex, ey, px_unit: float) -> _Maps:
    """Mouth maps at crop-pixel coordinates px, py (B, H, W)."""
    b = px.shape[0]
    view = (b, 1, 1)
    qx = px - centre[:, 0].view(view)
    qy = py - centre[:, 1].view(view)
    u = qx * ex[:, 0].view(view) + qy * ex[:, 1].view(view)
    v = qx * ey[:, 0].view(view) + qy * ey[:, 1].view(view)
    lu, ru = tgt.left[:, 0].view(view), tgt.right[:, 0].view(view)
    lv, rv = tgt.left[:, 1].view(view), tgt.right[:, 1].view(view)
    half = ((ru - lu) / 2).clamp_min(1e-3)
    sfrac = (u - (lu + ru) / 2) / half
    # the corner line, continued straight beyond the corners
    line = (lv + rv) / 2 + (rv - lv) / 2 * sfrac
    prof = _profile(sfrac)
    top = line + tgt.up_in.view(view) * prof
    bot = line + tgt.lo_in.view(view) * prof
    seam = (top + bot) / 2
    outside = (sfrac.abs() - 1).clamp_min(0) * half  # distance beyond the corners
    soft = 0.75 * px_unit + 0.8 * outside
    w_up = ((seam - v) / soft + 0.5).clamp(0, 1)
    return _Maps(u, v, sfrac, prof, top, bot, half, w_up)


def _roi(rest_w: torch.Tensor, centre, ex, ey, size: int):
    """The mouth region worked on at full resolution: a box of :data:`ROI_BOX` (in rest mouth
    widths about the mouth centre, 15 % larger for a slightly rotated mouth), clipped to the
    crop. Its size depends only on the clip's rest width, so a frame's result does not depend
    on the other frames of its batch. Returns (h, w, top-left corners (B, 2) as x, y)."""
    u0, u1, v0, v1 = ROI_BOX
    rw = float(rest_w[0])
    w = min(int(math.ceil((u1 - u0) * rw * 1.15)) + 2, size)
    h = min(int(math.ceil((v1 - v0) * rw * 1.15)) + 2, size)
    mid = _to_crop(torch.stack(((u0 + u1) / 2 * rest_w, (v0 + v1) / 2 * rest_w), -1)[:, None], centre, ex, ey)[:, 0]
    start = torch.stack(((mid[:, 0] - w / 2).round().clamp(0, size - w), (mid[:, 1] - h / 2).round().clamp(0, size - h)), -1)
    return h, w, start.long()
