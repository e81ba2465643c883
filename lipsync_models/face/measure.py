"""The weight-free mouth measures on aligned crops: the opening (height of the inner mouth) and the
contrast (how sharply the lips part, SyncScore's lip signal), and the mouth landmarks read with them.

Public: :func:`mouth_opening`, :func:`mouth_contrast`. Their thresholds were fitted on GRID and live in
:mod:`lipsync_models.calibration` (face section).
"""

from __future__ import annotations

import numpy as np
import torch

from ..calibration import (HEIGHT_GAIN, INNER_CAVITY, INNER_MIN_SPAN, INNER_RED, MOUTH_WIDTH, OPEN_GAIN, OPEN_SOFT, OPEN_ZERO,
                           TEETH_DARK)
from ..checks import check_images
from ..errors import InputError
from ._base import ANALYSIS_SIZE, _cv2, _nearest_run, _to_u8


def _ycc(crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 RGB (n, S, S, 3) -> (luma Y in 0..1, lip map Cr - Cb in about -1..1), float32.

    BT.601 (JPEG) coefficients, as ``kornia.color.rgb_to_ycbcr``, which is slower on CPU for this path:
    bench/bench_face.py ("_ycc vs kornia"), 64 crops of 96 px, medians on the shared 2-core machine:
    numpy 6.7-7.5 ms vs kornia 8.8-11.1 ms on one thread, 3.5-15.5 ms vs 233-253 ms on two threads
    (torch's threads stall when the cores are busy); end to end, mouth_opening on 150 crops of 256 px took
    0.097 s with numpy and 0.177 s with kornia (two threads). The inputs are numpy uint8 crops from
    OpenCV, so kornia would also add a round trip through torch."""
    c = crops.astype(np.float32) / 255.0
    y = 0.299 * c[..., 0] + 0.587 * c[..., 1] + 0.114 * c[..., 2]
    cr = (c[..., 0] - y) * 0.713
    cb = (c[..., 2] - y) * 0.564
    return y, cr - cb


def _analyse(crops: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The two opening measures and mouth landmarks on aligned crops at :data:`ANALYSIS_SIZE`.

    crops: (n, S, S, 3) uint8 with the mouth at the centre, level, crop side = face width.
    Returns (opening (n,) >= 0, contrast (n,) >= 0, landmarks (n, 6, 2) in crop px:
    corner_left, corner_right, upper_outer, lower_outer, upper_inner, lower_inner).

    Both measures read the mouth window (0.27 x 0.19 face widths around the centre) against the
    skin just above and below the mouth (medians of luma and of the lip map YCrCb Cr - Cb), and
    both are in inner-lip gap / mouth width units, with no clip statistics (each crop on its own):

    * opening, how far the lips are apart: the inner mouth is every window pixel that is less
      lip-coloured than the skin by :data:`~lipsync_models.calibration.INNER_RED` (teeth and the cavity
      both are; lips are redder than skin), or dark and not red together (``INNER_CAVITY``: a cavity that keeps
      some red, and greyscale video). Its area divided by the number of columns it spans is
      its mean height; over the mouth width, times ``HEIGHT_GAIN``, that is the gap.
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
      soft floor at 0 (``OPEN_ZERO``, ``OPEN_GAIN``, ``OPEN_SOFT``, all in
      :mod:`~lipsync_models.calibration`). One dark pixel
      between the lips moves it, so it rises the moment the lips part, and it changes
      smoothly from frame to frame: it is SyncScore's timing signal (its natural lead was
      calibrated with it; with ``opening`` in its place, the per-clip curve peaks of GRID
      spread over 1.13 frames instead of 0.74) and it places the inner-lip landmarks (the face
      mesh brings its own).
    """
    n, s = crops.shape[:2]
    y, lip = _ycc(crops)
    dark, red, lref = _inner_scores(y, lip)
    score = dark + red
    q = np.percentile(score.reshape(n, -1), 99, axis=1)
    contrast = (OPEN_GAIN * OPEN_SOFT * np.logaddexp(0.0, (q - OPEN_ZERO) / OPEN_SOFT)).astype(np.float32)
    mw = MOUTH_WIDTH * s
    inner = (red > INNER_RED) | (score > INNER_CAVITY)
    area = inner.reshape(n, -1).sum(1).astype(np.float32)
    cols = np.maximum(inner.any(axis=1).sum(1).astype(np.float32), INNER_MIN_SPAN * mw)
    opening = (HEIGHT_GAIN * area / cols / mw).astype(np.float32)
    return opening, contrast, _landmarks(lip - lref, contrast)


def _teeth(crops: np.ndarray) -> np.ndarray:
    """How much teeth the mouth shows: (n,) float32 >= 0, the area of the mouth window's teeth pixels
    over the square of the mouth width (0: none; a row of upper teeth on a GRID speaker 0.02-0.1).

    crops as :func:`_analyse`'s. A teeth pixel is inner mouth by colour (less lip-coloured than the
    skin by :data:`~lipsync_models.calibration.INNER_RED`) and not dark: at most
    :data:`~lipsync_models.calibration.TEETH_DARK` darker than the skin around the mouth (the cavity and
    the tongue's shadow are darker). Like the opening, each crop is measured on its own."""
    n, s = crops.shape[:2]
    y, lip = _ycc(crops)
    dark, red, _ = _inner_scores(y, lip)
    teeth = (red > INNER_RED) & (dark < TEETH_DARK)
    return (teeth.reshape(n, -1).sum(1) / (MOUTH_WIDTH * s) ** 2).astype(np.float32)


def _window(s: int) -> tuple[int, int, int, int]:
    """The mouth window's half-height and half-width, the skin band's height and the band's half-width
    (px) in a crop of side ``s``."""
    ry, rx = max(int(round(0.094 * s)), 2), max(int(round(0.135 * s)), 2)
    return ry, rx, max(int(round(0.065 * s)), 2), int(round(0.21 * s))


def _inner_scores(y: np.ndarray, lip: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per window pixel: darkness relative to the skin and 4 x how much less lip-coloured than the skin
    (each (n, 2 ry, 2 rx)), and the skin's lip map (n, 1, 1) (medians of the bands above and below)."""
    n, s = y.shape[:2]
    c = s // 2
    ry, rx, band, bx = _window(s)
    x0, x1 = c - bx, c + bx

    def ring(a):
        return np.concatenate([a[:, c - ry - band:c - ry, x0:x1].reshape(n, -1),
                               a[:, c + ry:c + ry + band, x0:x1].reshape(n, -1)], 1)

    yref = np.median(ring(y), axis=1)[:, None, None] + 1e-3
    lref = np.median(ring(lip), axis=1)[:, None, None]
    win = (slice(None), slice(c - ry, c + ry), slice(c - rx, c + rx))
    return 1.0 - y[win] / yref, 4.0 * (lref - lip[win]), lref


def _landmarks(lipness: np.ndarray, contrast: np.ndarray) -> np.ndarray:
    """Mouth landmarks (n, 6, 2) in crop px from the lip map relative to the skin (n, S, S): corners
    from its column profile, the lips from the centre-column profile, the inner lips from the contrast."""
    n, s = lipness.shape[:2]
    c = s // 2
    ry, _, band, _ = _window(s)
    mw = MOUTH_WIDTH * s
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
    return lm


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


