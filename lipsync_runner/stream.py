"""The runner's chain on a clip of any length, in three passes over its frames, so resident memory
does not grow with the clip (``run_job`` in :mod:`.cli` calls :func:`run_streamed`).

1. **MaskLowerFace**: the clip is decoded scaled down to the tracking size, in chunks, and tracked in
   overlapping windows (:class:`..lipsync_models.stream_track.WindowTracker`); this pass also counts
   the frames. The audio chain (LoadAudioDriver -> ExtractPhonemes -> MapVisemes) runs as nodes on
   the whole line (audio is small).
2. **LipSyncInference**: the generator's clip-level choices (the clip's own mouths over the whole
   clip, the warp generator's lip frame) are made from the tracks alone; a second decode keeps the
   64-px alignment crops of every frame and the full-size crops of the frames chosen.
3. **Composite** and **encode**: a third decode generates, composites and encodes chunk by chunk; the
   encoder runs in its own thread beside the processing, as the decoder does in every pass. The
   output has the input's frame count and its exact rate (a rational time base); the audio of frame k
   is the line's audio at k / rate.

SyncScore then scores the last :data:`SCORE_SECONDS` of the output (kept scaled down during pass 3).
"""

from __future__ import annotations

import math
import os
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from ..lipsync_models import composite, media, stream_generate, stream_io, stream_track, video_out

SCORE_SECONDS = 10.0
"""SyncScore scores the output's last this many seconds (the whole of a shorter clip)."""
SCORE_SIDE = 640
"""The scored frames are kept with their longer side scaled to at most this many pixels."""
CHUNK_PIXELS = 24_000_000
"""Frame pixels per chunk of pass 3 (12 frames of 1920x1080), as float 0..1: about 0.3 GB a chunk."""
SMALL_CHUNK = 50
"""Frames per chunk at the tracking size (passes 1 and 2)."""


class FileFrames:
    """A video file's frames, decoded again for each pass, in a background thread."""

    def __init__(self, path: Path, who: str = "--video"):
        info = media.probe_video(str(path), who)
        self.path, self.who = str(path), who
        self.rate, self.width, self.height, self.stated = info.rate, info.width, info.height, info.frames

    def chunks(self, chunk: int, size=None, full=()):
        return stream_io.background(media.iter_video(self.path, self.who, chunk, size, full), depth=2)


class TensorFrames:
    """Frames given in memory (the demo, a still picture): (B, H, W, 3) uint8, perhaps a stride-0 view."""

    def __init__(self, frames: torch.Tensor, rate: Fraction):
        self.frames, self.rate = frames, rate
        self.stated, self.height, self.width = (int(v) for v in frames.shape[:3])

    def chunks(self, chunk: int, size=None, full=()):
        b = self.frames.shape[0]
        for a in range(0, b, chunk):
            x = self.frames[a:a + chunk]
            if size is not None and tuple(size) != (self.width, self.height):
                x = _resize_u8(x, size)
            else:
                x = x.clone()  # a chunk of its own, as a decoder's: pass 3 writes into it
            yield a, x, {int(k): self.frames[int(k)] for k in full if a <= int(k) < a + chunk}


def _resize_u8(frames: torch.Tensor, size) -> torch.Tensor:
    """(n, H, W, 3) uint8 -> (n, h, w, 3) uint8 at ``size`` = (w, h), area filter."""
    x = torch.nn.functional.interpolate(frames.permute(0, 3, 1, 2).float(), size=(int(size[1]), int(size[0])),
                                        mode="area")
    return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def _shrink_u8(frames: torch.Tensor, size) -> torch.Tensor:
    """(n, H, W, 3) uint8 -> (n, h, w, 3) uint8 at ``size`` = (w, h) with OpenCV's area filter on the
    uint8 frames (no float copy of the full frames: 20x faster than :func:`_resize_u8` on 1080p)."""
    import cv2

    w, h = int(size[0]), int(size[1])
    src = frames.numpy()
    out = np.empty((src.shape[0], h, w, 3), np.uint8)
    for i in range(src.shape[0]):
        cv2.resize(np.ascontiguousarray(src[i]), (w, h), dst=out[i], interpolation=cv2.INTER_AREA)
    return torch.from_numpy(out)


def _to_u8(frames: torch.Tensor) -> torch.Tensor:
    return frames[..., :3].mul(255.0).add_(0.5).clamp_(0, 255).to(torch.uint8)


def track_pass(src, node_defaults: dict, bar) -> tuple:
    """Pass 1: (track at full size, track at the tracking size, tracking size)."""
    size = stream_track.track_size(src.width, src.height)
    total = max(src.stated, 1)
    face = node_defaults.get("face", "largest")
    tracker = stream_track.WindowTracker(
        detector=node_defaults.get("detector", "haar"), manual_box=node_defaults.get("manual_box", ""),
        face_index=-1 if face == "largest" else int(node_defaults.get("face_index", 0)),
        crop_size=int(node_defaults.get("crop_size", 256)),
        on_window=lambda done: bar(min(done, total - 1), total))
    for _, frames, _ in src.chunks(SMALL_CHUNK, size):
        tracker.push(frames)
    small = tracker.finish()
    return stream_track.scale_track(small, (src.width, src.height)), small, size


def collect_pass(src, gen, size, bar) -> None:
    """Pass 2: the generator's alignment crops and chosen frames' crops."""
    b = gen.track.num_frames
    for first, frames, fulls in src.chunks(SMALL_CHUNK, size if gen.uses_bank else None, gen.full):
        gen.collect(first, frames if gen.uses_bank else frames[:0], fulls)
        bar(min(first + frames.shape[0], b), b)
        if not gen.uses_bank and gen.ref_frame is not None:
            break  # the warp generator needs only its lip frame
    gen.ready()


def render_pass(src, gen, writer, blend: dict, bar, score_from: int):
    """Pass 3: generate, composite and encode chunk by chunk. Returns the scored tail (n, h, w, 3)
    uint8 (frames ``score_from``... scaled to :data:`SCORE_SIDE`) and its size."""
    b = gen.track.num_frames
    out_track = gen.out_track
    chunk = max(1, min(64, CHUNK_PIXELS // (src.width * src.height)))
    # a generator that works in fixed chunks (LatentSync: 16) gets whole ones, above CHUNK_PIXELS if need be
    # (16 frames of 1080p: 100 MB of uint8 frames; its own work on a chunk holds far more)
    whole = getattr(gen, "chunk_frames", 1)
    chunk = max(whole, chunk // whole * whole)
    tail, tsize = [], stream_track.track_size(src.width, src.height, SCORE_SIDE)
    sink = stream_io.BackgroundSink(writer.write, depth=2)
    try:
        for first, frames, _ in src.chunks(chunk):
            n = int(frames.shape[0])
            frames = render_chunk(gen, out_track, first, frames, blend)
            sink.put(frames)
            if first + n > score_from:
                tail.append(_shrink_u8(frames[max(score_from - first, 0):], tsize))
            bar(min(first + n, b), b)
        sink.close()
    except BaseException:
        sink.abort()
        raise
    return torch.cat(tail) if tail else None, tsize


def render_chunk(gen, out_track, first: int, frames: torch.Tensor, blend: dict) -> torch.Tensor:
    """Frames ``first``... (n, H, W, 3) uint8 with their new mouths, written in place: only the region
    the crops sample (:func:`..stream_track.face_region`) is made float, generated and composited."""
    n = int(frames.shape[0])
    part = out_track.frames(slice(first, first + n))
    x0, y0, x1, y1 = stream_track.face_region(part)
    part = stream_track.in_region(part, (x0, y0, x1, y1))
    f = frames[:, y0:y1, x0:x1].float().div_(255.0)
    crops = gen.generate(first, f, part)
    out = composite.composite(f, crops, part, device=gen.device, **blend)
    frames[:, y0:y1, x0:x1] = _to_u8(out)
    return frames


def score_tail(nodes, call_node, gen, tail, tsize, audio: dict, rate: Fraction, score_from: int) -> tuple[dict, str]:
    """SyncScore on the output's last frames (``tail``, from frame ``score_from``)."""
    b = gen.track.num_frames
    track = stream_track.scale_track(gen.report_track().frames(slice(score_from, b)), tsize)
    sr = int(audio["sample_rate"])
    lo, hi = (int(round(k * sr / rate)) for k in (score_from, b))
    wave = audio["waveform"][..., lo:hi]
    if wave.shape[-1] < hi - lo:
        wave = torch.nn.functional.pad(wave, (0, hi - lo - wave.shape[-1]))
    cls = nodes["LipSyncSyncScore"]
    names = set(cls.INPUT_TYPES().get("required", {})) | set(cls.INPUT_TYPES().get("optional", {}))
    given = {"images": tail.float().div_(255.0), "face_track": track, "fps": float(rate),
             "audio": {"waveform": wave, "sample_rate": sr}}
    score, _ = call_node(cls, **{k: v for k, v in given.items() if k in names})
    head = "" if score_from == 0 else (f"SyncScore on the last {(b - score_from) / float(rate):.1f} s "
                                       f"(frames {score_from}-{b - 1} of {b}):\n")
    return score, head + str(score.get("report", ""))


def partial_path(out: Path) -> Path:
    """Where the output is written before it is complete (renamed to ``out`` at the end)."""
    return out.with_name(f".{out.stem}.partial{out.suffix or '.mp4'}")


def score_start(b: int, rate: Fraction) -> int:
    return max(0, b - int(math.ceil(SCORE_SECONDS * rate)))


def node_module(cls):
    return sys.modules[cls.__module__]


def blend_options(nodes, widget_defaults) -> dict:
    """Composite's widget defaults as :func:`..lipsync_models.composite.composite` arguments."""
    cls = nodes["LipSyncComposite"]
    d = widget_defaults(cls)
    modes = getattr(node_module(cls), "BLEND_MODES", {})
    return {"feather": float(d.get("feather", 0.08)), "color_match": bool(d.get("color_match", True)),
            "blend": modes.get(d.get("blend"), "alpha")}


def open_writer(out: Path, src, b: int, audio: dict):
    os.makedirs(out.parent, exist_ok=True)
    tmp = partial_path(out)
    return video_out.VideoWriter(str(tmp), (src.width, src.height), src.rate, audio, num_frames=b), tmp


def set_threads(asked: int = 0, cv_threads: int | None = None) -> tuple[int, int, int]:
    """Threads for torch's and OpenCV's work on the frames: ``asked``, or (0) half the CPUs this
    process may use, at least 1 (OpenCV: ``cv_threads``, default the same). The decoder and the
    encoder run in threads of their own beside it, and threads that outnumber the cores spin against
    each other: on 2 busy cores one torch thread renders a 1080p chunk 3x faster (and with a third
    of the CPU time) than torch's default of two. Returns (count set, torch's and OpenCV's counts
    before), so a caller can put them back."""
    import cv2

    before = (torch.get_num_threads(), cv2.getNumThreads())
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    n = int(asked) if asked else max(1, cpus // 2)
    torch.set_num_threads(n)
    cv2.setNumThreads(n if cv_threads is None else int(cv_threads))
    return (n,) + before
