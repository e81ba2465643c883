"""Encode frames and audio to an mp4 in memory with PyAV (H.264 + AAC), tagged as ours.

Used by the headless runner (``python -m lipsync_runner``); inside ComfyUI the core nodes
CreateVideo and SaveVideo do this job. No temp files and no ffmpeg subprocess: the container is
written into a ``BytesIO`` and handed back as bytes (or written to the target path in one go).

Tags written (read them back with ``av.open(path).metadata``):

- ``comment`` and ``description``: ``"lip-synced with ComfyUI-LipSync"``
- ``encoder``: ``"ComfyUI-LipSync <version>"`` (stored as the mp4 ``©too`` tool tag)
"""

from __future__ import annotations

import io
import logging
import os
from fractions import Fraction
from typing import Callable

import numpy as np
import torch

from .errors import InputError, MediaError
from .media import SWS_THREADS

log = logging.getLogger("comfyui_lipsync")

VERSION = "0.1.0"
"""The pack's version (pyproject.toml [project] version; a test keeps them equal)."""

COMMENT = "lip-synced with ComfyUI-LipSync"
ENCODER = f"ComfyUI-LipSync {VERSION}"

AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)
"""Sample rates the AAC encoder takes as they are; any other rate is resampled to 48 kHz."""

CHUNK = 32
"""Frames converted to uint8 at a time (bounds the extra memory to CHUNK frames)."""


def _frames_to_uint8(chunk) -> np.ndarray:
    """(b, H, W, C) float 0..1 or uint8 (tensor or array) -> (b, H, W, 3) uint8 numpy."""
    if isinstance(chunk, torch.Tensor):
        t = chunk.detach()
        if t.dtype != torch.uint8:  # x * 255 + 0.5, clamped, truncated = rounded; two buffers, not five
            t = t.float().mul(255.0).add_(0.5).clamp_(0.0, 255.0).to(torch.uint8)
        arr = t.cpu().numpy()
    else:
        arr = np.asarray(chunk)
        if arr.dtype != np.uint8:
            arr = (np.clip(arr.astype(np.float32), 0, 1) * 255.0).round().astype(np.uint8)
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    elif arr.shape[-1] == 4:
        arr = arr[..., :3]
    return np.ascontiguousarray(arr)


def _audio_parts(audio, sample_rate: int | None) -> tuple[np.ndarray, int] | None:
    """AUDIO dict {"waveform": (B, C, T), "sample_rate"} or (C, N)/(N,) tensor -> ((C, N) float32, sr)."""
    if audio is None:
        return None
    if isinstance(audio, dict):
        wave, sr = audio.get("waveform"), audio.get("sample_rate")
        if wave is None or sr is None:
            raise InputError(f"write_video: the audio dict needs 'waveform' and 'sample_rate', got keys {sorted(audio)}.")
        if wave.ndim == 3:
            wave = wave[0]
    else:
        wave, sr = audio, sample_rate
        if sr is None:
            raise InputError("write_video: audio given as a tensor needs sample_rate.")
    if isinstance(wave, torch.Tensor):
        wave = wave.detach().float().cpu().numpy()
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim == 1:
        wave = wave[None]
    if wave.ndim != 2 or wave.shape[0] < 1:
        raise InputError(f"write_video: audio must be (C, N) or (B, C, N), got shape {tuple(wave.shape)}.")
    if int(sr) <= 0:
        raise InputError(f"write_video: audio sample_rate must be positive, got {sr}.")
    return np.ascontiguousarray(np.clip(wave, -1.0, 1.0)), int(sr)


def encode_video(frames, fps: float, audio=None, sample_rate: int | None = None, *, crf: int = 18,
                 preset: str = "veryfast", trim_audio: bool = True, metadata: dict | None = None,
                 on_progress: Callable[[int, int], None] | None = None) -> bytes:
    """Encode a clip to mp4 bytes.

    frames: (B, H, W, 3) IMAGE float in [0, 1] or uint8, tensor or array, any device.
    fps:    frames per second, a float (fractional rates such as 29.97 are kept as 30000/1001) or
            an exact Fraction.
    audio:  ComfyUI AUDIO dict, or a (C, N) / (N,) waveform in [-1, 1] with ``sample_rate``;
            cut to the video's length when ``trim_audio``. None: a silent (video-only) file.
    crf/preset: libx264 quality and speed. Even sizes use yuv420p (plays everywhere); odd sizes
            use yuv444p so the resolution is kept exactly.
    metadata: extra container tags, added to ours.
    Returns the mp4 file as bytes.
    """
    _check_frames(frames, fps, "write_video")
    n = int(frames.shape[0])
    buf = io.BytesIO()
    writer = VideoWriter(buf, (int(frames.shape[2]), int(frames.shape[1])), fps, audio, sample_rate,
                         num_frames=n if trim_audio else None, crf=crf, preset=preset, metadata=metadata)
    try:
        for i in range(0, n, CHUNK):
            writer.write(frames[i:i + CHUNK])
            if on_progress is not None:
                on_progress(min(i + CHUNK, n), n)
    finally:
        writer.close()
    return buf.getvalue()


def exact_rate(fps) -> Fraction:
    """The frame rate as a Fraction: a Fraction stays as it is; a float becomes the nearest fraction
    with a denominator up to 1001 (29.97 -> 30000/1001, 23.976 -> 24000/1001)."""
    if isinstance(fps, Fraction):
        return fps
    return Fraction(float(fps)).limit_denominator(1001)


class VideoWriter:
    """An mp4 (H.264 + AAC) written chunk by chunk to ``target`` (a path or a binary file object):
    the video at the exact ``fps`` (time base 1 / rate), the audio pushed in step with it.

    size: (width, height); num_frames: the audio is cut to that many frames' duration (None: kept
    whole). ``write(frames)`` takes (b, H, W, 3) float 0..1 or uint8; ``close()`` flushes and
    finishes the file (also after an error, so nothing is left open)."""

    def __init__(self, target, size: tuple[int, int], fps, audio=None, sample_rate: int | None = None, *,
                 num_frames: int | None = None, crf: int = 18, preset: str = "veryfast",
                 metadata: dict | None = None, colour: dict | None = None):
        import av

        self.who = "write_video"
        self.rate = exact_rate(fps)
        self.w, self.h = int(size[0]), int(size[1])
        self.n = 0
        parts = _audio_parts(audio, sample_rate)
        self.colour = _colour(colour, self.who)  # refused before the file exists
        self.container = av.open(target, "w", format="mp4")
        try:
            _tag(self.container, metadata)
            self.vs = _video_stream(self.container, self.rate, self.w, self.h, crf, preset, self.who)
            for k, v in self.colour.items():
                setattr(self.vs.codec_context, k, int(v))
            self.sound = None
            if parts is not None:
                wave, sr = parts
                if num_frames is not None:
                    wave = wave[:, : int(round(num_frames * sr / self.rate))]
                self.sound = _AudioWriter(self.container, wave, sr)
        except BaseException:
            self.container.close()
            raise

    def write(self, frames) -> None:
        """Encode the next (b, H, W, 3) frames, then the audio up to their end."""
        import av

        arr = _frames_to_uint8(frames)
        if arr.shape[1:3] != (self.h, self.w):
            raise InputError(f"{self.who}: frames of {arr.shape[2]}x{arr.shape[1]} given to a "
                             f"{self.w}x{self.h} video.")
        space = SWS_MATRIX.get(self.colour.get("colorspace"))
        frames = (av.VideoFrame.from_ndarray(img, format="rgb24") for img in arr)
        # into the stated matrix (the encoder's own conversion would take BT.601's)
        self._encode(frames if space is None else (vf.reformat(format=self.vs.pix_fmt, dst_colorspace=space,
                                                               threads=SWS_THREADS) for vf in frames))

    def write_yuv(self, frames: np.ndarray) -> None:
        """Encode the next (b, H * 3 / 2, W) uint8 frames in PyAV's ``yuv420p`` layout as they are (no
        conversion from RGB: the encoder's own pixel format), then the audio up to their end."""
        import av

        if self.vs.pix_fmt != "yuv420p" or tuple(frames.shape[1:]) != (self.h * 3 // 2, self.w):
            raise InputError(f"{self.who}: yuv420p frames of shape {tuple(frames.shape[1:])} given to a "
                             f"{self.w}x{self.h} {self.vs.pix_fmt} video.")
        # each frame over the array's own memory (``from_ndarray`` would copy it first, row by row); the
        # encoder copies it in, and a reference it kept would keep the array alive (PyAV counts it)
        self._encode(self._tagged(av.VideoFrame.from_numpy_buffer(np.ascontiguousarray(a), format="yuv420p"))
                     for a in frames)

    def _tagged(self, vf):
        for k in ("colorspace", "color_range"):
            if k in self.colour:
                setattr(vf, k, self.colour[k])
        return vf

    def _encode(self, frames) -> None:
        import av

        try:
            for vf in frames:
                vf.pts = self.n
                self.n += 1
                for p in self.vs.encode(vf):
                    self.container.mux(p)
            if self.sound is not None:
                self.sound.push_samples(int(round(self.n * self.sound.sr / self.rate)))
        except av.error.FFmpegError as e:
            raise MediaError(f"{self.who}: encoding failed at frame {self.n} of {self.w}x{self.h} at "
                             f"{float(self.rate):g} fps: {e}.") from e

    def close(self) -> None:
        """Flush the encoders and finish the file."""
        import av

        try:
            for p in self.vs.encode():
                self.container.mux(p)
            if self.sound is not None:
                self.sound.close()
        except av.error.FFmpegError as e:
            raise MediaError(f"{self.who}: finishing the video failed after {self.n} frames: {e}.") from e
        finally:
            self.container.close()


def _check_frames(frames, fps, who: str) -> None:
    if not hasattr(frames, "shape") or len(frames.shape) != 4 or frames.shape[0] < 1 or frames.shape[-1] not in (1, 3, 4):
        shape = tuple(frames.shape) if hasattr(frames, "shape") else type(frames).__name__
        raise InputError(f"{who}: frames must be (B, H, W, 3) with B >= 1, got {shape}.")
    if not fps or fps <= 0 or not np.isfinite(float(fps)):
        raise InputError(f"{who}: fps must be positive, got {fps}.")


def _tag(container, metadata: dict | None) -> None:
    """Our tags (see the module doc), then the caller's."""
    container.metadata["comment"] = COMMENT
    container.metadata["description"] = COMMENT
    container.metadata["encoding_tool"] = ENCODER  # written as ©too, read back as "encoder"
    for k, v in (metadata or {}).items():
        container.metadata[str(k)] = str(v)


def _video_stream(container, rate: Fraction, w: int, h: int, crf: int, preset: str, who: str):
    """The H.264 stream: yuv420p for even sizes, yuv444p (exact size kept) for odd ones."""
    vs = container.add_stream("libx264", rate=rate)
    vs.width, vs.height = w, h
    even = w % 2 == 0 and h % 2 == 0
    vs.pix_fmt = "yuv420p" if even else "yuv444p"
    if not even:
        log.info("%s: odd frame size %dx%d: encoding yuv444p to keep the exact size", who, w, h)
    vs.options = {"crf": str(int(crf)), "preset": preset}
    return vs


SWS_MATRIX = {1: 1, 4: 4, 5: 5, 6: 5, 7: 7, 9: 9}
"""FFmpeg's colour matrix numbers (``colorspace``) that frames can be written in -> swscale's own
numbers for the same matrix (what PyAV's ``reformat(dst_colorspace=)`` takes): BT.709, FCC, BT.470BG
and SMPTE 170M (both BT.601), SMPTE 240M, BT.2020 (non-constant luminance)."""


def writable_colour(colour: dict | None) -> dict:
    """The colour tags a stream of RGB frames written by :class:`VideoWriter` states for a source tagged
    ``colour`` (:attr:`..media.VideoInfo.colour`) that was decoded to RGB by its own tags: the source's
    matrix where the writer can convert into it (:data:`SWS_MATRIX`), its primaries and transfer (the
    RGB values keep them: nothing converts between them) and limited range (what the writer writes).
    {} for a source that states nothing (written, and read back, as BT.601). Without them a BT.709
    source that is not plain 4:2:0 (10-bit, 4:2:2, 4:4:4, full range) came out untagged in BT.601,
    which players read as BT.709 at HD sizes: every pixel's colour shifted."""
    colour = dict(colour or {})
    out = {k: colour[k] for k in ("color_primaries", "color_trc") if k in colour}
    if colour.get("colorspace") in SWS_MATRIX:
        out["colorspace"] = colour["colorspace"]
    if out:
        out["color_range"] = 1
    return out


def _colour(colour: dict | None, who: str) -> dict:
    """The colour tags to state in the stream, checked: ``colour`` (FFmpeg's numbers for ``colorspace``,
    ``color_range``, ``color_primaries``, ``color_trc``; e.g. :attr:`..media.VideoInfo.colour`), so players
    convert the frames as their source meant. None or {}: nothing stated (read as BT.601). Frames are
    written in limited range and in a matrix of :data:`SWS_MATRIX` only."""
    colour = dict(colour or {})
    unknown = set(colour) - {"colorspace", "color_range", "color_primaries", "color_trc"}
    if unknown:
        raise InputError(f"{who}: unknown colour tags {sorted(unknown)}.")
    if colour.get("color_range", 1) != 1:
        raise InputError(f"{who}: only limited-range video is written (color_range 1), got {colour['color_range']}.")
    if "colorspace" in colour and colour["colorspace"] not in SWS_MATRIX:
        raise InputError(f"{who}: frames cannot be written in colour matrix {colour['colorspace']} "
                         f"(FFmpeg's numbering; these can: {sorted(SWS_MATRIX)}).")
    return colour


class _AudioWriter:
    """An AAC stream fed from a (C, N) float waveform in step with the video, at most one second
    per audio frame. Mono stays mono; more than two channels fold into two (even and odd channels
    averaged); a rate AAC does not take (:data:`AAC_RATES`) is resampled to 48 kHz."""

    def __init__(self, container, wave: np.ndarray, sr: int):
        import av

        layout = "mono" if wave.shape[0] == 1 else "stereo"
        if wave.shape[0] > 2:
            wave = np.stack([wave[0::2].mean(0), wave[1::2].mean(0)])
        out_sr = sr if sr in AAC_RATES else 48000
        self.container, self.wave, self.sr, self.pos = container, wave, sr, 0
        self.stream = container.add_stream("aac", rate=out_sr)
        self.stream.layout = layout
        self.resampler = av.AudioResampler(format="fltp", layout=layout, rate=out_sr) if out_sr != sr else None

    def push_samples(self, until: int) -> None:
        """Encode the samples up to sample ``until`` (exclusive)."""
        import av

        end = min(self.wave.shape[1], int(until))
        while self.pos < end:
            stop = min(end, self.pos + self.sr)
            af = av.AudioFrame.from_ndarray(np.ascontiguousarray(self.wave[:, self.pos:stop]), format="fltp",
                                            layout=self.stream.layout.name)
            af.sample_rate = self.sr
            af.pts = self.pos
            af.time_base = Fraction(1, self.sr)
            self._encode(self.resampler.resample(af) if self.resampler is not None else [af])
            self.pos = stop

    def close(self) -> None:
        """The rest of the waveform, then flush the resampler and the encoder."""
        self.push_samples(self.wave.shape[1])
        if self.resampler is not None:
            self._encode(self.resampler.resample(None))
        for p in self.stream.encode(None):
            self.container.mux(p)

    def _encode(self, frames) -> None:
        for f in frames:
            for p in self.stream.encode(f):
                self.container.mux(p)


def write_video(path: str, frames, fps: float, audio=None, sample_rate: int | None = None, **kwargs) -> str:
    """Encode (see :func:`encode_video`) and write the mp4 to ``path`` in one write; returns ``path``."""
    data = encode_video(frames, fps, audio, sample_rate, **kwargs)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return path
