"""Small shape and value checks that raise :class:`InputError` with readable messages."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .errors import InputError


def check_shape(x: torch.Tensor, pattern: str, who: str, name: str = "input", **sizes: int) -> None:
    """Check ``x`` against a space-separated pattern such as ``"B H W C"``.

    A named axis may be pinned with a keyword (``check_shape(img, "B H W C", who, C=3)``); a
    digit in the pattern pins the axis too (``"T 80 16"``). Raises InputError naming the
    expected and the actual shape.
    """
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{who}: {name} must be a tensor, got {type(x).__name__}.")
    axes = pattern.split()
    if x.ndim != len(axes):
        raise InputError(
            f"{who}: {name} must have shape ({', '.join(axes)}), got {tuple(x.shape)}."
        )
    for axis, size in zip(axes, x.shape):
        want = int(axis) if axis.isdigit() else sizes.get(axis)
        if want is not None and size != want:
            raise InputError(
                f"{who}: {name} must have shape ({', '.join(axes)}) with {axis}={want}, "
                f"got {tuple(x.shape)}."
            )


IMAGE_RANGE_MAX = 1.5
"""An IMAGE whose largest value passes this is taken for 0..255 pixels: resampling overshoots 1.0 by a
few per cent at most (bicubic ringing on a hard edge, about 1.1), 0..255 pixels reach 10 and more."""

CHUNK = 16
"""Frames scanned at a time (one small reduction per chunk, no full-size temporary)."""


@dataclass(frozen=True)
class ImageScan:
    """What :func:`check_images` saw: ``nonfinite`` NaN/Inf values in ``bad_frames`` (frame indices),
    the finite range ``lo``..``hi`` (NaN when nothing was scanned, e.g. integer input)."""

    nonfinite: int = 0
    bad_frames: tuple[int, ...] = ()
    lo: float = float("nan")
    hi: float = float("nan")


def check_images(images: torch.Tensor, who: str, name: str = "images", *, finite: bool = True,
                 channels: tuple[int, ...] = (3, 4), uint8: bool = False) -> ImageScan:
    """ComfyUI IMAGE: float [B, H, W, C], C in ``channels`` (RGB, RGBA), B >= 1, values 0..1.
    ``uint8``: decoded uint8 0..255 pixels are taken too (finite and in range by their type: not scanned).

    Raises InputError naming the input and the fix for: another rank, an empty batch, a grey or
    two-channel image, integer pixels (uint8), floats in 0..255 (largest value over
    :data:`IMAGE_RANGE_MAX`) and, with ``finite`` (the default), NaN or Inf pixels (their count and
    frames). Scans the batch in chunks of :data:`CHUNK` frames (no full-size copy). Returns what it
    saw; with ``finite=False`` the caller decides what to do with the non-finite pixels it names.
    """
    check_shape(images, "B H W C", who, name)
    c = int(images.shape[-1])
    if c not in channels:
        kind = {1: " (grayscale)", 2: " (grey + alpha)"}.get(c, "")
        raise InputError(f"{who}: {name} must have {' or '.join(map(str, channels))} channels, got {c}{kind} in "
                         f"shape {tuple(images.shape)} (IMAGE is RGB or RGBA). Convert the image to RGB before this node.")
    if images.shape[0] == 0:
        raise InputError(f"{who}: {name} is an empty batch (0 frames).")
    u8 = uint8 and images.dtype == torch.uint8
    if not images.is_floating_point() and not u8:
        fix = " (0..255 integers): divide by 255" if images.dtype == torch.uint8 else ": convert it to float 0..1"
        raise InputError(f"{who}: {name} must be float in 0..1 (ComfyUI IMAGE), got {images.dtype}{fix}.")
    if images.numel() == 0:
        raise InputError(f"{who}: {name} has an empty frame size {tuple(images.shape[1:3])}.")
    if u8:
        return ImageScan()
    scan = _scan(images)
    if finite and scan.nonfinite:
        raise InputError(f"{who}: {name} holds {nonfinite_text(scan, images.shape[0])}. Fix the node that made "
                         "them (a division by zero, a broken decode) or replace them before this node.")
    if scan.hi > IMAGE_RANGE_MAX or scan.lo < -IMAGE_RANGE_MAX + 1:
        raise InputError(
            f"{who}: {name} values run {scan.lo:.4g}..{scan.hi:.4g}, but IMAGE pixels are 0..1"
            + (" (these look like 0..255 pixels: divide by 255)" if scan.hi > IMAGE_RANGE_MAX else "")
            + ". The node before this one used the wrong scale.")
    return scan


def nonfinite_text(scan: ImageScan, frames: int) -> str:
    """'12 NaN/Inf values in frames 3-5 (of 75)'."""
    return f"{scan.nonfinite} NaN/Inf values in frames {runs_text(scan.bad_frames)} (of {frames})"


def runs_text(idx) -> str:
    """[3, 4, 5, 9] -> '3-5, 9' (frame spans for messages)."""
    idx = sorted(int(i) for i in idx)
    parts = []
    for i in idx:
        if parts and i == parts[-1][1] + 1:
            parts[-1][1] = i
        else:
            parts.append([i, i])
    return ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in parts)


def _scan(images: torch.Tensor) -> ImageScan:
    """Finite range and non-finite count per chunk: one aminmax per chunk (NaN and Inf show in it), an
    exact count only in chunks that hold some."""
    lo, hi, bad, count = math.inf, -math.inf, [], 0
    for s0 in range(0, images.shape[0], CHUNK):
        x = images[s0:s0 + CHUNK].detach()
        mn, mx = (float(v) for v in torch.aminmax(_in_memory_order(x)))
        if math.isfinite(mn) and math.isfinite(mx):
            lo, hi = min(lo, mn), max(hi, mx)
            continue
        ok = torch.isfinite(x)
        per = (~ok).flatten(1).sum(1)
        count += int(per.sum())
        bad += [s0 + int(i) for i in torch.nonzero(per).flatten()]
        fin = x[ok]
        if fin.numel():
            lo, hi = min(lo, float(fin.min())), max(hi, float(fin.max()))
    return ImageScan(count, tuple(bad), lo, hi)


def _in_memory_order(x: torch.Tensor) -> torch.Tensor:
    """``x`` with its axes permuted to follow its memory layout, largest stride first: the same
    elements, so a reduction over all of them gives the same answer, and on a permuted view (crops
    (B, C, H, W) handed on as (B, H, W, C)) it reads memory in order, 5x faster."""
    return x.permute(sorted(range(x.ndim), key=lambda d: -x.stride(d)))
