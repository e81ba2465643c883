"""The socket dataclasses (lipsync_models/types.py)."""

import torch

from comfyui_lipsync.lipsync_models.types import FaceTrack


def _track(n: int) -> FaceTrack:
    t = torch.arange(n, dtype=torch.float32)
    return FaceTrack(boxes=t[:, None].repeat(1, 4), mouth=t[:, None, None].repeat(1, 8, 2), opening=t / 100,
                     transform=t[:, None, None].repeat(1, 2, 3), crop_size=64, frame_size=(100, 100),
                     found=t % 2 == 0, report="r", extras={"detector": "haar", "contrast": t * 2})


def test_face_track_frames_by_slice_and_by_index():
    tr = _track(10)
    part = tr.frames(slice(2, 5))
    assert part.num_frames == 3 and part.boxes[:, 0].tolist() == [2.0, 3.0, 4.0]
    assert part.found.tolist() == [True, False, True] and part.report == "r" and part.extras["detector"] == "haar"
    assert part.extras["contrast"].tolist() == [4.0, 6.0, 8.0]  # per-frame measures follow their frames
    pick = tr.frames([7, 1, 1])
    assert pick.mouth[:, 0, 0].tolist() == [7.0, 1.0, 1.0] and torch.equal(pick.opening, tr.opening[[7, 1, 1]])
    assert pick.transform[:, 1, 2].tolist() == [7.0, 1.0, 1.0] and tr.num_frames == 10  # the original stays
