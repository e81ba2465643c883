"""Audio files: the built-in demo line, safe lookup inside ComfyUI's input folder, and decoding a
bounded stretch of any container PyAV reads into an AUDIO dict."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import InputError, MediaError, PathError

MAX_READ_SECONDS = 600.0
"""Longest stretch :func:`load_audio_file` decodes at once (10 min; ~0.5 GB of stereo 48 kHz
float audio plus 45 MB of mel windows per minute at 25 fps). Longer files need a duration."""

AUDIO_EXTENSIONS = (".wav", ".mp3", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".aac")
VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".m4v", ".avi")
MEDIA_EXTENSIONS = AUDIO_EXTENSIONS + VIDEO_EXTENSIONS

_ASSETS = Path(__file__).resolve().parents[1] / "assets"


def demo_audio_path() -> str:
    """The built-in speech sample: espeak-ng (en-us) saying the line in ``demo_line.txt``,
    16 kHz mono 16-bit wav, about 3.1 s with 0.2 s of silence at both ends."""
    return str(_ASSETS / "demo_line.wav")


def demo_text() -> str:
    """The line spoken in :func:`demo_audio_path`."""
    return (_ASSETS / "demo_line.txt").read_text(encoding="utf-8").strip()


# --- input folder ----------------------------------------------------------------------------

def resolve_input_file(name: str, root: str, who: str) -> str:
    """Full path of the file ``name`` inside the folder ``root``.

    Refuses names that are absolute, contain ``..``, or resolve (through symlinks) outside
    ``root``; refuses missing files. Raises :class:`PathError` with the name and the fix.
    A ComfyUI annotation suffix (``"clip.wav [input]"``) is dropped.
    """
    if not isinstance(name, str) or not name.strip():
        raise PathError(f"{who}: no file chosen. Pick or upload a file into ComfyUI's input folder.")
    clean = name.strip()
    if clean.endswith(" [input]"):
        clean = clean[: -len(" [input]")]
    shown = repr(clean)
    if os.path.isabs(clean) or clean.startswith(("/", "\\")) or (len(clean) > 1 and clean[1] == ":"):
        raise PathError(f"{who}: {shown} is an absolute path; only files inside the input folder can be "
                        f"read. Put the file in {root} and choose it by name.")
    parts = clean.replace("\\", "/").split("/")
    if ".." in parts:
        raise PathError(f"{who}: {shown} leaves the input folder ('..' is not allowed). Put the file in "
                        f"{root} and choose it by name.")
    real_root = os.path.realpath(root)
    real = os.path.realpath(os.path.join(real_root, *parts))
    if os.path.commonpath([real_root, real]) != real_root:
        raise PathError(f"{who}: {shown} is a link that points outside the input folder; refusing to "
                        f"read it. Copy the file itself into {root}.")
    if not os.path.isfile(real):
        raise PathError(f"{who}: file not found: {shown} in the input folder {root}. Upload it again or "
                        f"pick another file.")
    return real



def _probe_seconds(path: str) -> float | None:
    """Length of the first audio stream in seconds from the container header, or None."""
    try:
        import av

        with av.open(path) as c:
            if not c.streams.audio:
                return None
            s = c.streams.audio[0]
            if s.duration is not None and s.time_base is not None:
                return float(s.duration * s.time_base)
            if c.duration is not None:
                return c.duration / 1_000_000
    except Exception:  # probing is best effort; read_audio reports real problems
        return None
    return None


def load_audio_file(path: str, start: float = 0.0, duration: float | None = None,
                    who: str = "LoadAudioDriver", max_seconds: float = MAX_READ_SECONDS) -> dict:
    """Decode the audio track of ``path`` (any container PyAV reads) into a ComfyUI AUDIO dict.

    Only ``start`` .. ``start + duration`` is decoded and kept. Without a duration at most
    ``max_seconds`` are read; a longer remainder raises InputError asking for a duration, so an
    hour-long file never fills memory. Empty, corrupt, audio-less files raise MediaError naming
    the file.
    """
    name = os.path.basename(path)
    if start < 0:
        raise InputError(f"{who}: start_offset must be >= 0 s, got {start}.")
    if duration is None:
        length = _probe_seconds(path)
        if length is not None and length - start > max_seconds + 0.5:
            raise InputError(f"{who}: {name} is {length / 60:.1f} min long; reading more than "
                             f"{max_seconds / 60:.0f} min at once is refused to protect memory. Set duration "
                             "(or a frame count) and start_offset to pick the part you need.")
        read_for = max_seconds + 1.0
    else:
        read_for = duration
    wave, sr = _read(path, who, start, read_for)
    if duration is None and wave.shape[-1] > max_seconds * sr:
        raise InputError(f"{who}: {name} has more than {max_seconds / 60:.0f} min of audio after "
                         f"start_offset {start:.1f} s; set duration (or a frame count) to pick the part you need.")
    if wave.shape[-1] == 0:
        raise MediaError(f"{who}: {name} holds no audio samples after {start:.2f} s. Lower start_offset; if the "
                         f"file should be longer, it was cut short: {FILE_FIX}")
    return {"waveform": wave[None], "sample_rate": sr}


FILE_FIX = ("Pick another file, or re-export this one (e.g. as wav or mp3) and upload it again; a file cut short "
            "by a failed copy or download must be copied again.")
"""What a user can do about a file that cannot be decoded: appended to the decoder's message."""


def _read(path: str, who: str, start: float, duration: float) -> tuple[torch.Tensor, int]:
    from .. import media

    try:
        return media.read_audio(path, who=who, start=start, duration=duration)
    except MediaError as e:  # name the file, not the folder it sits in, and say what to do
        text = str(e).replace(f"'{path}'", os.path.basename(path)).replace(path, os.path.basename(path))
        raise type(e)(f"{text.rstrip()} {FILE_FIX}") from None
