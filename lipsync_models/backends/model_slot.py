"""One set of loaded models per backend, kept between runs (MuseTalk's, LatentSync's, SyncScore's two
judges'): loaded on first use, reused while its key (the files as they are now, the device, the dtype,
...) stays the same, and dropped before another set loads, so two sets never sit in memory together."""

from __future__ import annotations

import logging
import threading
from typing import Callable

import torch

log = logging.getLogger("comfyui_lipsync")


def default_dtype(device) -> torch.dtype:
    """float16 on CUDA (the references' choice on GPUs), float32 elsewhere."""
    return torch.float16 if torch.device(device).type == "cuda" else torch.float32


class ModelSlot:
    """A lock-guarded slot for one set of models under a key."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._key, self._models = None, None
        self._lock = threading.Lock()

    def get(self, key, load: Callable[[], object]):
        """The models held under ``key``; otherwise the held set is dropped and ``load()`` fills the slot."""
        with self._lock:
            if self._models is None or self._key != key:
                self._key, self._models = None, None
                self._models, self._key = load(), key
            return self._models

    def holds(self, key) -> bool:
        """True when :meth:`get` would return loaded models without loading."""
        with self._lock:
            return self._models is not None and self._key == key

    def release(self, who: str) -> bool:
        """Drop the held models (ComfyUI's model management calls this through nodes/_comfy.py when it
        unloads models or needs the memory). True when there was something to drop."""
        with self._lock:
            held = self._models is not None
            self._key, self._models = None, None
        if held:
            log.info("%s: %s models released", who, self.name)
        return held
