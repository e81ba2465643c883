"""Parity of the MuseTalk 1.5 backend with the reference code (TMElyralab/MuseTalk, outside this repository).

    python bench/parity_musetalk.py --reference /path/to/MuseTalk [--size full|tiny] [--frames 8]

Builds random weights in MuseTalk's public layout (the real UNet2DConditionModel / AutoencoderKL /
Whisper architectures, random values, saved as ``unet.pth``, ``diffusion_pytorch_model.bin`` and
``pytorch_model.bin`` with their JSON configs), then runs on the same 256x256 crops and the same 16 kHz
line at 25 fps:

* the reference's own modules: ``musetalk.models.unet.UNet`` and ``PositionalEncoding``,
  ``musetalk.models.vae.VAE`` (``get_latents_for_unet``, ``decode_latents``),
  ``musetalk.utils.audio_processor.AudioProcessor`` (``get_audio_feature``, ``get_whisper_chunk``) and
  ``transformers.WhisperModel`` as ``scripts/inference.py`` loads it, each frame with its own crop as
  the reference (the reference code's choice; ``lip_frame=-2`` here);
* this backend (:mod:`lipsync_models.backends.musetalk`).

Modules the reference imports but that this comparison does not need on its path are stubbed: ``librosa``
(its ``load`` returns the line itself, already 16 kHz) and ``torchvision.transforms.Normalize`` (the
per-channel ``(x - mean) / std``, not installed here). The reference draws a sample from the VAE's latent
distribution; the backend uses its mean, so the comparison patches diffusers' ``sample`` to return the
mean. The outputs compared are the decoded crops in 0..1 before the reference turns them into uint8 BGR
(its decoder output is captured; the uint8 images are checked to agree within one level too).

The last line printed is ``max abs diff: X``; the bar is X <= 1e-4 (float32, CPU). ``--perturb`` changes
one operation of the backend's run (for the test of this script's own logic): it must then report > 1e-3.

Measured (2026-12-07, reference at commit 0a89dec, torch 2.13 CPU, diffusers 0.42.1, transformers 5.25.0,
2 cores under a load of ~14): full architecture (UNet 3.4 GB as published), 8 frames: max abs diff
1.03e-05, the uint8 BGR crops within 1 level; tiny architecture, 4 frames: 5.5e-06. Perturbed (tiny,
4 frames): pe 0.027, offset 0.145, mask 0.56. Before the backend fed the VAE contiguous NCHW tensors
(crops arrive channels-last) the same weights gave 1.4e-03: the layout alone changes the rounding.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import sys
import tempfile
import types
import wave

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from lipsync_runner.pack import load_pack  # noqa: E402

load_pack()

from comfyui_lipsync.lipsync_models.backends import musetalk as M  # noqa: E402
from comfyui_lipsync.lipsync_models.backends import musetalk_files as MF  # noqa: E402

FPS = 25.0
BAR = 1e-4

UNET_FULL = {
    "act_fn": "silu", "attention_head_dim": 8, "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False, "cross_attention_dim": 384,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1, "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 8, "layers_per_block": 2,
    "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4, "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}
"""MuseTalk 1.5's musetalk.json as published (an SD 1.x UNet: 8 input channels, 384-wide audio context)."""
UNET_TINY = dict(UNET_FULL, block_out_channels=[32, 64], layers_per_block=1, norm_num_groups=8,
                 attention_head_dim=2, down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
                 up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"], sample_size=32)
VAE_FULL = dict(MF.SD_VAE_CONFIG)
VAE_TINY = dict(VAE_FULL, block_out_channels=[8, 8, 16, 16], layers_per_block=1, norm_num_groups=4)
WHISPER_FULL = {"d_model": 384, "encoder_layers": 4, "decoder_layers": 4, "encoder_attention_heads": 6,
                "decoder_attention_heads": 6, "encoder_ffn_dim": 1536, "decoder_ffn_dim": 1536,
                "num_mel_bins": 80, "max_source_positions": 1500, "max_target_positions": 448,
                "vocab_size": 51865}
"""openai/whisper-tiny's shape."""
WHISPER_TINY = dict(WHISPER_FULL, d_model=384, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
                    decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_target_positions=16,
                    vocab_size=51865)
"""Small but 384 wide: the reference's PositionalEncoding is fixed at d_model=384."""
CONFIGS = {"full": (UNET_FULL, VAE_FULL, WHISPER_FULL), "tiny": (UNET_TINY, VAE_TINY, WHISPER_TINY)}


GAIN = 1.0
"""Weight scale over 1/sqrt(fan-in) (norm weights 1 +- 0.1, other vectors +- 0.1)."""


def _randomise(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Random values in every float tensor: weights N(0, GAIN^2 / fan-in), norms 1 +- 0.1, biases +- 0.1."""
    with torch.no_grad():
        for name, p in model.state_dict().items():
            if p.is_floating_point():
                if p.ndim >= 2:
                    fan_in = p[0].numel()
                    p.copy_(torch.randn(p.shape, generator=gen) * (GAIN / math.sqrt(fan_in)))
                else:
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.1 + (1.0 if "norm" in name and "weight" in name else 0.0))


def write_layout(root: str, size: str = "tiny", seed: int = 0) -> str:
    """Random MuseTalk 1.5 weights in the public layout under ``root``; returns ``root``."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    unet_cfg, vae_cfg, wcfg = CONFIGS[size]
    gen = torch.Generator().manual_seed(seed)
    os.makedirs(os.path.join(root, "musetalkV15"), exist_ok=True)
    unet = UNet2DConditionModel(**unet_cfg)
    _randomise(unet, gen)
    torch.save(unet.state_dict(), os.path.join(root, "musetalkV15", "unet.pth"))
    with open(os.path.join(root, "musetalkV15", "musetalk.json"), "w") as f:
        json.dump(dict(unet_cfg, _class_name="UNet2DConditionModel"), f, indent=1)
    del unet
    vae = AutoencoderKL(**vae_cfg)
    _randomise(vae, gen)
    vae.save_config(os.path.join(root, "sd-vae"))
    torch.save(vae.state_dict(), os.path.join(root, "sd-vae", "diffusion_pytorch_model.bin"))
    del vae
    config = WhisperConfig(**wcfg)
    whisper = WhisperForConditionalGeneration(config)
    _randomise(whisper, gen)
    wdir = os.path.join(root, "whisper")
    os.makedirs(wdir, exist_ok=True)
    config.to_json_file(os.path.join(wdir, "config.json"))
    torch.save(whisper.state_dict(), os.path.join(wdir, "pytorch_model.bin"))
    WhisperFeatureExtractor(feature_size=config.num_mel_bins).save_pretrained(wdir)
    return root


def inputs(frames: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(frames, 256, 256, 3) uint8 RGB crops (smooth random faces-like fields) and a 16 kHz float32 line
    of ``frames / 25`` s (tones under a random envelope)."""
    rng = np.random.default_rng(seed)
    low = rng.random((frames, 8, 8, 3)).astype(np.float32)
    crops = torch.nn.functional.interpolate(torch.from_numpy(low).permute(0, 3, 1, 2), size=(256, 256),
                                            mode="bicubic", align_corners=False).clamp(0, 1)
    crops = (crops.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    n = int(round(frames / FPS * M.AUDIO_RATE))
    t = np.arange(n) / M.AUDIO_RATE
    env = np.interp(t, np.linspace(0, t[-1] if n > 1 else 1, 12), rng.random(12))
    line = env * (0.3 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 1330 * t)) + 0.01 * rng.standard_normal(n)
    line = (np.clip(line, -1, 1) * 32767).round().astype(np.int16).astype(np.float32) / 32768.0
    return crops, line


def backend_run(root: str, crops: np.ndarray, line: np.ndarray, perturb: str | None = None) -> np.ndarray:
    """This backend on the crops (each its own reference): (F, 256, 256, 3) float32 RGB in 0..1.
    ``perturb``: "pe" (positional-encoding base 10000 -> 9000), "offset" (window one step later) or
    "mask" (one row more of the crop kept above the mask)."""
    files = MF.find_files(root)
    models = M.load_models(files, "cpu", torch.float32)
    feats = M.whisper_features(models.encoder, models.extractor, torch.from_numpy(line), "cpu", torch.float32)
    saved = (M.positional_encoding, M.OFFSET, M.encode)
    try:
        if perturb == "pe":
            M.positional_encoding = lambda n, d, device=None, dtype=torch.float32: _pe(n, d, 9000.0).to(device, dtype)
        elif perturb == "offset":
            M.OFFSET = M.OFFSET - 1
        elif perturb == "mask":
            M.encode = lambda m, c, half_mask: saved[2](m, _keep_one_more(c) if half_mask else c, False)
        elif perturb is not None:
            raise ValueError(f"unknown perturbation {perturb!r}")
        tokens = M.audio_windows(feats, len(crops), FPS)
        x = torch.from_numpy(crops).float().div(255).permute(0, 3, 1, 2)
        out = M.generate(models, x, M.encode(models, x, half_mask=False), tokens)
    finally:
        M.positional_encoding, M.OFFSET, M.encode = saved
    return out.permute(0, 2, 3, 1).numpy()


def _pe(n: int, d: int, base: float) -> torch.Tensor:
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(base) / d))
    pe = torch.zeros(n, d)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
    return pe


def _keep_one_more(crops: torch.Tensor) -> torch.Tensor:
    keep = (torch.arange(crops.shape[-2]) < crops.shape[-2] // 2 + 1).to(crops.dtype)
    return crops * keep[:, None]


def _stub_modules(line: np.ndarray) -> None:
    """librosa.load returns the line; torchvision.transforms.Normalize is (x - mean) / std per channel."""
    librosa = types.ModuleType("librosa")
    librosa.load = lambda path, sr=16000: (line.copy(), sr)
    sys.modules["librosa"] = librosa

    class Normalize:
        def __init__(self, mean, std):
            self.mean, self.std = torch.tensor(mean), torch.tensor(std)

        def __call__(self, x):
            return (x - self.mean[:, None, None].to(x)) / self.std[:, None, None].to(x)

    tv, tvt = types.ModuleType("torchvision"), types.ModuleType("torchvision.transforms")
    tvt.Normalize, tv.transforms = Normalize, tvt
    sys.modules.setdefault("torchvision", tv)
    sys.modules.setdefault("torchvision.transforms", tvt)


def _load(ref: str, rel: str, name: str):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ref, rel))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def reference_run(ref: str, root: str, crops: np.ndarray, line: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The reference's modules on the same inputs: (float 0..1 RGB crops, uint8 BGR crops)."""
    from diffusers.models.autoencoders import vae as dvae
    from transformers import WhisperModel

    _stub_modules(line)
    unet_mod = _load(ref, "musetalk/models/unet.py", "ref_musetalk_unet")
    vae_mod = _load(ref, "musetalk/models/vae.py", "ref_musetalk_vae")
    audio_mod = _load(ref, "musetalk/utils/audio_processor.py", "ref_musetalk_audio")
    dvae.DiagonalGaussianDistribution.sample = lambda self, generator=None: self.mean  # the backend's mean
    device = torch.device("cpu")
    unet = unet_mod.UNet(unet_config=os.path.join(root, "musetalkV15", "musetalk.json"),
                         model_path=os.path.join(root, "musetalkV15", "unet.pth"), device=device)
    vae = vae_mod.VAE(model_path=os.path.join(root, "sd-vae"))
    pe = unet_mod.PositionalEncoding(d_model=384)
    proc = audio_mod.AudioProcessor(feature_extractor_path=os.path.join(root, "whisper"))
    whisper = WhisperModel.from_pretrained(os.path.join(root, "whisper")).to(device=device, dtype=unet.model.dtype).eval()
    feats, length = proc.get_audio_feature(__file__)  # the stubbed librosa returns the line
    chunks = proc.get_whisper_chunk(feats, device, unet.model.dtype, whisper, length, fps=int(FPS))
    chunks = chunks[:len(crops)]
    floats = []
    decode = vae.vae.decode

    def capture(z, *a, **k):
        out = decode(z, *a, **k)
        floats.append((out.sample.float() / 2 + 0.5).clamp(0, 1))
        return out

    vae.vae.decode = capture
    with torch.no_grad():
        latents = torch.cat([vae.get_latents_for_unet(c[..., ::-1].copy()) for c in crops], 0)
        pred = unet.model(latents, torch.tensor([0]), encoder_hidden_states=pe(chunks)).sample
        u8 = vae.decode_latents(pred)
    return floats[0].permute(0, 2, 3, 1).numpy(), u8


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        raise SystemExit(f"shape mismatch: {a.shape} vs {b.shape}")
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())


def main(argv=None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", help="a checkout of TMElyralab/MuseTalk; without it, the backend is "
                                        "compared with itself perturbed (--perturb)")
    ap.add_argument("--size", choices=sorted(CONFIGS), default="full")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--perturb", choices=["pe", "offset", "mask"])
    ap.add_argument("--workdir", help="where to write the random weights (default: a temporary folder)")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = write_layout(args.workdir or tmp, args.size)
        crops, line = inputs(args.frames)
        ours = backend_run(root, crops, line)
        if args.reference:
            theirs, u8 = reference_run(args.reference, root, crops, line)
            ours_u8 = (ours * 255).round().astype(np.int16)[..., ::-1]
            print(f"uint8 BGR crops: max level difference {int(np.abs(ours_u8 - u8.astype(np.int16)).max())}")
        else:
            theirs = backend_run(root, crops, line, perturb=args.perturb)
        diff = max_abs_diff(ours, theirs)
        print(f"{args.size} architecture, {args.frames} frames at {FPS:g} fps, float32 CPU; bar {BAR:g}")
        print(f"max abs diff: {diff:.3g}")
    return diff


if __name__ == "__main__":
    sys.exit(0 if main() <= BAR else 1)
