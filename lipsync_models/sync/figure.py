"""SyncScore's plot: the score against the offset above the lip and audio signals over time."""

from __future__ import annotations

import numpy as np
import torch

from .result import SyncResult


def plot(result: SyncResult, width: int = 900, height: int = 420) -> torch.Tensor:
    """Score against offset (best marked) above the visual and audio signals over time.

    Returns a ComfyUI IMAGE (1, height, width, 3) float32 in 0..1.
    """
    from ..plot import Canvas

    cv = Canvas(width, height)
    lags = result.lags.double().numpy()
    sc = result.scores.double().numpy()
    n = result.visual.shape[0]
    t = np.arange(n) / result.fps
    title = (f"{result.method}: offset {result.offset_frames:+d} frames ({result.offset_ms:+.0f} ms, "
             f"+ = audio late), in-sync confidence {result.confidence:.3f}")
    top, bottom = cv.rows(2, heights=(1, 1), titles=[title, "signals over time (audio at offset 0)"],
                          ylabels=["score", "0..1"], gap=40)
    top.set_xlim(float(lags[0]), float(lags[-1]))
    top.xlabel = "offset (frames, + = audio late)"
    top.autoscale_y(sc)
    top.vline(0.0, color="gray")
    top.line(lags, sc, color=0, width=2, label="score")
    best = int(np.nonzero(lags == result.offset_frames)[0][0]) if (lags == result.offset_frames).any() else int(np.argmax(sc))
    top.markers([float(lags[best])], [float(sc[best])], color=3, size=5, label="best")
    top.legend()
    bottom.set_xlim(0.0, max(float(t[-1]), 1e-3))
    bottom.xlabel = "time (s)"
    bottom.set_ylim(-0.05, 1.05)
    bottom.line(t, result.visual.double().numpy(), color=2, width=2, label="lips (visual)")
    bottom.line(t, result.audio.double().numpy(), color=1, width=1, label="audio 300-3000 Hz")
    for w in result.windows:
        bottom.text(w["start"] + 0.02, 0.93, f"{w['offset_frames']:+d}", color="black")
    bottom.legend()
    return cv.to_image()
