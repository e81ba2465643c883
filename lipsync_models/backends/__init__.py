"""Generator backends behind LipSyncInference, and the clip-level driver that runs them.

* ``"built-in (no weights)"``: :mod:`..generator`, which reshapes the mouth of aligned crops
  from the viseme track's mouth parameters.
* a checkpoint file: :mod:`.wav2lip`, the Wav2Lip-compatible network, which redraws the lower
  half of a 96-px face crop from the driver's mel windows.

:func:`lipsync` checks that every input covers the same frames, crops the faces, runs the
chosen backend batch by batch on the compute device and returns the generated crops together
with the face track that Composite needs to paste them back.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from typing import Callable

import torch

from .. import composite, generator
from ..checks import check_images
from ..errors import InputError, LengthMismatchError
from ..types import AudioDriver, FaceTrack, VisemeTrack

log = logging.getLogger("comfyui_lipsync")

WHO = "LipSyncInference"
BUILTIN = "built-in (no weights)"
"""Name of the weight-free generator in the model list."""


def check_lengths(images: torch.Tensor, track: FaceTrack, visemes: VisemeTrack, driver: AudioDriver,
                  who: str = WHO) -> int:
    """All inputs must cover the same frames; returns that count or raises LengthMismatchError
    (frame counts) / InputError (frame rates) naming every value."""
    counts = {"images": int(images.shape[0]), "face_track": track.num_frames,
              "visemes": visemes.num_frames, "driver": driver.num_frames}
    if len(set(counts.values())) != 1:
        listing = ", ".join(f"{k} {v}" for k, v in counts.items())
        raise LengthMismatchError(
            f"{who}: the inputs cover different numbers of frames ({listing}). Give LoadAudioDriver the "
            f"video's frame count and fps (connect the images to it), and track the same frames in "
            f"MaskLowerFace.")
    if abs(visemes.fps - driver.fps) > 1e-3:
        raise InputError(
            f"{who}: the viseme track is at {visemes.fps:g} fps but the audio driver at {driver.fps:g} fps. "
            f"Make both from the same driver.")
    return counts["images"]


def _frames(track: FaceTrack, start: int, stop: int) -> FaceTrack:
    """The part of a face track that covers frames ``start:stop``."""
    return replace(track, boxes=track.boxes[start:stop], mouth=track.mouth[start:stop],
                   opening=track.opening[start:stop], transform=track.transform[start:stop],
                   found=track.found[start:stop])


def lipsync(images: torch.Tensor, track: FaceTrack, visemes: VisemeTrack, driver: AudioDriver,
            model: str | None = None, strength: float = 1.0, batch_size: int = 16,
            device: torch.device | None = None, lip_frame: int = -1,
            on_progress: Callable[[int, int], None] | None = None,
            who: str = WHO) -> tuple[torch.Tensor, FaceTrack]:
    """Generate lip-synced aligned crops for a clip.

    images:  (B, H, W, C) float 0..1 frames (IMAGE), C 3 or 4.
    track:   FaceTrack of these frames (MaskLowerFace).
    visemes: VisemeTrack of B frames (its ``params`` drive the built-in generator).
    driver:  AudioDriver of B frames (its ``mel`` windows drive Wav2Lip).
    model:   None or :data:`BUILTIN` for the built-in generator, else a checkpoint path.
    strength: 0 = the original mouth, 1 = the full generated motion.
    batch_size: frames per batch on ``device``.
    lip_frame: built-in generator: the frame whose lips (texture, colour) the new mouths wear;
             -1 = :func:`generator.reference_frame` (the most closed frame of usual width).
    Returns (crops (B, S, S, 3) float32 0..1 on the images' device, face track for Composite):
    S is the track's crop size for the built-in generator and 96 for Wav2Lip, whose track
    carries the face-crop transform.
    """
    check_images(images, who)
    b = check_lengths(images, track, visemes, driver, who)
    if not 0.0 <= float(strength) <= 2.0:
        raise InputError(f"{who}: strength must be between 0 and 2, got {strength}.")
    batch_size = int(batch_size)
    if batch_size < 1:
        raise InputError(f"{who}: batch_size must be at least 1, got {batch_size}.")
    device = torch.device(device) if device is not None else images.device
    builtin = model is None or model == BUILTIN
    total = math.ceil(b / batch_size)
    if builtin:
        out_track = track
        net = None
    else:
        from . import wav2lip

        net = wav2lip.cached_wav2lip(model, device, who)
        out_track = wav2lip.face_track(track)

    s = out_track.crop_size
    out = torch.empty((b, s, s, 3), dtype=torch.float32, device=images.device)
    if builtin:
        m = out_track.transform.to(torch.float32)
        mouth_crop = out_track.mouth.to(torch.float32) @ m[:, :, :2].transpose(1, 2) + m[:, None, :, 2]
        rest = generator.mouth_rest(mouth_crop)
        # the lips are re-rendered with the clip's own lip texture, from its most closed frame
        if int(lip_frame) >= b:
            raise InputError(f"{who}: lip_frame {int(lip_frame)} is past the clip's last frame ({b - 1}); "
                             "-1 picks the most closed frame.")
        ref = int(lip_frame) if int(lip_frame) >= 0 else generator.reference_frame(mouth_crop, out_track.found)
        log.info("%s: lips from frame %d", who, ref)
        ref_crop = composite.crop_faces(images[ref:ref + 1], _frames(out_track, ref, ref + 1), device=device)
        rest = replace(rest, ref_crop=ref_crop[0, ..., :3].to(torch.float32).permute(2, 0, 1),
                       ref_mouth=mouth_crop[ref].to(device))
        params = visemes.params
    for i, start in enumerate(range(0, b, batch_size)):
        stop = min(start + batch_size, b)
        # crop one batch at a time: a long clip never holds a second full set of crops
        crops = composite.crop_faces(images[start:stop], _frames(out_track, start, stop), device=device)
        crops = crops[..., :3].to(torch.float32).permute(0, 3, 1, 2)
        if builtin:
            gen = generator.generate(crops, mouth_crop[start:stop].to(device), params[start:stop].to(device),
                                     strength=float(strength), rest=rest)
        else:
            gen = wav2lip.run_wav2lip(net, crops, driver.mel[start:stop].to(device))
            if strength != 1.0:
                gen = crops + float(strength) * (gen - crops)
        out[start:stop] = gen.clamp(0, 1).permute(0, 2, 3, 1).to(out.device)
        if on_progress is not None:
            on_progress(i + 1, total)
    return out, out_track
