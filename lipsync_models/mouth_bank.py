"""The clip's own mouths: a weight-free generator that re-uses real lower faces of the clip.

The idea is Video Rewrite's (Bregler, Covell and Slaney, SIGGRAPH 1997): every frame where the face
was found offers its lower face to a bank; each output frame takes the bank mouth whose shape best
matches the target mouth of the viseme track, chosen over the whole clip at once so the mouths move
smoothly; the chosen lower face is aligned onto the current face and its colour matched, and
Composite blends it in with the lower-face mask. Nothing is painted: every output mouth is a real
mouth of the clip, moved by a sub-pixel shift and a colour gain.

1. **Bank** (:func:`build_bank`): the frames whose face was found, at most :data:`BANK_MAX` of them
   (evenly spaced), with a shape descriptor each (:data:`SHAPES`): the inner-mouth opening
   (``FaceTrack.opening``, or the face mesh's inner-lip gap where the track has one), the mouth width
   (corner distance over the crop side), the lips (outer lip height less the inner gap, over the
   width: full lips of a rounded mouth, thin ones pressed together), the teeth shown
   (``extras["teeth"]``, the pack's teeth measure) and the pose (head roll; the mouth's offset from
   the face box centre, which moves with yaw).
2. **Targets** (:func:`targets`): from the viseme track, ``jaw_open x (1 - lip_close)``,
   ``lip_spread - lip_round``, ``lip_round - lip_close`` and ``teeth_on_lip + jaw_open x lip_spread``
   (teeth show on an 'f' and in an open 'ee'), each mapped onto this clip's own range by quantiles
   (rank in the target track -> the same quantile of the bank), so the chosen mouths open as far as
   this speaker opens, no further.
3. **Selection** (:func:`select`): dynamic programming (Viterbi) over the clip. The cost of a frame is
   its shape distance to the target plus its pose distance to the current frame; a step to the bank
   frame that followed the previous one in the clip costs nothing (the footage's own motion), holding
   the same mouth a little, any other jump a fixed cost plus the shape distance between the two mouths
   (a big jump reads as a flicker).
4. **Alignment** (:func:`align_crops`): the chosen crop is already in the face track's aligned frame;
   what remains (the crop is centred on the mouth, which moves with the jaw) is a translation found by
   ECC on the band above the mouth (nose and cheeks), then a per-channel colour gain so the chosen
   lower face is lit like the current frame.

Shapes the bank lacks: when the clip never opens as wide as the line asks (its widest opening under
:data:`LACKS_OPEN` of the widest target), the frames asking for more than the bank holds are marked;
:mod:`..backends` hands them to the warp generator. A clip with too few distinct mouths (spread of
the opening under :data:`MIN_SPREAD`, found frames covering under :data:`MIN_SECONDS`) uses the warp
generator altogether; :attr:`Selection.note` says why.

Shots: where the face track found cuts to another face (``extras[CUT]``), each shot is a clip of its
own (:func:`_select_shots`): its own bank, a share of :data:`BANK_MAX` by its length but at least a
second's frames (so a clip of many short shots holds up to a second of crops per shot), and no warp
generator, whose lips come from one frame of the whole clip.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from .calibration import BANK_WEIGHTS, LACKS_OPEN
from .checks import check_shape
from .errors import InputError, LengthMismatchError
from .types import CUT, MOUTH_PARAMS, OWN_PIXELS, FaceTrack

WHO = "LipSyncInference"

BANK_MAX = 400
"""Most bank entries; a longer clip offers every k-th found frame (selection is O(T x N^2))."""
MIN_SECONDS = 1.0
"""Least time covered by found frames for a bank (at the clip's own rate); a shorter clip uses the warp
generator."""
MIN_SPREAD = 0.03
"""Least spread (90th minus 10th percentile) of the bank's opening, in mouth-width units, for the
clip to count as showing distinct mouths; a still or a closed-mouth clip is under it."""
OPEN_AT_JAW_1 = 0.30
"""Inner-mouth opening (mouth widths) of a wide 'ah' (``jaw_open`` = 1): the face-mesh gap of
filmed GRID speakers' widest vowels is 0.15-0.48, 0.25-0.3 typical (FACTS.md, generator.JAW_MAX)."""

SHAPES = ("opening", "width", "lips", "teeth")
"""The bank's shape descriptors, in the column order of :attr:`Bank.shape` (weights:
:data:`~lipsync_models.calibration.BANK_WEIGHTS`)."""

SCALE_FLOOR = (1e-3, 1e-3, 1e-3, 0.01)
"""Least unit of each descriptor's distance: most frames show no teeth (the teeth measure's 10-90 %
spread is 0.001-0.016 on GRID), and a spread near 0 would make a trace of teeth cost more than the
opening."""

# Selection costs, in units of the bank's own shape spread (see select()).
W_POSE = 1.0
"""Weight of the pose distance (roll in radians / 0.1, mouth offset in face widths / 0.05)."""
HOLD_COST = 0.02
"""Cost of showing the same mouth again (a mouth frozen for long looks dead)."""
JUMP_COST = 0.15
"""Fixed cost of a cut to any bank frame but the next one in the clip."""
W_JUMP_SHAPE = 0.5
"""Cost per unit of shape distance between the mouth left and the mouth cut to."""

REPAIR_OVER = 2.0
"""A chosen lower face whose nose-and-cheek band, aligned, differs from the current frame's by more
than this many times the clip's median difference is replaced (:func:`repair`). Relative to the clip
itself; set by reasoning (on LatentSync's demo 2 the smeared mouths read 2.1-2.4 times the median,
the rest mostly under 1.5), not fitted."""
REPAIR_FLOOR = 0.05
"""...and by at least this much (mean absolute grey difference, 0..1, each band less its mean): on a
still head the median difference is tiny and twice it is no pose at all (GRID's aligned bands differ
by 0.036 at most; the smeared mouths on demo 2 by 0.13-0.16). Set between those two, by reasoning."""
REPAIR_CANDIDATES = 8
"""How many of the mouths nearest in shape :func:`repair` tries for a frame."""
ALIGN_SIZE = 64
"""Side of the grey crops ECC aligns on."""
ALIGN_BAND = (0.05, 0.34)
"""Rows (share of the crop side) of the band ECC aligns: nose and cheeks, above the mouth (the crop
is one face width wide and centred on the mouth; the nose tip sits 0.14 face widths above it)."""


@dataclass(frozen=True)
class Bank:
    """The clip's own mouths.

    frames: (N,) int64 clip frame of each entry.
    shape:  (N, K) float64 descriptors :data:`SHAPES` (opening, lips: mouth widths; width: share of
            the crop side; teeth: share of a mouth-width square); K may be fewer (the first K).
    pose:   (N, 2) float64 roll (radians) and mouth offset from the face centre (face widths).
    """

    frames: np.ndarray
    shape: np.ndarray
    pose: np.ndarray
    weights: np.ndarray | None = None
    """(K,) weight of each descriptor in the selection cost (None: :data:`~.calibration.BANK_WEIGHTS`)."""

    @property
    def size(self) -> int:
        return int(len(self.frames))


@dataclass(frozen=True)
class Selection:
    """What :func:`select_mouths` chose.

    source: (T,) int64 clip frame whose lower face each output frame wears (-1 = none: the face
            was not found there, or the clip uses the warp generator).
    warp:   (T,) bool frames whose target the bank cannot reach (the warp generator makes them).
    note:   one line for the node's report.
    use_bank: False where the clip offers too few mouths (the warp generator makes every frame).
    shape, scale: (T, K) every frame's shape descriptors and (K,) the unit of each in the selection's
            distance (its spread over the weight's square root), for :func:`repair`.
    shot:   (T,) int64 shot of each frame (the track's cuts), or None for one shot: a frame wears and
            is repaired with mouths of its own shot only.
    """

    source: np.ndarray
    warp: np.ndarray
    note: str
    use_bank: bool
    shape: np.ndarray | None = None
    scale: np.ndarray | None = None
    shot: np.ndarray | None = None


def _pose(track: FaceTrack) -> np.ndarray:
    b = track.num_frames
    roll = track.extras.get("angle")
    roll = np.zeros(b) if roll is None else roll.detach().double().cpu().numpy()
    boxes = track.boxes.detach().double().cpu().numpy()
    mouth = track.mouth.detach().double().cpu().numpy()
    fw = np.maximum(boxes[:, 2] - boxes[:, 0], 1e-6)
    offset = (0.5 * (mouth[:, 0, 0] + mouth[:, 1, 0]) - 0.5 * (boxes[:, 0] + boxes[:, 2])) / fw
    return np.stack([roll, offset], 1)


def _per_frame(track: FaceTrack, key: str) -> np.ndarray | None:
    v = track.extras.get(key)
    if isinstance(v, torch.Tensor) and v.shape == (track.num_frames,):
        return v.detach().double().cpu().numpy()
    return None


def _shape(track: FaceTrack) -> np.ndarray:
    """(B, 4) descriptors :data:`SHAPES` of every frame of the track."""
    m = track.transform.detach().double().cpu().numpy()
    pts = np.einsum("bij,bkj->bki", m[..., :2], track.mouth.detach().double().cpu().numpy()) + m[:, None, :, 2]
    wpx = np.maximum(np.linalg.norm(pts[:, 1] - pts[:, 0], axis=1), 1e-6)
    opening = track.opening.detach().double().cpu().numpy()
    gap = _per_frame(track, "mesh_gap")  # the face mesh's inner-lip gap, where the mesh saw the mouth
    opening = opening if gap is None else np.where(np.isfinite(gap), gap, opening)
    outer = pts[:, 3, 1] - pts[:, 2, 1]
    inner = np.maximum(pts[:, 5, 1] - pts[:, 4, 1], 0.0)
    teeth = _per_frame(track, "teeth")
    teeth = np.zeros(track.num_frames) if teeth is None else teeth
    return np.stack([opening, wpx / track.crop_size, (outer - inner) / wpx, teeth], 1)


def build_bank(track: FaceTrack, most: int = BANK_MAX) -> Bank:
    """The bank of a clip: its found frames (at most ``most``, evenly spaced) with their shape and
    pose descriptors."""
    if not isinstance(track, FaceTrack):
        raise InputError(f"{WHO}: face_track must be a FaceTrack from MaskLowerFace, got {type(track).__name__}.")
    found = np.nonzero(track.found.detach().cpu().numpy().astype(bool))[0]
    shape, pose = _shape(track), _pose(track)
    ok = found[np.isfinite(shape[found]).all(1) & np.isfinite(pose[found]).all(1)]
    if len(ok) > most:
        ok = ok[np.round(np.linspace(0, len(ok) - 1, most)).astype(np.int64)]
    weights = np.asarray(BANK_WEIGHTS, np.float64)
    if track.extras.get("detector") != "mediapipe":
        weights[SHAPES.index("lips")] = 0.0  # the Haar path's outer-lip landmarks do not follow the lips
    return Bank(frames=ok.astype(np.int64), shape=shape[ok], pose=pose[ok], weights=weights)


def _quantile_map(values: np.ndarray, reference: np.ndarray, among: np.ndarray | None = None) -> np.ndarray:
    """Each value's mid-rank among ``among`` (default: ``values``), read as that quantile of ``reference``."""
    order = np.sort(values if among is None else among)
    below = np.searchsorted(order, values, side="left")
    upto = np.searchsorted(order, values, side="right")
    q = (below + 0.5 * (upto - below)) / max(len(order), 1)
    return np.quantile(reference, np.clip(q, 0.0, 1.0))


def _wanted(params: torch.Tensor) -> list[np.ndarray]:
    p = params.detach().double().cpu().numpy()
    names = ("jaw_open", "lip_spread", "lip_round", "lip_close", "teeth_on_lip")
    jaw, spread, rnd, close, teeth = (p[:, MOUTH_PARAMS.index(k)] for k in names)
    return [jaw * (1.0 - close), spread - rnd, rnd - close, teeth + jaw * spread]


def targets(params: torch.Tensor, bank: Bank, among: torch.Tensor | None = None) -> np.ndarray:
    """(T, K) target descriptors (:data:`SHAPES`, as many as the bank has) for each frame, on the
    bank's own scale: quantile maps of ``jaw_open x (1 - lip_close)``, ``lip_spread - lip_round``,
    ``lip_round - lip_close`` and ``teeth_on_lip + jaw_open x lip_spread``, ranked among ``among``'s
    (the whole clip's params, for a shot of it; default: ``params``)."""
    want = _wanted(params)
    ranks = want if among is None else _wanted(among)
    return np.stack([_quantile_map(v, bank.shape[:, k], ranks[k]) for k, v in enumerate(want[:bank.shape.shape[1]])], 1)


def _scales(bank: Bank) -> np.ndarray:
    """Robust spread of each shape column (the unit its distances are measured in)."""
    q = np.quantile(bank.shape, [0.1, 0.9], axis=0)
    return np.maximum(q[1] - q[0], np.asarray(SCALE_FLOOR[:bank.shape.shape[1]]))


def select(target: np.ndarray, pose: np.ndarray, bank: Bank, active: np.ndarray) -> np.ndarray:
    """Viterbi over the clip: (T,) index into the bank for each frame (where ``active``; -1 elsewhere).

    target: (T, K) descriptors as the bank's; pose: (T, 2) the current frames' pose; active: (T,) bool.
    """
    t_all = len(target)
    out = np.full(t_all, -1, np.int64)
    idx = np.nonzero(active)[0]
    if len(idx) == 0 or bank.size == 0:
        return out
    sc = _scales(bank)
    w = np.asarray(BANK_WEIGHTS if bank.weights is None else bank.weights, np.float64)[:bank.shape.shape[1]]
    d_shape = (((target[idx, None, :] - bank.shape[None]) / sc) ** 2 * w).sum(-1)
    pose_sc = np.array([0.1, 0.05])
    d_pose = (((pose[idx, None, :] - bank.pose[None]) / pose_sc) ** 2).sum(-1)
    unary = d_shape + W_POSE * d_pose
    between = np.sqrt((((bank.shape[:, None] - bank.shape[None]) / sc) ** 2 * w).sum(-1))
    step = JUMP_COST + W_JUMP_SHAPE * between
    np.fill_diagonal(step, HOLD_COST)
    nxt = np.nonzero(bank.frames[1:] == bank.frames[:-1] + 1)[0]
    step[nxt, nxt + 1] = 0.0
    cost = unary[0].copy()
    back = np.zeros((len(idx), bank.size), np.int32)
    for k in range(1, len(idx)):
        total = cost[:, None] + step  # (from, to)
        back[k] = np.argmin(total, 0)
        cost = total[back[k], np.arange(bank.size)] + unary[k]
    path = np.empty(len(idx), np.int64)
    path[-1] = int(np.argmin(cost))
    for k in range(len(idx) - 1, 0, -1):
        path[k - 1] = back[k, path[k]]
    out[idx] = path
    return out


def shots(track: FaceTrack) -> np.ndarray:
    """(B,) int64 shot of each frame: 0, then one more after each cut the track found (``extras[CUT]``)."""
    cut = _per_frame(track, CUT)
    return np.zeros(track.num_frames, np.int64) if cut is None else np.cumsum(cut > 0).astype(np.int64)


def select_mouths(track: FaceTrack, params: torch.Tensor, strength: float = 1.0, fps: float = 25.0) -> Selection:
    """Choose the clip frame whose lower face each output frame wears.

    track: FaceTrack of the clip; params: (T, 5) VisemeTrack.params of the same T frames.
    fps: the clip's frame rate (a bank needs :data:`MIN_SECONDS` of found frames).
    strength: 1 = the target shapes; below 1 the target moves toward each frame's own mouth (0:
    every frame keeps its own lower face); above 1 (up to 2) away from it, within the bank's range.
    Where the track found cuts to another face (:func:`shots`), each shot is a clip of its own: its
    own bank, its own selection (:func:`_select_shots`).
    """
    check_shape(params, "T P", WHO, "visemes.params", P=len(MOUTH_PARAMS))
    b = track.num_frames
    if params.shape[0] != b:
        raise LengthMismatchError(f"{WHO}: the viseme track has {params.shape[0]} frames but the face track "
                                  f"{b}. Make both from the same clip.")
    shot = shots(track)
    if shot[-1] == 0:
        return _select_shot(track, params, strength, fps)
    return _select_shots(track, params, strength, fps, shot)


def _select_shots(track: FaceTrack, params: torch.Tensor, strength: float, fps: float, shot: np.ndarray) -> Selection:
    """:func:`select_mouths` for a clip cut into shots: each shot a clip of its own, its bank a share of
    :data:`BANK_MAX` by its length (at least a second's frames), its targets ranked over the whole
    line (a shot over a pause keeps closed mouths). The warp generator's lips come from one frame of
    the whole clip, another person's in another shot, so it is not used: a shot without a bank (under
    a second, or too still) keeps its own mouths, and a frame asking for a wider mouth than its shot
    shows wears the widest. Only where no shot has a bank does the warp generator draw the whole clip."""
    b = track.num_frames
    need = int(math.ceil(MIN_SECONDS * float(fps)))
    found = track.found.detach().cpu().numpy().astype(bool)
    parts = []
    for k in np.unique(shot).tolist():
        idx = np.flatnonzero(shot == k)
        lo, hi = int(idx[0]), int(idx[-1]) + 1
        most = max(need, int(math.ceil(BANK_MAX * (hi - lo) / b)))
        parts.append((lo, _select_shot(track.frames(slice(lo, hi)), params[lo:hi], strength, fps, params, most)))
    if not any(p.use_bank for _, p in parts):
        return Selection(np.full(b, -1, np.int64), np.zeros(b, bool), f"{len(parts)} shots, none with enough "
                         f"of its own mouths; the warp generator draws the mouth ({parts[0][1].note})", False)
    source = np.concatenate([np.where(p.source >= 0, p.source + lo, -1) if p.use_bank
                             else np.where(found[lo:lo + len(p.source)], np.arange(lo, lo + len(p.source)), -1)
                             for lo, p in parts])
    scales = [p.scale for _, p in parts if p.scale is not None]
    notes = "; ".join(f"shot {k + 1} (frames {lo}-{lo + len(p.source) - 1}): "
                      + (p.note.replace("and are warped", "and wear the shot's widest") if p.use_bank
                         else p.note.replace("the warp generator draws the mouth", "keeps its own mouth"))
                      for k, (lo, p) in enumerate(parts[:6]))
    more = f"; ... {len(parts) - 6} more shots" if len(parts) > 6 else ""
    return Selection(source, np.zeros(b, bool), f"{len(parts)} shots, mouths chosen within each: {notes}{more}", True,
                     _shape(track), np.median(np.stack(scales), 0) if scales else None, shot)


def _select_shot(track: FaceTrack, params: torch.Tensor, strength: float, fps: float,
                 among: torch.Tensor | None = None, most: int = BANK_MAX) -> Selection:
    """:func:`select_mouths` for one shot (``among``: the whole clip's params to rank its targets
    over; ``most``: its bank's size at most)."""
    b = track.num_frames
    bank = build_bank(track, most)
    none = np.full(b, -1, np.int64)
    need = int(math.ceil(MIN_SECONDS * float(fps)))
    if bank.size < need:
        return Selection(none, np.zeros(b, bool), f"clip's own mouths: only {bank.size} frames with a face "
                         f"({bank.size / float(fps):.2f} s; at least {need}, {MIN_SECONDS:g} s, needed); the warp "
                         "generator draws the mouth", False)
    q = np.quantile(bank.shape[:, 0], [0.1, 0.9])
    if q[1] - q[0] < MIN_SPREAD:
        return Selection(none, np.zeros(b, bool), f"clip's own mouths: the mouth hardly moves in this clip "
                         f"(opening spread {q[1] - q[0]:.3f} < {MIN_SPREAD}); the warp generator draws the mouth", False)
    target = targets(params, bank, among)
    active = track.found.detach().cpu().numpy().astype(bool)
    if float(strength) == 0.0:
        return Selection(np.where(active, np.arange(b), -1), np.zeros(b, bool),
                         "clip's own mouths: strength 0, every frame keeps its own mouth", True)
    if float(strength) != 1.0:
        own = _shape(track)
        lo, hi = bank.shape.min(0), bank.shape.max(0)
        target = np.clip(own + float(strength) * (target - own), lo, hi)
    pick = select(target, _pose(track), bank, active)
    source = np.where(pick >= 0, bank.frames[np.maximum(pick, 0)], -1)
    warp = np.zeros(b, bool)
    jaw = params[:, MOUTH_PARAMS.index("jaw_open")].detach().double().cpu().numpy()
    asked = jaw * OPEN_AT_JAW_1
    widest = float(bank.shape[:, 0].max())
    if widest < LACKS_OPEN * float(asked.max(initial=0.0)):
        warp = active & (asked > widest)
    cut = (source[1:] >= 0) & (source[:-1] >= 0) & (source[1:] != source[:-1]) & (source[1:] != source[:-1] + 1)
    jumps = int(cut.sum())
    note = (f"clip's own mouths: {bank.size} bank frames, {len(np.unique(pick[pick >= 0]))} used, "
            f"{jumps} cuts between them")
    if warp.any():
        note += f"; {int(warp.sum())} frames ask for a wider mouth than the clip shows (widest "
        note += f"{widest:.2f} mouth widths) and are warped"
    lost = int((~active).sum())
    if lost:
        note += f"; {lost} frames without a face keep their own mouth"
    w = np.asarray(BANK_WEIGHTS if bank.weights is None else bank.weights, np.float64)[:bank.shape.shape[1]]
    scale = _scales(bank) / np.sqrt(np.maximum(w, 1e-12))
    scale[w <= 0] = np.inf  # a descriptor of weight 0 does not count
    return Selection(source, warp, note, True, _shape(track), scale)


def _grey(small: torch.Tensor) -> np.ndarray:
    """(N, A, A, 3) float 0..1 crops -> (N, A, A) float32 grey."""
    g = 0.299 * small[..., 0] + 0.587 * small[..., 1] + 0.114 * small[..., 2]
    return g.detach().float().cpu().numpy()


def _band_rows(size: int) -> slice:
    """The rows of :data:`ALIGN_BAND` (nose and cheeks) in a crop of side ``size``."""
    return slice(int(ALIGN_BAND[0] * size), int(ALIGN_BAND[1] * size))


def _band_mask(size: int) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    mask[_band_rows(size)] = 1
    return mask


def _colour_gain(current: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """Per-channel gain that gives the chosen frame's band the current frame's mean colour
    (``current``, ``chosen``: (3,) band means), within 0.8..1.25."""
    return np.clip(current / np.maximum(chosen, 1e-3), 0.8, 1.25)


def _ecc_shift(src: np.ndarray, dst: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Translation (dx, dy) in pixels such that ``src(x + d)`` matches ``dst(x)`` on ``mask`` (ECC);
    (0, 0) where ECC fails or moves further than 15 % of the side."""
    import cv2

    warp = np.eye(2, 3, dtype=np.float32)
    try:
        _, warp = cv2.findTransformECC(dst, src, warp, cv2.MOTION_TRANSLATION,
                                       (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 1e-4), mask, 1)
    except cv2.error:
        return 0.0, 0.0
    dx, dy = float(warp[0, 2]), float(warp[1, 2])
    lim = 0.15 * len(src)
    if not (math.isfinite(dx) and math.isfinite(dy)) or abs(dx) > lim or abs(dy) > lim:
        return 0.0, 0.0
    return dx, dy


def alignment(small: torch.Tensor, source: np.ndarray, residual: bool = False):
    """How to bring each chosen lower face onto the current face.

    small:  (B, A, A, C) float 0..1 aligned crops of every frame of the clip, at a small side A
            (:data:`ALIGN_SIZE`; ``composite.crop_faces(images, track, size=A)``).
    source: (B,) clip frame each output frame wears (-1: none).
    Returns (shift (B, 2) float64, in shares of the crop side: the chosen crop sampled at ``u +
    shift * S`` sits on the current one; gain (B, 3) float64 per-channel colour gain, so the band
    above the mouth (nose and cheeks) has the current frame's mean colour). Zero shift and unit gain
    where ``source`` is -1 or the frame itself. ``residual``: also (B,) the band's mean absolute
    difference, once aligned (:func:`_band_residual`; NaN where there is nothing to align).
    """
    check_shape(small, "B A A C", WHO, "small crops", B=len(source))
    a = small.shape[1]
    grey = _grey(small)
    mask = _band_mask(a)
    rows = _band_rows(a)
    means = small[:, rows, :, :3].detach().double().cpu().mean((1, 2)).numpy()
    shift = np.zeros((len(source), 2))
    gain = np.ones((len(source), 3))
    res = np.full(len(source), np.nan)
    for t, j in enumerate(np.asarray(source)):
        if j < 0 or j == t:
            continue
        shift[t] = _ecc_shift(grey[j], grey[t], mask)
        gain[t] = _colour_gain(means[t], means[j])
        if residual:
            res[t] = _band_residual(grey[j], grey[t], shift[t])
    return (shift / a, gain, res) if residual else (shift / a, gain)


def _band_residual(src: np.ndarray, dst: np.ndarray, shift_px) -> float:
    """Mean absolute difference of the band above the mouth (nose and cheeks; each less its mean)
    between ``src`` moved by ``shift_px`` (as :func:`source_transforms` moves it) and ``dst``."""
    import cv2

    a = src.shape[0]
    m = np.float32([[1, 0, shift_px[0]], [0, 1, shift_px[1]]])
    moved = cv2.warpAffine(np.ascontiguousarray(src, np.float32), m, (a, a),
                           flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
    rows = _band_rows(a)
    x, y = moved[rows], dst[rows]
    return float(np.abs((x - x.mean()) - (y - y.mean())).mean())


def repair(selection: Selection, small: torch.Tensor, shift: np.ndarray, gain: np.ndarray, res: np.ndarray,
           available) -> tuple[Selection, np.ndarray, np.ndarray]:
    """Frames whose chosen lower face does not sit on the current face take another.

    A chosen frame whose head was tilted or turned otherwise than the current one's cannot be brought
    onto it by a shift: its nose-and-cheek band, once aligned, still differs from the current frame's
    (``res``, :func:`alignment`), and the pasted lower face reads as a smeared second mouth. Where that
    difference exceeds both :data:`REPAIR_OVER` times the clip's median and :data:`REPAIR_FLOOR`, the
    frame tries, nearest in shape first, the :data:`REPAIR_CANDIDATES` frames of ``available`` (those
    whose crops are at hand: the frames the selection already uses) nearest in shape to the mouth it
    was given, not that mouth (it does not fit) nor itself (its own mouth speaks the clip's own line),
    the frame after the previous frame's new mouth first (the footage's own motion); it takes the first
    whose aligned band is
    within the limit, else keeps its choice. Frames the warp generator makes are left alone.
    small: (B, A, A, C) crops (float 0..1 or uint8); shift (B, 2) in shares of the crop side, gain
    (B, 3): as :func:`alignment` returns them. Returns them with the new choices and the note
    counting the frames that changed."""
    src = np.asarray(selection.source).copy()
    ok = np.isfinite(res) & ~np.asarray(selection.warp, bool)
    if selection.shape is None or ok.sum() < 2:
        return selection, shift, gain
    limit = max(REPAIR_OVER * float(np.median(res[ok])), REPAIR_FLOOR)
    bad = np.flatnonzero(ok & (res > limit))
    if not len(bad):
        return selection, shift, gain
    a = small.shape[1]
    mask = _band_mask(a)
    rows = _band_rows(a)
    cache: dict = {}

    def frame(i):
        if i not in cache:
            x = small[int(i)]
            x = x.float().div(255.0) if x.dtype == torch.uint8 else x.float()
            cache[i] = (_grey(x[None])[0], x[rows, :, :3].double().mean((0, 1)).cpu().numpy())
        return cache[i]

    pool = np.array(sorted(int(f) for f in available), np.int64)
    in_pool = set(pool.tolist())
    shot = selection.shot
    shift, gain = shift.copy(), gain.copy()
    changed, last = 0, {}
    for t in bad.tolist():
        own = pool if shot is None else pool[shot[pool] == shot[t]]  # never another shot's face
        d = np.sqrt((((selection.shape[own] - selection.shape[src[t]]) / selection.scale) ** 2).sum(1))
        near = [int(c) for c in own[np.argsort(d, kind="stable")] if c != t and c != src[t]][:REPAIR_CANDIDATES]
        follow = last.get(t - 1, -2) + 1
        if follow in in_pool and follow != t and follow in near:
            near.remove(follow)
            near.insert(0, follow)
        for c in near:
            sh = _ecc_shift(frame(c)[0], frame(t)[0], mask)
            if _band_residual(frame(c)[0], frame(t)[0], sh) <= limit:  # its pose fits
                changed += int(c != src[t])
                src[t], last[t] = c, c
                shift[t] = np.asarray(sh) / a
                gain[t] = _colour_gain(frame(t)[1], frame(c)[1])
                break
        if len(cache) > 4 * REPAIR_CANDIDATES:  # only the next frames' own crops and followed mouth are read again
            cache = {k: v for k, v in cache.items() if abs(k - t) <= 2 or k == last.get(t, -2) + 1}
    if not changed:
        return selection, shift, gain
    note = (f"{selection.note}; {changed} frames whose chosen lower face did not sit on the face (head tilted "
            "or turned otherwise) took a mouth of the same shape and a fitting pose")
    return replace(selection, source=src, note=note), shift, gain


def source_transforms(transform: torch.Tensor, crop_size: int, source: np.ndarray, shift: np.ndarray) -> torch.Tensor:
    """(B, 2, 3) frame->crop matrices that crop each output frame's chosen lower face, already moved
    onto the current face: the source frame's matrix with its translation less ``shift * S``
    (frames with source -1 keep their own)."""
    src = torch.as_tensor(np.where(np.asarray(source) >= 0, source, np.arange(len(source))), dtype=torch.long)
    m = transform[src.to(transform.device)].clone()
    m[:, :, 2] -= torch.as_tensor(shift * crop_size, dtype=m.dtype, device=m.device)
    return m


@dataclass(frozen=True)
class Plan:
    """Everything :func:`chosen_crops` needs, made once per clip by :func:`plan` (or, for a clip that
    is streamed, by :func:`make_plan` from what a first pass kept).

    selection: the chosen mouths.
    shift:     (B, 2) float64 where each chosen crop is sampled, in shares of the crop side
               (:func:`alignment`).
    gain:      (B, 3) float32 colour gains.
    crops:     {clip frame: (3, S, S) uint8 aligned crop} of every frame the selection uses: the
               bank is held as crops (at most :data:`BANK_MAX` of them, or a
               second's frames per shot where that is more), never as frames.
    """

    selection: Selection
    shift: torch.Tensor
    gain: torch.Tensor
    crops: dict


def used_frames(selection: Selection) -> np.ndarray:
    """The clip frames whose lower faces the selection shows (sorted, unique)."""
    return np.unique(selection.source[selection.source >= 0])


def to_u8(crops: torch.Tensor) -> torch.Tensor:
    """(N, S, S, C) float 0..1 crops -> (N, 3, S, S) uint8 (how the bank keeps them)."""
    return (crops[..., :3].clamp(0, 1) * 255.0).round().to(torch.uint8).permute(0, 3, 1, 2).contiguous()


def make_plan(selection: Selection, small: torch.Tensor | None, crops: dict, align=None) -> Plan:
    """A plan from its parts: ``small`` (B, A, A, C) crops of every frame at :data:`ALIGN_SIZE` (None
    when the selection does not use the bank) and the uint8 crops of :func:`used_frames`; aligned
    (``align(small, source)`` -> shift, gain, residual: default :func:`alignment`), then repaired."""
    b = len(selection.source)
    if not selection.use_bank:
        return Plan(selection, torch.zeros((b, 2), dtype=torch.float64), torch.ones((b, 3)), {})
    missing = [int(f) for f in used_frames(selection) if int(f) not in crops]
    if missing:
        raise InputError(f"{WHO}: the bank lacks the crops of frames {missing[:5]} the selection uses.")
    shift, gain, res = (align or (lambda s, src: alignment(s, src, residual=True)))(small, selection.source)
    selection, shift, gain = repair(selection, small, shift, gain, res, crops)
    return Plan(selection, torch.as_tensor(shift, dtype=torch.float64), torch.as_tensor(gain, dtype=torch.float32),
                dict(crops))


def plan(images: torch.Tensor, track: FaceTrack, params: torch.Tensor, strength: float = 1.0,
         device: torch.device | None = None, chunk: int = 32, fps: float = 25.0) -> Plan:
    """Choose, align and colour-match the clip's own lower faces for every frame.

    images: (B, H, W, C) float 0..1 frames; track: their FaceTrack; params: (B, 5) VisemeTrack.params;
    strength: see :func:`select_mouths`. Holds small crops (:data:`ALIGN_SIZE` px) of every frame
    and the full-size crops (uint8) of the frames the selection uses.
    """
    from .composite import crop_faces

    sel = select_mouths(track, params, strength, fps)
    if not sel.use_bank:
        return make_plan(sel, None, {})
    small = crop_faces(images, track, size=ALIGN_SIZE, device=device)
    crops = {}
    for lo, hi in _runs(used_frames(sel), chunk):  # slices of the frames are views: picking the used frames
        # by index would copy them whole (32 frames of 1080p: 800 MB) to cut 256-px crops out of them
        got = to_u8(crop_faces(images[lo:hi], track.frames(slice(lo, hi)), device=device))
        crops.update({lo + j: c for j, c in enumerate(got)})
    return make_plan(sel, small, crops)


def _runs(frames: np.ndarray, longest: int) -> list[tuple[int, int]]:
    """Sorted unique frame numbers -> (start, stop) runs of consecutive frames, each at most ``longest``."""
    runs: list[tuple[int, int]] = []
    for f in (int(v) for v in frames):
        if runs and runs[-1][1] == f and f - runs[-1][0] < longest:
            runs[-1] = (runs[-1][0], f + 1)
        else:
            runs.append((f, f + 1))
    return runs


def chosen_crops(plan_: Plan, start: int, stop: int, own: torch.Tensor) -> torch.Tensor:
    """(n, 3, S, S) float32 crops of frames ``start:stop``: each the chosen frame's lower face moved
    onto this frame's face and colour-matched; ``own`` (n, 3, S, S), these frames' own crops, stands
    where a frame has no chosen mouth."""
    src = plan_.selection.source[start:stop]
    rows = np.nonzero(src >= 0)[0]
    if len(rows) == 0:
        return own.to(torch.float32).clone()
    s = own.shape[-1]
    bank = torch.stack([plan_.crops[int(src[r])] for r in rows]).to(own.device, torch.float32)  # 0..255
    # grid_sample's normalised coordinates: a shift of d crop sides moves the sampling point by 2 d
    # (a translation: the identity grid plus the shift, what affine_grid gives at 1/20 of its cost)
    move = 2.0 * plan_.shift[start:stop][rows].to(own.device, torch.float32)
    grid = _identity_grid(s, own.device) + move[:, None, None, :]
    moved = torch.nn.functional.grid_sample(bank, grid, mode="bilinear", padding_mode="border", align_corners=False)
    gain = plan_.gain[start:stop][rows].to(own.device, torch.float32)[:, :, None, None] / 255.0  # and 0..1
    moved = moved.mul_(gain).clamp_(0.0, 1.0)
    if len(rows) == len(src):  # every frame has a chosen mouth (the usual case): no copy of their own crops
        return moved
    out = own.to(torch.float32).clone()
    out[torch.as_tensor(rows, device=own.device)] = moved
    return out


@functools.lru_cache(maxsize=4)
def _identity_grid(s: int, device: torch.device) -> torch.Tensor:
    """(1, s, s, 2) float32: affine_grid's identity sampling grid (align_corners False)."""
    eye = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]], dtype=torch.float32, device=device)
    return torch.nn.functional.affine_grid(eye, [1, 3, s, s], align_corners=False)


def own_pixels(selection: Selection) -> torch.Tensor:
    """(B,) bool: the frames that wear another frame's lower face (not their own, not warped): their
    crops are the clip's pixels in this frame's light (:data:`..types.OWN_PIXELS`)."""
    src = np.asarray(selection.source)
    return torch.as_tensor((src >= 0) & (src != np.arange(len(src))) & ~np.asarray(selection.warp, bool))


def output_track(track: FaceTrack, plan_: Plan) -> FaceTrack:
    """The face track of the output frames: the face box and crop of each frame stay (Composite pastes
    into them), while the mouth landmarks, opening and per-frame lip measures are those of the chosen
    frame, carried into this frame through the chosen crop (so SyncScore and the previews measure the
    mouth that is shown, where it is shown)."""
    src = plan_.selection.source
    if not plan_.selection.use_bank:
        return track
    pick = torch.as_tensor(np.where(src >= 0, src, np.arange(len(src))), dtype=torch.long)
    m_cur = track.transform.detach().double().cpu()
    full = torch.zeros((len(src), 3, 3), dtype=torch.float64)
    full[:, :2] = m_cur
    full[:, 2, 2] = 1.0
    inv = torch.linalg.inv(full)[:, :2]
    m_src = source_transforms(m_cur, track.crop_size, src, plan_.shift.numpy())
    pts = track.mouth.detach().double().cpu()[pick]
    crop = pts @ m_src[:, :, :2].transpose(1, 2) + m_src[:, None, :, 2]
    mouth = crop @ inv[:, :, :2].transpose(1, 2) + inv[:, None, :, 2]
    extras = dict(track.extras)
    for key, value in track.extras.items():
        if key in ("contrast", "mesh_gap", "teeth") and isinstance(value, torch.Tensor) and value.shape[:1] == (len(src),):
            extras[key] = value[pick.to(value.device)]
    extras[OWN_PIXELS] = own_pixels(plan_.selection).to(track.opening.device)
    return replace(track, mouth=mouth.to(track.mouth), opening=track.opening[pick.to(track.opening.device)],
                   extras=extras)
