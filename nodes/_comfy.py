"""The one module that touches ComfyUI.

Everything here has a standalone fallback so the pack imports, runs and is tested without
ComfyUI: progress bars become log lines, interrupts never fire, devices follow torch, and
folders default to ``./input`` and ``./models`` under the working directory (override with
``LIPSYNC_INPUT_DIR``, ``LIPSYNC_MODELS_DIR``).
"""

from __future__ import annotations

import logging
import os
from typing import Callable

import torch

log = logging.getLogger("comfyui_lipsync")

try:  # pragma: no cover - exercised only inside ComfyUI
    import comfy.model_management as _mm
    import comfy.utils as _cu
    import folder_paths as _fp

    IN_COMFY = True
except ImportError:
    _mm = _cu = _fp = None
    IN_COMFY = False

MODEL_FOLDERS = {"lipsync": (".safetensors", ".pth", ".pt"), "syncnet": (".safetensors", ".pth", ".pt", ".model")}
"""Model folders under ComfyUI's ``models/``: generator checkpoints and SyncNet checkpoints."""


def _register_model_folders() -> None:
    if _fp is None:
        return
    for name, exts in MODEL_FOLDERS.items():
        path = os.path.join(_fp.models_dir, name)
        if name in _fp.folder_names_and_paths:
            paths, known = _fp.folder_names_and_paths[name]
            if path not in paths:
                paths.append(path)
            _fp.folder_names_and_paths[name] = (paths, set(known) | set(exts))
        else:
            _fp.folder_names_and_paths[name] = ([path], set(exts))


_register_model_folders()


# --- devices -------------------------------------------------------------------------------

def compute_device() -> torch.device:
    """Where the work runs: ComfyUI's torch device, else CUDA when present, else CPU."""
    if _mm is not None:
        return _mm.get_torch_device()
    if os.environ.get("LIPSYNC_DEVICE"):
        return torch.device(os.environ["LIPSYNC_DEVICE"])
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def intermediate_device() -> torch.device:
    """Where IMAGE/MASK/AUDIO results are handed back to ComfyUI (usually the CPU)."""
    if _mm is not None:
        return _mm.intermediate_device()
    return torch.device("cpu")


# --- progress and interrupt ----------------------------------------------------------------

def check_interrupt() -> None:
    """Raise ComfyUI's interrupt exception if the user pressed Cancel; no-op standalone."""
    if _mm is not None:
        _mm.throw_exception_if_processing_interrupted()


class Progress:
    """``on_progress(done, total)`` callback that drives ComfyUI's progress bar.

    Each update is also an interrupt point. Standalone, it logs at most ten lines per run, or
    calls ``hook(done, total)`` when one is set (the headless runner draws its own bar).
    """

    hook: Callable[[int, int], None] | None = None

    def __init__(self, total: int, label: str = "") -> None:
        self.total = max(int(total), 1)
        self.label = label
        self._bar = _cu.ProgressBar(self.total) if _cu is not None else None
        self._last_logged = -1

    def __call__(self, done: int, total: int | None = None) -> None:
        check_interrupt()
        total = self.total if total is None else max(int(total), 1)
        if self._bar is not None:
            self._bar.update_absolute(done, total)
        elif Progress.hook is not None:
            Progress.hook(done, total)
        else:
            decile = int(10 * done / total)
            if decile != self._last_logged:
                self._last_logged = decile
                log.info("%s %d/%d", self.label, done, total)


# --- folders -------------------------------------------------------------------------------

def input_directory() -> str:
    if _fp is not None:
        return _fp.get_input_directory()
    return os.path.abspath(os.environ.get("LIPSYNC_INPUT_DIR", "input"))


def _standalone_model_dir(folder: str) -> str:
    return os.path.join(os.path.abspath(os.environ.get("LIPSYNC_MODELS_DIR", "models")), folder)


def model_files(folder: str) -> list[str]:
    """Checkpoint names (relative paths) in ComfyUI's ``models/<folder>`` (all search paths)."""
    if _fp is not None:
        return sorted(_fp.get_filename_list(folder))
    root = _standalone_model_dir(folder)
    exts = MODEL_FOLDERS.get(folder, (".safetensors", ".pth"))
    found = []
    if os.path.isdir(root):
        for dirpath, _, files in os.walk(root, followlinks=True):
            for f in files:
                if f.lower().endswith(exts):
                    found.append(os.path.relpath(os.path.join(dirpath, f), root).replace(os.sep, "/"))
    return sorted(found)


def model_path(folder: str, name: str) -> str | None:
    """Full path of a checkpoint listed by :func:`model_files`, or None when it is gone."""
    if _fp is not None:
        return _fp.get_full_path(folder, name)
    path = os.path.join(_standalone_model_dir(folder), name)
    return path if os.path.isfile(path) else None


def input_files(exts: tuple[str, ...]) -> list[str]:
    """Files in the input folder with one of ``exts`` (for an upload combo)."""
    root = input_directory()
    if not os.path.isdir(root):
        return []
    if _fp is not None:
        names = _fp.filter_files_content_types(os.listdir(root), ["audio", "video"])
    else:
        names = os.listdir(root)
    return sorted(n for n in names if n.lower().endswith(exts) and os.path.isfile(os.path.join(root, n)))


# --- previews ------------------------------------------------------------------------------

def preview_images(images: torch.Tensor, prefix: str = "lipsync_preview") -> list[dict]:
    """Save IMAGE previews to ComfyUI's temp folder and return the ``ui`` entries.

    Standalone there is no UI to show them, so nothing is written and ``[]`` is returned.
    """
    if _fp is None:
        return []
    import numpy as np
    from PIL import Image

    out_dir = _fp.get_temp_directory()
    full, name, counter, sub, _ = _fp.get_save_image_path(prefix, out_dir, images.shape[2], images.shape[1])
    results = []
    for i, img in enumerate(images):
        arr = (img.detach().float().clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)
        file = f"{name}_{counter + i:05}_.png"
        Image.fromarray(arr).save(os.path.join(full, file), compress_level=1)
        results.append({"filename": file, "subfolder": sub, "type": "temp"})
    return results


# --- MuseTalk --------------------------------------------------------------------------------------

MUSETALK_ENTRY = "MuseTalk 1.5 (models/lipsync/musetalk)"
"""The model-list entry of a MuseTalk 1.5 folder."""


def musetalk_files() -> tuple[str, str | None] | None:
    """(folder, vae) of a MuseTalk 1.5 install: the first ``musetalk/`` under a ``models/lipsync`` search
    path holding ``musetalkV15/unet.pth``, and a VAE file from ``models/vae`` (sd-vae-ft-mse, for when the
    folder has no ``sd-vae/``; None when none is there). None when no MuseTalk folder is found."""
    roots = _fp.get_folder_paths("lipsync") if _fp is not None else [_standalone_model_dir("lipsync")]
    folder = next((os.path.join(r, "musetalk") for r in roots
                   if os.path.isfile(os.path.join(r, "musetalk", "musetalkV15", "unet.pth"))), None)
    if folder is None:
        return None
    from ..lipsync_models.backends.musetalk_files import COMFY_VAE_NAMES

    vae = None
    if _fp is not None:
        names = set(_fp.get_filename_list("vae"))
        vae = next((_fp.get_full_path("vae", n) for n in COMFY_VAE_NAMES if n in names), None)
    else:
        vae = next((p for p in (os.path.join(_standalone_model_dir("vae"), n) for n in COMFY_VAE_NAMES)
                    if os.path.isfile(p)), None)
    return folder, vae
