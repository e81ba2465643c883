"""SyncScore's optional neural judge: LatentSync's StableSyncNet (``backends.stablesyncnet``) as a
:class:`SyncResult`, reported beside the weight-free articulation score when its file is given.

Every ``stride`` frames a window of 16 face crops (the track's boxes, cut as SyncNet cuts faces,
``backends.syncnet.face_crops``, 256x256 RGB in [-1, 1]; LatentSync aligns faces by landmarks,
so this is close to, not the same as, what it was trained on) is embedded once; the 52-frame
log-mel window read ``k`` frames later (the audio late by ``k``) is embedded for every ``k`` in
-R..R; the score at ``k`` is the mean cosine similarity. The mel is silence (-4) outside the
clip. LatentSync trains at 25 fps: at other rates the 16 frames span another time than the
52 mel frames, said in the notes.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ..checks import check_images
from ..errors import LengthMismatchError
from ..types import FaceTrack
from .common import WHO, check_inputs, envelope_at_frames, scale01
from .result import SyncResult
from .signals import band_envelope, visual_signals

ProgressFn = Callable[[int, int], None]


def score_stablesyncnet(net, images: torch.Tensor, track: FaceTrack, wave16k: torch.Tensor, fps: float,
                        search_range: int = 15, stride: int = 4, batch: int = 8,
                        on_progress: ProgressFn | None = None) -> SyncResult:
    """StableSyncNet's cosine similarity against the offset, as a :class:`SyncResult`.

    images: (B, H, W, C) 0..1, B >= 16; track: its FaceTrack; wave16k: (N,) 16 kHz mono covering
    the frames; offsets -R..R frames (positive = audio late); stride: frames between windows.
    confidence: the score at offset 0 minus the median; peak_confidence: best minus median.
    """
    from ..audio import log_mel
    from ..backends import stablesyncnet as ss

    check_images(images, WHO)
    n = images.shape[0]
    if track.num_frames != n:
        raise LengthMismatchError(f"{WHO}: {n} frames but the face track has {track.num_frames}.")
    check_inputs(n, wave16k, fps, search_range, 0.0)
    if n < ss.NUM_FRAMES:
        raise LengthMismatchError(f"{WHO}: StableSyncNet needs at least {ss.NUM_FRAMES} frames, got {n}. "
                                  "Score a longer clip, or leave the StableSyncNet input empty.")
    R = int(search_range)
    p = next(net.parameters())
    mel = log_mel(wave16k.to(p.device))
    mel_per_frame = 80.0 / float(fps)
    pad = int(np.ceil((R + 1) * mel_per_frame)) + ss.MEL_FRAMES
    mel = torch.nn.functional.pad(mel, (pad, pad), value=-4.0)
    starts = list(range(0, n - ss.NUM_FRAMES + 1, max(int(stride), 1)))
    sims = torch.zeros(len(starts), 2 * R + 1, dtype=torch.float64)
    with torch.no_grad():
        for b0 in range(0, len(starts), batch):
            group = starts[b0:b0 + batch]
            frames = torch.stack([_window_faces(images, track, s) for s in group]).to(p)
            v = net.visual_encoder(frames[:, :, :, 128:].flatten(1, 2)).flatten(1)
            v = torch.nn.functional.normalize(v, dim=1)
            for j, k in enumerate(range(-R, R + 1)):
                cols = [pad + int(mel_per_frame * (s + k)) for s in group]
                m = torch.stack([mel[:, c:c + ss.MEL_FRAMES] for c in cols])[:, None].to(p)
                a = torch.nn.functional.normalize(net.audio_encoder(m).flatten(1), dim=1)
                sims[b0:b0 + len(group), j] = (v * a).sum(1).double().cpu()
            if on_progress is not None:
                on_progress(min(b0 + batch, len(starts)), len(starts))
    scores = sims.mean(0)
    med = float(scores.median())
    best = int(torch.argmax(scores))
    notes = [] if abs(fps - 25.0) < 1e-3 else [
        f"StableSyncNet was trained at 25 fps; at {fps:g} fps its 16 frames span {16 / fps:.2f} s against 0.65 s of audio"]
    vis = visual_signals(track, fps)
    return SyncResult(
        offset_frames=best - R, offset_ms=1000.0 * (best - R) / fps, confidence=float(scores[R]) - med,
        peak_confidence=float(scores[best]) - med, lags=torch.arange(-R, R + 1), scores=scores.float(),
        visual=scale01(vis["gap"] + vis["outer"]), audio=scale01(envelope_at_frames(band_envelope(wave16k), n, fps)),
        fps=float(fps), method="stablesyncnet", notes=tuple(notes),
    )


def _window_faces(images: torch.Tensor, track: FaceTrack, start: int) -> torch.Tensor:
    """(16, 3, 256, 256) RGB face crops in [-1, 1] of frames start..start+15."""
    from ..backends import stablesyncnet as ss
    from ..backends import syncnet

    sl = slice(start, start + ss.NUM_FRAMES)
    bgr = syncnet.face_crops(images[sl], track.boxes[sl].to(images.device), size=256)
    return bgr.flip(1) / 127.5 - 1.0


def summary(result: SyncResult) -> str:
    """One report line for the StableSyncNet result beside the weight-free one."""
    return (f"StableSyncNet (LatentSync): offset {result.offset_frames:+d} frames = {result.offset_ms:+.0f} ms, "
            f"in-sync confidence {result.confidence:.3f}, offset certainty {result.peak_confidence:.3f}"
            + "".join(f"; {n}" for n in result.notes))
