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
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import parity_musetalk as P  # noqa: E402  (loads the pack)

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


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", help="MuseTalk folder (default: random full-size weights)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--batches", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--size", choices=sorted(P.CONFIGS), default="full")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.models or P.write_layout(tmp, args.size)
        r = bench(root, device, args.batch, args.batches)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {args.threads} threads"
    print(f"MuseTalk 1.5 ({args.size} architecture, random weights), {where}, {r['dtype']}, batch {args.batch}")
    print(f"load: {r['load_s']:.1f} s; Whisper encoder: {r['audio_x']:.1f} s of audio per s")
    print(f"UNet+VAE on 256x256 crops: {r['fps']:.2f} frames/s")
    return r


if __name__ == "__main__":
    main()
