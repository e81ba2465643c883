"""Aligned mouth crops: the similarity transforms (frame px -> crop px, kornia ``warp_affine``
layout), their inverse and application to points, the supersampled uint8 crops the measures read
(OpenCV), and :func:`mouth_crops`, the public crops through a track's transform (kornia)."""

from __future__ import annotations

import math

import numpy as np
import torch

from ..checks import check_images
from ..errors import InputError
from ..types import FaceTrack
from ._base import ANALYSIS_SIZE, _cv2, _f2u8


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



def mouth_crops(frames: torch.Tensor, track: FaceTrack, size: int | None = None) -> torch.Tensor:
    """Aligned mouth-centred crops (B, S, S, C) through the track's transform (a bilinear warp,
    kornia ``warp_affine``'s semantics: :func:`..crops._warp`).

    size defaults to ``track.crop_size``; another size rescales the transform.
    """
    from ..crops import _affine64, _resize_matrix, _warp

    check_images(frames, "mouth_crops", "frames")
    if frames.shape[0] != track.num_frames:
        raise InputError(f"mouth_crops: {frames.shape[0]} frames but the face track has {track.num_frames}.")
    size = int(size or track.crop_size)
    m = _affine64(track)
    if size != track.crop_size:
        m = _resize_matrix(size, track.crop_size) @ m  # pixel centres sit at integers
    out = []
    for s0 in range(0, frames.shape[0], 32):
        x = frames[s0:s0 + 32].permute(0, 3, 1, 2).float()
        y = _warp(x, m[s0:s0 + 32], (size, size), "border")
        out.append(y.permute(0, 2, 3, 1).to(frames.dtype))
    return torch.cat(out)

