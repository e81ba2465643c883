"""What the nodes hold (issue 15, item 2): MaskLowerFace builds its full-frame MASK only when a node
reads it; the ComfyUI on-prompt hook that tells it so, on the shipped workflows."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from comfyui_lipsync.lipsync_models import face, media
from comfyui_lipsync.lipsync_models.errors import InputError
from comfyui_lipsync.nodes.mask_lower_face import (MASK_READ, MaskLowerFace, mark_mask_readers, mask_readers,
                                                   on_device)

import workflow_schema as ws
from testdata import grid_clip

WORKFLOWS = Path(__file__).resolve().parents[1] / "workflows"


@pytest.fixture(scope="module")
def clip():
    frames, _, _ = media.read_video(str(grid_clip("lbbc2a")))
    return frames[:30].float() / 255


@pytest.fixture(scope="module")
def runs(clip):
    """The node's outputs standalone (no hook: mask_read None), with a reader, and without one."""
    out = {}
    for key, read in (("standalone", None), ("read", True), ("unread", False)):
        res = MaskLowerFace().run(images=clip, mask_expand=0.02, mask_feather=0.1, mask_read=read)["result"]
        out[key] = dict(zip(MaskLowerFace.RETURN_NAMES, res))
    return out


def test_unread_mask_holds_no_frames_but_keeps_the_shape(runs, clip):
    mask = runs["unread"]["mask"]
    assert mask.shape == clip.shape[:3] and mask.dtype == torch.float32
    assert mask.untyped_storage().nbytes() <= 4  # one float, not 30 x 288 x 360
    assert float(mask.abs().max()) == 0.0
    full = runs["read"]["mask"]
    assert full.untyped_storage().nbytes() == full.numel() * 4 and float(full.max()) == 1.0


def test_read_mask_is_the_lower_face_mask_of_the_track(runs):
    """With a reader (or standalone, as tests and the runner call it) the mask is the whole lower-face
    mask of the track, as before the stand-in existed."""
    for key in ("read", "standalone"):
        track = runs[key]["face_track"]
        assert torch.equal(runs[key]["mask"], face.lower_face_mask(track, expand=0.02, feather=0.1))
    assert torch.equal(runs["read"]["mask"], runs["standalone"]["mask"])


def test_unread_mask_changes_neither_the_track_nor_the_preview(runs):
    """The preview draws its 4 frames' mask from the track alone: the same picture either way."""
    a, b = runs["read"], runs["unread"]
    assert torch.equal(a["face_track"].transform, b["face_track"].transform)
    assert a["preview"].shape[0] == 4 and torch.equal(a["preview"], b["preview"])
    assert a["report"] == b["report"]


def test_preview_takes_the_mask_of_its_frames_only(runs, clip):
    track = runs["read"]["face_track"]
    shown = face.preview_indices(clip.shape[0], 4)
    assert shown.tolist() == [0, 10, 19, 29]
    few = face.lower_face_mask(track.frames(shown))
    assert torch.equal(few, face.lower_face_mask(track)[shown])
    with pytest.raises(InputError, match="mask has 3 frames"):
        face.preview(clip, track, few[:3])


def test_track_moves_to_the_compute_device_whole(runs):
    """MaskLowerFace tracks the frames where they are (no full copy on the GPU) and hands the track on
    the compute device: every tensor moves, the per-frame extras included; the values stay."""
    track = runs["read"]["face_track"]
    moved = on_device(track, torch.device("meta"))
    tensors = [moved.boxes, moved.mouth, moved.opening, moved.transform, moved.found]
    tensors += [v for v in moved.extras.values() if isinstance(v, torch.Tensor)]
    assert len(tensors) >= 8 and all(t.device.type == "meta" for t in tensors)
    assert moved.extras["detector"] == track.extras["detector"] and moved.report == track.report
    same = on_device(track, torch.device("cpu"))
    assert same.transform is track.transform and torch.equal(same.extras["face_width"], track.extras["face_width"])


def test_hook_marks_which_mask_outputs_are_read():
    """An API prompt as ComfyUI's frontend sends it: links are [node id, output slot]; slot 0 is the
    mask, slot 1 the face track."""
    prompt = {
        "3": {"class_type": "LipSyncMaskLowerFace", "inputs": {"images": ["1", 0], "face": "largest"}},
        "4": {"class_type": "LipSyncMaskLowerFace", "inputs": {"images": ["1", 0], "face": "index"}},
        "6": {"class_type": "LipSyncComposite", "inputs": {"face_track": ["3", 1], "mask": ["4", 0]}},
        "7": {"class_type": "LipSyncComposite", "inputs": {"face_track": ["4", 1], "images": ["3", 2]}},
    }
    before = json.loads(json.dumps(prompt))
    assert mask_readers(prompt) == {"3": False, "4": True}
    mark_mask_readers(prompt)
    assert prompt["3"]["inputs"][MASK_READ] is False and prompt["4"]["inputs"][MASK_READ] is True
    for k in ("6", "7"):
        assert prompt[k] == before[k]
    assert MASK_READ in MaskLowerFace.INPUT_TYPES()["hidden"]  # ComfyUI hands a declared hidden input on


def _mask_links(wf: dict) -> dict[str, bool]:
    """From the UI workflow's own links: MaskLowerFace node id -> whether its 'mask' output feeds a node."""
    out = {}
    for n in wf["nodes"]:
        if n["type"] == "LipSyncMaskLowerFace":
            slot = next(o for o in n["outputs"] if o["name"] == "mask")
            out[str(n["id"])] = bool(slot.get("links"))
    return out


@pytest.mark.parametrize("path", sorted(WORKFLOWS.glob("*.json")), ids=lambda p: p.stem)
def test_hook_on_the_shipped_workflows(path):
    wf = json.loads(path.read_text())
    prompt = ws.to_api_prompt(wf, ws.all_definitions())
    mark_mask_readers(prompt)
    got = {k: n["inputs"][MASK_READ] for k, n in prompt.items() if n["class_type"] == "LipSyncMaskLowerFace"}
    assert got == _mask_links(wf)


def test_one_shipped_workflow_feeds_the_mask_to_composite_the_others_do_not():
    read = {p.stem: any(_mask_links(json.loads(p.read_text())).values()) for p in sorted(WORKFLOWS.glob("*.json"))}
    assert read.pop("02_runway_i2v_lipsync") is True
    assert not any(read.values()), read


def test_preview_of_a_large_frame_is_scaled_down_with_its_drawing(runs, clip):
    """A frame over PREVIEW_SIDE px is drawn at its size, then shown at 1024 px: what the small preview
    shows is the full-size drawing scaled (the mask tint, the boxes), not a blank frame."""
    track = runs["read"]["face_track"].frames(slice(0, 4))
    big = torch.nn.functional.interpolate(clip[:4].permute(0, 3, 1, 2), scale_factor=4.0, mode="nearest")
    big = big.permute(0, 2, 3, 1).contiguous()  # 4 x 1152 x 1440
    scaled = dataclasses.replace(track, boxes=track.boxes * 4, mouth=track.mouth * 4,
                                 transform=_scale_transform(track.transform, 4.0), frame_size=(1152, 1440),
                                 extras={**track.extras, "face_width": track.extras["face_width"] * 4})
    prev = face.preview(big, scaled, face.lower_face_mask(scaled), others=False)
    assert face.PREVIEW_SIDE == 1024 and prev.shape == (4, 819, 1024, 3)
    small = face.preview(clip[:4], track, face.lower_face_mask(track), others=False)  # 288 x 360, not scaled
    assert small.shape == (4, 288, 360, 3)
    # the same picture at about the same scale (1024 / 360 = 2.84 x): the tinted mask and drawn boxes agree
    down = torch.nn.functional.interpolate(prev.permute(0, 3, 1, 2), size=(288, 360), mode="area").permute(0, 2, 3, 1)
    assert float((down - small).abs().mean()) < 0.03
    assert float((down - clip[:4]).abs().mean()) > 2 * float((down - small).abs().mean())


def _scale_transform(t: torch.Tensor, k: float) -> torch.Tensor:
    """Frame -> crop transforms of frames scaled up k times (crop pixels unchanged)."""
    out = t.clone()
    out[:, :, :2] = t[:, :, :2] / k
    return out


def test_bank_crops_are_cut_from_runs_of_frames():
    from comfyui_lipsync.lipsync_models.mouth_bank import _runs

    assert _runs([0, 1, 2, 5, 6, 9], 2) == [(0, 2), (2, 3), (5, 7), (9, 10)]
    assert _runs([3], 32) == [(3, 4)] and _runs([], 32) == []
    assert _runs(list(range(70)), 32) == [(0, 32), (32, 64), (64, 70)]
