"""LatentSync's files: where they lie, and strict weights-only loading of each.

The layout is the one of LatentSync's download (huggingface ByteDance/LatentSync-1.6 or -1.5), under
one folder (in ComfyUI: ``models/lipsync/latentsync/`` for 1.6, ``models/lipsync/latentsync/1.5/`` for
1.5)::

    latentsync_unet.pt        {"state_dict": ...} of the 3D UNet (1.6: 512 px, 1.5: 256 px, same shapes)
    whisper/tiny.pt           OpenAI-format Whisper-tiny: {"dims": ..., "model_state_dict": ...}
    sd-vae/                   optional: stabilityai/sd-vae-ft-mse as a diffusers folder; else a VAE
                              file from ComfyUI's models/vae (vae-ft-mse-840000-ema-pruned.safetensors)

Every file is read with ``torch.load(weights_only=True)`` or safetensors (:func:`..weights.read_tensors`),
nothing is downloaded, and every key is checked: a missing, unexpected or wrong-shaped key raises a
:class:`~..errors.CheckpointError` naming the file (the reference loads its UNet with ``strict=False``,
so a wrong file there is half-loaded in silence). Whisper's decoder tensors are checked to be the
decoder's and left unused (LatentSync runs only the encoder).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch

from ..errors import CheckpointError
from ..weights import match_state_dict, read_tensors
from . import musetalk_files as _mf
from .latentsync_audio import WhisperAudioEncoder
from .latentsync_unet import FULL, LatentSyncUNet, UNetConfig

log = logging.getLogger("comfyui_lipsync")

WHO = "LipSyncInference"
UNET = "latentsync_unet.pt"
WHISPER = ("whisper", "tiny.pt")
VAE_DIR = "sd-vae"


@dataclass(frozen=True)
class LatentSyncFiles:
    """Paths of one LatentSync installation; ``vae`` is an sd-vae folder or a single VAE file."""

    root: str
    unet: str
    whisper: str
    vae: str

    def stamp(self) -> tuple:
        """(path, size, mtime) of every file: a cache key that changes when a file does."""
        vae = [os.path.join(self.vae, n) for n in sorted(os.listdir(self.vae))] if os.path.isdir(self.vae) else [self.vae]
        return tuple((p, os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in [self.unet, self.whisper, *vae])


def _missing(what: str, path: str, root: str, who: str) -> CheckpointError:
    return CheckpointError(
        f"{who}: LatentSync file {os.path.relpath(path, root)} is missing from {root}. Expected {what}; put "
        f"LatentSync's files there as its download lays them out (latentsync_unet.pt, whisper/tiny.pt).")


def find_files(root: str, vae: str | None = None, who: str = WHO) -> LatentSyncFiles:
    """Check a LatentSync folder and return its paths. ``vae``: a VAE folder or file used when the folder
    has no ``sd-vae/``. ``whisper/tiny.pt`` may also sit one folder up (shared by 1.5 and 1.6)."""
    root = os.path.abspath(root)
    if not os.path.isdir(root):
        raise CheckpointError(f"{who}: LatentSync folder {root} not found. Put LatentSync's files in ComfyUI's "
                              f"models/lipsync/latentsync/ (1.5's in models/lipsync/latentsync/1.5/).")
    unet = os.path.join(root, UNET)
    if not os.path.isfile(unet):
        raise _missing("LatentSync's UNet checkpoint", unet, root, who)
    whisper = next((p for p in (os.path.join(root, *WHISPER), os.path.join(os.path.dirname(root), *WHISPER))
                    if os.path.isfile(p)), None)
    if whisper is None:
        raise _missing("OpenAI's Whisper-tiny checkpoint (LatentSync's checkpoints/whisper/tiny.pt)",
                       os.path.join(root, *WHISPER), root, who)
    vae_dir = os.path.join(root, VAE_DIR)
    if os.path.isdir(vae_dir) or vae is None:
        if not os.path.isfile(os.path.join(vae_dir, "config.json")) or _mf._first(vae_dir, _mf.VAE_WEIGHTS) is None:
            raise _missing("stabilityai/sd-vae-ft-mse (a diffusers folder: config.json and "
                           "diffusion_pytorch_model.safetensors), or a VAE file in ComfyUI's models/vae "
                           "(vae-ft-mse-840000-ema-pruned.safetensors)", vae_dir, root, who)
        vae = vae_dir
    elif not os.path.exists(vae):
        raise CheckpointError(f"{who}: VAE file {os.path.basename(vae)} not found. Put sd-vae-ft-mse in "
                              f"{vae_dir} or in ComfyUI's models/vae.")
    return LatentSyncFiles(root, unet, whisper, vae)


def load_unet(files: LatentSyncFiles, cfg: UNetConfig = FULL, who: str = WHO) -> LatentSyncUNet:
    """The 3D UNet with ``latentsync_unet.pt`` loaded strictly (CPU, float32, eval). The model is built
    without storage and takes the file's tensors as they are, so loading holds one copy (5 GB), not two."""
    state = read_tensors(files.unet, who, folder="lipsync/latentsync")
    with torch.device("meta"):
        model = LatentSyncUNet(cfg)
    for k, v in LatentSyncUNet.frame_encodings(cfg).items():  # fixed sinusoids: computed where a file has none
        state.setdefault(k, v)
    match_state_dict(model, state, UNET, who, optional=(),
                     hint="Expected LatentSync 1.5's or 1.6's latentsync_unet.pt (ByteDance/LatentSync).")
    return model.float().eval().requires_grad_(False)


def whisper_dims(state: dict) -> dict:
    """Whisper encoder dimensions read from the tensors' shapes (head width is 64 in every Whisper)."""
    try:
        width, mels = state["encoder.conv1.weight"].shape[:2]
        ctx = state["encoder.positional_embedding"].shape[0]
    except KeyError as e:
        raise KeyError(f"no {e.args[0]}") from e
    layers = len({k.split(".")[2] for k in state if k.startswith("encoder.blocks.")})
    return {"n_mels": mels, "n_audio_ctx": ctx, "n_audio_state": width, "n_audio_head": width // 64,
            "n_audio_layer": layers}


def load_whisper(files: LatentSyncFiles, who: str = WHO) -> WhisperAudioEncoder:
    """Whisper's encoder from an OpenAI-format checkpoint, loaded strictly (CPU, float32, eval)."""
    name = "whisper/" + os.path.basename(files.whisper)
    state = read_tensors(files.whisper, who, folder="lipsync/latentsync/whisper")
    stray = sorted(k for k in state if not k.startswith(("encoder.", "decoder.")))
    try:
        if stray:
            raise KeyError(f"keys that are not Whisper's ({', '.join(stray[:8])})")
        dims = whisper_dims(state)
    except KeyError as e:
        raise CheckpointError(f"{who}: {name} is not an OpenAI-format Whisper checkpoint: {e.args[0]}. Expected "
                              f"LatentSync's checkpoints/whisper/tiny.pt.") from e
    encoder = WhisperAudioEncoder.from_dims(dims)
    enc = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    match_state_dict(encoder, enc, name, who, optional=(), hint="Expected OpenAI's Whisper-tiny (tiny.pt).")
    log.info("%s: %s: %d decoder tensors left unused (LatentSync runs only the encoder)", who, name,
             len(state) - len(enc))
    return encoder.eval().requires_grad_(False)


def require_libraries(who: str = WHO) -> None:
    """Raise the clear DependencyError when diffusers or transformers is missing (checked before any file
    is read: the UNet alone is 5 GB)."""
    _mf._diffusers(who, "LatentSync")
    _mf._transformers(who, "LatentSync")


def load_vae(files: LatentSyncFiles, who: str = WHO):
    """The AutoencoderKL (sd-vae-ft-mse) loaded strictly (CPU, eval)."""
    d = _mf._diffusers(who, "LatentSync")
    if os.path.isdir(files.vae):
        cfg = _mf._read_json(os.path.join(files.vae, "config.json"), who)
        weights = _mf._first(files.vae, _mf.VAE_WEIGHTS)
        state, name = read_tensors(weights, who, folder="lipsync/latentsync/sd-vae"), f"sd-vae/{os.path.basename(weights)}"
    else:
        cfg, state, name = dict(_mf.SD_VAE_CONFIG), _mf._vae_state(files.vae, who), os.path.basename(files.vae)
    model = _mf._build(d.AutoencoderKL, cfg, files.vae, who)
    match_state_dict(model, state, name, who, optional=(),
                     hint="Expected stabilityai/sd-vae-ft-mse (the VAE LatentSync was trained with).")
    return model.eval().requires_grad_(False)
