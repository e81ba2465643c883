"""In-memory media decoding and encoding with PyAV (the library ComfyUI itself uses).

No temp files: containers are read and written through PyAV; frames and samples come back as
tensors. Errors name the file and what is wrong with it.
"""

from __future__ import annotations

import os
from fractions import Fraction

import numpy as np
import torch

from .errors import MediaError


def _open(path: str, who: str):
    import av

    if not os.path.isfile(path):
        raise MediaError(f"{who}: file not found: {os.path.basename(path)}.")
    if os.path.getsize(path) == 0:
        raise MediaError(f"{who}: {os.path.basename(path)} is empty (0 bytes).")
    try:
        return av.open(path)
    except Exception as e:  # PyAV raises many av.error.* types for bad containers
        raise MediaError(f"{who}: cannot read {os.path.basename(path)}: not a media file or corrupt ({e}).") from e


def read_audio(path: str, who: str = "read_audio", start: float = 0.0, duration: float | None = None,
               max_seconds: float = 4 * 3600) -> tuple[torch.Tensor, int]:
    """Decode the first audio stream of ``path``.

    Returns (waveform (C, N) float32 in [-1, 1], sample rate). ``start``/``duration`` in
    seconds select a part; only that part is kept in memory while decoding. Raises MediaError
    when the file has no audio stream or cannot be decoded.
    """
    import av

    name = os.path.basename(path)
    with _open(path, who) as container:
        if not container.streams.audio:
            raise MediaError(f"{who}: {name} has no audio track.")
        stream = container.streams.audio[0]
        sr = stream.rate or stream.codec_context.sample_rate
        if not sr:
            raise MediaError(f"{who}: {name}: audio stream has no sample rate.")
        if start > 0:
            try:
                container.seek(int(start / stream.time_base), stream=stream, backward=True)
            except av.error.FFmpegError:
                pass  # unseekable: decode from the start and skip samples below
        first = int(round(start * sr))
        last = first + int(round(min(duration if duration is not None else max_seconds, max_seconds) * sr))
        chunks, pos = [], None
        try:
            for frame in container.decode(stream):
                arr = frame.to_ndarray()
                if frame.format.is_planar:
                    arr = arr.reshape(frame.layout.nb_channels if hasattr(frame.layout, "nb_channels") else len(frame.layout.channels), -1)
                else:
                    ch = len(frame.layout.channels)
                    arr = arr.reshape(-1, ch).T
                if arr.dtype.kind == "i":
                    arr = arr.astype(np.float32) / float(np.iinfo(arr.dtype).max + 1)
                elif arr.dtype.kind == "u":
                    arr = (arr.astype(np.float32) - 128.0) / 128.0
                else:
                    arr = arr.astype(np.float32)
                if pos is None:
                    pos = int(round(frame.time * sr)) if frame.time is not None else 0
                lo, hi = max(first - pos, 0), min(last - pos, arr.shape[1])
                if hi > lo:
                    chunks.append(arr[:, lo:hi])
                pos += arr.shape[1]
                if pos >= last:
                    break
        except av.error.FFmpegError as e:
            if not chunks:
                raise MediaError(f"{who}: cannot decode the audio of {name}: corrupt ({e}).") from e
    if not chunks:
        raise MediaError(f"{who}: {name} holds no audio samples in the chosen range (start {start:.2f} s).")
    return torch.from_numpy(np.ascontiguousarray(np.concatenate(chunks, axis=1))), int(sr)


def read_video(path: str, who: str = "read_video", max_frames: int | None = None
               ) -> tuple[torch.Tensor, float, tuple[torch.Tensor, int] | None]:
    """Decode a video file to (frames (B, H, W, 3) uint8, fps, (audio (C, N), sr) or None)."""
    name = os.path.basename(path)
    with _open(path, who) as container:
        if not container.streams.video:
            raise MediaError(f"{who}: {name} has no video track.")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or Fraction(25)
        frames = []
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            if max_frames is not None and len(frames) >= max_frames:
                break
        has_audio = bool(container.streams.audio)
    if not frames:
        raise MediaError(f"{who}: {name} holds no video frames.")
    audio = read_audio(path, who) if has_audio else None
    return torch.from_numpy(np.stack(frames)), float(rate), audio
