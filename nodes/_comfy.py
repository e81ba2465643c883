"""The one module that touches ComfyUI.

Everything here has a standalone fallback so the pack imports, runs and is tested without
ComfyUI: progress bars become log lines, interrupts never fire, devices follow torch, and
folders default to ``./input`` and ``./models`` under the working directory (override with
``LIPSYNC_INPUT_DIR``, ``LIPSYNC_MODELS_DIR``).
"""

from __future__ import annotations

import functools
import logging
import math
import os
from fractions import Fraction
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


def model_path(folder: str, name: str, who: str = "LipSync") -> str | None:
    """Full path of a checkpoint listed by :func:`model_files`, or None when it is gone. A name that is
    absolute or climbs out with '..' is refused (PathError naming ``who`` and the folder): nothing
    outside models/<folder> is ever opened."""
    from ..lipsync_models.errors import PathError

    name = str(name)
    parts = name.replace("\\", "/").split("/")
    if os.path.isabs(name) or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts:
        raise PathError(f"{who}: model {name!r} points outside models/{folder} ('..' and absolute paths are not "
                        f"allowed). Put the file in ComfyUI's models/{folder} folder and pick it by name.")
    if name not in model_files(folder):
        return None
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


# --- VIDEO sockets --------------------------------------------------------------------------

def _video_error(who: str, what: str):
    from ..lipsync_models.errors import InputError

    return InputError(f"{who}: the video input {what}")


def video_components(video, who: str = "LipSync") -> tuple[torch.Tensor, dict | None, float]:
    """Unpack ComfyUI's VIDEO (core LoadVideo / CreateVideo) -> ``(images, audio | None, fps)``.

    Duck-typed, so it works without ComfyUI: ``video.get_components()`` must give an object with
    ``images`` (IMAGE ``[T, H, W, C]``), ``audio`` (AUDIO dict or None) and ``frame_rate`` (a
    ``Fraction``, or any positive number); a plain ``(images, audio, frame_rate)`` tuple works too.
    ``fps`` is ``float(frame_rate)``, so 30000/1001 stays 29.97002997... (never rounded). Raises
    InputError naming ``who`` for anything that is not such a video, MediaError when decoding fails.
    """
    from ..lipsync_models.errors import LipSyncError, MediaError

    get = getattr(video, "get_components", None)
    if not callable(get):
        raise _video_error(who, f"must be a ComfyUI VIDEO (from LoadVideo or CreateVideo), got "
                                f"{type(video).__name__}. Connect a VIDEO output, or use images + fps instead.")
    try:
        parts = get()
    except LipSyncError:
        raise
    except Exception as e:  # a file ComfyUI cannot decode: say so in one line, not a PyAV traceback
        raise MediaError(f"{who}: the video input could not be decoded ({type(e).__name__}: {e}). Re-encode "
                         "the file (e.g. H.264 mp4), or load its frames with another node.") from None
    if isinstance(parts, (tuple, list)) and len(parts) >= 3:
        images, audio, rate = parts[0], parts[1], parts[2]
    else:
        images = getattr(parts, "images", None)
        audio = getattr(parts, "audio", None)
        rate = getattr(parts, "frame_rate", None)
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise _video_error(who, f"gave no frames as an IMAGE batch [T, H, W, C] (got {shape}).")
    if images.shape[0] == 0:
        raise _video_error(who, "has no frames (0 images). Check the file, or connect another video.")
    fps = _rate(rate, who)
    if audio is not None and not (isinstance(audio, dict) and "waveform" in audio):
        audio = None  # a VIDEO whose audio stream is missing or unreadable is a silent clip
    return images, audio, fps


def video_file(video) -> str | None:
    """The file a ComfyUI VIDEO reads from (VideoFromFile's ``get_stream_source()`` on a path), or None:
    a VIDEO of frames (whose ``get_stream_source`` is the base class's, which would encode the frames
    to make one), a VIDEO held in memory (a BytesIO), a trimmed VIDEO (newer ComfyUI trims a VideoFromFile
    without a new file: its file is the whole clip; None too where the VIDEO can be trimmed but does
    not say it is not), or any other object."""
    get = getattr(video, "get_stream_source", None)
    owner = next((c for c in type(video).__mro__ if "get_stream_source" in vars(c)), None)
    if not callable(get) or owner is None or owner.__name__ == "VideoInput":
        return None
    if callable(getattr(video, "as_trimmed", None)):
        window = getattr(video, "get_active_trim_window", None)
        try:
            start, duration = window() if callable(window) else (None, None)
        except Exception:
            return None
        if start is None or start or duration:
            return None
    try:
        src = get()
    except Exception:  # not readable this way: the frames are decoded instead
        return None
    return src if isinstance(src, str) and os.path.isfile(src) else None


def video_sound(video, who: str = "LipSync") -> tuple[dict | None, int, float]:
    """A ComfyUI VIDEO's sound (AUDIO dict, None when it has none), frame count and exact frame rate,
    without holding its frames where it reads from a file (:func:`video_file`) with at most one audio
    track: the sound decoded from the file, the length by :func:`video_length_and_rate` (a 10-s 1080p
    clip's frames are 6 GB as ComfyUI decodes them). Otherwise, and for a file that cannot be read
    this way (several audio tracks, of which ComfyUI takes the last it can decode; a track that does
    not decode), through :func:`video_components`: ComfyUI's own reading, its sound and its errors."""
    path = video_file(video)
    if path is not None:
        from ..lipsync_models import media
        from ..lipsync_models.errors import MediaError

        try:
            tracks = media.audio_tracks(path, who)
            if tracks <= 1:
                count, fps = video_length_and_rate(video, who)
                if not tracks:
                    return None, count, fps
                wave, sr = media.read_audio(path, who)
                return {"waveform": wave[None], "sample_rate": sr}, count, fps
        except MediaError:
            pass
    images, audio, fps = video_components(video, who)
    return audio, int(images.shape[0]), fps


def video_length_and_rate(video, who: str = "LipSync") -> tuple[int, float]:
    """Frame count and exact frame rate (float) of a ComfyUI VIDEO without decoding its frames
    where ComfyUI allows it (``get_frame_count()`` / ``get_frame_rate()``, which a file-backed VIDEO
    reads from the container), or by counting the frames of its file (:func:`video_file`, an older
    ComfyUI's VideoFromFile; nothing kept); otherwise through :func:`video_components`. Same errors."""
    count_of, rate_of = getattr(video, "get_frame_count", None), getattr(video, "get_frame_rate", None)
    if not (callable(count_of) and callable(rate_of)):
        path = video_file(video)
        if path is None:
            images, _, fps = video_components(video, who)
            return int(images.shape[0]), fps
        from ..lipsync_models import media
        from ..lipsync_models.errors import MediaError

        try:  # the rate as ComfyUI's get_components states it: the stream's average rate
            count, rate = media.count_frames(path, who), media.probe_video(path, who).rate
        except MediaError as e:
            why = str(e).removeprefix(f"{who}: ")
            raise MediaError(f"{who}: the video input could not be read ({why}). Re-encode the file (e.g. H.264 "
                             "mp4), or load its frames with another node.") from None
        return count, _rate(rate, who)
    from ..lipsync_models.errors import LipSyncError, MediaError

    try:
        count, rate = int(count_of()), rate_of()
    except LipSyncError:
        raise
    except Exception as e:
        raise MediaError(f"{who}: the video input could not be read ({type(e).__name__}: {e}). Re-encode "
                         "the file (e.g. H.264 mp4), or load its frames with another node.") from None
    if count < 1:
        raise _video_error(who, "has no frames (0 images). Check the file, or connect another video.")
    return count, _rate(rate, who)


def _rate(rate, who: str) -> float:
    try:
        fps = rate if isinstance(rate, float) else float(Fraction(rate))
    except (TypeError, ValueError, ZeroDivisionError):
        raise _video_error(who, f"has no usable frame rate (got {rate!r}). Use images + fps instead.") from None
    if not math.isfinite(fps) or fps <= 0:
        raise _video_error(who, f"has frame rate {fps:g}, which is not positive. Use images + fps instead.")
    return fps


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


# --- queued prompts ------------------------------------------------------------------------

def on_prompt(handler: Callable[[dict], None]) -> bool:
    """Call ``handler(prompt)`` on every prompt queued to ComfyUI's server, before it is validated
    (``PromptServer.add_on_prompt_handler``); the handler may edit the prompt's node inputs. False,
    and nothing happens, standalone."""
    if not IN_COMFY:
        return False
    try:  # pragma: no cover - exercised only inside ComfyUI
        from server import PromptServer
    except ImportError:
        return False
    server = getattr(PromptServer, "instance", None)
    if server is None:
        return False

    def hook(json_data):  # pragma: no cover
        prompt = json_data.get("prompt") if isinstance(json_data, dict) else None
        if isinstance(prompt, dict):
            handler(prompt)
        return json_data

    server.add_on_prompt_handler(hook)
    return True


# --- GPU memory ------------------------------------------------------------------------------

def free_memory_for_model(nbytes: int) -> None:
    """Before a node loads a model of about ``nbytes`` onto the compute device: ask ComfyUI's model
    management to unload other models until that much is free there (it unloads nothing when the
    room is already there). No-op standalone and on the CPU."""
    if _mm is None:
        return
    device = _mm.get_torch_device()
    if torch.device(device).type == "cpu":
        return
    _mm.free_memory(int(nbytes), device)


# --- the pack's model caches under ComfyUI's model management ---------------------------------------

_RELEASES: list[Callable[[], bool]] = []


def register_release(release: Callable[[], bool]) -> None:
    """Let ComfyUI's model management drop one of the pack's model caches: ``release()`` (True when it
    dropped something) runs when ComfyUI unloads all models (its "Unload models" / ``/free`` call,
    ``comfy.model_management.unload_all_models``) and when ComfyUI frees memory on a GPU for a model
    and its own unloading left too little (``free_memory``). ComfyUI has no hook for models it did not
    load, so its two functions are wrapped (once; each calls the original first). Standalone, caches
    are dropped only by :func:`release_models`."""
    if release not in _RELEASES:
        _RELEASES.append(release)
    _hook_model_management()


def release_models() -> bool:
    """Drop every registered cache; then return the freed GPU memory to the driver (ComfyUI's
    ``soft_empty_cache``, else torch's). True when a cache held models."""
    dropped = [bool(r()) for r in list(_RELEASES)]
    if any(dropped):
        if _mm is not None:
            _mm.soft_empty_cache()
        elif torch.cuda.is_available():
            torch.cuda.empty_cache()
    return any(dropped)


def _hook_model_management() -> None:
    if _mm is None or getattr(_mm, "_lipsync_release_hook", False):
        return
    unload_all, free = _mm.unload_all_models, _mm.free_memory

    @functools.wraps(unload_all)
    def unload_all_models(*args, **kwargs):
        out = unload_all(*args, **kwargs)
        release_models()
        return out

    @functools.wraps(free)
    def free_memory(memory_required, device, *args, **kwargs):
        out = free(memory_required, device, *args, **kwargs)
        if torch.device(device).type != "cpu" and _mm.get_free_memory(device) < memory_required:
            release_models()
        return out

    _mm.unload_all_models, _mm.free_memory = unload_all_models, free_memory
    _mm._lipsync_release_hook = True


# --- StableSyncNet (SyncScore's optional neural judge) -------------------------------------------

def stablesyncnet_files() -> list[str]:
    """LatentSync StableSyncNet checkpoints in ``models/syncnet``: the files whose name says
    ``stable_syncnet`` (LatentSync 1.6 ships ``stable_syncnet.pt``); SyncScore lists them apart
    from the syncnet_v2 scorers."""
    return [f for f in model_files("syncnet") if "stable_syncnet" in os.path.basename(f).lower()]


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
    return folder, sd_vae_file()


def sd_vae_file() -> str | None:
    """sd-vae-ft-mse as a single file in ComfyUI's ``models/vae`` (the names it usually has), or None."""
    from ..lipsync_models.backends.musetalk_files import COMFY_VAE_NAMES

    if _fp is not None:
        names = set(_fp.get_filename_list("vae"))
        return next((_fp.get_full_path("vae", n) for n in COMFY_VAE_NAMES if n in names), None)
    return next((p for p in (os.path.join(_standalone_model_dir("vae"), n) for n in COMFY_VAE_NAMES)
                 if os.path.isfile(p)), None)


# --- LatentSync ----------------------------------------------------------------------------------

LATENTSYNC_ENTRIES = {
    "LatentSync 1.6 (models/lipsync/latentsync)": ("1.6", ("1.6", "")),
    "LatentSync 1.5 (models/lipsync/latentsync/1.5)": ("1.5", ("1.5",)),
}
"""Model-list entry -> (version, sub-folders of models/lipsync/latentsync tried in order; "" = itself)."""


def latentsync_files() -> dict[str, tuple[str, str, str | None]]:
    """entry -> (version, folder, vae file or None) for each LatentSync install found: a folder under a
    ``models/lipsync`` search path's ``latentsync/`` holding ``latentsync_unet.pt`` (1.6 in ``latentsync/``
    itself or ``latentsync/1.6/``, 1.5 in ``latentsync/1.5/``)."""
    roots = _fp.get_folder_paths("lipsync") if _fp is not None else [_standalone_model_dir("lipsync")]
    found = {}
    for entry, (version, subs) in LATENTSYNC_ENTRIES.items():
        folders = [os.path.join(r, "latentsync", sub) for r in roots for sub in subs]
        folder = next((f for f in folders if os.path.isfile(os.path.join(f, "latentsync_unet.pt"))), None)
        if folder is not None:
            found[entry] = (version, os.path.normpath(folder), None)
    if found:
        vae = sd_vae_file()
        found = {k: (v, f, vae) for k, (v, f, _) in found.items()}
    return found
