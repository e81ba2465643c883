"""LipSyncInference: generate the new mouths as aligned crops, ready for Composite."""

from __future__ import annotations

import os

from ..lipsync_models import backends
from ..lipsync_models.backends import latentsync, musetalk, musetalk_files, wav2lip
from ..lipsync_models.errors import CheckpointError
from ..lipsync_models.types import DRIVER, FACE_TRACK, VISEMES
from . import _comfy


WHO = "LipSyncInference"


def checkpoint_path(model: str) -> str:
    """Full path of a checkpoint of the model list (names outside models/lipsync are refused)."""
    path = _comfy.model_path("lipsync", str(model), WHO)
    if path is None:
        raise CheckpointError(f"{WHO}: checkpoint {str(model)!r} is not in models/lipsync any more. "
                              "Refresh the node list or pick another model.")
    return path


# ComfyUI's "unload models" (and a GPU request still short) also drops the Wav2Lip, MuseTalk and
# LatentSync caches
_comfy.register_release(wav2lip.release)
_comfy.register_release(musetalk.release)
_comfy.register_release(latentsync.release)


def _latentsync_run(entry: str, images, face_track, visemes, driver, strength, steps, seed, reuse=0):
    """The LatentSync backend for a model-list entry (its files from models/lipsync/latentsync)."""
    from ..lipsync_models.backends import latentsync_files

    found = _comfy.latentsync_files().get(entry)
    if found is None:
        raise CheckpointError(f"{WHO}: no {entry.split(' (')[0]} files found: put latentsync_unet.pt and whisper/tiny.pt "
                              f"in ComfyUI's {entry.split('(')[1].rstrip(')')}/ (the VAE sd-vae-ft-mse there as "
                              "sd-vae/ or in models/vae), or pick another model.")
    version, folder, vae = found
    files = latentsync_files.find_files(folder, vae=vae, who=WHO)
    backends.check_lengths(images, face_track, visemes, driver, WHO)
    device = _comfy.compute_device()
    if not latentsync.is_cached(files, device):  # the weights in fp16 on a GPU and one chunk's working memory
        need = latentsync.memory_estimate(latentsync.SIZES[version], latentsync.default_dtype(device))
        _comfy.free_memory_for_model(need["total"])
    progress = _comfy.Progress(1, WHO)
    return latentsync.lipsync_latentsync(images, face_track, driver, files, version=version, seed=int(seed),
                                         steps=int(steps), strength=float(strength), reuse=int(reuse),
                                         device=device, on_progress=progress, who=WHO)


def _musetalk_model(device):
    """The MuseTalk files of models/lipsync/musetalk; before they are loaded onto a GPU, ComfyUI is asked
    to make room for them."""
    found = _comfy.musetalk_files()
    if found is None:
        raise CheckpointError(f"{WHO}: no MuseTalk 1.5 folder found: put MuseTalk 1.5's files in ComfyUI's "
                              "models/lipsync/musetalk/ as its download script lays them out (musetalkV15/unet.pth "
                              "and musetalk.json, sd-vae/ or sd-vae-ft-mse in models/vae, whisper/), or pick "
                              "another model.")
    files = musetalk_files.find_files(found[0], vae=found[1], who=WHO)
    if not musetalk.is_cached(files, device):
        _comfy.free_memory_for_model(files.nbytes())
    return files


class LipSyncInference:
    DESCRIPTION = (
        "Makes the mouth in every frame follow the audio. The default built-in generator (no weights) "
        "re-uses the clip's own lower faces: for each frame it picks the frame of the clip whose mouth "
        "best matches MapVisemes' mouth shape (chosen over the whole clip so the mouth moves smoothly), "
        "aligns it onto the face and matches its colour, so every mouth is a real one. A still or a clip "
        "whose mouth hardly moves gets the warp generator instead, which reshapes the tracked mouth and "
        "draws the lips and inner mouth. A Wav2Lip checkpoint from models/lipsync redraws the lower face "
        "from the audio. Outputs aligned crops and the face track for Composite; the track's report names "
        "the generator used. Holds the output crops (B x 256 x 256 floats, 188 MB for 250 frames; LatentSync "
        "1.6: 512 x 512, 786 MB), one "
        "batch of crops at work, and for the clip's own mouths 64-px crops of every frame and the "
        "8-bit crops of the frames it re-uses; never a copy of the frames."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The video frames (the same frames MaskLowerFace tracked)."}),
                "face_track": (FACE_TRACK, {"tooltip": "Face track from MaskLowerFace: where the face and mouth are in each frame."}),
                "visemes": (VISEMES, {"tooltip": "Mouth track from MapVisemes; drives the built-in generator."}),
                "driver": (DRIVER, {"tooltip": "Audio driver from LoadAudioDriver; its mel windows drive Wav2Lip checkpoints."}),
                "model": (list(backends.BUILTINS) + [_comfy.MUSETALK_ENTRY] + list(_comfy.LATENTSYNC_ENTRIES)
                          + [f for f in _comfy.model_files("lipsync")
                             if not f.startswith(("musetalk/", "latentsync/"))], {
                    "default": backends.BUILTIN,
                    "tooltip": "Generator. 'built-in (no weights)': the clip's own mouths when the clip shows "
                               "enough of them, else the warp generator. 'clip's own mouths': real mouths "
                               "of this clip, re-ordered to the audio. 'warp (drawn lips)': reshapes this "
                               "frame's mouth and draws the lips (for stills). Or a Wav2Lip checkpoint "
                               "(wav2lip.pth, wav2lip_gan.pth or .safetensors) placed in ComfyUI's models/lipsync folder, "
                               "or MuseTalk 1.5 (its files in models/lipsync/musetalk/ as MuseTalk's download lays "
                               "them out; the VAE may be sd-vae-ft-mse in models/vae), or LatentSync 1.6 / 1.5 "
                               "(latentsync_unet.pt and whisper/tiny.pt in models/lipsync/latentsync/, 1.5's in "
                               "latentsync/1.5/; the VAE sd-vae-ft-mse as for MuseTalk). MuseTalk and LatentSync are "
                               "listed even before their files are there, so a workflow using them loads, and they "
                               "say which file is missing.",
                }),
                "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.5, "step": 0.05,
                                       "tooltip": "How far the mouth follows the audio: 0 keeps the original, 1 is the full motion "
                                                  "(the clip's own mouths: how far the chosen shapes move from each "
                                                  "frame's own toward the audio's)."}),
                "batch_size": ("INT", {"default": 16, "min": 1, "max": 256,
                                       "tooltip": "Frames generated at once; lower it if memory runs out. "
                                                  "(LatentSync always works in 16-frame chunks.)"}),
            },
            "optional": {
                "lip_frame": ("INT", {"default": -1, "min": -1, "max": 1_000_000,
                                      "tooltip": "Warp generator: the frame (0 = first) whose lips, texture "
                                                 "and colour, every new mouth wears. MuseTalk: the frame whose "
                                                 "whole face (its reference latent) every new lower face is "
                                                 "drawn from. -1 = automatic: the most closed frame of usual "
                                                 "width. Pick another if that one is blurred or covered. "
                                                 "Not used by LatentSync."}),
                "steps": ("INT", {"default": 20, "min": 1, "max": 100,
                                  "tooltip": "LatentSync: denoising steps per 16-frame chunk (the reference's 20; "
                                             "fewer is faster and softer)."}),
                # no "control after generate" (ComfyUI adds one to an INT named seed, randomising it by
                # default: the whole generator would re-run on every queue, whatever the model)
                "seed": ("INT", {"default": 1247, "min": 0, "max": 2**63 - 1, "control_after_generate": False,
                                 "tooltip": "LatentSync: the seed of the starting noise (the same seed gives the same "
                                            "result)."}),
                "feature_reuse": ("INT", {"default": 0, "min": 0, "max": 10,
                                          "tooltip": "LatentSync: compute the UNet's deep features every N-th step "
                                                     "and reuse them between (DeepCache; the reference's "
                                                     "--enable_deepcache is 3: a reused step costs about 7 % of a "
                                                     "whole one, so 20 steps take 2.5x less UNet time on a CPU; "
                                                     "slightly different mouths). 0 = off, every step whole."}),
            },
        }

    RETURN_TYPES = ("IMAGE", FACE_TRACK)
    RETURN_NAMES = ("crops", "face_track")
    OUTPUT_TOOLTIPS = (
        "Generated aligned face crops (one per frame), to paste back with Composite.",
        "The face track matching these crops (re-aimed at the 96-px face crop for Wav2Lip); connect it to Composite.",
    )
    FUNCTION = "run"
    CATEGORY = "lipsync/generate"

    def run(self, images, face_track, visemes, driver, model=backends.BUILTIN, strength=1.0, batch_size=16,
            lip_frame=-1, steps=20, seed=1247, feature_reuse=0):
        if model in _comfy.LATENTSYNC_ENTRIES:
            crops, track = _latentsync_run(model, images, face_track, visemes, driver, strength, steps, seed,
                                           feature_reuse)
            return (crops.to(_comfy.intermediate_device()), track)
        path = model
        if model == _comfy.MUSETALK_ENTRY:
            path = _musetalk_model(_comfy.compute_device())
        elif model not in backends.BUILTINS:
            path = checkpoint_path(model)
            # the checkpoint's weights and a batch's activations: ComfyUI unloads other models if short
            _comfy.free_memory_for_model(2 * os.path.getsize(path))
        n = int(images.shape[0])
        batch_size = max(int(batch_size), 1)
        progress = _comfy.Progress(-(-n // batch_size), "LipSyncInference")
        crops, track = backends.lipsync(
            images, face_track, visemes, driver, model=path, strength=float(strength),
            batch_size=batch_size, device=_comfy.compute_device(), on_progress=progress,
            lip_frame=int(lip_frame))
        return (crops.to(_comfy.intermediate_device()), track)


NODE_CLASS_MAPPINGS = {"LipSyncInference": LipSyncInference}
NODE_DISPLAY_NAME_MAPPINGS = {"LipSyncInference": "LipSyncInference"}
