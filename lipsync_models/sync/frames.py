"""SyncScore's lip measures taken on the frames themselves, where the face track gives only where
the mouth is: the optical-flow opening, the track's lip signal re-measured on the frames, and the
check that a track's lip measurements describe the frames scored."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from ..calibration import TRACK_MATCH_R
from ..checks import check_images
from ..errors import InputError
from ..types import FaceTrack
from .signals import IDX, STATIC_STD, frame_extra, track_lip_signal

WHO = "SyncScore"
ProgressFn = Callable[[int, int], None]

CHUNK_PIXELS = 4_000_000
"""Frame pixels :func:`frame_lip_signal` cuts and warps at a time (a run of frames shares one crop
window): 48 MB of float32 RGB whatever the frame size; by frames alone (64) a 1080p clip whose head
moves held several hundred MB."""
FLOW_CROP = 64
"""Side (pixels) of the grey mouth crop the optical-flow opening is measured on."""


def flow_opening(images: torch.Tensor, track: FaceTrack, fps: float, chunk: int = 256,
                 on_progress: ProgressFn | None = None, check: bool = True) -> np.ndarray:
    """Mouth opening from optical flow, independent of how precise the lip landmarks are.

    A grey crop two mouth-widths wide, centred on the mouth (corner midpoint, median over 5
    frames; size from the clip's median mouth width) is cut from every frame; dense
    Farneback flow between consecutive crops gives the vertical speed of the lower-lip band
    minus that of the upper-lip band, i.e. how fast the lips part (pixels of the crop per
    frame). Its running sum, minus its 1-second moving average, is the opening.

    images: (B, H, W, C) float 0..1; track: the clip's FaceTrack; check=False: the caller has
    checked the images (:func:`checks.check_images` scans every pixel: a second of a 1080p clip's
    scoring time per scan). Returns (B,) float64.
    """
    import cv2
    from scipy.ndimage import median_filter, uniform_filter1d

    if check:
        check_images(images, WHO)
    b = images.shape[0]
    m = track.mouth.detach().double().cpu().numpy()
    centre = median_filter(0.5 * (m[:, IDX["corner_left"]] + m[:, IDX["corner_right"]]), size=(5, 1), mode="nearest")
    width = float(np.median(np.linalg.norm(m[:, IDX["corner_left"]] - m[:, IDX["corner_right"]], axis=1)))
    size = FLOW_CROP
    scale = size / max(2.0 * width, 4.0)
    vel = np.zeros(b)
    prev = None
    cols = slice(size // 2 - size // 5, size // 2 + size // 5)
    upper = slice(size // 2 - size // 4, size // 2)
    lower = slice(size // 2, size // 2 + size // 4)
    h, w = int(images.shape[1]), int(images.shape[2])
    reach = size / (2.0 * scale) + 3.0  # source pixels the warp can read around the centre, + margin
    lum = np.array([0.299, 0.587, 0.114], np.float32)
    for s0 in range(0, b, chunk):
        for i in range(s0, min(s0 + chunk, b)):
            # only the mouth region is converted (cost scales with the mouth, not the frame); a
            # slice cut short by the frame edge ends AT the edge, so BORDER_REPLICATE is unchanged
            x0, x1 = _span(centre[i, 0] - reach, centre[i, 0] + reach, w)
            y0, y1 = _span(centre[i, 1] - reach, centre[i, 1] + reach, h)
            block = images[i, y0:y1, x0:x1, :3].detach().to("cpu", torch.float32).numpy()
            # numpy/cv2, not per-frame torch ops (those stall on the thread pool under load)
            g = cv2.convertScaleAbs(np.clip(block @ lum, 0.0, 1.0), alpha=255.0)
            mat = np.array([[scale, 0, size / 2 - scale * (centre[i, 0] - x0)],
                            [0, scale, size / 2 - scale * (centre[i, 1] - y0)]])
            crop = cv2.warpAffine(g, mat, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
            if prev is not None:
                flow = cv2.calcOpticalFlowFarneback(prev, crop, None, 0.5, 2, 9, 3, 5, 1.1, 0)
                vy = flow[..., 1]
                vel[i] = float(vy[lower, cols].mean() - vy[upper, cols].mean())
            prev = crop
        if on_progress is not None:
            on_progress(min(s0 + chunk, b), b)
    opening = np.cumsum(vel)
    return opening - uniform_filter1d(opening, size=max(int(round(fps)), 1), mode="nearest")


def _span(lo: float, hi: float, size: int) -> tuple[int, int]:
    """Whole-pixel slice [a, b) covering ``lo..hi`` inside ``0..size``, at least one pixel."""
    a = int(min(max(math.floor(lo), 0), size - 1))
    return a, int(max(min(math.ceil(hi) + 1, size), a + 1))


def frame_lip_signal(images: torch.Tensor, track: FaceTrack, chunk: int = 64,
                     frames: np.ndarray | None = None, measure: str = "contrast", check: bool = True) -> np.ndarray:
    """The lip signal measured on ``images`` themselves; the track gives only where the mouth is.

    ``measure="contrast"`` (default): the inner-mouth contrast MaskLowerFace stores in
    ``FaceTrack.extras["contrast"]`` (:func:`face.mouth_contrast`); ``measure="opening"``:
    :func:`face.mouth_opening`, what it stores in ``FaceTrack.opening``. Read through a mouth-centred crop rebuilt from the track's
    geometry (mouth-corner midpoint, median over 5 frames; the track's smoothed face width and
    crop angle when it has them, else the box width and upright), so it also works for tracks
    whose ``transform`` frames the whole face (Wav2Lip). images: (B, H, W, C) 0..1; frames:
    optional indices to measure (default all); check: as :func:`flow_opening`. Frames are cut in runs
    of at most ``chunk`` sharing one crop window of at most :data:`CHUNK_PIXELS` pixels in all.
    Returns (B,) float64 (or one value per index).
    """
    from scipy.ndimage import median_filter

    from .. import face
    from ..crops import _warp

    if check:
        check_images(images, WHO)
    if measure not in ("contrast", "opening"):
        raise InputError(f"{WHO}: measure must be 'contrast' or 'opening', got {measure!r}.")
    fn = face.mouth_contrast if measure == "contrast" else face.mouth_opening
    b = images.shape[0]
    m = track.mouth.detach().double().cpu().numpy()
    centre = median_filter(0.5 * (m[:, IDX["corner_left"]] + m[:, IDX["corner_right"]]), size=(5, 1), mode="nearest")
    fw = frame_extra(track, "face_width")
    if fw is None:
        fw = (track.boxes[:, 2] - track.boxes[:, 0]).detach().double().cpu().numpy()
    fw = np.maximum(fw, 4.0) * face.CROP_SCALE
    ang = frame_extra(track, "angle")
    if ang is None:
        ang = np.zeros(b)
    # big faces are cut supersampled (mouth_opening area-averages them down), as MaskLowerFace does
    size = face.ANALYSIS_SIZE * int(min(max(math.ceil(float(np.median(fw)) / face.ANALYSIS_SIZE - 0.25), 1), 4))
    s = size / fw
    c, si = np.cos(ang) * s, np.sin(ang) * s  # as MaskLowerFace's crops: rotate by -angle
    half = size / 2.0 - 0.5
    mat = np.zeros((b, 2, 3))
    mat[:, 0, 0], mat[:, 0, 1], mat[:, 1, 0], mat[:, 1, 1] = c, si, -si, c
    mat[:, 0, 2] = half - (c * centre[:, 0] + si * centre[:, 1])
    mat[:, 1, 2] = half - (-si * centre[:, 0] + c * centre[:, 1])
    idx = torch.arange(b) if frames is None else torch.as_tensor(frames, dtype=torch.long)
    h, w = int(images.shape[1]), int(images.shape[2])
    # each crop reads source pixels within half its diagonal of the mouth centre (+ margin); only
    # that box of each chunk is warped, so the cost follows the mouth, not the frame. A box cut
    # short by the frame edge ends AT the edge, so the border padding is unchanged.
    reach = fw * (math.sqrt(0.5) * (size + 1) / size) + 3.0
    sel = idx.numpy()
    out = []
    for f in _pixel_chunks(sel, centre, reach, (h, w), chunk, size * size):
        x0, x1 = _span(float((centre[f, 0] - reach[f]).min()), float((centre[f, 0] + reach[f]).max()), w)
        y0, y1 = _span(float((centre[f, 1] - reach[f]).min()), float((centre[f, 1] + reach[f]).max()), h)
        mk = np.zeros((len(f), 3, 3))
        mk[:, :2] = mat[f]
        mk[:, :2, 2] += mk[:, :2, 0] * x0 + mk[:, :2, 1] * y0
        mk[:, 2, 2] = 1.0
        x = images[torch.as_tensor(f).to(images.device), y0:y1, x0:x1, :3].permute(0, 3, 1, 2).float()
        crops = _warp(x, torch.from_numpy(mk), (size, size), "border")
        out.append(fn(crops.permute(0, 2, 3, 1), WHO).double().cpu().numpy())
    return np.concatenate(out)


def _pixel_chunks(sel: np.ndarray, centre: np.ndarray, reach: np.ndarray, hw: tuple[int, int],
                  chunk: int, out_pixels: int, budget: int | None = None) -> list[np.ndarray]:
    """``sel`` cut into runs of at most ``chunk`` frames whose shared crop window (the box around
    every frame's mouth centre +- ``reach``, inside the ``hw`` frame) plus each frame's crop
    (``out_pixels``), times the frame count, stays within ``budget`` pixels; a frame whose own
    window is larger gets a run of its own. ``budget`` None: :data:`CHUNK_PIXELS`."""
    budget = CHUNK_PIXELS if budget is None else budget
    runs, start = [], 0
    while start < len(sel):
        end = start + 1
        lo = centre[sel[start]] - reach[sel[start]]
        hi = centre[sel[start]] + reach[sel[start]]
        while end < len(sel) and end - start < chunk:
            f = sel[end]
            nlo, nhi = np.minimum(lo, centre[f] - reach[f]), np.maximum(hi, centre[f] + reach[f])
            span = np.minimum(nhi, (hw[1], hw[0])) - np.maximum(nlo, 0.0) + 2.0
            if (float(np.prod(np.maximum(span, 1.0))) + out_pixels) * (end - start + 1) > budget:
                break
            lo, hi, end = nlo, nhi, end + 1
        runs.append(sel[start:end])
        start = end
    return runs


def track_matches(track: FaceTrack, measured: np.ndarray, frames: np.ndarray | None = None) -> tuple[bool, float]:
    """Whether the track's lip measurements describe the frames: (match, r) where r is the
    correlation of the track's lip signal (:func:`track_lip_signal`, at ``frames``, default all)
    with ``measured`` (:func:`frame_lip_signal` at the same frames, measured as the track's signal
    was, ``measure=track_lip_measure(track)``); a match needs r >= :data:`TRACK_MATCH_R`, or both
    to be static and equal."""
    own = track_lip_signal(track)
    if frames is not None:
        own = own[frames]
    a, b = own - own.mean(), measured - measured.mean()
    den = math.sqrt(float((a * a).sum() * (b * b).sum()))
    if a.std() < STATIC_STD and b.std() < STATIC_STD:
        same = abs(float(own.mean() - measured.mean())) < 0.02
        return same, 1.0 if same else 0.0
    r = float((a * b).sum() / den) if den > 1e-12 else 0.0
    return r >= TRACK_MATCH_R, r
