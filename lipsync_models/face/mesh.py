"""The mediapipe strategy: the legacy face mesh (468 points) on every frame, optional
(``pip install --no-deps mediapipe==0.10.21``). Its mouth corners level the crops and its inner-lip gap is
kept as ``extras["mesh_gap"]``, the reference measure of a filmed mouth."""

from __future__ import annotations

import numpy as np

from ..calibration import MESH_TO_BOX, MOUTH_IN_BOX
from ..errors import NoFaceError
from ._base import WHO, RawTrack, _gauss_smooth, _mediapipe_face_mesh, _to_u8

# Face-mesh indices (mediapipe legacy face mesh, 468 points) in MOUTH_POINTS order.
_MESH_MOUTH = (61, 291, 0, 17, 13, 14, 2, 152)
_MESH_CHEEKS = (234, 454)


def mesh_track(frames, face_index: int, chunk: int, step) -> RawTrack:
    """The face mesh's track (one pass over the chunks, calling ``step``): boxes placed around its
    mouth, the crops levelled by its mouth-corner line, its landmarks as the track's mouth."""
    mesh = _track_mesh(frames, face_index, chunk, step)
    m = mesh["mouth"]
    angle = np.arctan2(m[:, 1, 1] - m[:, 0, 1], m[:, 1, 0] - m[:, 0, 0])[:, None]
    centre = np.concatenate([0.5 * (m[:, 0] + m[:, 1]), angle], 1)
    return RawTrack(boxes=mesh["boxes"], found=mesh["found"], centre=centre, face_width=mesh["face_width"],
                    conf=None, angle_trust=1.0, mouth=m.astype(np.float64), note="detector: mediapipe face mesh",
                    extras={"mesh_gap": mesh["gap"]})


def _track_mesh(frames, face_index, chunk, step):
    """mediapipe face mesh on every frame -> dict(boxes, found, mouth (B, 8, 2), face_width, gap)."""
    fm = _mediapipe_face_mesh()
    b, h, w = (int(v) for v in frames.shape[:3])
    nfaces = 1 if face_index < 0 else face_index + 1
    if face_index < 0:
        nfaces = 4
    pts = np.full((b, 468, 2), np.nan)
    with fm.FaceMesh(static_image_mode=False, max_num_faces=nfaces, refine_landmarks=False,
                     min_detection_confidence=0.5, min_tracking_confidence=0.5) as mesh:
        for s0 in range(0, b, chunk):
            u8 = _to_u8(frames[s0:s0 + chunk])
            for i, im in enumerate(u8):
                res = mesh.process(np.ascontiguousarray(im))
                faces = res.multi_face_landmarks or []
                cand = [np.array([(p.x * w, p.y * h) for p in f.landmark]) for f in faces]
                if not cand:
                    continue
                if face_index >= 0:
                    cand.sort(key=lambda p: p[:, 0].mean())
                    if face_index >= len(cand):
                        continue
                    pts[s0 + i] = cand[face_index]
                else:
                    pts[s0 + i] = max(cand, key=lambda p: np.ptp(p[:, 0]) * np.ptp(p[:, 1]))
            step()
    found = ~np.isnan(pts[:, 0, 0])
    if not found.any():
        raise NoFaceError(
            f"{WHO}: the mediapipe face mesh found no face in any of the {b} frames. Give the face box "
            "in 'manual box' as x0,y0,x1,y1 pixels, or try detector 'haar'."
        )
    t = np.arange(b)
    idx = np.nonzero(found)[0]
    flat = pts.reshape(b, -1)
    flat = np.stack([np.interp(t, idx, flat[idx, j]) for j in range(flat.shape[1])], 1)
    pts = _gauss_smooth(flat, 0.7).reshape(b, 468, 2)
    cheek = np.linalg.norm(pts[:, _MESH_CHEEKS[0]] - pts[:, _MESH_CHEEKS[1]], axis=1)
    face_w = cheek / MESH_TO_BOX
    mouth = pts[:, list(_MESH_MOUTH)]
    mc = 0.5 * (mouth[:, 0] + mouth[:, 1])
    x0 = mc[:, 0] - MOUTH_IN_BOX[0] * face_w
    y0 = mc[:, 1] - MOUTH_IN_BOX[1] * face_w
    boxes = _gauss_smooth(np.stack([x0, y0, x0 + face_w, y0 + face_w], 1), 2.0)
    gap = np.linalg.norm(pts[:, 13] - pts[:, 14], axis=1) / (np.linalg.norm(pts[:, 78] - pts[:, 308], axis=1) + 1e-6)
    return {"boxes": boxes, "found": found, "mouth": mouth, "face_width": face_w, "gap": gap}
