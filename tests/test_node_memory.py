"""What the nodes hold (issue 15, item 2): MaskLowerFace builds its full-frame MASK only when a node
reads it; the ComfyUI on-prompt hook that tells it so, on the shipped workflows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from comfyui_lipsync.lipsync_models import face, media
from comfyui_lipsync.lipsync_models.errors import InputError
from comfyui_lipsync.nodes.mask_lower_face import MASK_READ, MaskLowerFace, mark_mask_readers, mask_readers

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
