"""MuseTalk 1.5's files: where they lie, and strict weights-only loading of each.

The layout is the one MuseTalk's ``download_weights.sh`` makes, under one folder (in ComfyUI:
``models/lipsync/musetalk/``)::

    musetalkV15/unet.pth            bare state dict of a diffusers UNet2DConditionModel
    musetalkV15/musetalk.json       its config
    sd-vae/config.json              stabilityai/sd-vae-ft-mse (diffusers AutoencoderKL)
    sd-vae/diffusion_pytorch_model.safetensors  (or .bin)
    whisper/config.json             openai/whisper-tiny
    whisper/pytorch_model.bin       (or model.safetensors)
    whisper/preprocessor_config.json

The VAE may instead be one file in ComfyUI's ``models/vae`` (the same weights are commonly there
as ``vae-ft-mse-840000-ema-pruned.safetensors``, in the original Stable Diffusion key layout, which
is converted with diffusers' own converter). Every ``.bin`` / ``.pth`` is read with
``torch.load(weights_only=True)`` (:func:`..weights.read_tensors`); nothing is downloaded; every
key is checked (missing, unexpected, wrong shape), and the only keys left unused are Whisper's
decoder, which MuseTalk does not run (their count is logged).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

import torch

from ..weights import match_state_dict, read_tensors
from ..errors import CheckpointError, DependencyError

log = logging.getLogger("comfyui_lipsync")

WHO = "LipSyncInference"
UNET = ("musetalkV15", "unet.pth")
UNET_CONFIG = ("musetalkV15", "musetalk.json")
VAE_DIR = "sd-vae"
VAE_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
WHISPER_DIR = "whisper"
WHISPER_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
WHISPER_FILES = ("config.json", "preprocessor_config.json")
COMFY_VAE_NAMES = ("vae-ft-mse-840000-ema-pruned.safetensors", "vae-ft-mse-840000-ema-pruned.ckpt",
                   "sd-vae-ft-mse.safetensors", "diffusion_pytorch_model.safetensors")
"""Names under which the sd-vae-ft-mse weights usually sit in ComfyUI's models/vae, tried in order."""

SD_VAE_CONFIG = {
    "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 2, "sample_size": 256,
    "block_out_channels": [128, 256, 512, 512], "norm_num_groups": 32, "act_fn": "silu",
    "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
    "scaling_factor": 0.18215,
}
"""The AutoencoderKL config of stabilityai/sd-vae-ft-mse (used for a single VAE file from models/vae)."""


@dataclass(frozen=True)
class MuseTalkFiles:
    """Paths of one MuseTalk 1.5 installation. ``vae`` is the sd-vae folder or a single VAE file."""

    root: str
    unet: str
    unet_config: str
    vae: str
    whisper: str

    def stamp(self) -> tuple:
        """(path, size, mtime) of every file: a cache key that changes when a file does."""
        out = []
        for p in (self.unet, self.unet_config, self.vae, self.whisper):
            files = [os.path.join(p, f) for f in sorted(os.listdir(p))] if os.path.isdir(p) else [p]
            for f in files:
                st = os.stat(f)
                out.append((f, st.st_size, st.st_mtime_ns))
        return tuple(out)

    def nbytes(self) -> int:
        """Bytes of all the files (the float32 weights: about what the models and a batch's activations
        take on the compute device in float16)."""
        return sum(size for _, size, _ in self.stamp())


def _need(path: str, what: str, root: str, who: str) -> str:
    if not os.path.isfile(path):
        rel = os.path.relpath(path, root)
        raise CheckpointError(
            f"{who}: MuseTalk file {rel} is missing from {root}. Expected {what}; put MuseTalk 1.5's files "
            f"there as its download_weights script lays them out (musetalkV15/, sd-vae/, whisper/).")
    return path


def _first(folder: str, names: tuple[str, ...]) -> str | None:
    for n in names:
        if os.path.isfile(os.path.join(folder, n)):
            return os.path.join(folder, n)
    return None


def find_files(root: str, vae: str | None = None, who: str = WHO) -> MuseTalkFiles:
    """Check a MuseTalk folder and return its paths; ``vae``: a VAE folder or file used when the
    folder has no ``sd-vae/``. Raises CheckpointError naming the first missing file."""
    root = os.path.abspath(root)
    if not os.path.isdir(root):
        raise CheckpointError(f"{who}: MuseTalk folder {root} not found. Put MuseTalk 1.5's files in "
                              f"ComfyUI's models/lipsync/musetalk/.")
    unet = _need(os.path.join(root, *UNET), "MuseTalk 1.5's UNet weights (a state dict)", root, who)
    cfg = _need(os.path.join(root, *UNET_CONFIG), "the UNet's config (musetalk.json)", root, who)
    vae_dir = os.path.join(root, VAE_DIR)
    if os.path.isdir(vae_dir) or vae is None:
        _need(os.path.join(vae_dir, "config.json"), "sd-vae-ft-mse's config.json (or a VAE file in "
              "ComfyUI's models/vae, e.g. vae-ft-mse-840000-ema-pruned.safetensors)", root, who)
        if _first(vae_dir, VAE_WEIGHTS) is None:
            _need(os.path.join(vae_dir, VAE_WEIGHTS[1]), "sd-vae-ft-mse's weights "
                  "(diffusion_pytorch_model.safetensors or .bin)", root, who)
        vae = vae_dir
    elif not os.path.exists(vae):
        raise CheckpointError(f"{who}: VAE file {os.path.basename(vae)} not found. Put sd-vae-ft-mse in "
                              f"{vae_dir} or in ComfyUI's models/vae.")
    wdir = os.path.join(root, WHISPER_DIR)
    for f in WHISPER_FILES:
        _need(os.path.join(wdir, f), f"whisper-tiny's {f}", root, who)
    if _first(wdir, WHISPER_WEIGHTS) is None:
        _need(os.path.join(wdir, WHISPER_WEIGHTS[1]), "whisper-tiny's weights (pytorch_model.bin)", root, who)
    return MuseTalkFiles(root, unet, cfg, vae, wdir)


def _diffusers(who: str, model: str = "MuseTalk"):
    try:
        import diffusers
    except ImportError as e:
        raise DependencyError(f"{who}: {model} needs the 'diffusers' package: pip install diffusers "
                              f"(it leaves torch as it is).") from e
    return diffusers


def _transformers(who: str, model: str = "MuseTalk"):
    try:
        import transformers
    except ImportError as e:
        raise DependencyError(f"{who}: {model} needs the 'transformers' package: pip install transformers.") from e
    return transformers


def _read_json(path: str, who: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{who}: cannot read {os.path.basename(path)} as a JSON config ({e}).") from e
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{who}: {os.path.basename(path)} holds a {type(cfg).__name__}, not a config object.")
    return {k: v for k, v in cfg.items() if not k.startswith("_")}


def _build(cls, cfg: dict, path: str, who: str):
    try:
        return cls.from_config(cfg)
    except Exception as e:  # diffusers raises ValueError/TypeError for configs it cannot build
        raise CheckpointError(f"{who}: {os.path.basename(path)} is not a {cls.__name__} config ({e}).") from e


def load_unet(files: MuseTalkFiles, who: str = WHO):
    """The UNet2DConditionModel of ``musetalk.json`` with ``unet.pth`` loaded strictly (CPU, eval)."""
    d = _diffusers(who)
    cfg = _read_json(files.unet_config, who)
    model = _build(d.UNet2DConditionModel, cfg, files.unet_config, who)
    state = read_tensors(files.unet, who, folder="lipsync/musetalk/musetalkV15")
    match_state_dict(model, state, "musetalkV15/unet.pth", who, optional=(),
                     hint="Expected MuseTalk 1.5's unet.pth, made for the musetalk.json beside it.")
    return model.eval().requires_grad_(False)


def _vae_state(path: str, who: str) -> dict[str, torch.Tensor]:
    """A single VAE file's tensors in diffusers' key layout (Stable Diffusion files are converted)."""
    state = read_tensors(path, who, folder="vae")
    state = {k[len("first_stage_model."):] if k.startswith("first_stage_model.") else k: v for k, v in state.items()}
    if any(k.startswith("encoder.down.") for k in state):
        from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

        try:
            state = convert_ldm_vae_checkpoint(state, dict(SD_VAE_CONFIG))
        except (KeyError, ValueError, RuntimeError, IndexError) as e:
            raise CheckpointError(f"{who}: {os.path.basename(path)} is not a Stable Diffusion VAE checkpoint "
                                  f"(converting it failed at {e}). Use sd-vae-ft-mse "
                                  f"(vae-ft-mse-840000-ema-pruned.safetensors).") from e
    return state


def load_vae(files: MuseTalkFiles, who: str = WHO):
    """The AutoencoderKL (sd-vae-ft-mse) loaded strictly (CPU, eval)."""
    d = _diffusers(who)
    if os.path.isdir(files.vae):
        cfg = _read_json(os.path.join(files.vae, "config.json"), who)
        weights = _first(files.vae, VAE_WEIGHTS)
        state, name = read_tensors(weights, who, folder="lipsync/musetalk/sd-vae"), f"sd-vae/{os.path.basename(weights)}"
    else:
        cfg, state, name = dict(SD_VAE_CONFIG), _vae_state(files.vae, who), os.path.basename(files.vae)
    model = _build(d.AutoencoderKL, cfg, files.vae, who)
    match_state_dict(model, state, name, who, optional=(),
                     hint="Expected stabilityai/sd-vae-ft-mse (the VAE MuseTalk was trained with).")
    return model.eval().requires_grad_(False)


def load_whisper(files: MuseTalkFiles, who: str = WHO):
    """(WhisperEncoder, WhisperFeatureExtractor) of the whisper folder; the encoder is loaded
    strictly from a WhisperModel / WhisperForConditionalGeneration checkpoint (CPU, eval)."""
    t = _transformers(who)
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    cfg_path = os.path.join(files.whisper, "config.json")
    try:
        config = t.WhisperConfig.from_json_file(cfg_path)
        extractor = t.WhisperFeatureExtractor.from_json_file(os.path.join(files.whisper, "preprocessor_config.json"))
    except (OSError, ValueError, TypeError) as e:
        raise CheckpointError(f"{who}: cannot read whisper/config.json or preprocessor_config.json ({e}).") from e
    weights = _first(files.whisper, WHISPER_WEIGHTS)
    name = f"whisper/{os.path.basename(weights)}"
    state = read_tensors(weights, who, folder="lipsync/musetalk/whisper")
    state = {k[len("model."):] if k.startswith("model.") else k: v for k, v in state.items()}
    enc = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    other = [k for k in state if not k.startswith("encoder.")]
    stray = [k for k in other if not k.startswith(("decoder.", "proj_out."))]
    if stray:
        raise CheckpointError(f"{who}: {name} holds keys that are not Whisper's ({', '.join(sorted(stray)[:8])}). "
                              f"Expected openai/whisper-tiny's pytorch_model.bin.")
    encoder = WhisperEncoder(config)
    match_state_dict(encoder, enc, name, who, optional=(), hint="Expected openai/whisper-tiny's weights with its config.json.")
    log.info("%s: %s: %d decoder tensors left unused (MuseTalk runs only the encoder)", who, name, len(other))
    return encoder.eval().requires_grad_(False), extractor
