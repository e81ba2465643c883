"""LatentSync 1.6 / 1.5 (bytedance/LatentSync, code Apache-2.0): latent-diffusion inpainting of the lower
face of 16-frame chunks, conditioned on Whisper-tiny audio tokens.

The pipeline, step for step as the reference's ``LipsyncPipeline`` (our own code; the UNet and the Whisper
encoder are this pack's :mod:`.latentsync_unet` / :mod:`.latentsync_audio`, the VAE and the DDIM scheduler
come from diffusers, the files from :mod:`.latentsync_files`):

1. Each frame's face aligned onto LatentSync's template and stretched to ``size`` x ``size`` (512 for
   1.6, 256 for 1.5): :func:`.latentsync_align.align_track` from the pack's face track.
2. Pixels to -1..1; the masked crop (:func:`.latentsync_align.template_mask`, the reference's mask
   shape) and the unmasked crop VAE-encoded (latent means x 0.18215), the mask resized (nearest) to the
   latent grid: the UNet input is noise 4 + mask 1 + masked latents 4 + reference latents 4 channels.
3. One Gaussian noise image (seeded) shared by every frame; per chunk of 16 frames, DDIM (scaled-linear
   betas 0.00085..0.012, 1000 training steps, steps_offset 1, eta 0) for ``steps`` steps with
   classifier-free guidance: noise = uncond + g * (audio - uncond), the unconditional branch with
   all-zero audio tokens, g = 1.5.
4. Decode; the kept part of the mask takes the input crop back (decoded * (1 - mask) + crop * mask).

Where this differs from the reference, on purpose:

* Any frame rate: frame k's audio window is centred on Whisper step ``floor(k * 50 / fps)`` of the clip's
  own rate (the reference re-encodes every video to 25 fps). The clip is never looped or cut to the
  audio: every frame gets a window (clamped to the line's ends).
* The VAE latents are the distributions' means (the reference draws samples): deterministic for a seed.
* Frames whose face was not found are passed through (their own crop back, unchanged).
* No InsightFace: the alignment comes from the pack's landmarks (see :mod:`.latentsync_align`).
* Chunk by chunk: a clip of any length holds one chunk of crops and latents at a time; no temp files.
* Paste-back goes through the pack's Composite (its lower-face mask), not the reference's.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass, replace
from typing import Callable

import torch
import torch.nn.functional as F

from .. import composite
from ..checks import check_images
from ..errors import InputError
from ..types import AudioDriver, FaceTrack
from . import latentsync_files as LF
from .latentsync_align import align_track, template_mask
from .latentsync_audio import AUDIO_RATE, audio_windows, mel_filters, whisper_features
from .latentsync_unet import FULL, FeatureReuse, UNetConfig
from .model_slot import ModelSlot, default_dtype

log = logging.getLogger("comfyui_lipsync")

WHO = "LipSyncInference"
SIZES = {"1.6": 512, "1.5": 256}
"""Crop side per version (the UNet is the same; the training resolution differs)."""
CHUNK = 16
"""Frames per denoising chunk (the motion modules' training length)."""
STEPS = 20
GUIDANCE = 1.5
VAE_SLICE = 4
"""Frames the VAE encodes or decodes at once (each frame is its own image: the same result as all 16 at
once, with a quarter of the activations: at 512 px a frame's decoder holds about 0.4 GB in fp16)."""
SCALING = 0.18215
SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                 clip_sample=False, set_alpha_to_one=False, steps_offset=1)
"""The reference's configs/scheduler_config.json (DDIM)."""


@dataclass
class LatentSyncModels:
    unet: torch.nn.Module
    vae: torch.nn.Module
    encoder: torch.nn.Module
    filters: torch.Tensor
    device: torch.device
    dtype: torch.dtype


def load_models(files: LF.LatentSyncFiles, device, dtype: torch.dtype | None = None, who: str = WHO,
                cfg: UNetConfig = FULL) -> LatentSyncModels:
    """The UNet (of ``cfg``: the published shape unless a test says otherwise), VAE and Whisper encoder."""
    device = torch.device(device)
    dtype = dtype or default_dtype(device)
    LF.require_libraries(who)  # a missing library is said before 5 GB are read
    filters = mel_filters()
    unet, vae, encoder = LF.load_unet(files, cfg, who), LF.load_vae(files, who), LF.load_whisper(files, who)
    mods = [m.to(device) if dtype == torch.float32 else m.to(device=device, dtype=dtype) for m in (unet, vae, encoder)]
    log.info("%s: LatentSync loaded from %s (%s, %s)", who, files.root, device, dtype)
    return LatentSyncModels(*mods, filters, device, dtype)


_SLOT = ModelSlot("LatentSync")


def cached_models(files: LF.LatentSyncFiles, device, dtype: torch.dtype | None = None, who: str = WHO,
                  cfg: UNetConfig = FULL) -> LatentSyncModels:
    """The models of ``files`` on ``device``, loaded once; reloaded when a file changes. One set is kept:
    the old set is dropped before a new one loads (two 5-GB UNets never sit in memory together)."""
    device = torch.device(device)
    dtype = dtype or default_dtype(device)
    return _SLOT.get(_cache_key(files, device, dtype, cfg), lambda: load_models(files, device, dtype, who, cfg))


def _cache_key(files: LF.LatentSyncFiles, device, dtype: torch.dtype | None, cfg: UNetConfig) -> tuple:
    """What a cached set of models depends on: the files as they are now, the device, dtype and config."""
    device = torch.device(device)
    return (files.stamp(), str(device), dtype or default_dtype(device), cfg)


def is_cached(files: LF.LatentSyncFiles, device, dtype: torch.dtype | None = None, cfg: UNetConfig = FULL) -> bool:
    """True when :func:`cached_models` would return loaded models without reading a file."""
    return _SLOT.holds(_cache_key(files, device, dtype, cfg))


def release() -> bool:
    """Drop the cached models (see :meth:`.model_slot.ModelSlot.release`)."""
    return _SLOT.release(WHO)


VAE_NUMBERS = 83_653_863
"""Parameters of sd-vae-ft-mse (the VAE LatentSync was trained with)."""
WHISPER_NUMBERS = 8_208_384
"""Numbers in Whisper tiny's audio encoder (its frame encoding included; the decoder is not loaded)."""
UNET_WORK = 7680
"""The UNet's working memory at its peak grows by this many numbers per latent pixel per frame and batch
entry (the classifier-free guidance doubles the batch) ...
"""
UNET_FIXED = 48_000_000
"""... above this many numbers. Measured with ``bench/bench_latentsync.py --memory`` on CPU (float32,
full-size architecture, batch 2 x 4 frames; PyTorch's fused attention, which holds no n x n matrix, on
CPU as on CUDA): 305, 435 and 1190 MB at 128, 256 and 512 px; the line through 256 and 512 px (the
published sizes) is 184 MB + 30.7 kB per latent pixel per frame and batch entry."""
VAE_WORK = 770
"""The VAE's working memory at its peak, numbers per pixel per frame of a :data:`VAE_SLICE` (the decoder;
the encoder holds 640): measured as :data:`UNET_WORK` at 256 and 512 px (769, 768)."""


@functools.lru_cache(maxsize=4)
def _unet_numbers(cfg: UNetConfig) -> int:
    from .latentsync_unet import LatentSyncUNet

    with torch.device("meta"):
        return sum(t.numel() for t in LatentSyncUNet(cfg).state_dict().values())


def memory_estimate(size: int, dtype: torch.dtype, cfg: UNetConfig = FULL, guidance: float = GUIDANCE) -> dict:
    """Bytes the backend needs on its device for one chunk: {"weights", "working", "total"}. An estimate
    from the parameter counts and the working memory measured on CPU (:data:`UNET_WORK`, :data:`VAE_WORK`),
    not a measurement on a GPU: its allocator, kernels and CUDA context add their own."""
    el = torch.finfo(dtype).bits // 8
    weights = (_unet_numbers(cfg) + VAE_NUMBERS + WHISPER_NUMBERS) * el
    batch = 2 if guidance > 1.0 else 1
    working = max(UNET_FIXED + UNET_WORK * batch * CHUNK * (size // 8) ** 2, VAE_WORK * VAE_SLICE * size * size) * el
    return {"weights": weights, "working": int(working), "total": int(weights + working)}


def memory_text(size: int, dtype: torch.dtype, device, cfg: UNetConfig = FULL, guidance: float = GUIDANCE) -> str:
    """The estimate in words, and a warning when the GPU is smaller."""
    est, gb = memory_estimate(size, dtype, cfg, guidance), 1024 ** 3
    text = (f"needs about {est['total'] / gb:.1f} GB of {torch.device(device).type.upper()} memory "
            f"({est['weights'] / gb:.1f} GB of weights in {str(dtype).replace('torch.', '')}, "
            f"{est['working'] / gb:.1f} GB working; an estimate)")
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        total = torch.cuda.get_device_properties(torch.device(device)).total_memory
        if est["total"] > total:
            text += (f"; this GPU has {total / gb:.1f} GB: expect it to run out of memory "
                     "(LatentSync 1.5 at 256 px needs less)")
    return text


def make_scheduler():
    from diffusers import DDIMScheduler

    return DDIMScheduler(**SCHEDULER)


def initial_noise(size: int, seed: int, dtype=torch.float32) -> torch.Tensor:
    """(1, 4, 1, size/8, size/8) the seeded noise image every frame starts from (CPU generator, as the
    reference's ``torch.randn`` with a generator)."""
    g = torch.Generator().manual_seed(int(seed))
    return torch.randn((1, 4, 1, size // 8, size // 8), generator=g, dtype=dtype)


def encode(models: LatentSyncModels, x: torch.Tensor) -> torch.Tensor:
    """(F, 4, h, w) scaled latent means of (F, 3, S, S) pixels in -1..1, :data:`VAE_SLICE` frames at a time."""
    with torch.inference_mode():
        return torch.cat([models.vae.encode(x[i:i + VAE_SLICE].to(models.device, models.dtype)).latent_dist.mean
                          for i in range(0, len(x), VAE_SLICE)]) * SCALING


def decode(models: LatentSyncModels, z: torch.Tensor) -> torch.Tensor:
    """(F, 3, S, S) pixels in -1..1 (float32) from (1, 4, F, h, w) scaled latents, :data:`VAE_SLICE` frames
    at a time."""
    z = (z / SCALING)[0].transpose(0, 1).to(models.dtype)
    with torch.inference_mode():
        return torch.cat([models.vae.decode(z[i:i + VAE_SLICE]).sample.float() for i in range(0, len(z), VAE_SLICE)])


def denoise_chunk(models: LatentSyncModels, faces: torch.Tensor, tokens: torch.Tensor, noise: torch.Tensor,
                  keep: torch.Tensor, steps: int = STEPS, guidance: float = GUIDANCE,
                  on_step: Callable[[], None] | None = None, reuse: int = 0) -> torch.Tensor:
    """One chunk. faces (F, 3, S, S) in -1..1; tokens (F, 50, 384); noise (1, 4, 1, S/8, S/8); keep (S, S)
    or (F, 1, S, S): 1 where the face is kept. Returns (F, 3, S, S) float32 in -1..1, the kept part
    pasted back. ``on_step`` is called after each denoising step (progress and interrupt). ``reuse`` N > 1:
    the deep features are computed every N-th step and reused between (:class:`.latentsync_unet.FeatureReuse`;
    the reference's ``--enable_deepcache`` is N = 3); 0 or 1: every step runs the whole UNet."""
    f, _, s, _ = faces.shape
    dev, dt = models.device, models.dtype
    faces = faces.to(dev, torch.float32)
    keep = keep.to(dev, torch.float32).expand(f, 1, s, s) if keep.ndim == 2 else keep.to(dev, torch.float32)
    masked_lat = encode(models, faces * keep)
    ref_lat = encode(models, faces)
    mask_lat = F.interpolate(keep, size=(s // 8, s // 8))
    to5 = lambda t: t.transpose(0, 1)[None]  # noqa: E731  (F, C, h, w) -> (1, C, F, h, w)
    cond = torch.cat([to5(mask_lat).to(dt), to5(masked_lat), to5(ref_lat)], 1)
    audio = tokens.to(dev, dt)[None]
    cfg = guidance > 1.0
    if cfg:
        cond, audio = torch.cat([cond] * 2), torch.cat([torch.zeros_like(audio), audio])
    sched = make_scheduler()
    sched.set_timesteps(int(steps), device=dev)
    latents = noise.to(dev, torch.float32).expand(1, 4, f, s // 8, s // 8).contiguous()
    kept = FeatureReuse(reuse) if int(reuse) > 1 else None
    for t in sched.timesteps:
        x = torch.cat([latents] * 2) if cfg else latents
        x = torch.cat([sched.scale_model_input(x, t).to(dt), cond], 1)
        with torch.inference_mode():
            pred = models.unet(x, t, audio, reuse=kept).float()
        if cfg:
            uncond, cond_pred = pred.chunk(2)
            pred = uncond + guidance * (cond_pred - uncond)
        latents = sched.step(pred, t, latents).prev_sample
        if on_step is not None:
            on_step()
    out = decode(models, latents)
    return out * (1 - keep) + faces * keep


def generate_chunk(models: LatentSyncModels, crops: torch.Tensor, found: torch.Tensor, feats: torch.Tensor,
                   fps: float, first: int, noise: torch.Tensor, keep: torch.Tensor, steps: int = STEPS,
                   guidance: float = GUIDANCE, strength: float = 1.0, reuse: int = 0,
                   on_step: Callable[[], None] | None = None) -> torch.Tensor:
    """(n, 3, S, S) float32 0..1 for one chunk of at most :data:`CHUNK` frames: clip frames ``first``... as
    aligned crops (n, 3, S, S) 0..1. Frames not ``found`` come back as their own crop; a chunk without a
    face still calls ``on_step`` ``steps`` times (the progress counts every chunk alike)."""
    found = found.to(crops.device).bool()
    gen = crops.clone()
    if bool(found.any()):
        tokens = audio_windows(feats, int(crops.shape[0]), fps, first=int(first))
        new = denoise_chunk(models, crops[found] * 2 - 1, tokens[found.to(tokens.device)], noise, keep, steps,
                            guidance, on_step, reuse)
        new = (new / 2 + 0.5).clamp(0, 1).to(crops)
        gen[found] = crops[found] + float(strength) * (new - crops[found])
    elif on_step is not None:
        for _ in range(int(steps)):
            on_step()
    return gen.clamp(0, 1)


def note(files: LF.LatentSyncFiles, version: str, steps: int, guidance: float, seed: int, reuse: int,
         need: str) -> str:
    reused = f", deep features reused between every {reuse} steps" if int(reuse) > 1 else ""
    return (f"generator: LatentSync {version} ({files.root}), {steps} steps{reused}, guidance {guidance:g}, "
            f"seed {seed}; {need}")


def resolve_files(model, who: str = WHO) -> LF.LatentSyncFiles:
    return model if isinstance(model, LF.LatentSyncFiles) else LF.find_files(os.fspath(model), who=who)


def _check_args(steps: int, guidance: float, size: int, who: str, reuse: int = 0) -> None:
    if int(steps) < 1:
        raise InputError(f"{who}: steps must be at least 1, got {steps}.")
    if not 0 <= int(reuse) <= 10:
        raise InputError(f"{who}: feature_reuse must be between 0 (off) and 10 steps, got {reuse}.")
    if not 0.0 <= float(guidance) <= 20.0:
        raise InputError(f"{who}: guidance must be between 0 and 20, got {guidance}.")
    if int(size) % 64:
        raise InputError(f"{who}: the LatentSync crop size must be a multiple of 64, got {size}.")


def lipsync_latentsync(images: torch.Tensor, track: FaceTrack, driver: AudioDriver, model, version: str = "1.6",
                       seed: int = 1247, steps: int = STEPS, guidance: float = GUIDANCE, strength: float = 1.0,
                       device=None, dtype: torch.dtype | None = None, size: int | None = None,
                       unet_config: UNetConfig = FULL, on_progress: Callable[[int, int], None] | None = None,
                       reuse: int = 0, who: str = WHO) -> tuple[torch.Tensor, FaceTrack]:
    """LatentSync crops for a clip: (B, S, S, 3) float32 0..1 on the images' device, and the face track aimed
    at them (for Composite). ``model``: a LatentSync folder or :class:`.latentsync_files.LatentSyncFiles`;
    ``version`` "1.6" (512 px) or "1.5" (256 px); ``size`` and ``unet_config`` override the crop side
    and the UNet's shape (tests). ``on_progress(done, total)`` counts denoising steps over
    the clip (it may raise to interrupt). Frames without a found face come back as their own crop.
    ``reuse``: 0 = off, N > 1 = deep features reused between every N-th step (:func:`denoise_chunk`)."""
    check_images(images, who)
    if version not in SIZES:
        raise InputError(f"{who}: LatentSync version must be one of {', '.join(SIZES)}, got {version!r}.")
    size = int(size or SIZES[version])
    _check_args(steps, guidance, size, who, reuse)
    files = resolve_files(model, who)
    device = torch.device(device) if device is not None else images.device
    if int(getattr(driver, "sample_rate", AUDIO_RATE)) != AUDIO_RATE:
        raise InputError(f"{who}: the audio driver must be {AUDIO_RATE} Hz for LatentSync, got {driver.sample_rate}.")
    need = memory_text(size, dtype or default_dtype(device), device, unet_config, guidance)
    log.info("%s: LatentSync %s: %s", who, version, need)
    models = cached_models(files, device, dtype, who, unet_config)
    out_track = align_track(track, size)
    wave = driver.waveform.detach().to("cpu", torch.float32).reshape(-1)
    feats = whisper_features(models.encoder, models.filters, wave)
    noise = initial_noise(size, seed)
    keep = template_mask(size, device)
    b = track.num_frames
    total, done = -(-b // CHUNK) * int(steps), [0]

    def step():
        done[0] += 1
        if on_progress is not None:
            on_progress(done[0], total)

    out = torch.empty((b, size, size, 3), dtype=torch.float32, device=images.device)
    for start in range(0, b, CHUNK):
        span = slice(start, min(start + CHUNK, b))
        crops = composite.crop_faces(images[span], out_track.frames(span), device=device)
        crops = crops[..., :3].to(torch.float32).permute(0, 3, 1, 2)
        gen = generate_chunk(models, crops, track.found[span], feats, driver.fps, start, noise, keep, steps,
                             guidance, strength, reuse, step)
        out[span] = gen.permute(0, 2, 3, 1).to(out.device)
    text = note(files, version, steps, guidance, seed, reuse, need)
    out_track = replace(out_track, report="\n".join(x for x in (out_track.report, text) if x))
    return out, out_track
