"""Face tracking, mouth landmarks, the mouth-opening measure and the lower-face mask.

Everything here is weight-free by default: faces come from OpenCV's bundled Haar cascade
(``opencv-python-headless`` < 5), detected on a downscaled frame every few frames and searched
near the last box in between; the mouth is first placed by the dark line between the lips,
then centred on the lips' extent (horizontal edges of luma and lip chroma: corners, top and
bottom of the lips, see :func:`_lip_box`), and its opening by the height of the non-red inner
mouth (teeth, cavity) inside an aligned crop; beside it, the inner-mouth contrast, SyncScore's lip
signal (see :func:`_analyse`). mediapipe's legacy face mesh is an optional, more precise tracker
(``detector="mediapipe"``); both trackers read the same two measures, so SyncScore compares
like with like.

Geometry, in one place:

* face box: square-ish Haar-style box (x0, y0, x1, y1) in frame pixels, width ``w``;
  the mouth centre sits near (x0 + 0.51 w, y0 + 0.80 w), the mouth is about 0.27 w wide.
* aligned crop: a similarity transform (kornia ``warp_affine`` layout, frame px -> crop px)
  that puts the mouth centre at the crop centre, levels the face (eye line on the Haar path,
  mouth-corner line with the face mesh) and makes the
  crop side ``1.0 * w``. The same crop, resized to :data:`ANALYSIS_SIZE`, is what
  :func:`mouth_opening` reads.

Public API: :func:`track_faces`, :func:`mouth_opening`, :func:`mouth_contrast`,
:func:`lower_face_mask`, :func:`preview`, :func:`mouth_crops`.
"""

from __future__ import annotations

import logging
import math
from typing import Callable, Sequence

import numpy as np
import torch

from .checks import check_images, check_shape
from .errors import DependencyError, InputError, NoFaceError
from .types import MOUTH_POINTS, FaceTrack

log = logging.getLogger("comfyui_lipsync")

WHO = "MaskLowerFace"

DETECTORS = ("haar", "mediapipe")
MEDIAPIPE_INSTALL = (
    'pip install --no-deps mediapipe==0.10.21 && pip install absl-py attrs flatbuffers "protobuf<5" matplotlib'
)

ANALYSIS_SIZE = 96
"""Side (px) of the aligned crop on which mouth landmarks and the opening are measured."""

CROP_SCALE = 1.0
"""Aligned-crop side as a multiple of the face width (the Haar-style box width)."""

MOUTH_IN_BOX = (0.51, 0.80)
"""Mouth centre inside a Haar face box, in box widths from its top-left corner (GRID, 7 speakers)."""

MANUAL_MOUTH_Y = 0.76
"""Mouth height inside a manual eyebrows-to-chin box, as a fraction of the box height."""

MOUTH_WIDTH = 0.27
"""Mouth width (outer corners) in face widths."""

NOSE_ABOVE = 0.14
"""Bottom of the nose above the mouth centre, in face widths."""

CHIN_BELOW = 0.24
"""Chin below the mouth centre, in face widths."""

MESH_TO_BOX = 0.75
"""Face-mesh cheek-to-cheek width (points 234-454) divided by the Haar box width."""

DETECT_SIDE = 360
"""Frames are downscaled so their longer side is at most this many pixels for face detection."""

TRACK_FACE_PX = 80
"""Between full-frame detections the face is searched near its last box, scaled to about this width."""

# Face-mesh indices (mediapipe legacy face mesh, 468 points) in MOUTH_POINTS order.
_MESH_MOUTH = (61, 291, 0, 17, 13, 14, 2, 152)
_MESH_CHEEKS = (234, 454)


def _cv2():
    try:
        import cv2
    except ImportError as e:  # pragma: no cover - cv2 is a hard requirement
        raise DependencyError(
            f"{WHO}: OpenCV is missing. Install it with: pip install 'opencv-python-headless>=4.8,<5'."
        ) from e
    if not hasattr(cv2, "CascadeClassifier") or not hasattr(cv2, "data"):
        raise DependencyError(
            f"{WHO}: this OpenCV ({cv2.__version__}) has no Haar cascades (5.0 removed them). "
            "Install: pip install 'opencv-python-headless>=4.8,<5'."
        )
    return cv2


def _mediapipe_face_mesh():
    try:
        from mediapipe.python.solutions import face_mesh
    except ImportError as e:
        raise DependencyError(
            f"{WHO}: detector 'mediapipe' needs mediapipe 0.10.21 (the last release with the bundled "
            f"face mesh). Install it without touching numpy: {MEDIAPIPE_INSTALL}. Or choose detector 'haar'."
        ) from e
    return face_mesh


def mediapipe_available() -> bool:
    """True when the optional mediapipe face mesh can be imported."""
    try:
        _mediapipe_face_mesh()
    except DependencyError:
        return False
    return True


# --- small numeric helpers -----------------------------------------------------------------

def _to_u8(frames: torch.Tensor) -> np.ndarray:
    """(b, H, W, C) float 0..1 tensor -> (b, H, W, 3) uint8 RGB numpy (alpha dropped)."""
    import cv2

    x = frames[..., :3].detach().to("cpu", torch.float32).numpy()
    out = np.empty(x.shape, np.uint8)
    for i, f in enumerate(x):
        # one clip + one fused scale/round/saturate per frame (cv2 rounds half to even, as
        # torch.round): ~8x faster than four whole-batch torch passes
        cv2.convertScaleAbs(np.clip(f, 0.0, 1.0), out[i], 255.0)
    return out


def _np_float(frames: torch.Tensor) -> np.ndarray:
    """(b, H, W, C) tensor -> (b, H, W, C) float32 numpy; no copy for CPU float32 input."""
    return frames.detach().to("cpu", torch.float32).numpy()


def _f2u8(x: np.ndarray) -> np.ndarray:
    return np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _gauss_smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing along axis 0 with edge reflection; sigma in samples (0 = none)."""
    if sigma <= 0 or len(x) < 2:
        return x.copy()
    from scipy.ndimage import gaussian_filter1d

    return gaussian_filter1d(x.astype(np.float64), sigma, axis=0, mode="nearest")


def _median_filter(x: np.ndarray, size: int) -> np.ndarray:
    if size <= 1 or len(x) < 3:
        return x.copy()
    from scipy.ndimage import median_filter

    size = min(size, len(x) if len(x) % 2 else len(x) - 1)
    return median_filter(x, size=(size,) + (1,) * (x.ndim - 1), mode="nearest")


def _similarity(cx, cy, angle, side, size) -> np.ndarray:
    """(n, 2, 3) frame->crop matrices: (cx, cy) -> crop centre, rotate by -angle, side px -> size px."""
    cx, cy, angle, side = (np.asarray(v, np.float64) for v in (cx, cy, angle, side))
    s = size / side
    c, si = np.cos(angle) * s, np.sin(angle) * s
    m = np.zeros(cx.shape + (2, 3))
    # crop = R(-angle) * s * (p - centre) + size/2 ; pixel centres: size/2 - 0.5 is the middle
    half = size / 2.0 - 0.5
    m[..., 0, 0], m[..., 0, 1] = c, si
    m[..., 1, 0], m[..., 1, 1] = -si, c
    m[..., 0, 2] = half - (c * cx + si * cy)
    m[..., 1, 2] = half - (-si * cx + c * cy)
    return m


def _invert(m: np.ndarray) -> np.ndarray:
    """Invert (n, 2, 3) affine matrices."""
    a = m[..., :2]
    inv = np.linalg.inv(a)
    t = -np.einsum("nij,nj->ni", inv, m[..., 2])
    return np.concatenate([inv, t[..., None]], axis=-1)


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply (n, 2, 3) to points (n, k, 2)."""
    return np.einsum("nij,nkj->nki", m[..., :2], pts) + m[:, None, :, 2]


def _analysis_crops(frames_np: np.ndarray, m: np.ndarray, size: int = ANALYSIS_SIZE, max_ss: int = 6) -> np.ndarray:
    """Warp float frames (b, H, W, C) through frame->crop matrices m (b, 2, 3) to uint8 RGB crops
    (b, size, size, 3). Big downscales are supersampled then area-averaged, like
    :func:`mouth_opening` does with large crops, so the measure does not depend on resolution
    (at most ``max_ss`` x ``max_ss`` samples per crop pixel)."""
    cv2 = _cv2()
    out = np.empty((len(frames_np), size, size, 3), np.uint8)
    for i, img in enumerate(frames_np):
        img = img[..., :3]
        if not img.flags.c_contiguous:
            img = np.ascontiguousarray(img)
        scale = math.sqrt(abs(m[i, 0, 0] * m[i, 1, 1] - m[i, 0, 1] * m[i, 1, 0]))
        k = int(min(max(math.ceil(1.0 / max(scale, 1e-6) - 0.25), 1), max_ss))
        if k > 1:
            mk = m[i] * k
            mk[:, 2] += 0.5 * k - 0.5
            big = cv2.warpAffine(img, mk, (size * k, size * k), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            crop = cv2.resize(big, (size, size), interpolation=cv2.INTER_AREA)
        else:
            crop = cv2.warpAffine(img, m[i], (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        out[i] = _f2u8(crop)
    return out


# --- the weight-free mouth analysis ----------------------------------------------------------

def _ycc(crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 RGB (n, S, S, 3) -> (luma Y in 0..1, lip map Cr - Cb in about -1..1), float32."""
    c = crops.astype(np.float32) / 255.0
    y = 0.299 * c[..., 0] + 0.587 * c[..., 1] + 0.114 * c[..., 2]
    cr = (c[..., 0] - y) * 0.713
    cb = (c[..., 2] - y) * 0.564
    return y, cr - cb


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


ANGLE_TRUST = 0.0
"""Share of the measured mouth-line slope used as the crop's rotation on the Haar path. On GRID
(upright, closed lips) the slope is within 3 degrees of the face mesh's corner line, but on a
smiling still face it flipped by 7 degrees between noisy copies of the same frame, which makes
the crop wobble; so the Haar path rolls its crops with the eye line instead (:func:`_eye_roll`,
upright when the eyes are not found steadily; the slope is kept in ``extras["mouth_line_angle"]``)
and only the face mesh (reliable corners) rotates the crop by the mouth line."""

REFINE_MAX = 0.08
"""Largest vertical shift (face widths) the mouth-line refinement may apply to the box prior."""
REFINE_MAX_X = 0.04
"""Largest sideways shift (face widths) measured; half of it is applied. Haar boxes are well
centred (GRID: within 0.036), while a smile's dark corner can pull the darkness centroid
sideways (astronaut: 0.1)."""
LIP_LINE_BIAS = 0.007
"""The darkest row sits this far (face widths) above the mouth-corner line on GRID; added back."""


LIP_BOX_X = 0.30
"""Half-width (face widths) of the window searched for the mouth's horizontal edges."""
LIP_BOX_UP, LIP_BOX_DOWN = 0.13, 0.18
"""Rows searched above / below the crop centre (face widths): room for a lower lip below a
smile's dark upper line (astronaut: the dark line is 0.07 above the lips' middle)."""


def _nearest_run(on: np.ndarray, pos: np.ndarray, centre: float, max_gap: int) -> np.ndarray:
    """Of the runs of indices ``on`` (gaps up to ``max_gap`` bridged), the one whose positions
    ``pos`` span ``centre``, else the one ending nearest it."""
    runs = np.split(on, np.nonzero(np.diff(on) > max_gap)[0] + 1)
    return min(runs, key=lambda r: 0 if pos[r[0]] <= centre <= pos[r[-1]]
               else min(abs(pos[r[0]] - centre), abs(pos[r[-1]] - centre)))


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


def _analyse(crops: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The two opening measures and mouth landmarks on aligned crops at :data:`ANALYSIS_SIZE`.

    crops: (n, S, S, 3) uint8 with the mouth at the centre, level, crop side = face width.
    Returns (opening (n,) >= 0, contrast (n,) >= 0, landmarks (n, 6, 2) in crop px:
    corner_left, corner_right, upper_outer, lower_outer, upper_inner, lower_inner).

    Both measures read the mouth window (0.27 x 0.19 face widths around the centre) against the
    skin just above and below the mouth (medians of luma and of the lip map YCrCb Cr - Cb), and
    both are in inner-lip gap / mouth width units, with no clip statistics (each crop on its own):

    * opening, how far the lips are apart: the inner mouth is every window pixel that is less
      lip-coloured than the skin by :data:`INNER_RED` (teeth and the cavity both are; lips are
      redder than skin), or dark and not red together (:data:`INNER_CAVITY`: a cavity that keeps
      some red, and greyscale video). Its area divided by the number of columns it spans is
      its mean height; over the mouth width, times :data:`HEIGHT_GAIN`, that is the gap.
      Against the face-mesh inner-lip gap on the 7 GRID clips it follows r 0.73-0.96 per clip
      (mean 0.90); ``contrast`` follows 0.55-0.93 (mean 0.76), because it misses an opening
      that shows bright teeth and saturates on a wide one. Its blind spot: lips duller than
      the skin around them count as inner mouth, so a mouth painted in one flat, dull lip
      colour (the generator without a reference frame, on a speaker whose lips are barely
      redder than the skin) reads as open; ``contrast`` reads it right. On greyscale video
      only the darkest cavity counts, so the opening reads small and follows the mouth less
      well (GRID turned grey: r 0.29-0.81 with the mesh gap, means under 0.025; the contrast
      keeps 0.43-0.88).
    * contrast, how sharply the mouth parts: the 99th percentile of an inner-mouth score
      (darkness relative to the skin + 4 x how much less lip-coloured than the skin), with a
      soft floor at 0 (:data:`OPEN_ZERO`, :data:`OPEN_GAIN`, :data:`OPEN_SOFT`). One dark pixel
      between the lips moves it, so it rises the moment the lips part, and it changes
      smoothly from frame to frame: it is SyncScore's timing signal (its natural lead was
      calibrated with it; with ``opening`` in its place, the per-clip curve peaks of GRID
      spread over 1.13 frames instead of 0.74) and it places the inner-lip landmarks (the face
      mesh brings its own).
    """
    n, s = crops.shape[:2]
    y, lip = _ycc(crops)
    c = s // 2
    ry, rx = max(int(round(0.094 * s)), 2), max(int(round(0.135 * s)), 2)
    band = max(int(round(0.065 * s)), 2)
    x0, x1 = c - int(round(0.21 * s)), c + int(round(0.21 * s))
    ring_y = np.concatenate([y[:, c - ry - band:c - ry, x0:x1].reshape(n, -1), y[:, c + ry:c + ry + band, x0:x1].reshape(n, -1)], 1)
    ring_l = np.concatenate([lip[:, c - ry - band:c - ry, x0:x1].reshape(n, -1), lip[:, c + ry:c + ry + band, x0:x1].reshape(n, -1)], 1)
    yref = np.median(ring_y, axis=1)[:, None, None] + 1e-3
    lref = np.median(ring_l, axis=1)[:, None, None]
    win = (slice(None), slice(c - ry, c + ry), slice(c - rx, c + rx))
    dark, red = 1.0 - y[win] / yref, 4.0 * (lref - lip[win])  # darker / less red than the skin
    score = dark + red
    q = np.percentile(score.reshape(n, -1), 99, axis=1)
    contrast = (OPEN_GAIN * OPEN_SOFT * np.logaddexp(0.0, (q - OPEN_ZERO) / OPEN_SOFT)).astype(np.float32)
    mw = MOUTH_WIDTH * s
    inner = (red > INNER_RED) | (score > INNER_CAVITY)
    area = inner.reshape(n, -1).sum(1).astype(np.float32)
    cols = np.maximum(inner.any(axis=1).sum(1).astype(np.float32), INNER_MIN_SPAN * mw)
    opening = (HEIGHT_GAIN * area / cols / mw).astype(np.float32)

    # landmarks: corners from the lip-map column profile, lips from the centre-column profile
    lipness = lip - lref
    colp = lipness[:, c - 3:c + 4, c - int(0.25 * s):c + int(0.25 * s)].mean(axis=1)
    xs = np.arange(c - int(0.25 * s), c + int(0.25 * s), dtype=np.float32)
    rowp = lipness[:, c - ry - band:c + ry + band, c - 3:c + 4].mean(axis=2)
    rows = np.arange(c - ry - band, c + ry + band, dtype=np.float32)
    lm = np.zeros((n, 6, 2), np.float32)
    for i in range(n):
        cp = colp[i]
        left, right = c - mw / 2, c + mw / 2
        if cp.max() > 0.01:
            on = np.nonzero(cp > 0.3 * cp.max())[0]
            best = _nearest_run(on, xs, c, 2)
            if 0.4 * mw <= xs[best[-1]] - xs[best[0]] <= 1.5 * mw:
                # the crop is centred on the mouth: corners symmetric, at the farther lip end
                half = float(np.clip(max(c - xs[best[0]], xs[best[-1]] - c), 0.35 * mw, 0.75 * mw))
                left, right = c - half, c + half
        gap = contrast[i] * (right - left)
        rp = rowp[i]
        top, bot = c - 0.06 * s - gap / 2, c + 0.07 * s + gap / 2
        if rp.max() > 0.01:
            on = np.nonzero(rp > 0.3 * rp.max())[0]
            if len(on) and rows[on[0]] < c and rows[on[-1]] > c:
                top, bot = rows[on[0]], rows[on[-1]]
        lm[i] = ((left, c), (right, c), (c, top), (c, bot), (c, c - gap / 2), (c, c + gap / 2))
    return opening, contrast, lm


OPEN_ZERO = 0.45
"""Inner-mouth score of a closed mouth (GRID: 0.40-0.65); the opening rises from 0 above it."""
OPEN_GAIN = 0.22
"""Inner-lip gap / mouth width per unit of inner-mouth score (least-squares fit, GRID, r 0.80)."""
OPEN_SOFT = 0.1
"""Softness of the floor at 0 (score units)."""
INNER_RED = 0.25
"""A window pixel is inner mouth (teeth, cavity) when 4 x (skin lip map - its lip map) exceeds this."""
INNER_CAVITY = 0.6
"""... or when its darkness + 4 x non-redness (the contrast score) exceeds this (a cavity that keeps
some red; the only cue on greyscale video). 0.8 follows GRID a little better (min r 0.77) but
loses even more of greyscale video."""
INNER_MIN_SPAN = 0.6
"""The inner mouth's height is its area over the columns it spans, at least this share of the
mouth width (a few stray pixels do not make a tall opening)."""
HEIGHT_GAIN = 0.90
"""Inner-lip gap per unit of inner-mouth mean height, both over the mouth width (least squares
against the face-mesh lip gap, pooled GRID frames; it only sets the scale)."""


def mouth_opening(crops: torch.Tensor, who: str = "mouth_opening") -> torch.Tensor:
    """The weight-free mouth-opening measure of aligned mouth crops.

    crops: (B, S, S, C) float 0..1, C 3 or 4, mouth at the centre, mouth-corner line level,
    crop side = 1.0 face width (what :func:`mouth_crops` or the ``transform`` of a
    :class:`FaceTrack` produce). Returns (B,) float32 >= 0 on the crops' device: an estimate of
    the inner-lip gap divided by the mouth width (GRID speakers: 0.01-0.05 closed, up to 0.3
    wide open), from the height of the inner mouth (see :func:`_analyse`). Each crop is
    measured on its own (no clip statistics), so a generator's output can be checked frame by
    frame with exactly the measure that :func:`track_faces` stores in ``FaceTrack.opening``.
    """
    return _measure(crops, who, 0)


def mouth_contrast(crops: torch.Tensor, who: str = "mouth_contrast") -> torch.Tensor:
    """SyncScore's lip signal: the inner-mouth contrast of aligned mouth crops (see :func:`_analyse`).

    Same input and units as :func:`mouth_opening`, and stored by :func:`track_faces` in
    ``FaceTrack.extras["contrast"]``. It rises sharply the moment the lips part and is smooth
    from frame to frame, which makes it the better timing signal; it is the worse measure of
    how wide the mouth is (it saturates, and misses openings that show bright teeth).
    """
    return _measure(crops, who, 1)


def _measure(crops: torch.Tensor, who: str, which: int) -> torch.Tensor:
    check_images(crops, who, "crops")
    if crops.shape[1] != crops.shape[2]:
        raise InputError(f"{who}: crops must be square (B, S, S, C), got {tuple(crops.shape)}.")
    cv2 = _cv2()
    out = []
    for start in range(0, crops.shape[0], 256):
        u8 = _to_u8(crops[start:start + 256])
        if u8.shape[1] != ANALYSIS_SIZE:
            interp = cv2.INTER_AREA if u8.shape[1] > ANALYSIS_SIZE else cv2.INTER_LINEAR
            u8 = np.stack([cv2.resize(im, (ANALYSIS_SIZE, ANALYSIS_SIZE), interpolation=interp) for im in u8])
        out.append(_analyse(u8)[which])
    return torch.from_numpy(np.concatenate(out)).to(crops.device)


# --- detection --------------------------------------------------------------------------------

class _Haar:
    """OpenCV frontal-face cascade on a downscaled grey frame, or inside a region around the last
    face (the region is scaled so the face is about :data:`TRACK_FACE_PX` wide: fast)."""

    def __init__(self) -> None:
        cv2 = _cv2()
        self.cv2 = cv2
        self.casc = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
        if self.casc.empty():
            raise DependencyError(f"{WHO}: OpenCV's bundled frontal-face cascade could not be loaded.")

    def __call__(self, img: np.ndarray, near: np.ndarray | None = None) -> np.ndarray:
        """img float32 RGB (H, W, C) in 0..1 -> (k, 4) boxes x0, y0, x1, y1 in img px.

        near: a previous face box; then only a region 2x its size around it is searched, for
        faces 0.7-1.4x its width."""
        cv2 = self.cv2
        h, w = img.shape[:2]
        ox = oy = 0
        if near is not None:
            fw = near[2] - near[0]
            ox, oy = int(max(near[0] - 0.5 * fw, 0)), int(max(near[1] - 0.5 * fw, 0))
            ex, ey = int(min(near[2] + 0.5 * fw + 1, w)), int(min(near[3] + 0.5 * fw + 1, h))
            if ex - ox < 16 or ey - oy < 16:
                return np.zeros((0, 4))
            img = img[oy:ey, ox:ex]
            scale = min(1.0, TRACK_FACE_PX / fw)
            lo, hi = int(0.7 * fw * scale), int(1.4 * fw * scale) + 1
        else:
            scale = min(1.0, DETECT_SIDE / max(h, w))
        img = img[..., :3]
        if not img.flags.c_contiguous:
            img = np.ascontiguousarray(img)
        g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        if scale < 1.0:
            g = cv2.resize(g, (max(int(round(g.shape[1] * scale)), 1), max(int(round(g.shape[0] * scale)), 1)),
                           interpolation=cv2.INTER_AREA)
        g = _f2u8(g)
        if near is None:
            lo, hi = max(int(0.08 * min(g.shape)), 20), max(g.shape) + 1
        d = self.casc.detectMultiScale(g, scaleFactor=1.1 if near is None else 1.04, minNeighbors=5, minSize=(max(lo, 20), max(lo, 20)),
                                       maxSize=(hi, hi))
        if len(d) == 0:
            return np.zeros((0, 4))
        d = np.asarray(d, np.float64)
        boxes = np.stack([d[:, 0], d[:, 1], d[:, 0] + d[:, 2], d[:, 1] + d[:, 3]], axis=1) / scale
        return boxes + np.array([ox, oy, ox, oy], np.float64)

    def find(self, img: np.ndarray, face_index: int, prev: np.ndarray | None) -> np.ndarray | None:
        """The chosen face in one frame: near the previous one when there is one, else anywhere."""
        if prev is not None:
            boxes = self(img, near=prev)
            if len(boxes):
                iou = _iou(prev, boxes)
                if iou.max() > 0.3:
                    return boxes[int(np.argmax(iou))]
        return _choose(self(img), face_index, prev)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of one box a (4,) with boxes b (k, 4)."""
    x0 = np.maximum(a[0], b[:, 0]); y0 = np.maximum(a[1], b[:, 1])
    x1 = np.minimum(a[2], b[:, 2]); y1 = np.minimum(a[3], b[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda z: (z[..., 2] - z[..., 0]) * (z[..., 3] - z[..., 1])
    return inter / (area(a) + area(b) - inter + 1e-9)


def _choose(boxes: np.ndarray, face_index: int, prev: np.ndarray | None) -> np.ndarray | None:
    if len(boxes) == 0:
        return None
    if face_index >= 0:
        order = np.argsort(0.5 * (boxes[:, 0] + boxes[:, 2]))
        return boxes[order[face_index]] if face_index < len(boxes) else None
    if prev is not None:
        iou = _iou(prev, boxes)
        if iou.max() > 0.3:
            return boxes[int(np.argmax(iou))]
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return boxes[int(np.argmax(area))]


def _runs(idx: Sequence[int]) -> str:
    """[3,4,5,9] -> '3-5, 9'."""
    idx = list(idx)
    if not idx:
        return ""
    parts, start, last = [], idx[0], idx[0]
    for i in idx[1:]:
        if i == last + 1:
            last = i
            continue
        parts.append(f"{start}-{last}" if last > start else f"{start}")
        start = last = i
    parts.append(f"{start}-{last}" if last > start else f"{start}")
    return ", ".join(parts)


def _parse_manual_box(manual_box, h: int, w: int) -> np.ndarray | None:
    if manual_box is None:
        return None
    if isinstance(manual_box, str):
        text = manual_box.strip()
        if not text:
            return None
        try:
            vals = [float(v) for v in text.replace(";", ",").replace(" ", ",").split(",") if v]
        except ValueError:
            raise InputError(f"{WHO}: manual box must be 'x0,y0,x1,y1' in pixels, got {manual_box!r}.") from None
    else:
        vals = [float(v) for v in manual_box]
    if len(vals) != 4:
        raise InputError(f"{WHO}: manual box needs 4 numbers x0,y0,x1,y1, got {len(vals)}: {manual_box!r}.")
    x0, y0, x1, y1 = vals
    if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h) or x1 - x0 < 16 or y1 - y0 < 16:
        raise InputError(
            f"{WHO}: manual box {vals} must lie inside the {w}x{h} frame with x0<x1, y0<y1 and be at "
            "least 16 px wide and high. Give the face from eyebrows to chin, e.g. '"
            f"{w // 3},{h // 4},{2 * w // 3},{3 * h // 4}'."
        )
    return np.array(vals, np.float64)


def track_faces(
    frames: torch.Tensor,
    detector: str = "haar",
    face_index: int = -1,
    manual_box=None,
    crop_size: int = 256,
    chunk: int = 64,
    on_progress: Callable[[int, int], None] | None = None,
    detect_every: int = 5,
) -> FaceTrack:
    """Follow one face through a clip and measure its mouth.

    frames:      (B, H, W, C) float 0..1 (IMAGE), C 3 or 4, any device.
    detector:    "haar" (OpenCV cascade + lip chroma, always available) or "mediapipe"
                 (face mesh; raises DependencyError with the install command when missing).
    face_index:  -1 = the largest face; k >= 0 = the k-th face from the left.
    manual_box:  None / "" for automatic detection, else (x0, y0, x1, y1) or "x0,y0,x1,y1" in
                 frame pixels around the face (eyebrows to chin); mouth still found per frame.
    crop_size:   side of the aligned mouth-centred crop the transform maps to (96, 256, 512).
    chunk:       frames converted at a time (memory bound for 4K / long clips).
    on_progress: callback (done, total) per chunk; ComfyUI's progress bar + interrupt point.
    detect_every: run the face detector on every k-th frame, interpolate and smooth between.

    Returns a :class:`FaceTrack` whose tensors are on ``frames.device``. Raises NoFaceError when
    no face is found in any frame (suggesting the manual box).
    """
    check_images(frames, WHO, "images")
    if detector not in DETECTORS:
        raise InputError(f"{WHO}: detector must be one of {DETECTORS}, got {detector!r}.")
    if int(crop_size) < 16:
        raise InputError(f"{WHO}: crop_size must be at least 16 px, got {crop_size}.")
    b, h, w = (int(v) for v in frames.shape[:3])
    chunk = max(int(chunk), 1)
    box = _parse_manual_box(manual_box, h, w)
    # (detect,) locate or mesh, (recentre,) measure; a manual box: locate, recentre, measure
    passes = 3 if box is not None else {"mediapipe": 2, "haar": 4}[detector]
    total_steps = passes * math.ceil(b / chunk)
    done = [0]

    def step():
        done[0] += 1
        if on_progress is not None:
            on_progress(done[0], total_steps)

    notes = []
    mesh = None
    if detector == "mediapipe" and box is None:
        mesh = _track_mesh(frames, face_index, chunk, step)
        boxes, found = mesh["boxes"], mesh["found"]
        notes.append("detector: mediapipe face mesh")
    elif box is not None:
        boxes = np.repeat(box[None], b, axis=0)
        found = np.ones(b, bool)
        notes.append(f"manual face box {box.round(1).tolist()}")
    else:
        boxes, found = _track_haar(frames, face_index, chunk, step, detect_every)
        notes.append(f"detector: OpenCV Haar cascade every {detect_every} frames (searched near the last box "
                     "between), mouth from the dark lip line, centred on the lips' edges")

    # face width (Haar-style) and prior mouth centre per frame
    fw = boxes[:, 2] - boxes[:, 0]
    if mesh is not None:
        m = mesh["mouth"]
        raw = np.concatenate([(0.5 * (m[:, 0] + m[:, 1])), np.arctan2(m[:, 1, 1] - m[:, 0, 1], m[:, 1, 0] - m[:, 0, 0])[:, None]], 1)
        fw = mesh["face_width"]
        conf = np.ones(b)
    else:
        prior = MOUTH_IN_BOX
        if box is not None:  # a drawn box spans eyebrows to chin: place the mouth by its height
            prior = (0.5, MANUAL_MOUTH_Y * (box[3] - box[1]) / (box[2] - box[0]))
        raw, conf = _locate_mouths(frames, boxes, chunk, step, prior)
    fw_s = _gauss_smooth(_median_filter(fw, 5), 3.0)
    cx = _gauss_smooth(_median_filter(raw[:, 0], 5), 1.5)
    cy = _gauss_smooth(_median_filter(raw[:, 1], 5), 1.5)
    line_ang = _gauss_smooth(_median_filter(np.clip(raw[:, 2], -0.5, 0.5), 15), 5.0)  # roll changes slowly
    ang = line_ang if mesh is not None else ANGLE_TRUST * line_ang
    roll_note = None
    if mesh is None and box is None:  # head roll from the eye line, only when steady
        roll, roll_note = _eye_roll(frames, boxes, detect_every)
        if roll is not None:
            ang = roll
    side = CROP_SCALE * fw_s
    half = ANALYSIS_SIZE / 2 - 0.5
    k = ANALYSIS_SIZE / CROP_SCALE  # analysis px per face width
    mouth_half = None
    if mesh is None:  # recentre on the lips' extent (corners, top and bottom), see _lip_box
        cx, cy, mouth_half = _recentre(frames, cx, cy, ang, side, chunk, step)

    # analysis crops -> opening + landmarks, in chunks
    m_an = _similarity(cx, cy, ang, side, ANALYSIS_SIZE)
    inv_an = _invert(m_an)
    opening = np.zeros(b, np.float32)
    contrast = np.zeros(b, np.float32)
    lm = np.zeros((b, 8, 2), np.float64)
    for s0 in range(0, b, chunk):
        crops = _analysis_crops(_np_float(frames[s0:s0 + chunk]), m_an[s0:s0 + chunk])
        op, con, pts = _analyse(crops)
        opening[s0:s0 + len(crops)] = op
        contrast[s0:s0 + len(crops)] = con
        lm[s0:s0 + len(crops), :6] = _apply(inv_an[s0:s0 + len(crops)], pts.astype(np.float64))
        step()
    if mouth_half is not None:  # corners from the lips' extent (smoothed), on the centre row
        hw = mouth_half[:, None] * k
        pts = np.stack([np.concatenate([half - hw, np.full_like(hw, half)], 1),
                        np.concatenate([half + hw, np.full_like(hw, half)], 1)], 1)
        lm[:, :2] = _apply(inv_an, pts)
    extra = np.array([[half, half - NOSE_ABOVE * k], [half, half + CHIN_BELOW * k]])
    lm[:, 6:] = _apply(inv_an, np.broadcast_to(extra, (b, 2, 2)).copy())
    if mesh is not None:
        lm = mesh["mouth"].astype(np.float64)

    transform = _similarity(cx, cy, ang, side, int(crop_size))
    lost = np.nonzero(~found)[0].tolist()
    if lost:
        notes.append(f"face lost in {len(lost)} of {b} frames, interpolated from neighbours: frames {_runs(lost)}")
    else:
        notes.append(f"face found in all {b} frames")
    weak = np.nonzero(conf <= 0.05)[0].tolist() if mesh is None else []
    if weak:
        notes.append(f"no clear mouth line (mouth placed from the face box) in {len(weak)} frames: {_runs(weak)}")
    if roll_note:
        notes.append(roll_note)
    notes.append(f"face width {fw_s.mean():.0f} px, mean opening {opening.mean():.3f}, max {opening.max():.3f}")
    dev = frames.device
    f32 = lambda a: torch.as_tensor(np.asarray(a, np.float32), device=dev)
    extras = {"angle": f32(ang), "mouth_line_angle": f32(line_ang), "face_width": f32(fw_s),
              "contrast": f32(contrast), "detector": detector if box is None else "manual"}
    if mesh is not None:
        extras["mesh_gap"] = f32(mesh["gap"])
    track = FaceTrack(
        boxes=f32(boxes),
        mouth=f32(lm),
        opening=f32(opening),
        transform=f32(transform),
        crop_size=int(crop_size),
        frame_size=(h, w),
        found=torch.as_tensor(found, device=dev),
        report="\n".join(notes),
        extras=extras,
    )
    return track


def _track_haar(frames, face_index, chunk, step, every):
    """Haar detection on every ``every``-th frame -> (boxes (B, 4) smoothed, found (B,) bool)."""
    det = _Haar()
    b = frames.shape[0]
    every = max(int(every), 1)
    keys = list(range(0, b, every))
    if keys[-1] != b - 1:
        keys.append(b - 1)
    key_boxes = {}
    prev = None
    for s0 in range(0, b, chunk):
        ks = [k for k in keys if s0 <= k < s0 + chunk]
        if ks:
            fl = _np_float(frames[ks])
            for k, im in zip(ks, fl):
                sel = det.find(im, face_index, prev)
                if sel is not None:
                    key_boxes[k] = sel
                    prev = sel
        step()
    if not key_boxes:
        raise NoFaceError(
            f"{WHO}: no face found in any of the {b} frames (detector 'haar'"
            f"{'' if face_index < 0 else f', face index {face_index}'}). Give the face box in 'manual box' "
            "as x0,y0,x1,y1 pixels, try detector 'mediapipe', or check that the face is frontal and at "
            "least 30 px wide."
        )
    # lost key frames: look at the frames around them too, so the lost span is exact
    lost_keys = [k for k in keys if k not in key_boxes]
    extra_lost = set()
    for k in lost_keys:
        for j in range(max(k - every + 1, 0), min(k + every, b)):
            if j in key_boxes or j in extra_lost:
                continue
            sel = det.find(_np_float(frames[j:j + 1])[0], face_index, prev)
            if sel is not None:
                key_boxes[j] = sel
            else:
                extra_lost.add(j)
    kk = np.array(sorted(key_boxes))
    kb = np.stack([key_boxes[k] for k in kk])
    # square boxes: centre + side, median then Gaussian smoothing over key frames
    cxy = 0.5 * (kb[:, :2] + kb[:, 2:])
    side = kb[:, 2] - kb[:, 0]
    params = np.concatenate([cxy, side[:, None]], 1)
    params = _median_filter(params, 3)
    params[:, :2] = _gauss_smooth(params[:, :2], 1.0)
    params[:, 2] = _gauss_smooth(params[:, 2], 2.0)  # Haar sizes come in steps: smooth harder
    t = np.arange(b)
    interp = np.stack([np.interp(t, kk, params[:, j]) for j in range(3)], 1)
    interp = _gauss_smooth(interp, float(every))
    boxes = np.stack([interp[:, 0] - interp[:, 2] / 2, interp[:, 1] - interp[:, 2] / 2,
                      interp[:, 0] + interp[:, 2] / 2, interp[:, 1] + interp[:, 2] / 2], 1)
    found = np.ones(b, bool)
    found[sorted(extra_lost)] = False
    return boxes, found


def _locate_mouths(frames, boxes, chunk, step, prior=MOUTH_IN_BOX):
    """Per-frame mouth centre + mouth-line angle, refined from the box prior by the dark line
    between the lips (see :func:`_refine_mouth`).

    Returns (raw (B, 3): cx, cy in frame px, angle in radians; contrast (B,))."""
    b = frames.shape[0]
    fw = boxes[:, 2] - boxes[:, 0]
    px = boxes[:, 0] + prior[0] * fw
    py = boxes[:, 1] + prior[1] * fw
    m = _similarity(px, py, np.zeros(b), CROP_SCALE * fw, ANALYSIS_SIZE)
    inv = _invert(m)
    raw = np.zeros((b, 3))
    conf = np.zeros(b)
    k = ANALYSIS_SIZE / CROP_SCALE
    for s0 in range(0, b, chunk):
        crops = _analysis_crops(_np_float(frames[s0:s0 + chunk]), m[s0:s0 + chunk])
        r = _refine_mouth(crops).astype(np.float64)
        n = len(crops)
        half = ANALYSIS_SIZE / 2 - 0.5
        # clamp the shift, put the lip line back on the corner line
        r[:, 0] = half + 0.5 * np.clip(r[:, 0] - half, -REFINE_MAX_X * k, REFINE_MAX_X * k)
        r[:, 1] = half + np.clip(r[:, 1] - half, -REFINE_MAX * k, REFINE_MAX * k)
        r[:, 1] += LIP_LINE_BIAS * k
        ok = r[:, 3] > 0.05
        r[~ok, :2] = half
        raw[s0:s0 + n, :2] = _apply(inv[s0:s0 + n], r[:, None, :2])[:, 0]
        raw[s0:s0 + n, 2] = np.where(ok, r[:, 2], 0.0)
        conf[s0:s0 + n] = r[:, 3]
        step()
    return raw, conf


ROLL_MAX = math.radians(20.0)
"""Largest head roll (eye line) applied to the Haar path's crops; beyond it crops stay upright."""
ROLL_STEADY = math.radians(3.0)
"""The eye-line roll is used only when the key frames' angles scatter less than this (median
absolute deviation from their running median) and eyes were found in at least half of them;
single detections come in whole-pixel steps (about 1-2 degrees on a 100-px face)."""


def _eye_pair_angle(det, img: np.ndarray, box: np.ndarray) -> float | None:
    """Angle (radians, image coordinates) of the line from the left to the right eye, from
    OpenCV's bundled eye cascade in the upper part of a face box, or None."""
    cv2 = _cv2()
    x0, y0, x1, y1 = box
    fw = x1 - x0
    h, w = img.shape[:2]
    ox, oy = int(max(x0, 0)), int(max(y0 + 0.15 * fw, 0))
    ex, ey = int(min(x1, w)), int(min(y0 + 0.55 * fw, h))
    if ex - ox < 16 or ey - oy < 8:
        return None
    g = cv2.cvtColor(np.ascontiguousarray(img[oy:ey, ox:ex, :3]), cv2.COLOR_RGB2GRAY)
    sc = min(1.0, 100.0 / fw)
    if sc < 1.0:
        g = cv2.resize(g, None, fx=sc, fy=sc, interpolation=cv2.INTER_AREA)
    lo, hi = max(int(0.15 * fw * sc), 6), max(int(0.4 * fw * sc), 8)
    d = det.detectMultiScale(_f2u8(g), scaleFactor=1.05, minNeighbors=3, minSize=(lo, lo), maxSize=(hi, hi))
    if len(d) < 2:
        return None
    c = np.array([(x + bw / 2, y + bh / 2) for x, y, bw, bh in d], np.float64) / sc + [ox, oy]
    mid = 0.5 * (x0 + x1)
    left, right = c[c[:, 0] < mid], c[c[:, 0] >= mid]
    if not len(left) or not len(right):
        return None
    l, r = np.median(left, axis=0), np.median(right, axis=0)
    if not 0.25 * fw <= r[0] - l[0] <= 0.7 * fw:
        return None
    return math.atan2(r[1] - l[1], r[0] - l[0])


def _eye_roll(frames, boxes, every):
    """Head roll per frame (B,) radians from the eye line on every ``every``-th frame, median
    filtered and smoothed; (None, reason) when the eyes are not found steadily enough (then the
    crops stay upright)."""
    cv2 = _cv2()
    det = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_eye.xml")
    b = len(boxes)
    if det.empty():
        return None, None
    keys = list(range(0, b, max(int(every), 1)))
    got = {}
    for k in keys:
        a = _eye_pair_angle(det, _np_float(frames[k:k + 1])[0], boxes[k])
        if a is not None and abs(a) <= ROLL_MAX:
            got[k] = a
    if len(got) < max(0.5 * len(keys), 1):
        return None, f"crops upright: eyes found in {len(got)} of {len(keys)} key frames"
    kk = np.array(sorted(got))
    ka = np.array([got[k] for k in kk])
    med = _median_filter(ka, 5)
    mad = float(np.median(np.abs(ka - med)))
    if mad > ROLL_STEADY:
        return None, f"crops upright: eye line unsteady ({math.degrees(mad):.1f} deg scatter)"
    ka = _gauss_smooth(med, 2.0)
    roll = _gauss_smooth(np.interp(np.arange(b), kk, ka), float(every))
    return roll, f"crops rolled with the eye line (mean {math.degrees(float(roll.mean())):.1f} deg)"


RECENTRE_MAX = 0.08
"""Largest shift (face widths) the lip-extent recentring may apply to the mouth-line centre."""
LIP_COLOUR_FRAMES = 51
"""Frames (about 2 s at 25 fps) of the running median that applies the lip-colour lower edge's
shift of the mouth centre (see :func:`_lip_box`, :func:`_recentre`)."""


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


def _track_mesh(frames, face_index, chunk, step):
    """mediapipe face mesh on every frame -> dict(boxes, found, mouth (B, 8, 2), face_width, gap)."""
    fm = _mediapipe_face_mesh()
    b, h, w = (int(v) for v in frames.shape[:3])
    nfaces = 1 if face_index < 0 else face_index + 1
    if face_index < 0:
        nfaces = 4
    pts = np.full((b, 468, 2), np.nan)
    with fm.FaceMesh(static_image_mode=False, max_num_faces=nfaces, refine_landmarks=False,
                     min_detection_confidence=0.5, min_tracking_confidence=0.5) as mesh:
        for s0 in range(0, b, chunk):
            u8 = _to_u8(frames[s0:s0 + chunk])
            for i, im in enumerate(u8):
                res = mesh.process(np.ascontiguousarray(im))
                faces = res.multi_face_landmarks or []
                cand = [np.array([(p.x * w, p.y * h) for p in f.landmark]) for f in faces]
                if not cand:
                    continue
                if face_index >= 0:
                    cand.sort(key=lambda p: p[:, 0].mean())
                    if face_index >= len(cand):
                        continue
                    pts[s0 + i] = cand[face_index]
                else:
                    pts[s0 + i] = max(cand, key=lambda p: np.ptp(p[:, 0]) * np.ptp(p[:, 1]))
            step()
    found = ~np.isnan(pts[:, 0, 0])
    if not found.any():
        raise NoFaceError(
            f"{WHO}: the mediapipe face mesh found no face in any of the {b} frames. Give the face box "
            "in 'manual box' as x0,y0,x1,y1 pixels, or try detector 'haar'."
        )
    t = np.arange(b)
    idx = np.nonzero(found)[0]
    flat = pts.reshape(b, -1)
    flat = np.stack([np.interp(t, idx, flat[idx, j]) for j in range(flat.shape[1])], 1)
    pts = _gauss_smooth(flat, 0.7).reshape(b, 468, 2)
    cheek = np.linalg.norm(pts[:, _MESH_CHEEKS[0]] - pts[:, _MESH_CHEEKS[1]], axis=1)
    face_w = cheek / MESH_TO_BOX
    mouth = pts[:, list(_MESH_MOUTH)]
    mc = 0.5 * (mouth[:, 0] + mouth[:, 1])
    x0 = mc[:, 0] - MOUTH_IN_BOX[0] * face_w
    y0 = mc[:, 1] - MOUTH_IN_BOX[1] * face_w
    boxes = _gauss_smooth(np.stack([x0, y0, x0 + face_w, y0 + face_w], 1), 2.0)
    gap = np.linalg.norm(pts[:, 13] - pts[:, 14], axis=1) / (np.linalg.norm(pts[:, 78] - pts[:, 308], axis=1) + 1e-6)
    return {"boxes": boxes, "found": found, "mouth": mouth, "face_width": face_w, "gap": gap}


# --- crops, mask, preview ---------------------------------------------------------------------

def mouth_crops(frames: torch.Tensor, track: FaceTrack, size: int | None = None) -> torch.Tensor:
    """Aligned mouth-centred crops (B, S, S, C) through the track's transform (kornia warp).

    size defaults to ``track.crop_size``; another size rescales the transform.
    """
    import kornia

    check_images(frames, "mouth_crops", "frames")
    if frames.shape[0] != track.num_frames:
        raise InputError(f"mouth_crops: {frames.shape[0]} frames but the face track has {track.num_frames}.")
    size = int(size or track.crop_size)
    m = track.transform.to(frames.device, torch.float32).clone()
    if size != track.crop_size:
        r = size / track.crop_size
        m = m * r
        m[:, :, 2] = m[:, :, 2] + 0.5 * r - 0.5  # pixel centres sit at integers
    out = []
    for s0 in range(0, frames.shape[0], 32):
        x = frames[s0:s0 + 32].permute(0, 3, 1, 2).float()
        y = kornia.geometry.transform.warp_affine(x, m[s0:s0 + 32], (size, size), mode="bilinear",
                                                  padding_mode="border", align_corners=True)
        out.append(y.permute(0, 2, 3, 1).to(frames.dtype))
    return torch.cat(out)


MASK_POWER = 4
"""Shape of the mask's lower outline (fixed): 2 would be a half-ellipse; 4 keeps the cheeks full
down to the mouth corners and rounds the chin."""

MASK_HALF_WIDTH = 0.38
"""Half the mask's width in face widths (the face mesh's cheek-to-cheek width is 0.75): a wide
smile (astronaut: 0.44 face widths) stays inside with its feather."""


def lower_face_mask(track: FaceTrack, expand: float = 0.0, feather: float = 0.08,
                    device: torch.device | str | None = None, chunk: int = 16) -> torch.Tensor:
    """Feathered mask of the lower face: below the nose, cheek to cheek, down to the chin.

    track:   a FaceTrack. expand: grow (> 0) or shrink (< 0) the region by this fraction of the
    face width. feather: width of the soft edge as a fraction of the face width (0 = hard edge).
    Returns (B, H, W) float32 in 0..1 on ``device`` (default the track's device). The region is
    the lower half of a superellipse (power :data:`MASK_POWER`: square-ish cheeks, round chin)
    hanging from the bottom of the nose, 0.76 face widths across, rotated with the mouth.
    """
    if feather < 0:
        raise InputError(f"lower_face_mask: feather must be >= 0, got {feather}.")
    if expand <= -0.5:
        raise InputError(f"lower_face_mask: expand must be above -0.5 (face widths), got {expand}.")
    dev = torch.device(device) if device is not None else track.boxes.device
    h, w = track.frame_size
    b = track.num_frames
    mouth = track.mouth.to(dev, torch.float32)
    boxes = track.boxes.to(dev, torch.float32)
    fw = track.extras.get("face_width")
    fw = fw.to(dev, torch.float32) if isinstance(fw, torch.Tensor) else boxes[:, 2] - boxes[:, 0]
    ang = track.extras.get("angle")
    if isinstance(ang, torch.Tensor):
        ang = ang.to(dev, torch.float32)
    else:
        d = mouth[:, 1] - mouth[:, 0]
        ang = torch.atan2(d[:, 1], d[:, 0])
    # the mouth centre is the crop centre of the (smoothed) aligned-crop transform
    t = track.transform.to(dev, torch.float32)
    a_inv = torch.linalg.inv(t[:, :, :2])
    half_c = track.crop_size / 2.0 - 0.5
    centre = torch.einsum("bij,bj->bi", a_inv, half_c - t[:, :, 2])
    nose, chin = mouth[:, 6], mouth[:, 7]
    cos, sin = torch.cos(ang), torch.sin(ang)
    # in the face's own frame (u along the mouth line, v downwards)
    def to_v(p):
        d = p - centre
        return -sin * d[:, 0] + cos * d[:, 1]
    top = to_v(nose) - expand * fw                      # the bottom of the nose
    bottom = to_v(chin) + expand * fw                   # the chin
    half_w = (MASK_HALF_WIDTH + expand) * fw                       # cheek to cheek
    fea = (feather * fw).clamp(min=1e-3)
    out = torch.zeros((b, h, w), dtype=torch.float32, device=dev)
    # only a window around the face is computed; the rest stays 0
    reach = (torch.sqrt(half_w ** 2 + torch.maximum(top.abs(), bottom.abs()) ** 2) + fea + 2).detach()
    lo_x = (centre[:, 0] - reach).floor().clamp(0, w).long().cpu()
    hi_x = (centre[:, 0] + reach).ceil().clamp(0, w).long().cpu()
    lo_y = (centre[:, 1] - reach).floor().clamp(0, h).long().cpu()
    hi_y = (centre[:, 1] + reach).ceil().clamp(0, h).long().cpu()
    for s0 in range(0, b, chunk):
        sl = slice(s0, s0 + chunk)
        x0, x1 = int(lo_x[sl].min()), int(hi_x[sl].max())
        y0, y1 = int(lo_y[sl].min()), int(hi_y[sl].max())
        if x1 <= x0 or y1 <= y0:
            continue
        ys = torch.arange(y0, y1, device=dev, dtype=torch.float32).view(1, -1, 1)
        xs = torch.arange(x0, x1, device=dev, dtype=torch.float32).view(1, 1, -1)
        v1 = lambda t: t[sl].view(-1, 1, 1)
        dx, dy = xs - v1(centre[:, 0]), ys - v1(centre[:, 1])
        t_top = v1(top)
        a = v1(half_w)
        bb = (v1(bottom) - t_top).clamp(min=1.0)
        # in place on fresh (chunk, Y, X) buffers: the mask is a pure function of the track, no
        # autograd through it, and the window is the cost of MaskLowerFace
        u = v1(cos) * dx + v1(sin) * dy
        d_top = (v1(cos) * dy - v1(sin) * dx).sub_(t_top)  # v - top
        # signed distance (approx., px) inside the lower superellipse below `top`
        ua = u.div_(a).square_().square_()                  # |u/a|^4
        vb = d_top.clamp(min=0).div_(bb).square_().square_()  # ((v-top)+/bb)^4
        d_ell = ua.add_(vb).sqrt_().sqrt_().neg_().add_(1).mul_(torch.minimum(a, bb))
        f = v1(fea)
        if feather > 0:  # outline feathered across the edge; the nose line only downwards, over
            # half the width (a smile's upper lip starts about 0.08 face widths below the nose)
            win = torch.minimum(d_ell.add_(f / 2).div_(f).clamp_(0, 1), d_top.mul_(2).div_(f).clamp_(0, 1))
        else:
            win = ((d_ell >= 0) & (d_top >= 0)).float()
        out[sl, y0:y1, x0:x1] = win
    return out


def preview(frames: torch.Tensor, track: FaceTrack, mask: torch.Tensor | None = None,
            max_frames: int = 4) -> torch.Tensor:
    """IMAGE (n, H, W, 3) of up to ``max_frames`` evenly spaced frames with the face box (green),
    mouth landmarks (red; nose/chin yellow), aligned-crop outline (blue) and mask (tinted)."""
    cv2 = _cv2()
    b = frames.shape[0]
    n = max(1, min(int(max_frames), b))
    idx = np.unique(np.linspace(0, b - 1, n).round().astype(int))
    imgs = _to_u8(frames[idx]).copy()
    boxes = track.boxes.detach().cpu().numpy()
    mouth = track.mouth.detach().cpu().numpy()
    inv = _invert(track.transform.detach().cpu().double().numpy()[idx])
    cs = track.crop_size - 1
    corners = np.array([[0, 0], [cs, 0], [cs, cs], [0, cs]], np.float64)
    lw = max(1, int(round(max(frames.shape[1:3]) / 400)))
    out = []
    for j, (i, im) in enumerate(zip(idx, imgs)):
        im = im.astype(np.float32)
        if mask is not None:
            mk = mask[i].detach().float().cpu().numpy()[..., None]
            im = im * (1 - 0.45 * mk) + np.array([255, 0, 255], np.float32) * 0.45 * mk
        im = im.clip(0, 255).astype(np.uint8)
        x0, y0, x1, y1 = boxes[i].round().astype(int)
        col = (0, 255, 0) if bool(track.found[i]) else (255, 128, 0)
        cv2.rectangle(im, (x0, y0), (x1, y1), col, lw)
        quad = _apply(inv[j:j + 1], corners[None])[0].round().astype(np.int32)
        cv2.polylines(im, [quad.reshape(-1, 1, 2)], True, (0, 128, 255), lw)
        for k, (x, y) in enumerate(mouth[i]):
            cv2.circle(im, (int(round(x)), int(round(y))), lw + 1, (255, 0, 0) if k < 6 else (255, 255, 0), -1)
        cv2.putText(im, f"{i} open {float(track.opening[i]):.2f}", (5, 5 + 12 * lw), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4 * lw, (255, 255, 255), lw)
        out.append(im)
    return torch.from_numpy(np.stack(out)).float().div(255).to(frames.device)
