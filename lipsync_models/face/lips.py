"""Where the mouth is on the Haar (and manual-box) path, from the pixels: the dark line between the lips
refines the face box's prior (:func:`_locate_mouths`), the clip's own mouth replaces it where a tilted
head took the mouth out of that search's reach (:func:`_follow_template`), then the lips' extent
recentres it (:func:`_recentre`). The face mesh brings its own mouth and skips all three."""

from __future__ import annotations

import math

import numpy as np

from ..calibration import (CUT_RATIO, LIP_BOX_DOWN, LIP_BOX_UP, LIP_BOX_X, LIP_COLOUR_FRAMES, LIP_LINE_BIAS, MOUTH_IN_BOX,
                           MOUTH_WIDTH, RECENTRE_MAX, REFINE_MAX, REFINE_MAX_X, TEMPLATE_CLEAR, TEMPLATE_DOWN,
                           TEMPLATE_GAIN, TEMPLATE_HALF, TEMPLATE_MIN_FRAMES, TEMPLATE_MIN_MOVE, TEMPLATE_PLAY,
                           TEMPLATE_UP)
from ._base import ANALYSIS_SIZE, CROP_SCALE, _cv2, _gauss_smooth, _median_filter, _nearest_run, _np_float
from .geometry import _analysis_crops, _apply, _invert, _similarity
from .measure import _ycc


def _refine_mouth(crops: np.ndarray) -> np.ndarray:
    """Locate the mouth line in crops centred on a prior guess (crop side = face width).

    The line between the lips (or the open mouth) is the darkest horizontal structure near the
    prior: its row is a soft arg-min of the brightness profile of the centre columns, its
    horizontal centre the centroid of the darkness along that row band (symmetric, unlike lip
    colour, which uneven light shifts), its slope a weighted line fit through the darkest row
    of each column. crops: (n, S, S, 3) uint8. Returns (n, 4): x, y (crop px), angle (radians),
    contrast of the mouth line against the skin (0 = nothing found).
    """
    n, s = crops.shape[:2]
    y, _ = _ycc(crops)
    c = s // 2
    hy, hx, cw = int(round(0.11 * s)), int(round(0.27 * s)), int(round(0.085 * s))
    rows = np.arange(c - hy, c + hy, dtype=np.float32)
    prof = y[:, c - hy:c + hy, c - cw:c + cw].mean(axis=2)
    # soft arg-min, with a Gaussian preference for the prior row (keeps nostrils and chin out)
    w = np.exp(-(prof - prof.min(axis=1, keepdims=True)) / 0.02 - 0.5 * ((rows - c) / (0.045 * s)) ** 2)
    cy = (w * rows).sum(axis=1) / w.sum(axis=1)
    ref = np.median(y[:, c - hy:c + hy, c - hx:c + hx].reshape(n, -1), axis=1)
    out = np.zeros((n, 4), np.float32)
    xs = np.arange(c - hx, c + hx, dtype=np.float32)
    band_h = max(int(round(0.03 * s)), 1)
    for i in range(n):
        r = int(np.clip(round(cy[i]), c - hy + band_h, c + hy - band_h - 1))
        band = y[i, r - band_h:r + band_h + 1, c - hx:c + hx]
        q = np.clip(ref[i] - band, 0, None).sum(axis=0)
        q = np.clip(q - 0.3 * q.max(), 0, None)
        if q.sum() <= 1e-6:
            out[i] = (c, c, 0.0, 0.0)
            continue
        cx = float((q * xs).sum() / q.sum())
        # corner-line slope: the darkest row near each end of the dark run through the centre
        on = np.nonzero(q > 0)[0]
        runs = np.split(on, np.nonzero(np.diff(on) > 1)[0] + 1)
        run = min(runs, key=lambda z: abs(0.5 * (xs[z[0]] + xs[z[-1]]) - cx))
        slope = 0.0
        if len(run) >= 0.12 * s:
            sub = y[i, r - 2 * band_h:r + 2 * band_h + 1, c - hx:c + hx]
            # weighted line fit through each column's soft darkest row (symmetric curvature of
            # a smile or a pout does not tilt it)
            cols = sub[:, run[0]:run[-1] + 1]
            e = np.exp(-(cols - cols.min(axis=0, keepdims=True)) / 0.05)
            rr = np.arange(sub.shape[0], dtype=np.float32)[:, None]
            rowc = (e * rr).sum(axis=0) / e.sum(axis=0)
            wq = q[run[0]:run[-1] + 1] + 1e-6
            xq = xs[run[0]:run[-1] + 1]
            mx = (wq * xq).sum() / wq.sum()
            my = (wq * rowc).sum() / wq.sum()
            slope = float((wq * (xq - mx) * (rowc - my)).sum() / max((wq * (xq - mx) ** 2).sum(), 1e-6))
        contrast = float(ref[i] - prof[i].min()) / max(float(ref[i]), 1e-3)
        out[i] = (cx, cy[i], math.atan(slope), contrast)
    return out



def _lip_box(crops: np.ndarray) -> np.ndarray:
    """The mouth's extent in crops roughly centred on it (crop side = face width).

    Lips, teeth and the dark mouth line are all bounded by horizontal edges (the vertical
    gradient of luma, and of the lip map), skin and soft shadows are not. The column profile of
    that edge energy (smoothed, above its 10th percentile) gives the mouth corners: the run
    above 0.3 x its peak (gaps up to 4 px bridged) nearest the centre; this stays true for a
    turned, smiling face whose darker cheek pulls a darkness centroid sideways. The row profile
    over those columns gives the lips' top and bottom (run above 0.25 x peak around the
    energy centroid); the mouth centre row is their midpoint, not the dark line (which sits at
    the upper lip of a smile). crops: (n, S, S, 3) uint8. Returns (n, 5) in crop px: left,
    right, centre row, ok (1.0 when the run is 0.15-0.6 face widths wide, else 0.0), and the
    shift of the centre row when the lower lip's edge is taken where lip colour ends (a smile's
    lower lip fading into the skin; 0 where it is not). That shift moves with the jaw on
    speech, so the caller applies it slowly (:func:`_recentre`), not per frame.
    """
    cv2 = _cv2()
    n, s = crops.shape[:2]
    y, lip = _ycc(crops)
    c = s // 2
    hx = int(round(LIP_BOX_X * s))
    up, down = int(round(LIP_BOX_UP * s)), int(round(LIP_BOX_DOWN * s))
    xs = np.arange(c - hx, c + hx, dtype=np.float64)
    rows = np.arange(c - up, c + down, dtype=np.float64)
    box = np.ones(5) / 5
    out = np.zeros((n, 5))
    for i in range(n):
        g = cv2.GaussianBlur(y[i], (0, 0), 0.8)
        lp = cv2.GaussianBlur(lip[i], (0, 0), 0.8)
        e = np.abs(cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)) + 2.0 * np.abs(cv2.Sobel(lp, cv2.CV_32F, 0, 1, ksize=3))
        colp = np.convolve(e[c - int(round(0.13 * s)):c + int(round(0.13 * s)), c - hx:c + hx].mean(axis=0), box, mode="same")
        colp = colp - np.percentile(colp, 10)
        out[i] = (c - MOUTH_WIDTH * s / 2, c + MOUTH_WIDTH * s / 2, c, 0.0, 0.0)
        if colp.max() <= 1e-6:
            continue
        on = np.nonzero(colp > 0.3 * colp.max())[0]
        best = _nearest_run(on, xs, c, 4)
        left, right = float(xs[best[0]]), float(xs[best[-1]])
        if not 0.15 * s <= right - left <= 0.6 * s:
            continue
        rowp = e[c - up:c + down, int(left):int(right) + 1].mean(axis=1)
        rowp = np.clip(rowp - np.percentile(rowp, 30), 0, None)
        if rowp.sum() <= 1e-6:
            continue
        cy0 = float((rowp * rows).sum() / rowp.sum())
        onr = np.nonzero(rowp > 0.25 * rowp.max())[0]
        br = _nearest_run(onr, rows, cy0, 2)
        top, bot = rows[br[0]], rows[br[-1]]
        bot_edge = bot
        # a smile's lower lip fades into the skin: its lower edge is where lip colour ends
        # (lip map falling downwards) below the last strong edge, within the lips' height so far
        sd = cv2.Sobel(lp, cv2.CV_32F, 0, 1, ksize=3)[c - up:c + down, int(left):int(right) + 1].mean(axis=1)
        j0, j1 = br[-1] + 1, min(br[-1] + 1 + int(bot - top), len(rows))
        if j1 > j0:
            seg = sd[j0:j1]
            j = int(np.argmin(seg))
            if seg[j] < -0.25 * np.abs(sd).max():
                bot = rows[j0 + j]
        out[i] = (left, right, 0.5 * (top + bot_edge), 1.0, 0.5 * (bot - bot_edge))
    return out


def _locate_mouths(frames, boxes, chunk, step, prior=MOUTH_IN_BOX, found=None):
    """Per-frame mouth centre + mouth-line angle, refined from the box prior by the dark line
    between the lips (see :func:`_refine_mouth`), then by the clip's own mouth where the head tilts
    (see :func:`_follow_template`; ``found``: (B,) bool frames with the face, None: all).

    Returns (raw (B, 3): cx, cy in frame px, angle in radians; contrast (B,); frames moved by the
    template (B,) bool; cuts (B,) bool, the first frame of each new shot, :func:`_shot_cuts`)."""
    b = frames.shape[0]
    m = _box_matrix(boxes, prior)
    k = ANALYSIS_SIZE / CROP_SCALE
    half = ANALYSIS_SIZE / 2 - 0.5
    r = np.zeros((b, 4))
    rows, cols = _template_band(ANALYSIS_SIZE)
    bands = np.zeros((b, rows.stop - rows.start, cols.stop - cols.start, 3), np.uint8)
    for s0 in range(0, b, chunk):
        crops = _analysis_crops(_np_float(frames[s0:s0 + chunk]), m[s0:s0 + chunk])
        r[s0:s0 + len(crops)] = _refine_mouth(crops)
        bands[s0:s0 + len(crops)] = crops[:, rows, cols]
        step()
    # clamp the shift, put the lip line back on the corner line
    r[:, 0] = half + 0.5 * np.clip(r[:, 0] - half, -REFINE_MAX_X * k, REFINE_MAX_X * k)
    r[:, 1] = half + np.clip(r[:, 1] - half, -REFINE_MAX * k, REFINE_MAX * k)
    ok = r[:, 3] > 0.05
    r[~ok, :2] = half
    moved = _follow_template(bands, r, rows.start, found)
    cuts = _shot_cuts(bands, found)
    r[moved, 0], r[moved, 2] = half, 0.0
    r[ok | moved, 1] += LIP_LINE_BIAS * k  # frames without a line keep the prior
    raw = np.zeros((b, 3))
    raw[:, :2] = _apply(_invert(m), r[:, None, :2])[:, 0]
    raw[:, 2] = np.where(ok & ~moved, r[:, 2], 0.0)
    return raw, r[:, 3], moved, cuts


def _box_matrix(boxes: np.ndarray, prior=MOUTH_IN_BOX) -> np.ndarray:
    """(B, 2, 3) upright analysis-crop matrices centred on the mouth prior of each face box."""
    fw = boxes[:, 2] - boxes[:, 0]
    return _similarity(boxes[:, 0] + prior[0] * fw, boxes[:, 1] + prior[1] * fw, np.zeros(len(boxes)),
                       CROP_SCALE * fw, ANALYSIS_SIZE)


def box_cuts(frames, boxes: np.ndarray, found: np.ndarray, chunk: int) -> np.ndarray:
    """:func:`_shot_cuts` for a track whose mouths were found another way (the face mesh's): the
    lower-face bands cut from the analysis crops on its face boxes, as :func:`_locate_mouths` cuts
    them on Haar's (both place the box around the face the same way). ``boxes`` must be finite in
    every frame (those without the face hold a found one's); only the found frames are compared."""
    rows, cols = _template_band(ANALYSIS_SIZE)
    bands = np.zeros((len(boxes), rows.stop - rows.start, cols.stop - cols.start, 3), np.uint8)
    m = _box_matrix(boxes)
    for s0 in range(0, len(boxes), chunk):  # slices of the frames: views, no copies
        crops = _analysis_crops(_np_float(frames[s0:s0 + chunk]), m[s0:s0 + chunk])
        bands[s0:s0 + len(crops)] = crops[:, rows, cols]
    return _shot_cuts(bands, found)


def _template_band(s: int) -> tuple[slice, slice]:
    """Rows and columns of an analysis crop (side ``s``, prior at the centre) that
    :func:`_follow_template` searches: TEMPLATE_UP above to TEMPLATE_DOWN below the prior, plus the
    template's half-height, and the template's half-width plus a small sideways play."""
    c = s // 2
    th, tw, play = (int(round(v * s)) for v in (TEMPLATE_HALF[0], TEMPLATE_HALF[1], TEMPLATE_PLAY))
    return (slice(max(c - int(round(TEMPLATE_UP * s)) - th, 0), min(c + int(round(TEMPLATE_DOWN * s)) + th + 1, s)),
            slice(c - tw - play, c + tw + play + 1))


def _follow_template(bands: np.ndarray, r: np.ndarray, top: int, found: np.ndarray | None = None) -> np.ndarray:
    """Move the mouth line to the clip's own mouth where the face box's prior missed it.

    A head tilted back (or down) moves the mouth up (down) inside the face box by up to a quarter of
    the face width, beyond the dark-line search (:func:`_refine_mouth`, which then takes the chin's
    shadow or a beard under the lip for the mouth). The clip shows its mouth in most frames: the
    median of its luma and lip-map patches around the found lines (found frames with a clear line)
    is a template of this face's mouth, matched (normalised cross-correlation, luma and lip map
    averaged) along the band of each found frame. A frame moves to the best match when
    - it fits clearly better there (by TEMPLATE_GAIN),
    - it fits there at least as well as nine in ten of the clear frames fit at their own lines (a
      flat patch over the mouth fits nothing, so anything fits it better),
    - the place lies more than TEMPLATE_MIN_MOVE from the line found and beyond the line search's
      reach (REFINE_MAX from the prior: within it the line search stays the judge),
    - and the lips there are at least as red as around the current line (a wide-open mouth fits a
      mostly closed template worse where it is, but its lips are there).
    The template needs TEMPLATE_MIN_FRAMES clear frames, else nothing moves.

    bands: (B, h, w, 3) uint8 rows/columns :func:`_template_band` of the analysis crops; r: (B, 4)
    crop px as :func:`_refine_mouth` returns them, clamped; a moved frame's row is changed in place
    (its column and angle are the caller's: the match's sideways place is not kept), its contrast
    raised to at least 0.06 (it is not listed as a weak line). top: the band's first crop row.
    found: (B,) bool frames with the face (None: all). Returns (B,) bool: the frames moved."""
    cv2 = _cv2()
    b, h, w = bands.shape[:3]
    s = ANALYSIS_SIZE
    th, tw, play = (int(round(v * s)) for v in (TEMPLATE_HALF[0], TEMPLATE_HALF[1], TEMPLATE_PLAY))
    moved = np.zeros(b, bool)
    found = np.ones(b, bool) if found is None else np.asarray(found, bool)
    lo, hi = top + th, top + h - th - 1
    line = np.clip(np.round(r[:, 1]).astype(int), lo, hi)
    clear = np.nonzero((r[:, 3] > TEMPLATE_CLEAR) & found)[0]
    if len(clear) < TEMPLATE_MIN_FRAMES:
        return moved
    clear = clear[np.linspace(0, len(clear) - 1, min(len(clear), 512)).round().astype(int)]
    y, lp = _ycc(bands[clear])
    cut = lambda a, j: a[j, line[clear[j]] - th - top:line[clear[j]] + th + 1 - top, play:w - play]
    tpl = [np.median(np.stack([cut(a, j) for j in range(len(clear))]), axis=0).astype(np.float32) for a in (y, lp)]
    band_rows = np.arange(h - 2 * th) + top + th
    # lip colour: the centre columns _refine_mouth reads (0.085 face widths either side), taken within a
    # lip's height (0.06) of a line
    cw, near = int(round(0.085 * s)), int(round(0.06 * s))
    here_fit, best_fit = np.full(b, np.nan), np.full(b, np.nan)
    best_row, redder = np.zeros(b, int), np.zeros(b, bool)
    for s0 in range(0, b, 256):
        y, lp = _ycc(bands[s0:s0 + 256])
        for j in range(len(y)):
            i = s0 + j
            if not found[i]:
                continue
            fit = 0.5 * (cv2.matchTemplate(y[j], tpl[0], cv2.TM_CCOEFF_NORMED)
                         + cv2.matchTemplate(lp[j], tpl[1], cv2.TM_CCOEFF_NORMED)).max(axis=1)
            best = int(np.argmax(fit))
            here_fit[i], best_fit[i], best_row[i] = fit[line[i] - top - th], fit[best], band_rows[best]
            red = lp[j, :, play + tw - cw:play + tw + cw].mean(axis=1)
            around = lambda q: red[max(q - top - near, 0):q - top + near + 1].max()
            redder[i] = around(int(band_rows[best])) >= around(int(line[i]))
    floor = np.quantile(here_fit[clear], 0.1)
    moved = (found & (best_fit - here_fit > TEMPLATE_GAIN) & (best_fit >= floor) & redder
             & (np.abs(best_row - r[:, 1]) > TEMPLATE_MIN_MOVE * s) & (np.abs(best_row - (s / 2 - 0.5)) > REFINE_MAX * s))
    r[moved, 1] = best_row[moved]
    r[moved, 3] = np.maximum(r[moved, 3], 0.06)
    return moved


def _shot_cuts(bands: np.ndarray, found: np.ndarray | None = None) -> np.ndarray:
    """The frames where the clip cuts to another face: (B,) bool, True at the first frame of each new shot.

    The bands are the lower face in crops aligned on the face box, so a head that moves, turns a
    little or is framed closer (a jump cut of the same person) changes them little, and another
    person a lot. Between consecutive found frames (across a gap without the face too), the mean
    absolute difference of their grey bands (24 px, each less its mean) is a cut where it exceeds CUT_RATIO times the
    clip's median difference (the motion of its mouth, head and camera). bands: (B, h, w, 3) uint8
    (:func:`_template_band`); found: (B,) bool, None: all."""
    cv2 = _cv2()
    b = len(bands)
    cut = np.zeros(b, bool)
    idx = np.arange(b) if found is None else np.flatnonzero(found)
    if len(idx) < 3:
        return cut
    grey = np.stack([cv2.resize(bands[i].mean(-1, dtype=np.float32) / 255.0, (24, 24), interpolation=cv2.INTER_AREA)
                     for i in idx])
    grey -= grey.mean((1, 2), keepdims=True)  # a change of light over the whole face is not a cut
    d = np.abs(grey[1:] - grey[:-1]).mean((1, 2))
    bar = CUT_RATIO * max(float(np.median(d)), 1e-4)
    over = d > bar
    # consecutive frames over the bar: one cut, the largest change (a crop that moves toward the next
    # face a frame early, its box smoothed across the cut), unless the frame after them shows the face
    # of the frame before them again (another face cut in for one frame: two cuts)
    k = 0
    while k < len(over):
        if not over[k]:
            k += 1
            continue
        e = k
        while e + 1 < len(over) and over[e + 1]:
            e += 1
        back = e == k + 1 and float(np.abs(grey[e + 1] - grey[k]).mean()) <= bar
        if not back:
            over[k:e + 1] = False
            over[k + int(np.argmax(d[k:e + 1]))] = True
        k = e + 1
    cut[idx[1:][over]] = True
    return cut


def _recentre(frames, cx, cy, ang, side, chunk, step):
    """Move the mouth centre to the middle of the lips' extent (:func:`_lip_box`) and measure
    the mouth half-width. cx, cy, ang, side: (B,) smoothed centre (frame px), crop angle
    (radians), crop side (frame px). Returns (cx, cy, half-width in face widths), smoothed over
    time; frames without a clear extent take their neighbours' values (or no change)."""
    b = len(cx)
    m0 = _similarity(cx, cy, ang, side, ANALYSIS_SIZE)
    lb = np.zeros((b, 5))
    for s0 in range(0, b, chunk):
        # edges need less anti-aliasing than the opening measure: 2x2 supersampling (4K stays fast)
        lb[s0:s0 + chunk] = _lip_box(_analysis_crops(_np_float(frames[s0:s0 + chunk]), m0[s0:s0 + chunk], max_ss=2))
        step()
    half = ANALYSIS_SIZE / 2 - 0.5
    k = ANALYSIS_SIZE / CROP_SCALE
    ok = lb[:, 3] > 0
    if not ok.any():
        return cx, cy, None
    t = np.arange(b)
    idx = np.nonzero(ok)[0]
    du = np.interp(t, idx, 0.5 * (lb[idx, 0] + lb[idx, 1]) - half)
    # the lip-colour edge's shift follows a smile (slow), but on speech it also moves with the
    # lower lip, i.e. with the opening: applied per frame it drags the crops along with the jaw
    # (GRID haar sync: recorded clips at offset 0 6/7 -> 5/7). Its running median over about 2 s
    # (LIP_COLOUR_FRAMES) keeps the smile and drops the articulation.
    dv = np.interp(t, idx, lb[idx, 2] - half) + _median_filter(np.interp(t, idx, lb[idx, 4]), LIP_COLOUR_FRAMES)
    hw = np.interp(t, idx, 0.5 * (lb[idx, 1] - lb[idx, 0]) / k)
    lim = RECENTRE_MAX * k
    d = np.stack([np.clip(du, -lim, lim), np.clip(dv, -lim, lim), hw], 1)
    d = _gauss_smooth(_median_filter(d, 9), 3.0)
    pts = np.stack([half + d[:, 0], half + d[:, 1]], 1)[:, None]
    c = _apply(_invert(m0), pts)[:, 0]
    return c[:, 0], c[:, 1], d[:, 2]
