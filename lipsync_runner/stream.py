"""The runner's chain on a clip of any length, in three passes over its frames, so resident memory
does not grow with the clip (``run_job`` in :mod:`.cli` calls :func:`run_streamed`).

1. **MaskLowerFace**: the clip is decoded scaled down to the tracking size, in chunks, and tracked in
   overlapping windows (:class:`..lipsync_models.stream_track.WindowTracker`); this pass also counts
   the frames. The audio chain (LoadAudioDriver -> ExtractPhonemes -> MapVisemes) runs as nodes on
   the whole line (audio is small).
2. **LipSyncInference**: the generator's clip-level choices (the clip's own mouths over the whole
   clip, the warp generator's lip frame) are made from the tracks alone; then the 64-px alignment
   crops of every frame are cut from the tracking-size frames (kept by pass 1 for a clip of up to
   :data:`KEEP_SMALL_BYTES` of them, else decoded again) and a second decode, up to the last frame
   chosen, converts only the chosen frames to full-size RGB for their crops.
3. **Composite** and **encode**: a third decode generates, composites and encodes chunk by chunk; the
   encoder runs in its own thread beside the processing, as the decoder does in every pass. A clip
   decoded as plain 8-bit 4:2:0 stays in those planes (:mod:`.yuv`): only its face region is made
   RGB, and only the pixels Composite changed are written back, so neither the whole frames'
   conversion to RGB nor the encoder's conversion back is made. The output has the input's frame
   count and its exact rate (a rational time base); the audio of frame k is the line's audio at k / rate.

SyncScore then scores the last :data:`SCORE_SECONDS` of the output (kept scaled down during pass 3)
with the node's default scorer, without drawing the node's plot (:func:`unplotted_score`).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from ..lipsync_models import composite, media, stream_io, stream_track, video_out
from . import yuv

SCORE_SECONDS = 10.0
"""SyncScore scores the output's last this many seconds (the whole of a shorter clip)."""
SCORE_SIDE = 640
"""The scored frames are kept with their longer side scaled to at most this many pixels."""
CHUNK_PIXELS = 24_000_000
"""Frame pixels per chunk of pass 3 (12 frames of 1920x1080), as float 0..1: about 0.3 GB a chunk."""
SMALL_CHUNK = 50
"""Frames per chunk at the tracking size (passes 1 and 2)."""
KEEP_SMALL_BYTES = 512 * 2 ** 20
"""Pass 1 keeps the tracking-size copy of a clip up to this size (uint8: 770 frames of 640x360, 30 s
at 25 fps) for pass 2, which then decodes only the frames it wants whole, once each, instead of
scaling every frame again."""


class FileFrames:
    """A video file's frames, decoded again for each pass, in a background thread."""

    def __init__(self, path: Path, who: str = "--video"):
        info = media.probe_video(str(path), who)
        self.path, self.who = str(path), who
        self.rate, self.width, self.height, self.stated = info.rate, info.width, info.height, info.frames
        self.plain_yuv420 = info.plain_yuv420  # pass 3 then works on the decoder's planes (:mod:`.yuv`)
        # the output states the input's tags: as they are, or as the RGB path writes them
        self.colour = info.colour if info.plain_yuv420 else video_out.writable_colour(info.colour)

    def chunks(self, chunk: int, size=None, full=()):
        return stream_io.background(media.iter_video(self.path, self.who, chunk, size, full), depth=2)

    def yuv_chunks(self, chunk: int):
        return stream_io.background(media.iter_yuv(self.path, self.who, chunk), depth=2)

    def fulls(self, keys, regions=None):
        """(index, RGB (H, W, 3) uint8) of the frames ``keys``, in order; a frame in ``regions``
        {index: (x0, y0, x1, y1)} as that region of it. A clip decoded as plain 4:2:0 has only the
        region converted (:func:`.yuv.region_rgb`: the same RGB the whole frame's conversion
        gives there)."""
        regions = regions or {}
        if self.plain_yuv420:
            def each(k, frame):
                return (yuv.region_rgb(frame, regions[k]) if k in regions
                        else frame.to_ndarray(format="rgb24", threads=media.SWS_THREADS))
        else:
            def each(k, frame):
                rgb = frame.to_ndarray(format="rgb24", threads=media.SWS_THREADS)
                x0, y0, x1, y1 = regions.get(k, (0, 0, rgb.shape[1], rgb.shape[0]))
                return rgb[y0:y1, x0:x1]
        return stream_io.background(media.iter_frames_at(self.path, self.who, keys, each), depth=2)


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

    def fulls(self, keys, regions=None):
        regions = regions or {}
        for k in sorted(set(int(k) for k in keys)):
            if 0 <= k < self.frames.shape[0]:
                x0, y0, x1, y1 = regions.get(k, (0, 0, self.width, self.height))
                yield k, self.frames[k, y0:y1, x0:x1]


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


def track_pass(src, node_defaults: dict, bar) -> tuple:
    """Pass 1: (track at full size, track at the tracking size, tracking size, the tracking-size
    frames as (first, frames) chunks, or None beyond :data:`KEEP_SMALL_BYTES`)."""
    size = stream_track.track_size(src.width, src.height)
    total = max(src.stated, 1)
    face = node_defaults.get("face", "largest")
    tracker = stream_track.WindowTracker(
        window=stream_track.window_for(src.stated), detector=node_defaults.get("detector", "haar"),
        manual_box=node_defaults.get("manual_box", ""),
        face_index=-1 if face == "largest" else int(node_defaults.get("face_index", 0)),
        crop_size=int(node_defaults.get("crop_size", 256)),
        on_window=lambda done: bar(min(done, total - 1), total))
    kept, held = [], 0
    for first, frames, _ in src.chunks(SMALL_CHUNK, size):
        tracker.push(frames)
        held += frames.numel()
        kept = kept + [(first, frames)] if kept is not None and held <= KEEP_SMALL_BYTES else None
    small = tracker.finish()
    return stream_track.scale_track(small, (src.width, src.height)), small, size, kept


def collect_pass(src, gen, size, bar, kept=None) -> None:
    """Pass 2: the generator's alignment crops (from the tracking-size frames: ``kept`` by pass 1, or
    decoded again) and the crops of the frames it wants whole (decoded, only those converted).
    Empties ``kept`` (its frames are not needed after this pass)."""
    b = gen.track.num_frames
    if not gen.uses_bank or kept is not None:
        regions = gen.regions(SMALL_CHUNK)  # the kept chunks' length: only the chosen frames' regions are made RGB
        wanted = iter(src.fulls(sorted(gen.full), regions))
        nxt = next(wanted, None)
        for first, frames in (kept if gen.uses_bank else [(0, None)]):
            n = b if frames is None else int(frames.shape[0])
            got = {}
            while nxt is not None and nxt[0] < first + n:
                got[nxt[0]], nxt = nxt[1], next(wanted, None)
            gen.collect(first, frames if frames is not None else torch.empty((0, 1, 1, 3), dtype=torch.uint8), got,
                        regions)
            bar(min(first + n, b), b)
        if kept is not None:
            kept.clear()
    else:
        for first, frames, fulls in src.chunks(SMALL_CHUNK, size, gen.full):
            gen.collect(first, frames, fulls)
            bar(min(first + frames.shape[0], b), b)
    gen.ready()


def render_pass(src, gen, writer, blend: dict, bar, score_from: int):
    """Pass 3: generate, composite and encode chunk by chunk. Returns the scored tail (n, h, w, 3)
    uint8 (frames ``score_from``... scaled to :data:`SCORE_SIDE`) and its size. A clip decoded as
    plain 8-bit 4:2:0 stays so (:func:`render_chunk_yuv`); other frames go through RGB."""
    b = gen.track.num_frames
    out_track = gen.out_track
    chunk = max(1, min(64, CHUNK_PIXELS // (src.width * src.height)))
    # a generator that works in fixed chunks (LatentSync: 16) gets whole ones, above CHUNK_PIXELS if need be
    # (16 frames of 1080p: 100 MB of uint8 frames; its own work on a chunk holds far more)
    whole = getattr(gen, "chunk_frames", 1)
    chunk = max(whole, chunk // whole * whole)
    tail, tsize = [], stream_track.track_size(src.width, src.height, SCORE_SIDE)
    planar = bool(getattr(src, "plain_yuv420", False))
    if planar:
        chunks, sink = src.yuv_chunks(chunk), stream_io.BackgroundSink(writer.write_yuv, depth=2)
    else:
        chunks = ((first, frames, None) for first, frames, _ in src.chunks(chunk))
        sink = stream_io.BackgroundSink(writer.write, depth=2)
    try:
        for first, frames, space in chunks:
            n = int(frames.shape[0])
            if hasattr(gen, "on_frames"):  # a generator slow within a chunk (LatentSync): the bar moves per step
                gen.on_frames = lambda done, first=first: bar(min(first + int(done), b), b)
            if planar:
                render_chunk_yuv(gen, out_track, first, frames, blend, space)
            else:
                frames = render_chunk(gen, out_track, first, frames, blend)
            sink.put(frames)
            if first + n > score_from:
                rest = frames[max(score_from - first, 0):]
                tail.append(torch.from_numpy(np.stack([yuv.to_rgb(f, space, tsize) for f in rest])) if planar
                            else _shrink_u8(rest, tsize))
            bar(min(first + n, b), b)
        sink.close()
    except BaseException:
        sink.abort()
        raise
    return torch.cat(tail) if tail else None, tsize


def render_chunk(gen, out_track, first: int, frames: torch.Tensor, blend: dict) -> torch.Tensor:
    """Frames ``first``... (n, H, W, 3) uint8 with their new mouths, written in place: the crops are
    cut from the region they sample (:func:`..stream_track.face_region`), and only the windows
    Composite blends are made float and written back (:func:`..composite.composite_windows`)."""
    n = int(frames.shape[0])
    part = out_track.frames(slice(first, first + n))
    x0, y0, x1, y1 = stream_track.face_region(part)
    part = stream_track.in_region(part, (x0, y0, x1, y1))
    f = frames[:, y0:y1, x0:x1]
    crops = gen.generate(first, f, part)
    # f is uint8 (in range, finite): not scanned; the windows are uint8, as the frames
    for i, x, y, win in composite.composite_windows(f, crops, part, device=gen.device, check=False, **blend):
        f[i, y:y + win.shape[0], x:x + win.shape[1]] = win
    return frames


def render_chunk_yuv(gen, out_track, first: int, frames: np.ndarray, blend: dict, space: int) -> int:
    """:func:`render_chunk` on frames (n, H * 3 / 2, W) uint8 in the decoder's 4:2:0 planes (:mod:`.yuv`),
    written in place: the face region is converted to RGB (the same RGB a whole frame's conversion
    gives there) and generated, Composite blends its windows of it, and only the pixels it changed
    are converted back and written; every other pixel keeps the input's bytes. Returns the pixels
    changed."""
    n, h, w = int(frames.shape[0]), int(frames.shape[1]) * 2 // 3, int(frames.shape[2])
    part = out_track.frames(slice(first, first + n))
    box = yuv.even_box(stream_track.face_region(part), w, h)
    part = stream_track.in_region(part, box)
    rgb = torch.from_numpy(np.stack([yuv.to_rgb(yuv.region(f, box), space) for f in frames]))
    crops = gen.generate(first, rgb, part)
    old, rh, rw, m = rgb.numpy(), rgb.shape[1], rgb.shape[2], yuv.CONVERT_MARGIN
    changed = 0
    for i, x, y, win in composite.composite_windows(rgb, crops, part, device=gen.device, check=False, **blend):
        # the window with put_changed's conversion margin around it, on whole 2x2 chroma blocks
        wx0, wy0, wx1, wy1 = yuv.even_box((max(x - m, 0), max(y - m, 0), x + win.shape[1] + m,
                                           y + win.shape[0] + m), rw, rh)
        before = old[i, wy0:wy1, wx0:wx1]
        new = before.copy()
        new[y - wy0:y - wy0 + win.shape[0], x - wx0:x - wx0 + win.shape[1]] = win.numpy()
        changed += yuv.put_changed(frames[i], (box[0] + wx0, box[1] + wy0, box[0] + wx1, box[1] + wy1),
                                   before, new, space)
    return changed


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
    score = unplotted_score(cls, given, gen.device)
    if score is None:
        score, _ = call_node(cls, **{k: v for k, v in given.items() if k in names})
    head = "" if score_from == 0 else (f"SyncScore on the last {(b - score_from) / float(rate):.1f} s "
                                       f"(frames {score_from}-{b - 1} of {b}):\n")
    return score, head + str(score.get("report", ""))


def unplotted_score(cls, given: dict, device) -> dict | None:
    """What the SyncScore node ``cls`` answers on ``given`` (images, fps, audio, face_track) with its
    default, weight-free scorer and widget values, without drawing its plot, a picture the runner
    never shows (1.8 s of matplotlib after a 10-s clip). None when the node's default is another scorer."""
    mod = node_module(cls)
    spec = cls.INPUT_TYPES()["required"]
    d = {k: v[1].get("default") for k, v in spec.items() if len(v) > 1 and isinstance(v[1], dict)}
    if not hasattr(mod, "sync") or d.get("scorer") != getattr(mod, "ARTICULATION", None):
        return None
    result, notes = mod.sync.score_clip(given["images"], given["fps"], audio=given["audio"],
                                        face_track=given["face_track"], search_range=int(d["search_range"]),
                                        window_s=float(d["window_s"]), device=device)
    return {"offset_frames": int(result.offset_frames), "offset_ms": float(result.offset_ms),
            "confidence": float(result.confidence), "report": result.report() + "".join("\nnote: " + s for s in notes)}


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
    return video_out.VideoWriter(str(tmp), (src.width, src.height), src.rate, audio, num_frames=b,
                                 colour=getattr(src, "colour", None)), tmp


def usable_cpus() -> int:
    """CPUs this process may use (its affinity where the system tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def set_threads(asked: int = 0, cv_threads: int | None = None) -> tuple[int, int, int]:
    """Threads for torch's and OpenCV's work on the frames: ``asked``, or (0) half the CPUs this
    process may use, at least 1 (OpenCV: ``cv_threads``, default the same). Returns (count set,
    torch's and OpenCV's counts before), so a caller can put them back. The runner gives the passes
    before the last every CPU (their decoder is light: the detector and the alignment run on two
    threads) and the last pass, whose decoder and encoder run in threads of their own beside it, half
    (:func:`render_threads`)."""
    import cv2

    before = (torch.get_num_threads(), cv2.getNumThreads())
    n = int(asked) if asked else max(1, usable_cpus() // 2)
    torch.set_num_threads(n)
    cv2.setNumThreads(n if cv_threads is None else int(cv_threads))
    return (n,) + before


@contextlib.contextmanager
def render_threads(asked: int = 0):
    """Pass 3's thread count (``asked``, or 0: half the CPUs) within the block, then the counts before.
    Threads that outnumber the cores spin against each other: on 2 busy cores (the encoder on one) one
    torch thread renders a 1080p chunk 3x faster, and with a third of the CPU time, than two."""
    before = set_threads(asked)
    try:
        yield before[0]
    finally:
        set_threads(*before[1:])
