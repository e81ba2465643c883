"""``face = "speaking"``: of several faces, the one whose lips move with the audio. Each face seen in the
clip is tracked on its own (:func:`~.track.track_faces` with a point on it) and scored against the audio
with SyncScore's weight-free measure (:func:`lipsync_models.sync.score_articulation`) on the inner-mouth
contrast (``lip_signal``) at offset 0: the audio as it lies against the frames, where the speaker's lips move
with it and another face's only by chance. The best-scoring track is returned, its report naming every
candidate's score.

Measured on the 7 GRID clips (3 s each, all one sentence pattern, so the faces' rhythms are alike): the own
face beat another clip's face on 41 of 42 pairs (all of SyncScore's lip signals: 38; the outer-lip height
alone: 22, it moves with small shifts of the mouth placement), a clip played backwards on 7 of 7, and on
two-face canvases (own face beside another clip played backwards) 7 of 7, scores 0.74-0.99 against
-0.35-0.43."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ..errors import InputError, NoFaceError
from ..types import FaceTrack
from ._base import WHO, _np_float
from .choose import iou
from .track import progress_steps, track_faces

SIGNALS = ("lip_signal",)
"""Which of SyncScore's visual signals score a face (see the module's figures)."""

PROBE_FRAMES = 8
"""Frames, evenly spread over the clip, searched for the candidate faces."""


def candidate_faces(frames: torch.Tensor) -> np.ndarray:
    """The faces (k, 4) of the probe frame that shows the most, left to right (Haar, whole frame)."""
    from .haar import _Haar

    det = _Haar()
    b = frames.shape[0]
    best = np.zeros((0, 4))
    for i in np.unique(np.linspace(0, b - 1, min(PROBE_FRAMES, b)).round().astype(int)):
        boxes = det(_np_float(frames[int(i):int(i) + 1])[0])
        if len(boxes) > len(best):
            best = boxes
    best = best[np.argsort(-(best[:, 2] - best[:, 0]))]
    keep = []  # a smaller box centred inside a kept one is a second detection of the same face
    for bx in best:
        c = 0.5 * (bx[:2] + bx[2:])
        if not any(k[0] <= c[0] <= k[2] and k[1] <= c[1] <= k[3] for k in keep):
            keep.append(bx)
    keep = np.array(keep).reshape(-1, 4)
    return keep[np.argsort(keep[:, 0] + keep[:, 2])]


def speaking_steps(num_frames: int, faces: int, detector: str = "haar", chunk: int = 64) -> int:
    """Progress steps of :func:`track_speaking` for ``faces`` candidates."""
    return max(faces, 1) * (progress_steps(num_frames, detector, False, chunk) + 1)


def track_speaking(frames: torch.Tensor, wave16k: torch.Tensor, fps: float, detector: str = "haar",
                   crop_size: int = 256, chunk: int = 64, candidates: np.ndarray | None = None,
                   on_progress: Callable[[int, int], None] | None = None) -> FaceTrack:
    """The track of the face whose lips follow ``wave16k`` (16 kHz mono covering the ``B`` frames at
    ``fps``). ``candidates`` (k, 4): face boxes to try (default :func:`candidate_faces`); each is
    followed from a point at its centre. With one candidate, its track (nothing to compare). NoFaceError
    when no frame shows a face."""
    from ..sync.articulation import score_articulation

    n = frames.shape[0]
    if wave16k.ndim != 1 or wave16k.shape[0] < int(0.5 * 16000 * n / fps):
        raise InputError(f"{WHO}: face 'speaking' needs the line's audio covering the {n} frames "
                         f"({n / fps:.2f} s); got {tuple(wave16k.shape)} samples at 16 kHz.")
    cand = candidate_faces(frames) if candidates is None else np.asarray(candidates, np.float64)
    if len(cand) == 0:
        raise NoFaceError(f"{WHO}: face 'speaking' found no face in {min(PROBE_FRAMES, n)} frames spread over "
                          f"the clip ({n} frames). Give the face with face 'point', or a manual box.")
    total = speaking_steps(n, len(cand), detector, chunk)
    done = [0]

    def tick(_d=0, _t=0):
        done[0] += 1
        if on_progress is not None:
            on_progress(min(done[0], total), total)

    tracks, scores = [], []
    for box in cand:
        centre = (0.5 * (box[0] + box[2]), 0.5 * (box[1] + box[3]))
        tr = track_faces(frames, detector=detector, face="point", point=centre, crop_size=crop_size,
                         chunk=chunk, on_progress=tick)
        same = [j for j, t in enumerate(tracks) if iou(t.boxes.mean(0).cpu().numpy(),
                                                       tr.boxes.mean(0).cpu().numpy()[None])[0] > 0.5]
        res = score_articulation(tr, wave16k.to("cpu", torch.float32), fps, visual_names=SIGNALS)
        tick()
        if same:
            continue
        tracks.append(tr)
        scores.append((float(res.scores[len(res.scores) // 2]), res.offset_frames, centre))
    best = int(np.argmax([s[0] for s in scores]))
    lines = [f"face 'speaking': {len(tracks)} face(s) scored against the audio (SyncScore's articulation "
             "measure on the inner-mouth contrast, at offset 0; the best offset in frames)"]
    for j, (conf, off, (x, y)) in enumerate(scores):
        lines.append(f"  {'chosen' if j == best else 'other '} face at {x:.0f},{y:.0f}: {conf:.3f}, offset {off:+d}")
    return _with_report(tracks[best], "\n".join(lines))


def _with_report(track: FaceTrack, text: str) -> FaceTrack:
    from dataclasses import replace

    return replace(track, report=f"{track.report}\n{text}")
