"""Speed of the MuseTalk 1.5 backend: the full-size architecture with random weights.

    python bench/bench_musetalk.py [--models DIR] [--batch 8] [--batches 3] [--threads 2] [--device cpu]

``--models``: a MuseTalk folder in the public layout (default: random full-size weights written to a
temporary folder by bench/parity_musetalk.py). Prints frames/s of the image path (masked + reference VAE
encode, one UNet pass, VAE decode) on 256x256 crops at the given batch size, the Whisper encoder's
seconds of audio per second, and the weights' load time. float16 on CUDA, float32 on the CPU. The
issue's bar on a GPU is >= 60 frames/s at fp16 for UNet+VAE.

Measured (2026-12-07, 2 CPU cores shared with three other sessions, load average 6 to 10; torch 2.13 CPU):
batch 8, float32: 0.06 frames/s (about 700 GFLOP a frame, most of it the VAE at 256x256); Whisper-tiny
30 s of audio per s; loading the 3.4 GB of weights 25 s. No GPU was lent to this task: the fp16 GPU
figure is not measured.

``--memory``: the node's path (:func:`musetalk.lipsync_musetalk`) on a 1920x1080 clip (one frame
repeated as a stride-0 batch: the IMAGE input ComfyUI holds anyway costs nothing here) with a 10-s line,
printing after every batch the resident memory (RSS), its peak during the batch (VmHWM, reset before each
batch) and RSS less the output crops written so far (the node's output: 256x256x3 float32, 0.79 MB a
frame). Memory that grows with the clip would show as a rising last column. Run it twice: the full-size
architecture for a few batches (``--size full --frames 24``) and the tiny one over all 250 frames.

Measured (2026-12-07, load average 20 to 50 on the 2 cores): tiny, 250 frames, batch 16: RSS less the
output crops 676 MB after batch 1, 622 MB after batch 16, 552..736 MB in between (no trend); peak per
batch 922..1236 MB. Full size, 6 frames, batch 2 (load average 14 to 20): 4350 MB with the models
loaded (peak 6943 MB while loading), then 4401, 4401, 4291 MB after batches 1-3; peak per batch 4736..4785
MB. (A first full-size run, ``--frames 8``, was OOM-killed at 4.4 GB while the shared 23-GB machine was full.)
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import parity_musetalk as P  # noqa: E402  (loads the pack)
from _common import reset_peak, status_mb  # noqa: E402

M, MF = P.M, P.MF


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench(root: str, device: torch.device, batch: int, batches: int) -> dict:
    t0 = time.perf_counter()
    models = M.load_models(MF.find_files(root), device)
    load_s = time.perf_counter() - t0
    crops_u8, line = P.inputs(batch, seed=7)
    crops = torch.from_numpy(crops_u8).float().div(255).permute(0, 3, 1, 2).to(device)
    tokens = torch.randn(batch, M.WINDOW * 5, 384, device=device)
    M.generate(models, crops, M.encode(models, crops, False), tokens)  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(batches):
        M.generate(models, crops, M.encode(models, crops, False), tokens)
    _sync(device)
    fps = batch * batches / (time.perf_counter() - t0)
    wave = torch.from_numpy(P.inputs(250, seed=8)[1])  # 10 s
    t0 = time.perf_counter()
    M.whisper_features(models.encoder, models.extractor, wave, device, models.dtype)
    _sync(device)
    audio = len(wave) / M.AUDIO_RATE / (time.perf_counter() - t0)
    return {"load_s": load_s, "fps": fps, "audio_x": audio, "dtype": str(models.dtype).replace("torch.", "")}


def _track_1080(n: int, w: int = 1920, h: int = 1080):
    """A face in the middle of a 1920x1080 frame: box 760..1160 x 400..820, nose at y 600, chin at y 780."""
    from comfyui_lipsync.lipsync_models.types import MOUTH_POINTS, FaceTrack

    pts = {"corner_left": (900, 700), "corner_right": (1020, 700), "upper_outer": (960, 680),
           "lower_outer": (960, 725), "upper_inner": (960, 695), "lower_inner": (960, 705),
           "nose": (960, 600), "chin": (960, 780)}
    mouth = torch.tensor([pts[k] for k in MOUTH_POINTS], dtype=torch.float32).repeat(n, 1, 1)
    s = 256 / 400
    t = torch.tensor([[s, 0, 128 - s * 960], [0, s, 128 - s * 700]], dtype=torch.float32).repeat(n, 1, 1)
    return FaceTrack(boxes=torch.tensor([[760.0, 400.0, 1160.0, 820.0]]).repeat(n, 1), mouth=mouth,
                     opening=torch.zeros(n), transform=t, crop_size=256, frame_size=(h, w),
                     found=torch.ones(n, dtype=torch.bool))


def memory(root: str, device: torch.device, batch: int, frames: int) -> list[dict]:
    """Per batch of the node's path on a 1080p clip: RSS, its peak during the batch, RSS less the output
    crops written so far (MB); row 0 is before the run (models loaded, inputs made)."""
    from comfyui_lipsync.lipsync_models.types import AudioDriver

    fps = 25.0
    g = torch.Generator().manual_seed(3)
    frame = torch.nn.functional.interpolate(torch.rand(1, 3, 9, 16, generator=g), size=(1080, 1920), mode="bilinear")
    images = frame.permute(0, 2, 3, 1).expand(frames, -1, -1, -1)  # (frames, 1080, 1920, 3), one frame's memory
    line = torch.from_numpy(P.inputs(250, seed=8)[1])  # 10 s
    z = torch.zeros(frames)
    driver = AudioDriver(waveform=line, fps=fps, num_frames=frames, mel=torch.zeros(frames, 80, 16), loudness=z,
                         voicing=z, audio={"waveform": line[None, None], "sample_rate": M.AUDIO_RATE})
    track = _track_1080(frames)
    M.cached_models(MF.find_files(root), device)  # loaded once, as the node's cache keeps them
    gc.collect()
    out_frame = M.CROP * M.CROP * 3 * 4 / 2**20
    rows = [{"batch": 0, "rss": status_mb("VmRSS"), "peak": status_mb("VmHWM"), "beyond_out": status_mb("VmRSS")}]
    _row(rows[0])
    reset_peak()
    t0 = time.perf_counter()

    def on_progress(done: int, total: int) -> None:
        rss, peak = status_mb("VmRSS"), status_mb("VmHWM")
        written = min(done * batch, frames) * out_frame
        rows.append({"batch": done, "rss": rss, "peak": peak, "beyond_out": rss - written,
                     "s": time.perf_counter() - t0})
        _row(rows[-1])  # as it comes: a run cut short still shows its batches
        reset_peak()

    out, _ = M.lipsync_musetalk(images, track, driver, root, batch_size=batch, device=device, lip_frame=0,
                                on_progress=on_progress)
    assert out.shape == (frames, M.CROP, M.CROP, 3)
    return rows


def _row(r: dict) -> None:
    print(f"{r['batch']:>6} {r['rss']:>8.0f} {r['peak']:>15.0f} {r['beyond_out']:>23.0f}", flush=True)


def print_memory(rows: list[dict]) -> None:
    if len(rows) > 2:
        after = [r["beyond_out"] for r in rows[1:]]
        peaks = [r["peak"] for r in rows[1:]]
        print(f"after batch 1: RSS less output crops varies by {max(after) - min(after):.0f} MB over "
              f"{len(after)} batches (from {after[0]:.0f} to {after[-1]:.0f}); peak per batch "
              f"{min(peaks):.0f}..{max(peaks):.0f} MB; first batch adds {rows[1]['rss'] - rows[0]['rss']:.0f} MB "
              f"over the loaded models")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", help="MuseTalk folder (default: random weights; written there if it is empty)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--batches", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--size", choices=sorted(P.CONFIGS), default="full")
    ap.add_argument("--memory", action="store_true", help="the per-batch memory of a 1080p clip instead")
    ap.add_argument("--frames", type=int, default=250, help="--memory: frames of the clip")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.models or tmp
        if not os.path.isfile(os.path.join(root, "musetalkV15", "unet.pth")):
            P.write_layout(root, args.size)
        if args.memory:
            print(f"memory: {args.size} architecture, 1920x1080, {args.frames} frames, batch {args.batch} "
                  f"(MB; row 0: models loaded, before the first batch)")
            print(" batch      RSS   peak in batch   RSS less output crops", flush=True)
            rows = memory(root, device, args.batch, args.frames)
            print_memory(rows)
            return {"rows": rows}
        r = bench(root, device, args.batch, args.batches)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {args.threads} threads"
    print(f"MuseTalk 1.5 ({args.size} architecture, random weights), {where}, {r['dtype']}, batch {args.batch}")
    print(f"load: {r['load_s']:.1f} s; Whisper encoder: {r['audio_x']:.1f} s of audio per s")
    print(f"UNet+VAE on 256x256 crops: {r['fps']:.2f} frames/s")
    return r


if __name__ == "__main__":
    main()
