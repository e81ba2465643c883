"""In-memory media decoding and encoding with PyAV (the library ComfyUI itself uses).

No temp files: containers are read and written through PyAV; frames and samples come back as
tensors. Errors name the file and what is wrong with it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator

import numpy as np
import torch

from .errors import MediaError

log = logging.getLogger("comfyui_lipsync")


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


SEEK_AFTER = 30.0
"""read_audio decodes from the beginning for start offsets up to this many seconds (exact for
every codec, and fast); beyond it, it seeks."""
SEEK_PREROLL = 1.0
"""Seconds decoded and dropped before ``start`` after a seek, so decoders that need history
(MP3's bit reservoir, AAC/Vorbis/Opus overlap) give the same samples as a decode from the start."""


def _to_float(frame) -> np.ndarray:
    """One decoded audio frame -> (C, n) float32 in [-1, 1], planar or packed."""
    arr = frame.to_ndarray()
    ch = frame.layout.nb_channels if hasattr(frame.layout, "nb_channels") else len(frame.layout.channels)
    if frame.format.is_planar:
        arr = arr.reshape(ch, -1)
    else:
        arr = arr.reshape(-1, ch).T
    if arr.dtype.kind == "i":
        return arr.astype(np.float32) / float(np.iinfo(arr.dtype).max + 1)
    if arr.dtype.kind == "u":
        return (arr.astype(np.float32) - 128.0) / 128.0
    return arr.astype(np.float32)


def read_audio(path: str, who: str = "read_audio", start: float = 0.0, duration: float | None = None,
               max_seconds: float = 4 * 3600, seek_after: float = SEEK_AFTER) -> tuple[torch.Tensor, int]:
    """Decode the first audio stream of ``path``.

    Returns (waveform (C, N) float32 in [-1, 1], sample rate). ``start``/``duration`` in
    seconds select a part; only that part is kept in memory while decoding. Time 0 is the first
    decoded sample (as ComfyUI's LoadAudio counts), so a part equals the same slice of a full
    decode. Offsets beyond ``seek_after`` seconds seek (with a pre-roll, timed from the
    stream's own first timestamp; a few ms off for Ogg/WebM Opus) instead of decoding
    everything before them. Raises MediaError when the file has no audio stream or cannot be
    decoded.
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
        first = int(round(start * sr))
        last = first + int(round(min(duration if duration is not None else max_seconds, max_seconds) * sr))
        chunks = None
        if start > seek_after:
            chunks = _decode_range(container, stream, sr, first, last, start, who, name, seek=True)
        if chunks is None:  # no seek wanted, or the seek could not be trusted
            if start > seek_after:
                container.seek(0)
            chunks = _decode_range(container, stream, sr, first, last, start, who, name, seek=False)
    if not chunks:
        raise MediaError(f"{who}: {name} holds no audio samples in the chosen range (start {start:.2f} s).")
    return torch.from_numpy(np.ascontiguousarray(np.concatenate(chunks, axis=1))), int(sr)


def _decode_range(container, stream, sr: int, first: int, last: int, start: float, who: str, name: str,
                  seek: bool) -> list[np.ndarray] | None:
    """Samples ``first`` .. ``last`` (indices of a decode from the start). With ``seek``, returns
    None when the position after the seek is unknown or past ``first`` (caller decodes from 0)."""
    import av

    origin = 0.0
    if seek:
        try:
            head = next(container.decode(stream), None)
            if head is None or head.time is None:
                return None
            origin = head.time  # timestamp of sample 0 of a decode from the start
            target = origin + max(start - SEEK_PREROLL, 0.0)
            container.seek(int(target / stream.time_base), stream=stream, backward=True)
        except (av.error.FFmpegError, StopIteration):
            return None
    chunks, pos = [], None
    try:
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                if seek and pos is None:
                    continue  # a seek can land inside a packet (MPEG-PS): skip to the next one
                raise
            for frame in frames:
                if pos is None:
                    if seek:
                        if frame.time is None:
                            return None
                        pos = int(round((frame.time - origin) * sr))
                        if pos > first:
                            return None
                    else:
                        pos = 0
                arr = _to_float(frame)
                lo, hi = max(first - pos, 0), min(last - pos, arr.shape[1])
                if hi > lo:
                    chunks.append(arr[:, lo:hi])
                pos += arr.shape[1]
                if pos >= last:
                    return chunks
    except av.error.FFmpegError as e:
        if not chunks:
            raise MediaError(f"{who}: cannot decode the audio of {name}: corrupt ({e}).") from e
    return chunks


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


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` reads from a container's first video stream: the exact frame rate
    (a Fraction, e.g. 30000/1001), the frame size, the frame count the container states (0 when
    it does not; :func:`iter_video` counts the real frames), whether it has sound, and the decoder's
    pixel format, colour range (``"yuv420p"``, 0 unspecified / 1 limited / 2 full), matrix,
    primaries and transfer (FFmpeg's numbers, 2 = unspecified)."""

    rate: Fraction
    width: int
    height: int
    frames: int
    has_audio: bool
    pix_fmt: str = ""
    color_range: int = 0
    colorspace: int = 2
    color_primaries: int = 2
    color_trc: int = 2

    @property
    def plain_yuv420(self) -> bool:
        """8-bit 4:2:0 of limited range at an even size, in BT.601's or BT.709's matrix or none stated:
        frames :func:`iter_yuv` hands over as they are decoded, and the encoder takes as they are, the
        output stating the same colour tags (:attr:`colour`) so a reader converts them as the input's."""
        return (self.pix_fmt == "yuv420p" and self.color_range in (0, 1) and self.colorspace in PLAIN_MATRICES
                and self.width % 2 == 0 and self.height % 2 == 0)

    @property
    def colour(self) -> dict:
        """The colour tags the input states (matrix, range, primaries, transfer; unspecified ones
        left out), for :class:`..video_out.VideoWriter`'s ``colour``."""
        tags = {"colorspace": self.colorspace, "color_range": self.color_range,
                "color_primaries": self.color_primaries, "color_trc": self.color_trc}
        unstated = {"color_range": (0,)}  # the others: 2 = unspecified (probe_video reads 0 as 2)
        return {k: v for k, v in tags.items() if v not in unstated.get(k, (0, 2))}


PLAIN_MATRICES = (1, 2, 5, 6)
"""FFmpeg's colour matrices whose 4:2:0 frames the runner keeps as decoded: BT.709, unspecified (read as
BT.601), BT.470BG and SMPTE 170M (BT.601)."""


def probe_video(path: str, who: str = "read_video") -> VideoInfo:
    """The rate, size and stated frame count of ``path`` without decoding it."""
    name = os.path.basename(path)
    with _open(path, who) as container:
        if not container.streams.video:
            raise MediaError(f"{who}: {name} has no video track.")
        stream = container.streams.video[0]
        rate = Fraction(stream.average_rate or stream.guessed_rate or 25)
        w, h = int(stream.codec_context.width), int(stream.codec_context.height)
        if rate <= 0 or w < 1 or h < 1:
            raise MediaError(f"{who}: {name}: its video stream states no usable size or rate ({w}x{h}, {rate}).")
        cc = stream.codec_context
        return VideoInfo(rate, w, h, int(stream.frames or 0), bool(container.streams.audio), str(cc.pix_fmt or ""),
                         int(cc.color_range or 0), int(getattr(cc, "colorspace", 2) or 2),
                         int(getattr(cc, "color_primaries", 2) or 2), int(getattr(cc, "color_trc", 2) or 2))


def _decoded(path: str, who: str) -> Iterator:
    """Every decoded frame of the first video stream (PyAV frames, decode order, threaded decoder);
    a clip corrupt after some frames ends there with a warning."""
    import av

    name = os.path.basename(path)
    k = 0
    with _open(path, who) as container:
        if not container.streams.video:
            raise MediaError(f"{who}: {name} has no video track.")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                k += 1
                yield frame
        except av.error.FFmpegError as e:
            if k == 0:
                raise MediaError(f"{who}: cannot decode the video of {name}: corrupt ({e}).") from e
            log.warning("%s: %s: decoding stopped at frame %d (%s)", who, name, k, e)
    if k == 0:
        raise MediaError(f"{who}: {name} holds no video frames.")


def audio_tracks(path: str, who: str = "read_audio") -> int:
    """How many audio streams ``path`` holds (:func:`read_audio` reads the first)."""
    with _open(path, who) as container:
        return len(container.streams.audio)


def count_frames(path: str, who: str = "read_video") -> int:
    """How many frames :func:`iter_video` would give for ``path`` (decoded, not converted: no frame is
    kept). MediaError as :func:`iter_video`."""
    return sum(1 for _ in _decoded(path, who))


SWS_THREADS = 1
"""Threads swscale converts one frame with (PyAV's default, 0, starts as many as there are CPUs for
each call: the same pixels for 30-40 % more CPU time on a 1080p frame, the decoder and the
processing running beside it anyway)."""


def _rgb(frame, size: tuple[int, int] | None) -> np.ndarray:
    if size is not None and (frame.width, frame.height) != tuple(size):
        frame = frame.reformat(width=int(size[0]), height=int(size[1]), interpolation="AREA", threads=SWS_THREADS)
    return frame.to_ndarray(format="rgb24", threads=SWS_THREADS)


def iter_video(path: str, who: str = "read_video", chunk: int = 16, size: tuple[int, int] | None = None,
               full=()) -> Iterator[tuple[int, torch.Tensor, dict]]:
    """Decode ``path`` chunk by chunk; only one chunk is held at a time.

    Yields (index of the chunk's first frame, frames (n, h, w, 3) uint8, {index: (H, W, 3) uint8}):
    the frames scaled to ``size`` = (width, height) while decoding (area filter; None: as stored),
    and, for the indices in ``full`` that fall in this chunk, those frames at their stored size.
    Frames are counted in decode order (a constant-rate clip shows frame k at k / rate).
    """
    chunk, full = max(int(chunk), 1), set(int(k) for k in full)
    buf, fulls, first = [], {}, 0
    for k, frame in enumerate(_decoded(path, who)):
        buf.append(_rgb(frame, size))
        if k in full:
            fulls[k] = torch.from_numpy(frame.to_ndarray(format="rgb24", threads=SWS_THREADS))
        if len(buf) >= chunk:
            yield first, torch.from_numpy(np.stack(buf)), fulls
            buf, fulls, first = [], {}, k + 1
    if buf:
        yield first, torch.from_numpy(np.stack(buf)), fulls


def iter_yuv(path: str, who: str = "read_video", chunk: int = 16) -> Iterator[tuple[int, np.ndarray, int]]:
    """Decode ``path`` chunk by chunk as 8-bit 4:2:0 planes, without a conversion to RGB.

    Yields (index of the chunk's first frame, frames (n, H * 3 / 2, W) uint8 in PyAV's ``yuv420p``
    layout (the Y plane, then U, then V, each row-major), the frames' colour space (PyAV's
    ``frame.colorspace``: 2 = unspecified)). A frame stored otherwise is converted to ``yuv420p``.
    """
    chunk = max(int(chunk), 1)
    buf, first, space = None, 0, 2
    n = 0
    for k, frame in enumerate(_decoded(path, who)):
        if frame.format.name != "yuv420p":
            frame = frame.reformat(format="yuv420p", threads=SWS_THREADS)
        if buf is None:
            buf = np.empty((chunk, frame.height * 3 // 2, frame.width), np.uint8)
        if n == 0:
            space = int(frame.colorspace)
        _put_planes(frame, buf[n])
        n += 1
        if n >= chunk:
            yield first, buf, space
            buf, first, n = None, k + 1, 0
    if n:
        yield first, buf[:n], space


def _put_planes(frame, out: np.ndarray) -> None:
    """Copy a ``yuv420p`` frame's planes (rows padded to their line size) into ``out`` (H * 3 / 2, W),
    once (``to_ndarray`` and a stack of its arrays copy each frame twice)."""
    h, w = frame.height, frame.width
    flat = out.reshape(-1)
    at = 0
    for plane, (ph, pw) in zip(frame.planes, ((h, w), (h // 2, w // 2), (h // 2, w // 2))):
        rows = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:ph, :pw]
        flat[at:at + ph * pw].reshape(ph, pw)[:] = rows
        at += ph * pw


def iter_frames_at(path: str, who: str = "read_video", keys=(), each=None) -> Iterator[tuple[int, torch.Tensor]]:
    """The frames numbered ``keys`` (decode order) of ``path``, each (H, W, 3) uint8 at its stored
    size, in order; only those are converted to RGB, and decoding stops after the last of them.
    ``each(index, frame)``: what to make of a wanted PyAV frame instead (a uint8 array)."""
    keys = sorted(set(int(k) for k in keys))
    if not keys:
        return
    want, last = set(keys), keys[-1]
    for k, frame in enumerate(_decoded(path, who)):
        if k in want:
            yield k, torch.from_numpy(each(k, frame) if each is not None
                                      else frame.to_ndarray(format="rgb24", threads=SWS_THREADS))
        if k >= last:
            return
