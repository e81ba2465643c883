"""Speed of the LatentSync backend: seconds per 16-frame chunk (UNet steps, VAE encode and decode).

    python bench/bench_latentsync.py [--models DIR] [--size full|tiny] [--res 512] [--frames 16] [--steps 2]
        [--device cpu|cuda] [--dtype float32|float16] [--reuse N] [--memory]
    python bench/bench_latentsync.py --stream VIDEO LINE [--version 1.5] [--steps 1]
    python bench/bench_latentsync.py --long MINUTES

``--models``: a folder in LatentSync's layout (e.g. the one ``bench/parity_latentsync.py --workdir DIR``
leaves: random weights of the real architecture); without it, random weights are written to a temporary
folder first. Prints the load time, the time of one chunk (encode, ``steps`` x 2 guided UNet passes,
decode) and the seconds per step; run it with ``uptime`` beside it (the figures move with the load).
``--reuse N``: the same chunk again with the deep features reused between every N-th step (the
reference's ``--enable_deepcache`` is N = 3): both times, the speed-up and the largest difference.
``--memory``: the working memory (peak resident memory above what the loaded models hold, sampled every
5 ms) of one guided UNet pass and of one VAE decode / encode of ``VAE_SLICE`` frames, in numbers per
latent pixel (UNet) and per pixel (VAE): the figures behind ``latentsync.UNET_WORK``, ``UNET_FIXED``
and ``VAE_WORK``.
``--stream VIDEO LINE``: the headless runner's ``--latentsync`` on a clip (e.g. the 10-s 1080x1920 clip
``bench_runner.py portrait`` makes), with the tiny configuration's random weights (the published UNet
takes half an hour per chunk on a CPU): the runner's resident memory, sampled while it runs, shows that
LatentSync's chunks do not make it grow with the clip (the models' own size is what the tiny
configuration leaves out).
``--long MINUTES``: the node's path (:func:`latentsync.lipsync_latentsync`) on a clip of that length at
25 fps (one GRID frame held, stride 0, with its face track; the GRID line looped), tiny configuration
at 64 px, 1 step: that a long clip runs through every chunk to its last frame's audio, and the peak
resident memory above the start less the output crops it returns (which ComfyUI holds).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import threading
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _parity():
    spec = importlib.util.spec_from_file_location("parity_latentsync", os.path.join(ROOT, "bench", "parity_latentsync.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _rss() -> int:
    with open("/proc/self/status") as f:
        return next(int(ln.split()[1]) * 1024 for ln in f if ln.startswith("VmRSS"))


def peak_above(fn) -> int:
    """Peak resident bytes above the level before ``fn()`` while it runs (sampled every 5 ms)."""
    import gc

    gc.collect()
    base, peak, done = _rss(), [0], threading.Event()

    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.005)

    th = threading.Thread(target=watch, daemon=True)
    th.start()
    try:
        fn()
    finally:
        done.set()
        th.join()
    return max(peak[0], _rss()) - base


def memory(models, L, args) -> None:
    """Working memory of a guided UNet pass and of the VAE on a slice, in numbers per (latent) pixel."""
    el = torch.finfo(models.dtype).bits // 8
    f, s = args.frames, args.res
    x = torch.randn(2, 13, f, s // 8, s // 8, dtype=models.dtype)
    audio = torch.randn(2, f, 50, 384, dtype=models.dtype)
    unet = peak_above(lambda: models.unet(x, torch.tensor(500), audio)) / (el * 2 * f * (s // 8) ** 2)
    n = L.VAE_SLICE
    z = torch.randn(1, 4, n, s // 8, s // 8)
    dec = peak_above(lambda: L.decode(models, z)) / (el * n * s * s)
    enc = peak_above(lambda: L.encode(models, torch.rand(n, 3, s, s) * 2 - 1)) / (el * n * s * s)
    units = 2 * f * (s // 8) ** 2
    line = (L.UNET_FIXED + L.UNET_WORK * units) * el / 2 ** 20
    print(f"UNet working memory: {unet:.0f} numbers per latent pixel per frame and batch entry "
          f"(batch 2 x {f} frames of {s} px, {args.dtype}): {unet * units * el / 2 ** 20:.0f} MB; "
          f"latentsync.UNET_FIXED + UNET_WORK give {line:.0f} MB")
    print(f"VAE working memory: decode {dec:.1f}, encode {enc:.1f} numbers per pixel per frame "
          f"({n} frames of {s} px); latentsync.VAE_WORK = {L.VAE_WORK:g}")
    est = L.memory_estimate(512, torch.float16)
    print(f"estimate for 1.6 (512 px, float16): {est['total'] / 2 ** 30:.1f} GB "
          f"({est['weights'] / 2 ** 30:.1f} GB weights, {est['working'] / 2 ** 30:.1f} GB working); "
          f"1.5 (256 px): {L.memory_estimate(256, torch.float16)['total'] / 2 ** 30:.1f} GB")


def long_clip(minutes: float) -> None:
    """The node's LatentSync path on ``minutes`` of a held GRID frame (tiny weights, 64 px, 1 step)."""
    P = _parity()
    L = P._pack()
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from helpers import grid_recorded

    from comfyui_lipsync.lipsync_models.backends import latentsync_unet as U
    from comfyui_lipsync.lipsync_models.types import AudioDriver

    track, wave, fps, img = grid_recorded("bbaf2n")
    n = int(round(minutes * 60 * fps))
    samples = int(round(n / fps * 16000))
    line = wave.repeat(-(-samples // wave.shape[0]))[:samples].contiguous()
    z = torch.zeros(n)
    driver = AudioDriver(waveform=line, fps=fps, num_frames=n, mel=torch.zeros(1, 80, 16).expand(n, 80, 16),
                         loudness=z, voicing=z, audio={"waveform": line[None, None], "sample_rate": 16000})
    images, held = img[:1].expand(n, *img.shape[1:]), track.frames(torch.zeros(n, dtype=torch.long))
    done = [0]
    with tempfile.TemporaryDirectory() as tmp:
        P.write_layout(tmp, "tiny", "tiny")
        t0 = time.perf_counter()
        out = []
        grew = peak_above(lambda: out.append(L.lipsync_latentsync(
            images, held, driver, tmp, size=64, steps=1, unet_config=U.TINY,
            on_progress=lambda d, t: done.__setitem__(0, d))))
        wall = time.perf_counter() - t0
    crops = out[0][0]
    print(f"LatentSync node path, tiny weights, 64 px, 1 step: {n} frames ({minutes:g} min at {fps:g} fps), "
          f"{done[0]} chunks in {wall:.0f} s; output {tuple(crops.shape)}, finite {bool(torch.isfinite(crops).all())}; "
          f"peak resident memory above the start {grew / 2 ** 30:.2f} GB, of which the returned crops "
          f"{crops.numel() * 4 / 2 ** 30:.2f} GB (load average {os.getloadavg()[0]:.1f})")


def stream(args) -> None:
    """The runner with --latentsync on ``args.stream`` (tiny random weights): wall time and peak RSS."""
    P = _parity()
    L = P._pack()
    from comfyui_lipsync.lipsync_models.backends import latentsync_unet as U
    from comfyui_lipsync.lipsync_runner import cli

    load = L.cached_models
    L.cached_models = lambda files, device, dtype=None, who=L.WHO, cfg=U.TINY: load(files, device, dtype, who, U.TINY)
    video, line = args.stream
    with tempfile.TemporaryDirectory() as tmp:
        P.write_layout(tmp, "tiny", "tiny")
        out = os.path.join(tmp, "out.mp4")
        t0 = time.perf_counter()
        grew = peak_above(lambda: cli.main(["--video", video, "--audio", line, "-o", out, "--latentsync", tmp,
                                            "--latentsync-version", args.version, "--steps", str(args.steps),
                                            "--no-score", "-q"]))
        wall = time.perf_counter() - t0
        from comfyui_lipsync.lipsync_models import media

        info, given = media.probe_video(out), media.probe_video(video)
    print(f"runner --latentsync (tiny weights, {args.version}, {args.steps} step(s)) on {video}: "
          f"{given.frames} frames of {given.width}x{given.height} at {given.rate} fps -> {info.frames} frames at "
          f"{info.rate} fps; {wall:.0f} s; peak resident memory above the start {grew / 2 ** 30:.2f} GB "
          f"(load average {os.getloadavg()[0]:.1f})")


def run(models_dir: str, args) -> None:
    P = _parity()
    L = P._pack()
    from comfyui_lipsync.lipsync_models.backends import latentsync_unet as U

    t0 = time.perf_counter()
    dtype = getattr(torch, args.dtype)
    models = L.load_models(L.LF.find_files(models_dir), args.device, dtype,
                           cfg=U.FULL if args.size == "full" else U.TINY)
    load = time.perf_counter() - t0
    if args.memory:
        memory(models, L, args)
        return
    crops, line = P.inputs(args.frames, args.res)
    faces = torch.from_numpy(crops).float().div(255).permute(0, 3, 1, 2) * 2 - 1
    feats = L.whisper_features(models.encoder, models.filters, torch.from_numpy(line))
    tokens = L.audio_windows(feats, args.frames, 25.0)
    print(f"{args.size} UNet, {args.frames} frames of {args.res} px, {args.steps} steps, {args.device} {args.dtype}")
    outs, totals = [], []
    for reuse in [0] + ([args.reuse] if args.reuse > 1 else []):
        t0 = time.perf_counter()
        steps = [t0]

        def tick():
            if args.device == "cuda":
                torch.cuda.synchronize()
            steps.append(time.perf_counter())

        outs.append(L.denoise_chunk(models, faces, tokens, L.initial_noise(args.res, 1), L.template_mask(args.res),
                                    args.steps, 1.5, on_step=tick, reuse=reuse))
        if args.device == "cuda":
            torch.cuda.synchronize()
        totals.append(time.perf_counter() - t0)
        each = [b - a for a, b in zip(steps, steps[1:])]  # the first includes the VAE encoding
        per_step = sum(each[1:]) / max(len(each) - 1, 1) if len(each) > 1 else float("nan")
        what = f"deep features reused between every {reuse} steps" if reuse else "every step whole"
        print(f"{what}: load {load:.1f} s; one chunk: {totals[-1]:.1f} s; per guided step (mean after the first): "
              f"{per_step:.1f} s; each step (the first with the VAE encoding): "
              f"{', '.join(f'{x:.1f}' for x in each)} s", flush=True)
    if len(outs) == 2:
        diff = float((outs[0] - outs[1]).abs().max())
        print(f"reuse {args.reuse}: {totals[0] / totals[1]:.2f}x faster; largest pixel difference (-1..1) {diff:.3g}")


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
    ap.add_argument("--reuse", type=int, default=0, help="also run the chunk with deep features reused (N > 1)")
    ap.add_argument("--memory", action="store_true", help="measure the working memory instead of the speed")
    ap.add_argument("--stream", nargs=2, metavar=("VIDEO", "LINE"), help="the runner's --latentsync on a clip")
    ap.add_argument("--version", default="1.5", choices=["1.5", "1.6"], help="with --stream")
    ap.add_argument("--long", type=float, metavar="MINUTES", help="the node's path on a clip this long")
    args = ap.parse_args(argv)
    torch.set_grad_enabled(False)
    if args.long:
        long_clip(args.long)
        return
    if args.stream:
        stream(args)
        return
    if args.models:
        run(args.models, args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        _parity().write_layout(tmp, args.size, args.vae)
        run(tmp, args)


if __name__ == "__main__":
    sys.exit(main())
