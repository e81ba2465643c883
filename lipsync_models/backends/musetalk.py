"""MuseTalk 1.5 (TMElyralab/MuseTalk, code MIT): one UNet step inpaints the lower half of a 256-px face.

The pipeline, step for step as the published inference (our own code; the classes come from diffusers
and transformers, the files from :mod:`.musetalk_files`):

1. The crop: the face box from landmarks with the nose at the crop's vertical middle and 10 px below
   the chin (:func:`crop_track`, from the pack's face track), resized to 256x256 (not square-preserving).
2. The image latent: the crop with its lower half zeroed and the unmasked reference crop, each scaled to
   -1..1, VAE-encoded and multiplied by the VAE's scaling factor (0.18215), stacked to 8 x 32 x 32.
   **Deterministic**: the latent distribution's mean is used where the reference draws a sample.
3. The audio: Whisper-tiny's feature extractor on 30-s segments of the 16 kHz line, its encoder's hidden
   states (all 5: embeddings and 4 layers) at 50 Hz, trimmed to the line's length; for each frame a window
   of 10 steps x 5 layers = 50 tokens of 384, plus the sinusoidal positional encoding.
4. One UNet pass at timestep 0 with the audio tokens as cross-attention context; VAE decode to 0..1.

Where this differs from the reference, on purpose:

* Timing: frame k's window starts 4 steps (80 ms) before step ``floor(k * 50 / fps)``, from the exact
  frame rate; the reference rounds the rate down (``int(fps)``: 29.97 fps drifts 3.3 %) and pads the left
  by ``2 * ceil(50 / int(fps))`` steps, which moves the window at rates under 25 fps. Both agree at 25 and
  50 fps.
* Frames whose face was not found are passed through (their own crop), in order; the reference drops
  them and shifts every later frame.
* The reference latent comes from one chosen frame (``lip_frame``, the node's input of that name: -1
  picks it as the warp generator picks its lip frame, the most closed mouth of usual width); -2 (library
  and parity script only; the node offers -1 and frame numbers) uses each frame's own crop, as the
  reference code does.
* Long clips: one batch of crops and of audio tokens at a time (the line's Whisper features are kept:
  about 0.4 MB a second); the models are cached (:func:`cached_models`) and released through ComfyUI's
  model management (nodes/_comfy.py). :mod:`.musetalk_stream` runs the same steps for the runner.
* Blending is left to Composite with the pack's lower-face mask (no face-parsing weights).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, replace
from typing import Callable

import torch

from .. import composite, generator
from ..checks import check_images
from ..errors import InputError
from ..types import MOUTH_POINTS, AudioDriver, FaceTrack
from .model_slot import ModelSlot, default_dtype
from .musetalk_files import MuseTalkFiles, find_files, load_unet, load_vae, load_whisper

log = logging.getLogger("comfyui_lipsync")

WHO = "LipSyncInference"
CROP = 256
"""Side of the face crop the UNet was trained on."""
EXTRA_MARGIN = 10
"""Pixels added below the chin (the reference's ``extra_margin`` for version 1.5), in frame pixels."""
AUDIO_RATE = 16000
WHISPER_FPS = 50
"""Whisper encoder steps per second (a 30-s segment gives 1500)."""
SEGMENT_S = 30
PAD_LEFT, PAD_RIGHT = 2, 2
"""Video frames of context each side (the reference's ``audio_padding_length_left/right``)."""
WINDOW = 2 * (PAD_LEFT + PAD_RIGHT + 1)
"""Whisper steps per frame window (10)."""
OFFSET = 2 * PAD_LEFT
"""Steps the window starts before the frame's own step (4 = 80 ms)."""
OWN_FRAME = -2
"""``lip_frame`` value: each frame's own crop as the reference latent (the reference code's choice)."""


# --- audio ---------------------------------------------------------------------------------------

def positional_encoding(length: int, dim: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(length, dim) sinusoidal encoding: sin at even, cos at odd channels, wavelengths 2 pi .. 10000 * 2 pi."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim, dtype=torch.float32)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)
    return pe.to(device=device, dtype=dtype)


def whisper_features(encoder, extractor, wave: torch.Tensor, device=None, dtype=torch.float32) -> torch.Tensor:
    """Whisper encoder hidden states of a 16 kHz mono line: (N, L, D), N = floor(seconds * 50) steps,
    L = encoder layers + 1 (5 for whisper-tiny), D = width (384). Encoded in 30-s segments."""
    x = wave.detach().to("cpu", torch.float32).reshape(-1).numpy()
    seg = SEGMENT_S * AUDIO_RATE
    feats = []
    for start in range(0, max(len(x), 1), seg):
        mel = extractor(x[start:start + seg], sampling_rate=AUDIO_RATE, return_tensors="pt").input_features
        with torch.inference_mode():
            hs = encoder(mel.to(device=device, dtype=dtype), output_hidden_states=True).hidden_states
        feats.append(torch.stack(hs, dim=2)[0])
    n = math.floor(len(x) / AUDIO_RATE * WHISPER_FPS)
    return torch.cat(feats, 0)[:n]


def window_starts(num_frames: int, fps: float, first: int = 0) -> torch.Tensor:
    """(F,) first Whisper step of the windows of frames ``first`` .. ``first + F - 1``:
    ``floor(k * 50 / fps) - 4`` (may be negative: steps before the line are zeros)."""
    k = torch.arange(int(first), int(first) + int(num_frames), dtype=torch.float64)
    return torch.floor(k * WHISPER_FPS / float(fps) + 1e-9).long() - OFFSET


def audio_windows(feats: torch.Tensor, num_frames: int, fps: float, first: int = 0) -> torch.Tensor:
    """(F, WINDOW * L, D) audio tokens of frames ``first`` .. ``first + F - 1`` from (N, L, D) features,
    zeros outside the line, with the positional encoding added. Token order: step-major (10 steps x L
    layers). A batch asks for its own frames only, so a long clip never holds every frame's tokens."""
    if not fps > 0:
        raise InputError(f"{WHO}: fps must be positive, got {fps}.")
    n, layers, d = feats.shape
    starts = window_starts(num_frames, fps, first)
    idx = starts[:, None] + torch.arange(WINDOW)[None]
    inside = (idx >= 0) & (idx < n)
    padded = torch.cat([feats, feats.new_zeros(1, layers, d)], 0)
    win = padded[torch.where(inside, idx, n).to(feats.device)]
    win = win.reshape(int(num_frames), WINDOW * layers, d)
    return win + positional_encoding(WINDOW * layers, d, feats.device, feats.dtype)


# --- crops ---------------------------------------------------------------------------------------

def crop_boxes(track: FaceTrack, margin: float = EXTRA_MARGIN) -> torch.Tensor:
    """(B, 4) x0, y0, x1, y1 frame-pixel boxes by the reference's rule: the face box's width, the chin
    (+ ``margin`` px, within the frame) at the bottom, the nose at the vertical middle (top >= 0)."""
    nose = track.mouth[:, MOUTH_POINTS.index("nose"), 1].double()
    chin = track.mouth[:, MOUTH_POINTS.index("chin"), 1].double()
    x0, _, x1, _ = track.boxes.double().unbind(-1)
    top = (2 * nose - chin).clamp_min(0.0)
    bottom = (chin + float(margin)).clamp_max(float(track.frame_size[0]))
    bottom = torch.maximum(bottom, top + 1.0)
    return torch.stack([x0, top, torch.maximum(x1, x0 + 1.0), bottom], -1)


def crop_track(track: FaceTrack, size: int = CROP, margin: float = EXTRA_MARGIN) -> FaceTrack:
    """The face track re-aimed at MuseTalk's crops: each box of :func:`crop_boxes` stretched onto
    ``size`` x ``size`` (pixel areas aligned, like an image resize). Composite pastes back with it."""
    x0, y0, x1, y1 = crop_boxes(track, margin).unbind(-1)
    sx, sy = size / (x1 - x0), size / (y1 - y0)
    m = torch.zeros(track.num_frames, 2, 3, dtype=torch.float64, device=track.boxes.device)
    m[:, 0, 0], m[:, 1, 1] = sx, sy
    m[:, 0, 2] = -x0 * sx + 0.5 * sx - 0.5
    m[:, 1, 2] = -y0 * sy + 0.5 * sy - 0.5
    return replace(track, transform=m.to(track.transform.dtype), crop_size=int(size))


# --- models --------------------------------------------------------------------------------------

@dataclass
class MuseTalkModels:
    """The three networks and the feature extractor, on one device in one dtype."""

    unet: torch.nn.Module
    vae: torch.nn.Module
    encoder: torch.nn.Module
    extractor: object
    device: torch.device
    dtype: torch.dtype

    @property
    def scaling(self) -> float:
        return float(self.vae.config.scaling_factor)


def load_models(files: MuseTalkFiles, device, dtype: torch.dtype | None = None, who: str = WHO) -> MuseTalkModels:
    device = torch.device(device)
    dtype = dtype or default_dtype(device)
    unet, vae = load_unet(files, who), load_vae(files, who)
    encoder, extractor = load_whisper(files, who)
    # the files hold float32: cast only when asked for another dtype (diffusers warns on every cast)
    mods = [m.to(device) if dtype == torch.float32 else m.to(device=device, dtype=dtype) for m in (unet, vae, encoder)]
    log.info("%s: MuseTalk 1.5 loaded from %s (%s, %s)", who, files.root, device, dtype)
    return MuseTalkModels(*mods, extractor, device, dtype)


_SLOT = ModelSlot("MuseTalk 1.5")


def _cache_key(files: MuseTalkFiles, device, dtype: torch.dtype | None) -> tuple:
    device = torch.device(device)
    return files.stamp(), str(device), dtype or default_dtype(device)


def cached_models(files: MuseTalkFiles, device, dtype: torch.dtype | None = None, who: str = WHO) -> MuseTalkModels:
    """The models of ``files`` on ``device``, loaded once; reloaded when a file changes. One set is kept
    (loading another set drops the previous one first, so two never sit in memory together)."""
    key = _cache_key(files, device, dtype)
    return _SLOT.get(key, lambda: load_models(files, key[1], key[2], who))


def is_cached(files: MuseTalkFiles, device, dtype: torch.dtype | None = None) -> bool:
    """True when :func:`cached_models` would return loaded models without reading a file."""
    return _SLOT.holds(_cache_key(files, device, dtype))


def release() -> bool:
    """Drop the cached models (see :meth:`.model_slot.ModelSlot.release`)."""
    return _SLOT.release(WHO)


# --- the network steps ---------------------------------------------------------------------------

def encode(models: MuseTalkModels, crops: torch.Tensor, half_mask: bool) -> torch.Tensor:
    """(B, 4, 32, 32) scaled latent means of (B, 3, 256, 256) RGB crops in 0..1; ``half_mask`` zeroes
    the lower half (rows 128..255) first."""
    # contiguous NCHW, as the reference feeds the VAE (crops arrive channels-last from crop_faces; the
    # other layout changes the convolutions' rounding)
    x = crops.to(device=models.device, dtype=torch.float32).contiguous()
    if half_mask:
        keep = (torch.arange(x.shape[-2], device=x.device) < x.shape[-2] // 2).to(x.dtype)
        x = x * keep[:, None]
    x = (x - 0.5) / 0.5
    with torch.inference_mode():
        latent = models.vae.encode(x.to(models.dtype)).latent_dist.mean
    return latent * models.scaling


def decode(models: MuseTalkModels, latents: torch.Tensor) -> torch.Tensor:
    """(B, 3, 256, 256) float32 RGB in 0..1 from (B, 4, 32, 32) scaled latents."""
    with torch.inference_mode():
        img = models.vae.decode((latents / models.scaling).to(models.dtype)).sample
    return (img.float() / 2 + 0.5).clamp(0, 1)


def generate(models: MuseTalkModels, crops: torch.Tensor, ref_latents: torch.Tensor,
             tokens: torch.Tensor) -> torch.Tensor:
    """One MuseTalk step: (B, 3, 256, 256) crops in 0..1, (B or 1, 4, 32, 32) reference latents,
    (B, 50, 384) audio tokens (positional encoding included) -> (B, 3, 256, 256) float32 in 0..1."""
    masked = encode(models, crops, half_mask=True)
    latents = torch.cat([masked, ref_latents.to(masked).expand_as(masked)], 1)
    t = torch.zeros(1, device=models.device, dtype=torch.long)
    with torch.inference_mode():
        pred = models.unet(latents.to(models.dtype), t,
                           encoder_hidden_states=tokens.to(models.device, models.dtype)).sample
    return decode(models, pred)


# --- the clip ------------------------------------------------------------------------------------

def reference_index(track: FaceTrack, lip_frame: int, who: str = WHO) -> int:
    """The frame giving the unmasked reference latent: ``lip_frame`` >= 0 as given, -1 the warp
    generator's choice (:func:`generator.reference_frame`), -2 each frame's own (returned as -2)."""
    lip_frame = int(lip_frame)
    if lip_frame == OWN_FRAME:
        return OWN_FRAME
    if lip_frame < -1 or lip_frame >= track.num_frames:
        raise InputError(f"{who}: lip_frame {lip_frame} is outside the clip (0..{track.num_frames - 1}); "
                         f"-1 picks the most closed frame, -2 uses each frame's own.")
    if lip_frame >= 0:
        return lip_frame
    m = track.transform.to(torch.float32)
    mouth = track.mouth.to(torch.float32) @ m[:, :, :2].transpose(1, 2) + m[:, None, :, 2]
    return generator.reference_frame(mouth, track.found)


def resolve_files(model, who: str = WHO) -> MuseTalkFiles:
    """A :class:`MuseTalkFiles` as given, or the one of a MuseTalk folder path."""
    return model if isinstance(model, MuseTalkFiles) else find_files(os.fspath(model), who=who)


def is_musetalk(model) -> bool:
    """True for a :class:`MuseTalkFiles` or a folder path (the other backends take files)."""
    return isinstance(model, MuseTalkFiles) or (isinstance(model, (str, os.PathLike)) and os.path.isdir(model))


def generate_frames(models: MuseTalkModels, crops: torch.Tensor, found: torch.Tensor, feats: torch.Tensor,
                    fps: float, first: int, ref_latent: torch.Tensor | None, strength: float = 1.0) -> torch.Tensor:
    """(n, 3, 256, 256) float32 0..1 of clip frames ``first``... from their (n, 3, 256, 256) crops:
    the found frames generated (``ref_latent`` None: each frame's own crop as the reference latent),
    moved ``strength`` of the way from their own crop; the others their own crop."""
    gen = crops.clone()
    found = found.to(crops.device).bool()
    if bool(found.any()):
        own = crops[found]
        tokens = audio_windows(feats, int(crops.shape[0]), fps, first)[found.to(feats.device)]
        r = encode(models, own, half_mask=False) if ref_latent is None else ref_latent
        new = generate(models, own, r, tokens)
        gen[found] = own + float(strength) * (new.to(own) - own)
    return gen.clamp(0, 1)


def reference_latent(models: MuseTalkModels, frame: torch.Tensor, track: FaceTrack) -> torch.Tensor:
    """(1, 4, 32, 32) unmasked latent of one frame (1, H, W, C) 0..1 cropped with its (1-frame) MuseTalk
    track (:func:`crop_track`)."""
    crop = composite.crop_faces(frame, track, device=models.device)
    return encode(models, crop[..., :3].permute(0, 3, 1, 2), half_mask=False)


def note(files: MuseTalkFiles, ref: int) -> str:
    """The report line naming the generator and where its reference latent came from."""
    return f"generator: MuseTalk 1.5 ({files.root}), reference latent " + (
        "from each frame's own crop" if ref == OWN_FRAME else f"from frame {ref}")


def lipsync_musetalk(images: torch.Tensor, track: FaceTrack, driver: AudioDriver, model,
                     strength: float = 1.0, batch_size: int = 8, device=None, lip_frame: int = -1,
                     dtype: torch.dtype | None = None, on_progress: Callable[[int, int], None] | None = None,
                     who: str = WHO) -> tuple[torch.Tensor, FaceTrack]:
    """MuseTalk crops for a clip: (B, 256, 256, 3) float32 0..1 on the images' device, and the face track
    aimed at them (for Composite). ``model``: a MuseTalk folder or :class:`MuseTalkFiles`. Frames whose face
    was not found get their own crop back. Holds one batch of crops (and of audio tokens) at a time."""
    check_images(images, who)
    files = resolve_files(model, who)
    device = torch.device(device) if device is not None else images.device
    models = cached_models(files, device, dtype, who)
    out_track = crop_track(track)
    feats = whisper_features(models.encoder, models.extractor, driver.waveform, device, models.dtype)
    ref = reference_index(track, lip_frame, who)
    ref_latent = None
    if ref != OWN_FRAME:
        log.info("%s: MuseTalk reference latent from frame %d", who, ref)
        ref_latent = reference_latent(models, images[ref:ref + 1], out_track.frames(slice(ref, ref + 1)))
    b = track.num_frames
    out = torch.empty((b, CROP, CROP, 3), dtype=torch.float32, device=images.device)
    total = math.ceil(b / batch_size)
    for i, start in enumerate(range(0, b, batch_size)):
        span = slice(start, min(start + batch_size, b))
        crops = composite.crop_faces(images[span], out_track.frames(span), device=device)
        crops = crops[..., :3].to(torch.float32).permute(0, 3, 1, 2)
        gen = generate_frames(models, crops, track.found[span], feats, driver.fps, start, ref_latent, strength)
        out[span] = gen.permute(0, 2, 3, 1).to(out.device)
        if on_progress is not None:
            on_progress(i + 1, total)
    out_track = replace(out_track, report="\n".join(x for x in (out_track.report, note(files, ref)) if x))
    return out, out_track
