"""Speed of the LatentSync backend: seconds per 16-frame chunk (UNet steps, VAE encode and decode).

    python bench/bench_latentsync.py [--models DIR] [--size full|tiny] [--res 512] [--frames 16] [--steps 2]
        [--device cpu|cuda] [--dtype float32|float16]

``--models``: a folder in LatentSync's layout (e.g. the one ``bench/parity_latentsync.py --workdir DIR``
leaves: random weights of the real architecture); without it, random weights are written to a temporary
folder first. Prints the load time, the time of one chunk (encode, ``steps`` x 2 guided UNet passes,
decode) and the seconds per step; run it with ``uptime`` beside it (the figures move with the load).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _parity():
    spec = importlib.util.spec_from_file_location("parity_latentsync", os.path.join(ROOT, "bench", "parity_latentsync.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run(models_dir: str, args) -> None:
    P = _parity()
    L = P._pack()
    from comfyui_lipsync.lipsync_models.backends import latentsync_unet as U

    t0 = time.perf_counter()
    dtype = getattr(torch, args.dtype)
    models = L.load_models(L.LF.find_files(models_dir), args.device, dtype,
                           cfg=U.FULL if args.size == "full" else U.TINY)
    load = time.perf_counter() - t0
    crops, line = P.inputs(args.frames, args.res)
    faces = torch.from_numpy(crops).float().div(255).permute(0, 3, 1, 2) * 2 - 1
    feats = L.whisper_features(models.encoder, models.filters, torch.from_numpy(line))
    tokens = L.audio_windows(feats, args.frames, 25.0)
    steps = []
    t0 = time.perf_counter()
    L.denoise_chunk(models, faces, tokens, L.initial_noise(args.res, 1), L.template_mask(args.res), args.steps,
                    1.5, on_step=lambda: steps.append(time.perf_counter()))
    if args.device == "cuda":
        torch.cuda.synchronize()
    total = time.perf_counter() - t0
    per_step = (steps[-1] - steps[0]) / max(len(steps) - 1, 1) if len(steps) > 1 else float("nan")
    print(f"{args.size} UNet, {args.frames} frames of {args.res} px, {args.steps} steps, {args.device} {args.dtype}")
    print(f"load: {load:.1f} s; one chunk: {total:.1f} s; per guided step: {per_step:.1f} s")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models")
    ap.add_argument("--size", choices=["full", "tiny"], default="full")
    ap.add_argument("--res", type=int, default=512)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--vae", choices=["full", "tiny"], default="full")
    args = ap.parse_args(argv)
    torch.set_grad_enabled(False)
    if args.models:
        run(args.models, args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        _parity().write_layout(tmp, args.size, args.vae)
        run(tmp, args)


if __name__ == "__main__":
    sys.exit(main())
