"""Small shape and value checks that raise :class:`InputError` with readable messages."""

from __future__ import annotations

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


def check_images(images: torch.Tensor, who: str, name: str = "images") -> None:
    """ComfyUI IMAGE: float [B, H, W, C] with C in (3, 4), B >= 1."""
    check_shape(images, "B H W C", who, name)
    if images.shape[-1] not in (3, 4):
        raise InputError(f"{who}: {name} must have 3 or 4 channels, got {images.shape[-1]}.")
    if images.shape[0] == 0:
        raise InputError(f"{who}: {name} is an empty batch (0 frames).")
    if not images.is_floating_point():
        raise InputError(f"{who}: {name} must be float in 0..1, got {images.dtype}.")
