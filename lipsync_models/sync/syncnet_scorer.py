"""SyncScore with a SyncNet checkpoint: the ``syncnet_v2`` network (``backends.syncnet``) as a
:class:`SyncResult`, LSE-D and LSE-C over +-search_range offsets computed as syncnet_python does."""

from __future__ import annotations

from typing import Callable

import torch

from ..checks import check_images
from ..errors import LengthMismatchError
from ..types import FaceTrack
from .common import WHO, check_inputs, envelope_at_frames, scale01, windows
from .result import SyncResult
from .signals import band_envelope, visual_signals

ProgressFn = Callable[[int, int], None]


def score_syncnet(net, images: torch.Tensor, track: FaceTrack, wave16k: torch.Tensor, fps: float,
                  search_range: int = 15, window_s: float = 2.0, batch: int = 20,
                  on_progress: ProgressFn | None = None) -> SyncResult:
    """SyncNet scores (LSE-D, LSE-C as syncnet_python) as a :class:`SyncResult`.

    images: (B, H, W, C) 0..1; track: its FaceTrack (boxes give the SyncNet face crops);
    wave16k: (N,) 16 kHz. scores[k] = median distance - mean distance at offset k, so the
    confidence is the score at offset 0 and ``peak_confidence`` equals LSE-C. Offsets are counted
    in 25 fps SyncNet frames and converted to the clip's fps when it differs.
    """
    from ..backends import syncnet

    check_images(images, WHO)
    n = images.shape[0]
    if track.num_frames != n:
        raise LengthMismatchError(f"{WHO}: {n} frames but the face track has {track.num_frames}.")
    check_inputs(n, wave16k, fps, search_range, window_s)
    R = int(search_range)
    s = syncnet.score_clip(net, images, track.boxes, wave16k, fps, vshift=R, batch=batch, on_progress=on_progress)
    ratio = fps / syncnet.SYNCNET_FPS
    # syncnet index j = syncnet offset R - j = pack offset j - R
    med = float(torch.median(s.mdist))
    scores = (med - s.mdist).float()
    offset25 = s.offset
    offset = int(round(offset25 * ratio))
    per_window = []
    step = 1.0 / syncnet.SYNCNET_FPS
    rows = s.dists.shape[0]
    for a, b in windows(rows, syncnet.SYNCNET_FPS, window_s):
        sub = syncnet.scores_from_dists(s.dists[a:b], R)
        per_window.append({"start": a * step, "end": (b + 4) * step, "offset_frames": int(round(sub.offset * ratio)),
                           "confidence": round(sub.lse_c, 4), "judgeable": True})
    vis = visual_signals(track, fps)
    env_frames = envelope_at_frames(band_envelope(wave16k), n, fps)
    notes = []
    if abs(ratio - 1.0) > 1e-6:
        notes.append(f"frames resampled from {fps:g} to 25 fps for SyncNet; offsets converted back")
    return SyncResult(
        offset_frames=offset, offset_ms=1000.0 * offset25 / syncnet.SYNCNET_FPS, confidence=float(scores[R]),
        peak_confidence=s.lse_c, lags=torch.arange(-R, R + 1), scores=scores,
        visual=scale01(vis["gap"] + vis["outer"]), audio=scale01(env_frames), fps=float(fps),
        method="syncnet", windows=tuple(per_window), notes=tuple(notes),
        lse_d=s.lse_d, lse_c=s.lse_c,
    )
