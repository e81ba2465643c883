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
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
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
JAW_MAX = 0.35
"""Inner-lip gap at jaw_open = 1 (as a fraction of the rest mouth width; a wide 'ah'). Filmed
GRID speakers open to 0.15-0.48 of the width at most (face-mesh gap; 0.25 typical); 0.55 looked
like shouting next to them."""
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
INNER_LIP = (0.62, 0.30, 0.30)
"""Typical inner-lip colour under a face brightness of 0.6 (used where the tracked lips are not red)."""
LIP_MIN = 0.04
LIP_MAX = 0.4
"""Plausible lip thickness (outer to inner edge), in mouth widths."""
ANCHOR_CLEAR = 0.2
"""Least distance of the nose and chin anchors from the lips, in rest mouth widths."""
RBF_RADIUS = 0.7
"""Support of the warp's radial basis kernel, in rest mouth widths: nothing farther than this
from the lips, nose and chin points moves (the eyes never do)."""
RBF_RIDGE = 1e-4
NOSE_FADE = 0.25
"""The warp fades out over this many rest mouth widths above the nose point (and is 0 beyond)."""
JAW_SIDE = (0.45, -0.12, 0.85)
"""Jaw-line points beside the chin (u, v offset from the chin in rest mouth widths) and the
share of the chin's motion they follow."""
ROI_BOX = (-0.95, 0.95, -0.75, 1.25)
"""Where the lips can be (u from, to, v from, to in rest mouth widths about the mouth centre):
the region that gets the sharp lip seam and the inner mouth at full resolution."""
TRACK_TOLERANCE = 0.04
"""Tracked gap and width within this fraction of the rest width of the clip's rest values count
as at rest (tracker noise is not turned into mouth motion); beyond twice it they are corrected
in full."""
LIP_REPAINT = 0.9
LIP_FADE = 0.2
CORNER_SHARP = 4.0
"""How far (share of each lip's thickness, from its inner edge) the frame's lip colour is
painted over the warped footage, and over which share of the thickness before that it fades
out (the tracked inner lips often lie on the footage's teeth); the paint fades towards the
mouth corners over 1 / CORNER_SHARP of the half-width."""
GAP_TOLERANCE = 0.004
"""The same for the inner-lip gap: GRID speakers' whole mouth motion is 2-10 % of the width."""
CAVITY_SHALLOW = 0.85
CAVITY_DEEP = 0.18
CAVITY_CURVE = 1.0
CAVITY_MID = 0.35
TEETH_TINT = 0.15
"""Cavity colour as a fraction of the lip colour, for a barely open and a wide-open mouth; the
darkening follows the opening (fraction of the widest) to this power; the middle of the cavity
is up to CAVITY_MID darker still. The teeth take TEETH_TINT of the skin's colour."""


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


def _vert(h: torch.Tensor) -> torch.Tensor:
    return torch.stack((torch.zeros_like(h), h), -1)


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

    centre, ex, ey, _ = _mouth_frame(mouth)
    src = _measure(_to_local(mouth, centre, ex, ey))
    tgt = _targets(src, params, rest_w, rest_gap, float(strength), rest)
    src, tgt = _clear_anchors(src, tgt, rest_w)

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
    src_up, tgt_up = torch.cat((src_up, fixed_up), 1), torch.cat((tgt_up, fixed_up), 1)
    src_lo, tgt_lo = torch.cat((src_lo, fixed_lo), 1), torch.cat((tgt_lo, fixed_lo), 1)
    moved = torch.maximum((tgt_up - src_up).abs().amax((1, 2)), (tgt_lo - src_lo).abs().amax((1, 2))) > 1e-4
    if not bool(moved.any()):
        return crops.clone()
    px_unit = s / 256.0

    # 1. Two displacement fields (target -> source, crop px) on a coarse grid.
    radius = RBF_RADIUS * rest_w
    g = max(s // 4, 16)
    lin = torch.linspace(0, s - 1, g, device=dev, dtype=work)
    gy, gx = torch.meshgrid(lin, lin, indexing="ij")
    grid_pts = torch.stack((gx, gy), -1).reshape(1, -1, 2).expand(b, -1, -1)
    fields = []
    for t_loc, s_loc in ((tgt_up, src_up), (tgt_lo, src_lo)):
        t_pts = _to_crop(t_loc, centre, ex, ey)
        s_pts = _to_crop(s_loc, centre, ex, ey)
        coef = _rbf_fit(t_pts, s_pts - t_pts, radius)
        fields.append(_rbf_eval(coef, t_pts, grid_pts, radius).reshape(b, g, g, 2))
    coarse = torch.cat(fields, -1).permute(0, 3, 1, 2)  # (B, 4, g, g)

    # 2. Whole crop: the two fields blended at coarse resolution (smooth away from the mouth).
    cm = _maps(tgt, gx.expand(b, g, g), gy.expand(b, g, g), centre, ex, ey, px_unit)
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
    out = F.grid_sample(x, grid.permute(0, 2, 3, 1), mode="bilinear", padding_mode="border", align_corners=True)

    # 3. Mouth region at full resolution: a sharp switch between the fields at the lip seam,
    #    and the synthetic inner mouth.
    rh, rw, start = _roi(rest_w, centre, ex, ey, s)
    ry = start[:, 1].view(b, 1, 1).to(work) + torch.arange(rh, device=dev, dtype=work).view(1, rh, 1)
    rx = start[:, 0].view(b, 1, 1).to(work) + torch.arange(rw, device=dev, dtype=work).view(1, 1, rw)
    rx, ry = rx.expand(b, rh, rw), ry.expand(b, rh, rw)
    rm = _maps(tgt, rx, ry, centre, ex, ey, px_unit)
    at = torch.stack((rx, ry), -1) * (2.0 / (s - 1)) - 1
    f = F.grid_sample(coarse, at, mode="bilinear", padding_mode="border", align_corners=True)  # (B, 4, rh, rw)
    wu = rm.w_up[:, None]
    d = f[:, :2] * wu + f[:, 2:] * (1 - wu)
    src_at = (torch.stack((rx, ry), 1) + d).permute(0, 2, 3, 1) * (2.0 / (s - 1)) - 1
    roi = F.grid_sample(x, src_at, mode="bilinear", padding_mode="border", align_corners=True)

    # The mouth is re-rendered, not just warped: the tracked inner lips tend to sit inside the
    # real ones and the tracker ignores small openings, so whatever lies between the lips in the
    # footage (teeth, cavity) would survive a warp. Between the target inner lips goes a
    # synthetic inner mouth (a barely darker seam when closed), and the inner part of each lip
    # (:data:`LIP_REPAINT` of its thickness) is painted over in the frame's own lip colour,
    # fading into the warped footage towards the outer lip edge.
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
    roi = roi + alpha[:, None] * (paint - roi)
    roi = roi.clamp(0, 1)
    for i in range(b):
        if not bool(moved[i]):  # at rest: the crop itself, bit for bit
            out[i] = x[i]
            continue
        x0, y0 = int(start[i, 0]), int(start[i, 1])
        out[i, :, y0:y0 + rh, x0:x0 + rw] = roi[i]
    return out.to(dt)


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
    tongue = (lip * torch.tensor([0.62, 0.42, 0.42], device=x.device, dtype=x.dtype) + 0.02).view(b, 3, 1, 1)
    teeth_base = torch.tensor([0.93, 0.90, 0.84], device=x.device, dtype=x.dtype)
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
