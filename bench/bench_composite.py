"""Composite speed and memory at 1920x1080 with 256-px crops (target: >= 60 frames/s on CPU).

    .venv/bin/python bench/bench_composite.py [--frames 250] [--speed-frames 60] [--threads 2]
                                              [--device cpu] [--memory-only]

Prints frames/s for crop_faces and composite (feathered alpha, multi-band), a plain copy of the
frames as the floor (composite must write a full output copy), and the peak resident memory
added by composite (peak RSS from /proc/self/status VmHWM, reset just before the call; else
resource.getrusage maxrss) next to the size of one output copy. The face is the astronaut photo scaled so the face is about 450 px
wide, moving a little. Wall-clock figures depend on what else runs on the machine, so the
process CPU time per frame is printed too (with 2 threads, wall >= CPU / 2).
"""

from __future__ import annotations

import argparse
import logging
import math
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lipsync_runner.pack import load_pack  # noqa: E402

load_pack()
from comfyui_lipsync.lipsync_models import composite as C  # noqa: E402
from comfyui_lipsync.lipsync_models.types import FaceTrack  # noqa: E402

from _common import reset_peak, status_mb as _status_mb  # noqa: E402

H, W, S = 1080, 1920, 256


def peak_rss_mb() -> float:
    """Peak resident memory: VmHWM (resettable), else getrusage's maxrss."""
    hwm = _status_mb("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024.0
    return float("inf")


def make_clip(n: int):
    from skimage import data
    import cv2

    face = data.astronaut()  # face ~ 95 px wide around (225, 120) in 512x512
    k = 4.7  # -> face about 450 px wide
    big = cv2.resize(face, None, fx=k, fy=k, interpolation=cv2.INTER_LINEAR)
    canvas = torch.zeros(H, W, 3)
    x0, y0 = 500, -200  # place the face near the middle of the frame
    src = torch.from_numpy(big).float() / 255
    ys, xs = slice(max(0, y0), min(H, y0 + src.shape[0])), slice(max(0, x0), min(W, x0 + src.shape[1]))
    canvas[ys, xs] = src[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
    frames = canvas.expand(n, H, W, 3).clone()  # one allocation, no temporaries
    mats = []
    cx0, cy0 = 223 * k + x0, 147 * k + y0  # the lips
    for i in range(n):
        cx, cy = cx0 + 6 * math.sin(i / 9), cy0 + 4 * math.cos(i / 13)
        ang = 0.05 * math.sin(i / 17)
        s = S / 450.0
        a, b = s * math.cos(ang), s * math.sin(ang)
        half = (S - 1) / 2
        mats.append([[a, b, half - (a * cx + b * cy)], [-b, a, half - (-b * cx + a * cy)]])
    mats = torch.tensor(mats, dtype=torch.float64)
    full = torch.zeros(n, 3, 3, dtype=torch.float64)
    full[:, :2], full[:, 2, 2] = mats, 1
    inv = torch.linalg.inv(full)
    crop_pts = torch.tensor([[0.365, 0.5], [0.635, 0.5], [0.5, 0.45], [0.5, 0.56], [0.5, 0.49], [0.5, 0.51],
                             [0.5, 0.36], [0.5, 0.74]], dtype=torch.float64) * (S - 1)
    pts = crop_pts[None] @ inv[:, :2, :2].transpose(1, 2) + inv[:, None, :2, 2]
    track = FaceTrack(boxes=torch.zeros(n, 4), mouth=pts.float(), opening=torch.zeros(n), transform=mats.float(),
                      crop_size=S, frame_size=(H, W), found=torch.ones(n, dtype=torch.bool))
    return frames, track


def timed(fn, repeat: int = 1):
    """Best wall time and best process CPU time over ``repeat`` runs, and the last result."""
    best, best_cpu = float("inf"), float("inf")
    out = None
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        best = min(best, time.perf_counter() - t)
        best_cpu = min(best_cpu, time.process_time() - c)
    return best, best_cpu, out


def line(label: str, n: int, wall: float, cpu: float) -> None:
    print(f"{label:40s} {n / wall:7.1f} frames/s   CPU {1000 * cpu / n:6.1f} ms/frame")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=250)
    ap.add_argument("--speed-frames", type=int, default=60, help="frames for the timing runs")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--chunk", type=int, default=0, help="frames per chunk (0: automatic)")
    ap.add_argument("--memory-only", action="store_true", help="only the memory figure")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    if args.memory_only:
        memory(args)
        return
    dev = torch.device(args.device)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {dev}, "
          f"{W}x{H} frames, {S}-px crops, chunk {args.chunk or 'auto'}")

    # --- speed -----------------------------------------------------------------------------
    n = args.speed_frames
    frames, track = make_clip(n)
    if dev.type != "cpu":
        frames = frames.to(dev)
        track = FaceTrack(**{f: (getattr(track, f).to(dev) if isinstance(getattr(track, f), torch.Tensor)
                                 else getattr(track, f)) for f in ("boxes", "mouth", "opening", "transform",
                                                                   "crop_size", "frame_size", "found")})
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)

    def run(fn):
        def go():
            r = fn()
            sync()
            return r
        return go

    t, cpu, crops = timed(run(lambda: C.crop_faces(frames, track, device=dev)), 3)
    line("crop_faces", n, t, cpu)
    gen = crops.flip(2).contiguous()  # a changed mouth (mirrored crop), same colours
    t, cpu, _ = timed(run(lambda: frames.clone()), 3)
    line("plain copy of the frames (floor)", n, t, cpu)
    for blend in C.BLENDS:
        for cm in (True, False):
            t, cpu, out = timed(run(lambda: C.composite(frames, gen, track, blend=blend, color_match=cm,
                                                        chunk=args.chunk or None, device=dev)), 3)
            line(f"composite {blend} color_match={cm}", n, t, cpu)
    changed = (out != frames).any(-1).float().mean().item()
    print(f"pixels changed per frame: {100 * changed:.2f} % of the frame")
    del frames, crops, gen, out, track

    # --- memory ---------------------------------------------------------------------------
    if dev.type != "cpu":
        print("memory figure: run on the CPU (device cpu)")
        return
    memory(args)


def memory(args) -> None:
    n = args.frames
    if n <= 0:
        return
    need = n * H * W * 3 * 4 / 2**20
    if 2 * need + 2000 > available_mb():
        print(f"memory: {n} frames need about {2 * need:.0f} MB (input + output) but only "
              f"{available_mb():.0f} MB are available; run with fewer --frames")
        return
    frames, track = make_clip(n)
    gen = C.crop_faces(frames, track).flip(2).contiguous()
    exact = reset_peak()
    before = _status_mb("VmRSS") if exact else peak_rss_mb()
    t = time.perf_counter()
    out = C.composite(frames, gen, track, chunk=args.chunk or None)
    t = time.perf_counter() - t
    peak = peak_rss_mb() - before
    print(f"memory, {n} frames at {W}x{H}: input {need:.0f} MB, crops {gen.numel() * 4 / 2**20:.0f} MB; "
          f"composite added peak RSS {peak:.0f} MB = one output copy ({need:.0f} MB) + {peak - need:.0f} MB; "
          f"{n / t:.1f} frames/s on this run")
    del out


if __name__ == "__main__":
    main()
