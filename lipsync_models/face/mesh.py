"""The mediapipe strategy: the legacy face mesh (468 points) on every frame, optional
(``pip install --no-deps mediapipe==0.10.21``). Its mouth corners level the crops and its inner-lip gap is
kept as ``extras["mesh_gap"]``, the reference measure of a filmed mouth."""

from __future__ import annotations

import numpy as np

from ..calibration import MESH_TO_BOX, MOUTH_IN_BOX
from ..errors import NoFaceError
from ._base import WHO, RawTrack, _gauss_smooth, _mediapipe_face_mesh, _per_run, _to_u8
from .choose import FaceChoice, pick, same_face
from .lips import box_cuts

# Face-mesh indices (mediapipe legacy face mesh, 468 points) in MOUTH_POINTS order.
_MESH_MOUTH = (61, 291, 0, 17, 13, 14, 2, 152)
_MESH_CHEEKS = (234, 454)


def mesh_track(frames, choice: FaceChoice, chunk: int, step) -> RawTrack:
    """The face mesh's track (one pass over the chunks, calling ``step``): boxes placed around its
    mouth, the crops levelled by its mouth-corner line, its landmarks as the track's mouth."""
    mesh = _track_mesh(frames, choice, chunk, step)
    # cuts to another face, as the Haar path finds them (the clip's own mouths are chosen within each shot)
    cuts = box_cuts(frames, mesh["boxes"], mesh["found"], chunk)
    m = mesh["mouth"]
    angle = np.arctan2(m[:, 1, 1] - m[:, 0, 1], m[:, 1, 0] - m[:, 0, 0])[:, None]
    centre = np.concatenate([0.5 * (m[:, 0] + m[:, 1]), angle], 1)
    return RawTrack(boxes=mesh["boxes"], found=mesh["found"], centre=centre, face_width=mesh["face_width"],
                    conf=None, angle_trust=1.0, mouth=m.astype(np.float64), note="detector: mediapipe face mesh",
                    extras={"mesh_gap": mesh["gap"]}, cuts=cuts)


MAX_FACES = 6
"""Faces the mesh looks for in a frame (the followed one is picked among them)."""
REACQUIRE_FRAMES = 15
"""Frames the followed face may be missing before the choice is applied again (as Haar's 3 key frames)."""


def _follow(cand: list, choice: FaceChoice, prev: np.ndarray | None, lost: int):
    """The followed face among one frame's meshes (each (468, 2)): (its points or None, its box)."""
    if not cand:
        return None, prev
    boxes = np.array([[p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max()] for p in cand])
    j = same_face(prev, boxes) if prev is not None else None
    if j is None and (prev is None or lost >= REACQUIRE_FRAMES):
        j = pick(boxes, choice)
    return (None, prev) if j is None else (cand[j], boxes[j])


def _track_mesh(frames, choice: FaceChoice, chunk, step):
    """mediapipe face mesh on every frame -> dict(boxes, found, mouth (B, 8, 2), face_width, gap)."""
    fm = _mediapipe_face_mesh()
    b, h, w = (int(v) for v in frames.shape[:3])
    pts = np.full((b, 468, 2), np.nan)
    prev, lost = None, 0
    with fm.FaceMesh(static_image_mode=False, max_num_faces=MAX_FACES, refine_landmarks=False,
                     min_detection_confidence=0.5, min_tracking_confidence=0.5) as mesh:
        for s0 in range(0, b, chunk):
            u8 = _to_u8(frames[s0:s0 + chunk])
            for i, im in enumerate(u8):
                res = mesh.process(np.ascontiguousarray(im))
                cand = [np.array([(p.x * w, p.y * h) for p in f.landmark]) for f in res.multi_face_landmarks or []]
                sel, prev = _follow(cand, choice, prev, lost)
                lost = 0 if sel is not None else lost + 1
                if sel is not None:
                    pts[s0 + i] = sel
            step()
    found = ~np.isnan(pts[:, 0, 0])
    if not found.any():
        raise NoFaceError(
            f"{WHO}: the mediapipe face mesh found no face in any of the {b} frames. Give the face box "
            f"in 'manual box' as x0,y0,x1,y1 pixels, or try detector 'haar' ({choice.describe()})."
        )
    # each run of found frames smoothed on its own; the frames without the face hold the nearest one
    flat = pts.reshape(b, -1)
    pts = _per_run(lambda lo, hi: _gauss_smooth(flat[lo:hi], 0.7), found, flat.shape[1]).reshape(b, 468, 2)
    mouth = pts[:, list(_MESH_MOUTH)]
    box = _boxes_of(pts)
    face_w = box[:, 2] - box[:, 0]
    boxes = _gauss_smooth(box, 2.0)
    gap = np.linalg.norm(pts[:, 13] - pts[:, 14], axis=1) / (np.linalg.norm(pts[:, 78] - pts[:, 308], axis=1) + 1e-6)
    return {"boxes": boxes, "found": found, "mouth": mouth, "face_width": face_w, "gap": gap}


def _boxes_of(pts: np.ndarray) -> np.ndarray:
    """(B, 4) face boxes from (B, 468, 2) mesh points: the cheek-to-cheek width over MESH_TO_BOX,
    placed so the mouth-corner midpoint sits where Haar's boxes hold it (MOUTH_IN_BOX)."""
    face_w = np.linalg.norm(pts[:, _MESH_CHEEKS[0]] - pts[:, _MESH_CHEEKS[1]], axis=1) / MESH_TO_BOX
    mc = 0.5 * (pts[:, _MESH_MOUTH[0]] + pts[:, _MESH_MOUTH[1]])
    x0, y0 = mc[:, 0] - MOUTH_IN_BOX[0] * face_w, mc[:, 1] - MOUTH_IN_BOX[1] * face_w
    return np.stack([x0, y0, x0 + face_w, y0 + face_w], 1)
