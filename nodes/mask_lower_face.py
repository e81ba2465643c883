"""MaskLowerFace: track the face, find the mouth, mask the lower face."""

from __future__ import annotations

import dataclasses
import logging

import torch

from ..lipsync_models import face as facelib
from ..lipsync_models.errors import InputError
from ..lipsync_models.types import FACE_TRACK, FaceTrack
from . import _comfy

log = logging.getLogger("comfyui_lipsync")

WHO = "MaskLowerFace"
CROP_SIZES = ["256", "96", "512"]
FACES = ["largest", "index", "point", "speaking"]
CHUNK = 64
PREVIEW_FRAMES = 4
NODE_ID = "LipSyncMaskLowerFace"
MASK_READ = "mask_read"


class MaskLowerFace:
    DESCRIPTION = (
        "Finds one face, follows that same face through the clip, locates the mouth and measures how far "
        "it is open, and outputs a feathered mask of the lower face (below the nose, cheek to cheek, "
        "down to the chin). With several faces, 'face' picks which one (largest, counted from the left, "
        "at a point, or the one speaking the audio); frames without that face are listed in the report, "
        "get an empty mask and are left unchanged by Composite. The face track carries per-frame boxes, "
        "mouth landmarks, the opening and the aligned mouth-crop transform that LipSyncInference and "
        "Composite reuse. Works without any model file (OpenCV Haar face and eye cascades + lip edges "
        "and colour); mediapipe's face mesh is an optional, more precise tracker. Holds, per 64 frames, "
        "one float copy for detection (the frames are never copied whole to the GPU), and the mask "
        "(B x H x W floats, 2 GB for 250 frames of 1080p) only when a node reads the mask output: "
        "Composite draws its own lower-face region per crop without it, so left unconnected the mask "
        "output is an empty stand-in and only the preview's 4 frames are drawn."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "detector": (list(facelib.DETECTORS), {
                    "default": "haar",
                    "tooltip": "haar: OpenCV's bundled face and eye cascades, lip edges and colour (always available). "
                               "mediapipe: face mesh, more precise; needs the optional install "
                               f"({facelib.MEDIAPIPE_INSTALL}).",
                }),
                "face": (FACES, {
                    "default": "largest",
                    "tooltip": "Which face to follow when there are several (chosen where it first appears, then "
                               "followed, even when the faces move or change size): the largest; 'index': "
                               "the 'face_index'-th from the left; 'point': the face at 'point'; 'speaking': "
                               "the face whose lips move with the audio (the video's own sound, else the "
                               "driver's line; each face is tracked and scored, so it takes longer).",
                }),
                "face_index": ("INT", {
                    "default": 0, "min": 0, "max": 16,
                    "tooltip": "With face = index: 0 is the leftmost face, 1 the next, and so on.",
                }),
                "manual_box": ("STRING", {
                    "default": "", "multiline": False,
                    "tooltip": "Optional face box 'x0,y0,x1,y1' in pixels (eyebrows to chin) for "
                               "stylised or partly hidden faces the detector misses. Empty = automatic.",
                }),
                "crop_size": (CROP_SIZES, {
                    "default": "256",
                    "tooltip": "Side of the aligned mouth-centred crop the generator works on "
                               "(96 for Wav2Lip-style models, 256 or 512 for larger ones).",
                }),
                "mask_expand": ("FLOAT", {
                    "default": 0.0, "min": -0.3, "max": 0.5, "step": 0.01,
                    "tooltip": "Grow (>0) or shrink (<0) the mask, in fractions of the face width.",
                }),
                "mask_feather": ("FLOAT", {
                    "default": 0.08, "min": 0.0, "max": 0.5, "step": 0.01,
                    "tooltip": "Width of the mask's soft edge, in fractions of the face width (0 = hard).",
                }),
            },
            "optional": {
                "images": ("IMAGE", {"tooltip": "Video frames [B,H,W,C] in which to find the face (or connect "
                                                "'video')."}),
                "video": ("VIDEO", {"tooltip": "ComfyUI VIDEO (Load Video, Create Video) instead of 'images': its "
                                               "frames, and its sound for face = speaking."}),
                "driver": ("LIPSYNC_DRIVER", {"tooltip": "The line (LoadAudioDriver), for face = speaking when the "
                                                         "frames come without sound."}),
                "point": ("STRING", {"default": "", "multiline": False,
                                     "tooltip": "With face = point: 'x,y' in pixels on the face to follow (the face "
                                                "containing it, else the nearest)."}),
            },
            # set on every queued prompt by mark_mask_readers (ComfyUI's on-prompt hook): whether a node
            # reads the mask output; part of the node's inputs, so its cache follows the wiring
            "hidden": {MASK_READ: "LIPSYNC_MASK_READ"},
        }

    RETURN_TYPES = ("MASK", FACE_TRACK, "IMAGE", "STRING")
    RETURN_NAMES = ("mask", "face_track", "preview", "report")
    OUTPUT_TOOLTIPS = (
        "Feathered lower-face mask [B,H,W], 1 where the mouth may change (0 in frames without the face). "
        "Built only when a node reads it (Composite needs it only to override its own lower-face mask).",
        "Per-frame face box, mouth landmarks, mouth opening and aligned-crop transform; found=False where "
        "the face is not in the frame.",
        "4 frames with the track (box green, mouth red, crop blue), the mask, and other faces (grey); frames "
        "over 1024 px are shown scaled down to 1024.",
        "What happened: detector, which face, the frames without it, opening range.",
    )
    FUNCTION = "run"
    CATEGORY = "lipsync/face"

    def run(self, images=None, detector="haar", face="largest", face_index=0, manual_box="", crop_size="256",
            mask_expand=0.0, mask_feather=0.08, video=None, driver=None, point="", mask_read=None):
        if face not in FACES:
            raise InputError(f"{WHO}: face must be one of {FACES}, got {face!r}.")
        if detector not in facelib.DETECTORS:
            raise InputError(f"{WHO}: detector must be one of {', '.join(facelib.DETECTORS)}, got {detector!r}.")
        if str(crop_size) not in CROP_SIZES:
            raise InputError(f"{WHO}: crop_size must be one of {CROP_SIZES}, got {crop_size!r}.")
        images, sound, fps = frames_and_sound(images, video)
        # tracked where they are: the detectors read a chunk at a time on the CPU, and a copy on the compute
        # device would be a second full-size batch there (5.8 GB for 250 frames of 1080p)
        frames = images
        manual = bool(str(manual_box or "").strip())
        if face == "speaking" and not manual:
            wave, fps = speaking_line(sound, fps, driver, frames.shape[0])
            track = facelib.track_speaking(
                frames, wave, fps, detector=detector, crop_size=int(crop_size), chunk=CHUNK,
                on_progress=_comfy.Progress(facelib.speaking_steps(frames.shape[0], 2, detector, CHUNK), WHO))
        else:
            track = facelib.track_faces(
                frames, detector=detector, face="largest" if face == "speaking" else face,
                face_index=int(face_index) if face == "index" else -1, point=point if face == "point" else None,
                manual_box=manual_box, crop_size=int(crop_size), chunk=CHUNK,
                on_progress=_comfy.Progress(facelib.progress_steps(frames.shape[0], detector, manual, CHUNK), WHO))
        track = on_device(track, _comfy.compute_device())
        mask, prev = mask_and_preview(images, track, float(mask_expand), float(mask_feather), mask_read)
        report = track.report
        log.info("%s: %s", WHO, report.replace("\n", "; "))
        return {"ui": {"images": _comfy.preview_images(prev), "text": [report]},
                "result": (mask, track, prev, report)}


def mask_and_preview(images, track, expand: float, feather: float, mask_read) -> tuple[torch.Tensor, torch.Tensor]:
    """The MASK output and the preview. ``mask_read`` False (the hook saw no reader of the mask): a
    stand-in of the right shape that holds no memory (zeros, stride 0), and the mask of the preview's
    frames only. True, or None (standalone, or a prompt the hook did not see): the whole mask."""
    out_dev = _comfy.intermediate_device()
    if mask_read is None or bool(mask_read):
        mask = facelib.lower_face_mask(track, expand=expand, feather=feather, device=out_dev)
        return mask, facelib.preview(images, track, mask, max_frames=PREVIEW_FRAMES).to(out_dev)
    shown = facelib.preview_indices(track.num_frames, PREVIEW_FRAMES)
    few = facelib.lower_face_mask(track.frames(shown), expand=expand, feather=feather, device=out_dev)
    prev = facelib.preview(images, track, few, max_frames=PREVIEW_FRAMES).to(out_dev)
    h, w = track.frame_size
    return torch.zeros((1, 1, 1), device=out_dev).expand(track.num_frames, h, w), prev


def on_device(track: FaceTrack, device) -> FaceTrack:
    """The track with its tensors (extras included) on ``device``, where the next nodes work."""
    move = lambda t: t.to(device) if isinstance(t, torch.Tensor) else t  # noqa: E731
    return dataclasses.replace(track, boxes=move(track.boxes), mouth=move(track.mouth), opening=move(track.opening),
                               transform=move(track.transform), found=move(track.found),
                               extras={k: move(v) for k, v in track.extras.items()})


def mask_readers(prompt: dict) -> dict[str, bool]:
    """For each MaskLowerFace in an API prompt ({node id: {"class_type", "inputs"}}), whether any node
    links to its mask output."""
    ours = {str(k) for k, n in prompt.items() if isinstance(n, dict) and n.get("class_type") == NODE_ID}
    slot = MaskLowerFace.RETURN_NAMES.index("mask")
    read = set()
    for n in prompt.values():
        inputs = n.get("inputs") if isinstance(n, dict) else None
        for v in (inputs.values() if isinstance(inputs, dict) else ()):
            if isinstance(v, (list, tuple)) and len(v) == 2 and str(v[0]) in ours and v[1] == slot:
                read.add(str(v[0]))
    return {k: k in read for k in ours}


def mark_mask_readers(prompt: dict) -> None:
    """ComfyUI on-prompt hook: set each MaskLowerFace's hidden input ``mask_read`` (see mask_readers).
    Being one of the node's inputs, it is in ComfyUI's cache key: connecting the mask later re-runs the
    node instead of handing the stand-in on."""
    read = mask_readers(prompt)
    for node_id, node in prompt.items():
        if str(node_id) in read and isinstance(node.get("inputs"), dict):
            node["inputs"][MASK_READ] = read[str(node_id)]


def frames_and_sound(images, video):
    """The frames to track (from 'images', else from 'video'), the video's sound and frame rate (None, None
    without a video). InputError when neither is connected or their frame counts differ."""
    if video is None:
        if images is None:
            raise InputError(f"{WHO}: connect 'images' (IMAGE) or 'video' (VIDEO); both are empty.")
        return images, None, None
    v_images, sound, fps = _comfy.video_components(video, who=WHO)
    if images is None:
        return v_images, sound, fps
    if int(images.shape[0]) != int(v_images.shape[0]):
        raise InputError(f"{WHO}: 'images' has {images.shape[0]} frames but 'video' {v_images.shape[0]}. Connect "
                         "one of them, or the same clip to both.")
    return images, sound, fps


def speaking_line(sound, fps, driver, n: int) -> tuple[torch.Tensor, float]:
    """The 16 kHz line and fps that face = speaking scores the faces against: the video's own sound, else
    the driver's."""
    from ..lipsync_models.audio import make_driver
    from ..lipsync_models.types import AudioDriver

    if sound is not None and fps:
        return make_driver(sound, fps, num_frames=n, who=WHO).waveform, float(fps)
    if driver is None:
        raise InputError(f"{WHO}: face 'speaking' needs the sound: connect 'video' with its audio, or 'driver' "
                         "(LoadAudioDriver). Or choose the face by 'largest', 'index' or 'point'.")
    if not isinstance(driver, AudioDriver):
        raise InputError(f"{WHO}: driver must come from LoadAudioDriver, got {type(driver).__name__}.")
    if driver.num_frames != n:
        raise InputError(f"{WHO}: the driver covers {driver.num_frames} frames but there are {n} images. Give "
                         "LoadAudioDriver the same frames.")
    return driver.waveform, float(driver.fps)


_comfy.on_prompt(mark_mask_readers)

NODE_CLASS_MAPPINGS = {NODE_ID: MaskLowerFace}
NODE_DISPLAY_NAME_MAPPINGS = {NODE_ID: "MaskLowerFace"}
