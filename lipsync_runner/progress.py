"""The runner's terminal progress: one tqdm bar per stage of a clip (:class:`Bar`), counted over the
stages the clip goes through (:data:`STAGES`, less those its generator skips)."""

from __future__ import annotations

import sys
import time

from ..lipsync_models.errors import DependencyError

STAGES = ("decode", "MaskLowerFace", "LoadAudioDriver", "ExtractPhonemes", "MapVisemes", "LipSyncInference",
          "Composite", "SyncScore", "encode")


class Bar:
    """One tqdm bar per stage of a clip: ``[2/9] MaskLowerFace   40%|####      | 30/75 [00:02<00:03]``.

    Called as ``bar(done, total)`` (the nodes' ``on_progress``). On a terminal each bar is redrawn
    in place and left on screen when its stage ends; elsewhere (logs, CI) it is written when the
    stage starts and when it ends, not on every step.
    """

    def __init__(self, stream=None, mininterval: float = 0.1):
        try:  # here, not at import: call_node and the jobs work without it
            from tqdm import tqdm
        except ImportError as e:
            raise DependencyError("lipsync: the runner's progress bar needs tqdm (ComfyUI ships it): "
                                  "pip install tqdm") from e
        self._tqdm = tqdm
        self.stream = stream or sys.stderr
        self.mininterval = mininterval  # seconds between redraws on a terminal
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.stage, self.index, self.clip_t0 = "", 0, time.monotonic()
        self.stages = STAGES
        self._bar = None

    def plan(self, stages) -> None:
        """The stages this clip goes through (a subset of :data:`STAGES`, e.g. no ExtractPhonemes for
        a generator that reads the sound itself): the bars count them, ``[4/8]``."""
        self.stages = tuple(stages)

    def start(self, stage: str) -> None:
        self._close()
        if stage not in self.stages:  # not planned: counted on, so no bar reads [8/7]
            self.stages = self.stages[:self.index] + (stage,) + self.stages[self.index:]
        self.stage, self.index = stage, self.stages.index(stage) + 1
        self._bar = self._tqdm(total=1, desc=f"[{self.index}/{len(self.stages)}] {stage:<16}", file=self.stream,
                         leave=True, dynamic_ncols=self.tty, ascii=not self.tty, mininterval=self.mininterval if self.tty else float("inf"),
                         bar_format="{desc} {percentage:3.0f}%|{bar:28}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}]")

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None:
            return
        self._bar.total = max(int(total), 1)
        self._bar.update(int(done) - self._bar.n)

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.update(max(self._bar.total - self._bar.n, 0))  # a stage that ends is complete
            self._bar.close()
            self._bar = None

    def finish(self) -> None:
        self._close()
        self.stream.write(f"done in {time.monotonic() - self.clip_t0:.1f}s\n")
        self.stream.flush()
        self.stage = ""
