"""SyncScore's lip signal from the pixels of the inner mouth in the face track's aligned crop.

The face track's ``transform`` maps each frame onto an aligned, mouth-centred crop one face width
wide (the head's position, roll and scale removed, smoothed over time). :func:`mouth_patches` cuts
the inner mouth out of that crop, small and grey, from every frame (reading only the window around
the mouth, so the cost and the memory follow the mouth, not the frame). :func:`mouth_components`
takes what changes fast there (each pixel minus its 1-s moving average: light, pose drift and slow
expressions go) and keeps its strongest temporal components (principal components over the clip):
the lips parting, the teeth and tongue showing, whatever this speaker's mouth does, found on this
clip rather than assumed.

The components have no sign and no fixed mix, so they are not correlated with the audio one by one:
:func:`subspace_curves` reads, at each lag, how much of the audio signal the components explain
together (the multiple correlation, sqrt of the least-squares R^2 of the audio on the components).
The clip itself decides which components carry speech; the same number of components at every lag
keeps the chance level the same across the curve, so its peak is the lag where the mouth follows
the sound.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..checks import check_images
from ..types import FaceTrack
from .common import audio_at
from .frames import _span

WHO = "SyncScore"

PATCH = 48
"""Side (pixels) of the grey aligned crop the inner-mouth patch is cut from (one face width)."""
INNER = (0.18, 0.11, 0.16)
"""The inner-mouth patch in that crop, as shares of its side from the mouth centre: half-width,
above, below (the mouth is 0.27 face widths wide; the lower lip and chin travel down)."""
COMPONENTS = 8
"""Most temporal components kept; fewer on short spans (one per 12 frames), so the chance level
of the multiple correlation (components / frames) stays low."""
FRAMES_PER_COMPONENT = 12


def mouth_patches(images: torch.Tensor, track: FaceTrack, check: bool = True) -> np.ndarray:
    """(T, P) float32: the grey inner-mouth patch of every frame in the track's aligned crop.

    images: (T, H, W, C) float 0..1 (any device, float dtype); track: the clip's FaceTrack (its
    ``transform`` gives the crop); check=False: the caller has checked the images. Each frame is
    read only in the window its crop covers."""
    import cv2

    if check:
        check_images(images, WHO)
    t, h, w = (int(v) for v in images.shape[:3])
    m = track.transform.detach().double().cpu().numpy() * (PATCH / float(track.crop_size))
    c = PATCH / 2.0
    hx, up, dn = (max(int(round(v * PATCH)), 1) for v in INNER)
    rows, cols = slice(int(c) - up, int(c) + dn), slice(int(c) - hx, int(c) + hx)
    lum = np.array([0.299, 0.587, 0.114], np.float32)
    out = np.empty((t, (rows.stop - rows.start) * (cols.stop - cols.start)), np.float32)
    for i in range(t):
        a = m[i, :, :2]
        inv = np.linalg.inv(a)
        corners = np.array([[0, 0], [PATCH, 0], [0, PATCH], [PATCH, PATCH]], np.float64)
        src = (corners - m[i, :, 2]) @ inv.T
        x0, x1 = _span(src[:, 0].min() - 2, src[:, 0].max() + 2, w)
        y0, y1 = _span(src[:, 1].min() - 2, src[:, 1].max() + 2, h)
        block = images[i, y0:y1, x0:x1, :3].detach().to("cpu", torch.float32).numpy()
        g = np.ascontiguousarray(block @ lum)
        mk = m[i].copy()
        mk[:, 2] += mk[:, 0] * x0 + mk[:, 1] * y0
        crop = cv2.warpAffine(g, mk, (PATCH, PATCH), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
        out[i] = crop[rows, cols].reshape(-1)
    return out


def mouth_components(patches: np.ndarray, fps: float) -> np.ndarray:
    """(T, K) the strongest temporal components of the patches' fast change (each pixel minus its
    1-s moving average), unit spread each; K = :data:`COMPONENTS` (fewer on short clips)."""
    from scipy.ndimage import uniform_filter1d

    x = patches.astype(np.float64)
    x = x - uniform_filter1d(x, size=max(int(round(fps)), 1), axis=0, mode="nearest")
    x -= x.mean(0)
    k = int(min(COMPONENTS, max(x.shape[0] // FRAMES_PER_COMPONENT, 1), x.shape[1]))
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    return u[:, :k] * math.sqrt(x.shape[0])


def subspace_curves(comps: np.ndarray, audio_hr: dict[str, np.ndarray], audio_fr: dict[str, np.ndarray],
                    fps: float, lags: np.ndarray, frames: slice | None = None) -> np.ndarray:
    """Multiple correlation of each audio signal with the components at (sub-frame) ``lags``, as
    levels and as frame-to-frame changes, like :func:`.lags.lag_curves`: (2 * signals, L).

    comps: (T, K) per frame; audio as in :func:`.lags.lag_curves` (at lag L the audio is read at
    frame ``i + L``); ``frames`` restricts the frames used (windows; the components are
    re-orthogonalised on them)."""
    t_all = np.arange(comps.shape[0], dtype=np.float64)
    t = t_all[frames] if frames is not None else t_all
    z = comps[frames] if frames is not None else comps
    sampled = audio_at(audio_hr, audio_fr, fps, t[None, :] + lags[:, None])
    basis, dbasis = _orthonormal(z), _orthonormal(np.diff(z, axis=0))
    out = []
    for s in sampled:
        out.append(_multiple_r(basis, s))
        out.append(_multiple_r(dbasis, np.diff(s, axis=1)))
    return np.stack(out)


def _orthonormal(z: np.ndarray) -> np.ndarray:
    """An orthonormal basis (T, K') of the centred columns of ``z`` (dropping degenerate ones)."""
    zc = z - z.mean(0)
    u, s, _ = np.linalg.svd(zc, full_matrices=False)
    keep = s > 1e-9 * max(float(s.max()) if s.size else 0.0, 1e-300)
    return u[:, keep]


def _multiple_r(basis: np.ndarray, a: np.ndarray) -> np.ndarray:
    """sqrt(R^2) of each row of ``a`` (L, T) regressed on the orthonormal ``basis`` (T, K)."""
    ac = a - a.mean(1, keepdims=True)
    tot = (ac * ac).sum(1)
    expl = ((ac @ basis) ** 2).sum(1)
    return np.where(tot > 1e-12, np.sqrt(np.clip(expl / np.maximum(tot, 1e-300), 0.0, 1.0)), 0.0)
