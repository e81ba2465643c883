"""Fit of ``calibration.LATENTSYNC_POINTS``: where the pack's mouth-corner middle, nose and chin land on
LatentSync's template face, found by running the reference's own three-point alignment beside the pack's
track on the GRID clips.

    python bench/bench_latentsync_align.py [--every 3]

The reference aligns with InsightFace's eyebrow centres (106-point landmarks 43/48/49/51/50 and 101-105)
and nose centre (74/77/83/86). This bench stands in mediapipe's face mesh for them: the upper eyebrow
contours (70/63/105/66/107 and 336/296/334/293/300) and the mean of the nose points 195/5/4/1 (bridge
middle to tip). With the reference's similarity (centred, std-normalised Procrustes, as its
``transformation_from_points`` without the smoothing) onto the template (17, 20), (58, 20), (37.5, 40),
the pack's mesh-track points of every frame are mapped to template units (75 x 100 face) and averaged
per clip. Prints each clip's means, the mean over clips (the constant) and the leave-one-clip-out
distance of each held-out clip from the mean of the other six, in template units and in 512-px crop
pixels.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BROWS = ((70, 63, 105, 66, 107), (336, 296, 334, 293, 300))
NOSE = (195, 5, 4, 1)
TEMPLATE = np.array([[17.0, 20.0], [58.0, 20.0], [37.5, 40.0]])


def reference_similarity(src: np.ndarray, dst: np.ndarray = TEMPLATE) -> np.ndarray:
    """(2, 3) the reference's transformation_from_points (no smoothing), from 3 src to 3 dst points."""
    c1, c2 = src.mean(0), dst.mean(0)
    s1, s2 = (src - c1).std(ddof=1), (dst - c2).std(ddof=1)
    u, _, vt = np.linalg.svd(((src - c1) / s1).T @ ((dst - c2) / s2))
    r = vt.T @ u.T
    if np.linalg.det(r) < 0:
        vt[-1] *= -1
        r = vt.T @ u.T
    return np.concatenate([(s2 / s1) * r, (c2 - (s2 / s1) * r @ c1)[:, None]], 1)


def clip_points(stem: str, every: int) -> np.ndarray:
    """(3, 2) mean template position of the pack's mouth-corner middle, nose and chin over a clip."""
    import mediapipe as mp
    import torch

    from comfyui_lipsync.lipsync_models import face, media
    from comfyui_lipsync.lipsync_models.backends.latentsync_align import track_points
    from testdata import GRID

    frames, _, _ = media.read_video(str(GRID / f"{stem}.mpg"))
    img = frames.float() / 255.0
    track = face.track_faces(img, detector="mediapipe")
    ours = track_points(track).numpy()
    out = []
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1) as mesh:
        for k in range(0, len(frames), every):
            res = mesh.process(np.ascontiguousarray(frames[k].numpy()))
            if not res.multi_face_landmarks or not bool(track.found[k]):
                continue
            h, w = frames.shape[1:3]
            p = np.array([(q.x * w, q.y * h) for q in res.multi_face_landmarks[0].landmark])
            src = np.stack([p[list(BROWS[0])].mean(0), p[list(BROWS[1])].mean(0), p[list(NOSE)].mean(0)])
            # image-left brow first, as the template's (17, 20)
            src = src[[1, 0, 2]] if src[0, 0] > src[1, 0] else src
            m = reference_similarity(np.round(src))
            out.append(ours[k] @ m[:, :2].T + m[:, 2])
    del torch
    return np.mean(out, 0)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--every", type=int, default=3)
    args = ap.parse_args(argv)
    sys.path.insert(0, ROOT)
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from lipsync_runner.pack import load_pack

    load_pack()
    from testdata import GRID

    stems = sorted(p.stem for p in GRID.glob("*.mpg"))
    per = {s: clip_points(s, args.every) for s in stems}
    for s, v in per.items():
        print(s, " ".join(f"({x:.1f}, {y:.1f})" for x, y in v))
    allm = np.mean(list(per.values()), 0)
    print("mean (mouth middle, nose, chin):", ", ".join(f"({x:.1f}, {y:.1f})" for x, y in allm))
    px = np.array([512 / 75, 512 / 100])
    for s in stems:
        rest = np.mean([v for k, v in per.items() if k != s], 0)
        d = np.abs(per[s] - rest)
        print(f"held out {s}: off by {d.max():.2f} units, {np.abs(d * px).max():.1f} px of the 512 crop")


if __name__ == "__main__":
    main()
