"""What both SyncScore scorers share: the input checks, the per-window split and 0..1 scaling."""

from __future__ import annotations

import math

import numpy as np
import torch

from ..checks import check_shape
from ..errors import InputError, LengthMismatchError
from ..types import ANALYSIS_RATE
from .signals import ENVELOPE_RATE

WHO = "SyncScore"


def check_inputs(num_frames: int, wave16k: torch.Tensor, fps: float, search_range: int, window_s: float) -> None:
    """InputError/LengthMismatchError naming the bad input: waveform (N,), fps > 0, search_range
    1..200, window_s >= 0, and the audio covering the frames (within 2 frames or 2 %)."""
    check_shape(wave16k, "N", WHO, "waveform")
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise InputError(f"{WHO}: fps must be positive, got {fps}. Use the video's frame rate (e.g. 25).")
    if int(search_range) < 1 or int(search_range) > 200:
        raise InputError(f"{WHO}: search_range must be 1..200 frames, got {search_range}.")
    if window_s < 0 or not math.isfinite(window_s):
        raise InputError(f"{WHO}: window_s must be >= 0 s (0 = no per-window track), got {window_s}.")
    audio_frames = wave16k.shape[0] / ANALYSIS_RATE * fps
    if abs(audio_frames - num_frames) > max(2.0, 0.02 * num_frames):
        raise LengthMismatchError(
            f"{WHO}: the audio covers {audio_frames:.1f} frames at {fps:g} fps but there are {num_frames} "
            "frames. Give the audio of this clip (LoadAudioDriver cuts/pads it to the frame count)."
        )


def windows(n: int, fps: float, window_s: float) -> list[tuple[int, int]]:
    """Frame ranges [s, e) of ``window_s`` seconds (at least 2 frames), hop half a window, the last
    one ending at ``n``; none when ``window_s`` is 0 or a window would cover the whole clip."""
    if window_s <= 0:
        return []
    w = max(int(round(window_s * fps)), 2)
    if w >= n:
        return []
    hop = max(w // 2, 1)
    starts = list(range(0, n - w + 1, hop))
    if starts[-1] + w < n:
        starts.append(n - w)
    return [(s, s + w) for s in starts]


def scale01(x: np.ndarray) -> torch.Tensor:
    """``x`` scaled to 0..1 as float32 (all 0 when constant)."""
    x = np.asarray(x, dtype=np.float64)
    lo, hi = np.nanmin(x), np.nanmax(x)
    return torch.from_numpy(((x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)).astype(np.float32))


def envelope_at_frames(env: np.ndarray, n: int, fps: float) -> np.ndarray:
    """The :data:`ENVELOPE_RATE` envelope read at the times of ``n`` video frames (linear)."""
    return np.interp(np.arange(n) / fps * ENVELOPE_RATE, np.arange(env.shape[0]), env)


def audio_at(audio_hr: dict[str, np.ndarray], audio_fr: dict[str, np.ndarray], fps: float,
             q: np.ndarray) -> list[np.ndarray]:
    """Each audio signal read at frame positions ``q`` (any shape; linear, edge values outside):
    audio_hr at :data:`ENVELOPE_RATE` (sample m at m / rate s), audio_fr per frame."""
    out = [np.interp((q / fps * ENVELOPE_RATE).ravel(), np.arange(a.shape[0]), a).reshape(q.shape)
           for a in audio_hr.values()]
    return out + [np.interp(q.ravel(), np.arange(a.shape[0]), a).reshape(q.shape) for a in audio_fr.values()]
