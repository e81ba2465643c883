"""Safe checkpoint loading, key mapping and the ``.pth`` -> ``.safetensors`` converter.

* ``.safetensors`` files are read with ``safetensors`` (no code can run).
* ``.pth`` / ``.pt`` / ``.ckpt`` files are read only with ``torch.load(weights_only=True)``: a
  pickle that would build anything but tensors and plain containers is refused with a
  :class:`~.errors.CheckpointError` before any of its code runs.
* Training checkpoints are unwrapped (``{"state_dict": ...}``, ``{"model": ...}``) and the
  ``module.`` prefix that ``nn.DataParallel`` adds is stripped.
* :func:`match_state_dict` compares a state dict with a model and lists every missing key,
  unexpected key and shape mismatch in one message.
* :class:`ModelCache` keeps a loaded model until the file's size or modification time changes.

Convert a checkpoint from the command line (run from the pack folder)::

    python -m lipsync_models.convert wav2lip_gan.pth wav2lip_gan.safetensors
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import threading
import zipfile
from typing import Callable

import torch
from torch import nn

from .errors import CheckpointError

log = logging.getLogger("comfyui_lipsync")

SAFE_EXTS = (".safetensors",)
PICKLE_EXTS = (".pth", ".pt", ".ckpt", ".bin", ".model")  # .model: syncnet_python's syncnet_v2
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "generator", "net")
"""Keys under which training scripts nest the weights, tried in this order."""

MAX_LISTED = 8
"""How many key names a mismatch message lists per kind before summarising."""


def _name(path: str) -> str:
    return os.path.basename(path)


def read_tensors(path: str, who: str = "load_checkpoint", folder: str = "lipsync",
                 trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Read a checkpoint file into a flat ``{name: tensor}`` dict on the CPU.

    Unwraps training dicts and strips ``module.`` prefixes. Raises CheckpointError for a
    missing, empty, unknown, corrupt or unsafe file, or one that holds no tensors.
    ``trust_pickle`` (the converter's ``--trust-pickle`` only, never a node) unpickles a ``.pth``
    in full, running whatever code it names.
    """
    name = _name(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{who}: checkpoint {name} not found. Put it in ComfyUI's models/{folder} folder.")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"{who}: checkpoint {name} is empty (0 bytes). Copy it again.")
    ext = os.path.splitext(name)[1].lower()
    if ext in SAFE_EXTS:
        try:
            from safetensors.torch import load_file
        except ImportError as e:  # pragma: no cover - safetensors ships with ComfyUI
            raise CheckpointError(f"{who}: reading {name} needs the 'safetensors' package: pip install safetensors.") from e
        try:
            obj = load_file(path, device="cpu")
        except Exception as e:  # safetensors raises SafetensorError / OSError for bad headers
            raise CheckpointError(f"{who}: {name} is not a valid .safetensors file ({e}).") from e
    elif ext in PICKLE_EXTS:
        obj = _read_pickle(path, name, who, trust_pickle)
    else:
        raise CheckpointError(f"{who}: {name}: unknown checkpoint type {ext!r}; use .safetensors or .pth.")
    return flatten_state_dict(obj, name, who)


def _read_pickle(path: str, name: str, who: str, trust_pickle: bool):
    """``torch.load`` of a pickle checkpoint: weights-only unless ``trust_pickle``."""
    with open(path, "rb") as f:
        head = f.read(8)
    if not (zipfile.is_zipfile(path) or head[:1] == b"\x80"):  # torch.save's zip, or a pickle's PROTO opcode
        raise CheckpointError(f"{who}: cannot read {name}: not a PyTorch checkpoint (neither torch.save's zip "
                              f"archive nor a pickle; it starts with {head!r}). Copy the real checkpoint again.")
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as e:
        raise CheckpointError(refusal(name, str(e), who)) from e
    except Exception as e:  # zip/pickle corruption surfaces as RuntimeError, EOFError, ...
        raise CheckpointError(f"{who}: cannot read {name}: not a PyTorch checkpoint or corrupt "
                              f"({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}).") from e


def refusal(name: str, torch_message: str, who: str) -> str:
    """What a user can do about a ``.pth`` that weights-only loading refused (``torch_message``)."""
    found = re.search(r"GLOBAL ([\w.]+)", torch_message)
    what = (f"it names the Python object {found.group(1)}, which would be called while loading"
            if found else "it holds pickle instructions that only a full (code-running) load understands")
    return (f"{who}: refused to load {name}: it is not a plain weights file ({what}), and this pack never runs "
            f"code from a checkpoint. Use the official checkpoint or a .safetensors copy of it instead (see the "
            f"pack's README for which files fit). Only if you trust where this file came from: convert it once with "
            f"'python -m lipsync_models.convert --trust-pickle {name} {os.path.splitext(name)[0]}.safetensors' "
            f"(that runs the file's code; best in a throw-away environment) and pick the .safetensors file.")


def flatten_state_dict(obj, name: str = "checkpoint", who: str = "load_checkpoint") -> dict[str, torch.Tensor]:
    """Unwrap a loaded checkpoint object to ``{key: tensor}`` without ``module.`` prefixes."""
    if isinstance(obj, dict):
        for key in WRAPPER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, dict) and inner and any(isinstance(v, torch.Tensor) for v in inner.values()):
                obj = inner
                break
    if not isinstance(obj, dict):
        raise CheckpointError(f"{who}: {name} holds a {type(obj).__name__}, not a dict of tensors (a state_dict).")
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{who}: {name} holds no tensors (keys: {_listing(list(map(str, obj)))}).")
    if bad:
        log.info("%s: %s: ignoring %d non-tensor entries (%s)", who, name, len(bad), _listing(list(map(str, bad))))
    return strip_prefix(tensors)


def strip_prefix(state: dict[str, torch.Tensor], prefix: str = "module.") -> dict[str, torch.Tensor]:
    """Remove ``prefix`` from every key that has it (DataParallel checkpoints)."""
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state.items()}


def _listing(keys: list[str]) -> str:
    keys = sorted(keys)
    if len(keys) <= MAX_LISTED:
        return ", ".join(keys)
    return ", ".join(keys[:MAX_LISTED]) + f", ... and {len(keys) - MAX_LISTED} more"


def match_state_dict(model: nn.Module, state: dict[str, torch.Tensor], name: str, who: str,
                     optional: tuple[str, ...] = ("num_batches_tracked",),
                     hint: str = "Pick a checkpoint made for this model (e.g. wav2lip.pth or wav2lip_gan.pth).") -> None:
    """Load ``state`` into ``model`` strictly; raise one CheckpointError listing every problem.

    Keys ending in one of ``optional`` may be missing (older checkpoints lack them).
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.endswith(optional)]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k} {tuple(state[k].shape)} (expected {tuple(own[k].shape)})"
             for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s): {_listing(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): {_listing(unexpected)}")
        if wrong:
            parts.append(f"{len(wrong)} shape mismatch(es): {_listing(wrong)}")
        raise CheckpointError(
            f"{who}: {name} does not fit the {type(model).__name__} architecture: "
            + "; ".join(parts) + ". " + hint)
    ok = {k: v for k, v in state.items() if k in own}
    for k, v in ok.items():
        if not v.is_floating_point() and own[k].is_floating_point():
            raise CheckpointError(f"{who}: {name}: tensor {k} has dtype {v.dtype}, expected floating point.")
    # a model built on the meta device (no storage) takes the file's tensors as they are
    assign = any(t.is_meta for t in own.values())
    model.load_state_dict(ok, strict=False, assign=assign)
    empty = [k for k, t in model.state_dict().items() if t.is_meta] if assign else []
    if empty:  # an optional key the file lacks has no value to fall back on in a model without storage
        raise CheckpointError(f"{who}: {name} lacks {len(empty)} tensor(s) the model needs: {_listing(empty)}. {hint}")


def convert_to_safetensors(src: str, dst: str, who: str = "convert", trust_pickle: bool = False) -> int:
    """Convert a ``.pth`` checkpoint to ``.safetensors``: weights-only loading, unless
    ``trust_pickle`` (a full unpickle that runs the code the file names: for trusted files only).

    Writes the unwrapped, prefix-free state dict; returns the number of tensors written.
    """
    from safetensors.torch import save_file

    if not dst.lower().endswith(".safetensors"):
        raise CheckpointError(f"{who}: the output name must end in .safetensors, got {_name(dst)}.")
    state = read_tensors(src, who, trust_pickle=trust_pickle)
    # safetensors refuses shared storage and non-contiguous tensors: write independent copies.
    out = {k: v.detach().contiguous().clone() for k, v in state.items()}
    save_file(out, dst, metadata={"converted_from": _name(src)})
    return len(out)


class ModelCache:
    """Models loaded from files, kept until the file's size or modification time changes.

    ``get(path, build, device)`` returns the cached model for (path, device) when the file is
    unchanged, else calls ``build(path)`` (which loads on the CPU) and moves the result there.
    Thread-safe; one entry per path (a changed file replaces the old model).
    """

    def __init__(self) -> None:
        self._items: dict[tuple[str, str], tuple[tuple[int, int], nn.Module]] = {}
        self._lock = threading.Lock()
        self.loads = 0

    def get(self, path: str, build: Callable[[str], nn.Module], device: torch.device) -> nn.Module:
        path = os.path.abspath(path)
        try:
            st = os.stat(path)
        except OSError as e:
            raise CheckpointError(f"checkpoint {_name(path)} not found ({e.strerror}).") from e
        stamp = (st.st_size, st.st_mtime_ns)
        key = (path, str(device))
        with self._lock:
            hit = self._items.get(key)
            if hit is not None and hit[0] == stamp:
                return hit[1]
            model = build(path).to(device)
            self.loads += 1
            for k in [k for k in self._items if k[0] == path]:
                del self._items[k]
            self._items[key] = (stamp, model)
            return model

    def clear(self) -> bool:
        """Drop every cached model; True when there was one."""
        with self._lock:
            held = bool(self._items)
            self._items.clear()
        return held
