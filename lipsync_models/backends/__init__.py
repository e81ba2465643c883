"""Generator backends behind LipSyncInference, and the clip-level driver that runs them.

* ``"built-in (no weights)"`` (the default): the clip's own mouths (:mod:`..mouth_bank`) whenever
  the clip shows enough distinct mouths, else the warp generator.
* ``"built-in: clip's own mouths"``: :mod:`..mouth_bank` (Video Rewrite): each frame wears the clip's
  own lower face whose mouth best matches the viseme track, aligned and colour-matched; frames asking
  for a wider mouth than the clip ever shows go to the warp generator.
* ``"built-in: warp (drawn lips)"``: :mod:`..generator`, which reshapes the mouth of aligned crops
  from the viseme track's mouth parameters and draws the lips and inner mouth; for stills and
  closed-mouth clips.
* a checkpoint file: :mod:`.wav2lip`, the Wav2Lip-compatible network, which redraws the lower
  half of a 96-px face crop from the driver's mel windows.
* a MuseTalk 1.5 folder (or :class:`.musetalk_files.MuseTalkFiles`): :mod:`.musetalk`, which inpaints
  the lower half of a 256-px face crop in one UNet step from Whisper features of the line.

:func:`lipsync` checks that every input covers the same frames, crops the faces, runs the
chosen backend batch by batch on the compute device and returns the generated crops together
with the face track that Composite needs to paste them back.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from typing import Callable

import numpy as np
import torch

from .. import composite, generator, mouth_bank
from ..checks import check_images
from ..errors import InputError, LengthMismatchError
from ..types import AudioDriver, FaceTrack, VisemeTrack, without_own_pixels
from . import musetalk

log = logging.getLogger("comfyui_lipsync")

WHO = "LipSyncInference"
BUILTIN = "built-in (no weights)"
"""Name of the default weight-free generator in the model list: the clip's own mouths where the clip
offers enough of them, else the warp generator."""
BANK = "built-in: clip's own mouths"
WARP = "built-in: warp (drawn lips)"
BUILTINS = (BUILTIN, BANK, WARP)
"""The weight-free generators, in the order of the node's model list."""


_SOURCES = {"face_track": (FaceTrack, "MaskLowerFace"), "visemes": (VisemeTrack, "MapVisemes"),
            "driver": (AudioDriver, "LoadAudioDriver")}
"""Each track input: its type and the node that makes it."""


def _check_types(track, visemes, driver, who: str) -> None:
    """InputError naming the input when a socket carries something else than its node's output."""
    for name, value in (("face_track", track), ("visemes", visemes), ("driver", driver)):
        cls, node = _SOURCES[name]
        if not isinstance(value, cls):
            raise InputError(f"{who}: {name} must be a {cls.__name__}, got {type(value).__name__}. "
                             f"Connect the {name} output of {node} to it.")


def check_lengths(images: torch.Tensor, track: FaceTrack, visemes: VisemeTrack, driver: AudioDriver,
                  who: str = WHO) -> int:
    """All inputs must cover the same frames; returns that count or raises LengthMismatchError
    (frame counts) / InputError (frame rates, or an input of the wrong type) naming every value."""
    _check_types(track, visemes, driver, who)
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


def _warp_setup(images: torch.Tensor, track: FaceTrack, lip_frame: int, device, who: str):
    """The warp generator's per-clip inputs: the mouth landmarks in crop pixels and the rest mouth
    wearing the lips of ``lip_frame`` (-1: :func:`generator.reference_frame`)."""
    b = track.num_frames
    m = track.transform.to(torch.float32)
    mouth_crop = track.mouth.to(torch.float32) @ m[:, :, :2].transpose(1, 2) + m[:, None, :, 2]
    rest = generator.mouth_rest(mouth_crop)
    # the lips are re-rendered with the clip's own lip texture, from its most closed frame
    if int(lip_frame) >= b:
        raise InputError(f"{who}: lip_frame {int(lip_frame)} is past the clip's last frame ({b - 1}); "
                         "-1 picks the most closed frame.")
    ref = int(lip_frame) if int(lip_frame) >= 0 else generator.reference_frame(mouth_crop, track.found)
    log.info("%s: lips from frame %d", who, ref)
    ref_crop = composite.crop_faces(images[ref:ref + 1], track.frames(slice(ref, ref + 1)), device=device)
    rest = replace(rest, ref_crop=ref_crop[0, ..., :3].to(torch.float32).permute(2, 0, 1),
                   ref_mouth=mouth_crop[ref].to(device))
    return mouth_crop, rest


def _bank_plan(images, track, visemes, model, strength, device, who):
    """The clip's-own-mouths plan for the built-in models (None: the warp generator makes every frame),
    and the note for the report."""
    if model not in (None, BUILTIN, BANK):
        return None, f"generator: {WARP}"
    plan = mouth_bank.plan(images, track, visemes.params, strength=strength, device=device, fps=visemes.fps)
    note = f"generator: {plan.selection.note}"
    log.info("%s: %s", who, note)
    return (plan if plan.selection.use_bank else None), note


def own_crops(frames: torch.Tensor, track: FaceTrack, start: int, plan: "mouth_bank.Plan | None" = None,
              device: torch.device | str | None = None) -> torch.Tensor:
    """The aligned crops (n, 3, S, S) float32 of ``frames`` (n, H, W, C) float 0..1, or uint8 (read as
    ``x / 255``, as their float copy would give), clip frames ``start``... with
    ``track`` their part of the face track, as :func:`generate_batch` reads them. Under the clip's own
    mouths (``plan``) a frame that wears a chosen mouth and is not warped never reads its own crop, so
    only the others are cut (the rest stay 0; each cut one as cutting all ``n`` gives it): on a 1080p
    clip cutting every frame was a tenth of the runner's CPU time."""
    rows = None
    if plan is not None:
        n, sel = int(frames.shape[0]), plan.selection
        rows = np.nonzero((sel.source[start:start + n] < 0) | np.asarray(sel.warp[start:start + n], bool))[0]
    crops = composite.crop_faces(frames, track, device=device, rows=rows, unit=True)
    return crops[..., :3].to(torch.float32).permute(0, 3, 1, 2)


def generate_batch(crops: torch.Tensor, start: int, visemes: VisemeTrack, driver: AudioDriver, strength: float,
                   net=None, plan: "mouth_bank.Plan | None" = None, warp_state=None) -> torch.Tensor:
    """The generated crops (n, 3, S, S) of frames ``start:start + n`` from their own aligned crops
    ``crops`` (n, 3, S, S) float32: a Wav2Lip ``net`` from the driver's mel windows; else the clip's own
    mouths (``plan``), the frames asking for more than the clip shows warped; else the warp generator.
    ``warp_state``: (mouth landmarks in crop pixels, MouthRest) of :func:`_warp_setup`. The one dispatch
    of :func:`lipsync` and of the streamed runner."""
    stop = start + int(crops.shape[0])
    dev = crops.device
    if net is not None:
        from . import wav2lip

        gen = wav2lip.run_wav2lip(net, crops, driver.mel[start:stop].to(dev))
        return gen if strength == 1.0 else crops + float(strength) * (gen - crops)
    params = visemes.params[start:stop].to(dev)
    if plan is None:
        mouth_crop, rest = warp_state
        return generator.generate(crops, mouth_crop[start:stop].to(dev), params, strength=float(strength), rest=rest)
    gen = mouth_bank.chosen_crops(plan, start, stop, crops)
    warp = torch.as_tensor(plan.selection.warp[start:stop], device=dev)
    if bool(warp.any()):
        mouth_crop, rest = warp_state
        gen[warp] = generator.generate(crops[warp], mouth_crop[start:stop].to(dev)[warp], params[warp],
                                       strength=float(strength), rest=rest)
    return gen


def lipsync(images: torch.Tensor, track: FaceTrack, visemes: VisemeTrack, driver: AudioDriver,
            model: str | None = None, strength: float = 1.0, batch_size: int = 16,
            device: torch.device | None = None, lip_frame: int = -1,
            on_progress: Callable[[int, int], None] | None = None,
            who: str = WHO) -> tuple[torch.Tensor, FaceTrack]:
    """Generate lip-synced aligned crops for a clip.

    images:  (B, H, W, C) float 0..1 frames (IMAGE), C 3 or 4.
    track:   FaceTrack of these frames (MaskLowerFace).
    visemes: VisemeTrack of B frames (its ``params`` drive the built-in generators).
    driver:  AudioDriver of B frames (its ``mel`` windows drive Wav2Lip).
    model:   None or one of :data:`BUILTINS`, else a checkpoint path.
    strength: 0 = the original mouth, 1 = the full generated motion.
    batch_size: frames per batch on ``device``.
    lip_frame: warp generator: the frame whose lips (texture, colour) the new mouths wear;
             -1 = :func:`generator.reference_frame` (the most closed frame of usual width).
    Returns (crops (B, S, S, 3) float32 0..1 on the images' device, face track for Composite):
    S is the track's crop size for the built-in generators and 96 for Wav2Lip, whose track
    carries the face-crop transform. The track's report gains a line naming the generator used
    (and, for the clip's own mouths, how many frames it took and warped).
    """
    check_images(images, who)
    b = check_lengths(images, track, visemes, driver, who)
    track = without_own_pixels(track)  # a track LipSyncInference gave: its crops are not these
    if not 0.0 <= float(strength) <= 2.0:
        raise InputError(f"{who}: strength must be between 0 and 2, got {strength}.")
    batch_size = int(batch_size)
    if batch_size < 1:
        raise InputError(f"{who}: batch_size must be at least 1, got {batch_size}.")
    device = torch.device(device) if device is not None else images.device
    if model is not None and musetalk.is_musetalk(model):  # a MuseTalk 1.5 folder (.musetalk)
        return musetalk.lipsync_musetalk(images, track, driver, model, strength=float(strength),
                                         batch_size=batch_size, device=device, lip_frame=lip_frame,
                                         on_progress=on_progress, who=who)
    builtin = model is None or model in BUILTINS
    plan, net, note, warp_state = None, None, "", None
    out_track = track
    if builtin:
        plan, note = _bank_plan(images, track, visemes, model, strength, device, who)
        if plan is None or bool(plan.selection.warp.any()):
            warp_state = _warp_setup(images, track, lip_frame, device, who)
    else:
        from . import wav2lip

        net = wav2lip.cached_wav2lip(model, device, who)
        out_track = wav2lip.face_track(track)
    s = out_track.crop_size
    out = torch.empty((b, s, s, 3), dtype=torch.float32, device=images.device)
    total = math.ceil(b / batch_size)
    for i, start in enumerate(range(0, b, batch_size)):
        stop = min(start + batch_size, b)
        # crop one batch at a time: a long clip never holds a second full set of crops
        crops = own_crops(images[start:stop], out_track.frames(slice(start, stop)), start, plan, device)
        gen = generate_batch(crops, start, visemes, driver, strength, net=net, plan=plan,
                             warp_state=warp_state)
        out[start:stop] = gen.clamp(0, 1).permute(0, 2, 3, 1).to(out.device)
        if on_progress is not None:
            on_progress(i + 1, total)
    if plan is not None:  # the mouths shown are the chosen frames': so is the track Composite passes on
        out_track = mouth_bank.output_track(out_track, plan)
    if note:
        out_track = replace(out_track, report="\n".join(x for x in (out_track.report, note) if x))
    return out, out_track
