"""A Wav2Lip-compatible generator: our own ``nn.Module`` for the published architecture.

The published generator (Prajwal et al., "A Lip Sync Expert Is All You Need", ACM MM 2020)
is a U-Net: a face encoder on a 6-channel 96x96 input (the target frame with its lower half
blanked, stacked on a reference frame of the same face), an audio encoder on one 1x80x16
log-mel window, and a face decoder that starts from the 512-d audio embedding and joins the
encoder features at each scale, ending in a sigmoid. Only layer shapes and parameter names
are taken from the publication, so that the public ``wav2lip.pth`` / ``wav2lip_gan.pth``
checkpoints load into it; the code is ours.

Parameter names (what the checkpoints hold)::

    face_encoder_blocks.<i>.<j>.conv_block.0.{weight,bias}       conv
    face_encoder_blocks.<i>.<j>.conv_block.1.{weight,bias,running_mean,running_var,num_batches_tracked}
    audio_encoder.<j>.conv_block.{0,1}.*
    face_decoder_blocks.<i>.<j>.conv_block.{0,1}.*                 (j = 0 of blocks 1.. is transposed)
    output_block.0.conv_block.{0,1}.*  output_block.1.{weight,bias}

Inputs are BGR (the published model was trained on OpenCV frames): :func:`run_wav2lip` takes
RGB crops and converts.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace

import torch
from torch import nn

from ..weights import ModelCache, match_state_dict, read_tensors
from ..checks import check_shape
from ..types import MOUTH_POINTS, FaceTrack

log = logging.getLogger("comfyui_lipsync")

FACE_SIZE = 96
"""Side of the square face crop the published model works on."""

# One row per layer: (in channels, out channels, kernel, stride, padding, residual).
# Each inner list is one ModuleList entry (an nn.Sequential) of the face encoder.
_FACE_ENCODER = [
    [(6, 16, 7, 1, 3, False)],                                                          # 96
    [(16, 32, 3, 2, 1, False), (32, 32, 3, 1, 1, True), (32, 32, 3, 1, 1, True)],       # 48
    [(32, 64, 3, 2, 1, False)] + [(64, 64, 3, 1, 1, True)] * 3,                         # 24
    [(64, 128, 3, 2, 1, False)] + [(128, 128, 3, 1, 1, True)] * 2,                      # 12
    [(128, 256, 3, 2, 1, False)] + [(256, 256, 3, 1, 1, True)] * 2,                     # 6
    [(256, 512, 3, 2, 1, False), (512, 512, 3, 1, 1, True)],                            # 3
    [(512, 512, 3, 1, 0, False), (512, 512, 1, 1, 0, False)],                           # 1
]

# The audio encoder is one flat nn.Sequential over an 80x16 mel window -> 512x1x1.
_AUDIO_ENCODER = [
    (1, 32, 3, 1, 1, False), (32, 32, 3, 1, 1, True), (32, 32, 3, 1, 1, True),        # 80x16
    (32, 64, 3, (3, 1), 1, False), (64, 64, 3, 1, 1, True), (64, 64, 3, 1, 1, True),  # 27x16
    (64, 128, 3, 3, 1, False), (128, 128, 3, 1, 1, True), (128, 128, 3, 1, 1, True),  # 9x6
    (128, 256, 3, (3, 2), 1, False), (256, 256, 3, 1, 1, True),                      # 3x3
    (256, 512, 3, 1, 0, False), (512, 512, 1, 1, 0, False),                          # 1x1
]

# Decoder: each block but the first opens with a transposed conv
# (in, out, kernel, stride, padding, output_padding), then residual 3x3 convs of width `out`.
_FACE_DECODER = [
    (None, 512, 0),                  # 1x1: a 1x1 conv 512 -> 512 on the audio embedding
    ((1024, 512, 3, 1, 0, 0), 512, 1),   # 3
    ((1024, 512, 3, 2, 1, 1), 512, 2),   # 6
    ((768, 384, 3, 2, 1, 1), 384, 2),    # 12
    ((512, 256, 3, 2, 1, 1), 256, 2),    # 24
    ((320, 128, 3, 2, 1, 1), 128, 2),    # 48
    ((160, 64, 3, 2, 1, 1), 64, 2),      # 96
]


class ConvUnit(nn.Module):
    """Convolution (plain or transposed) -> batch norm -> optional residual add -> ReLU.

    Attribute names match the checkpoints: ``conv_block`` is ``Sequential(conv, bn)``.
    After :meth:`fuse` the batch norm is folded into the convolution and becomes Identity.
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride, padding: int,
                 residual: bool = False, transpose: bool = False, output_padding: int = 0) -> None:
        super().__init__()
        if transpose:
            conv = nn.ConvTranspose2d(cin, cout, kernel, stride, padding, output_padding)
        else:
            conv = nn.Conv2d(cin, cout, kernel, stride, padding)
        self.conv_block = nn.Sequential(conv, nn.BatchNorm2d(cout))
        self.residual = residual
        self.transpose = transpose

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_block(x)
        if self.residual:
            y = y + x
        return torch.relu(y)

    @torch.no_grad()
    def fuse(self) -> None:
        """Fold the batch norm's running statistics into the convolution (inference only)."""
        conv, bn = self.conv_block[0], self.conv_block[1]
        if not isinstance(bn, nn.BatchNorm2d):
            return
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        shift = bn.bias - bn.running_mean * scale
        w = conv.weight
        if self.transpose:  # ConvTranspose2d weight: (in, out, kh, kw)
            conv.weight.copy_(w * scale.view(1, -1, 1, 1))
        else:               # Conv2d weight: (out, in, kh, kw)
            conv.weight.copy_(w * scale.view(-1, 1, 1, 1))
        conv.bias.copy_(conv.bias * scale + shift)
        self.conv_block[1] = nn.Identity()


def _seq(rows) -> nn.Sequential:
    return nn.Sequential(*[ConvUnit(ci, co, k, s, p, residual=r) for ci, co, k, s, p, r in rows])


class Wav2LipGenerator(nn.Module):
    """The Wav2Lip generator.

    forward(mel, faces): mel (B, 1, 80, 16) log-mel windows; faces (B, 6, 96, 96) in 0..1,
    BGR, channels 0-2 the target frame with its lower half zeroed, 3-5 the reference frame.
    Returns (B, 3, 96, 96) BGR in 0..1.
    """

    def __init__(self) -> None:
        super().__init__()
        self.face_encoder_blocks = nn.ModuleList([_seq(rows) for rows in _FACE_ENCODER])
        self.audio_encoder = _seq(_AUDIO_ENCODER)
        blocks = []
        for opening, width, n_res in _FACE_DECODER:
            if opening is None:
                layers = [ConvUnit(512, 512, 1, 1, 0)]
            else:
                ci, co, k, s, p, op = opening
                layers = [ConvUnit(ci, co, k, s, p, transpose=True, output_padding=op)]
            layers += [ConvUnit(width, width, 3, 1, 1, residual=True) for _ in range(n_res)]
            blocks.append(nn.Sequential(*layers))
        self.face_decoder_blocks = nn.ModuleList(blocks)
        self.output_block = nn.Sequential(ConvUnit(80, 32, 3, 1, 1), nn.Conv2d(32, 3, 1, 1, 0), nn.Sigmoid())

    def forward(self, mel: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        skips = []
        x = faces
        for block in self.face_encoder_blocks:
            x = block(x)
            skips.append(x)
        x = self.audio_encoder(mel)  # (B, 512, 1, 1)
        for block in self.face_decoder_blocks:
            x = torch.cat((block(x), skips.pop()), dim=1)
        return self.output_block(x)

    def fuse(self) -> "Wav2LipGenerator":
        """Fold every batch norm into its convolution (for inference; changes state_dict keys)."""
        for m in self.modules():
            if isinstance(m, ConvUnit):
                m.fuse()
        return self


def face_input(crops: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
    """Build the 6-channel input from RGB face crops.

    crops: (B, 3, 96, 96) RGB in 0..1; reference: same shape (default: the crops themselves,
    as the published inference does). Returns (B, 6, 96, 96) BGR: the crop with its lower half
    zeroed, then the reference.
    """
    check_shape(crops, "B 3 H W", "Wav2Lip", "crops")
    if reference is None:
        reference = crops
    masked = crops.clone()
    masked[:, :, crops.shape[2] // 2:] = 0
    return torch.cat((masked.flip(1), reference.flip(1)), dim=1)


def run_wav2lip(model: Wav2LipGenerator, crops: torch.Tensor, mel: torch.Tensor,
                reference: torch.Tensor | None = None) -> torch.Tensor:
    """Generate mouths for one batch.

    crops: (B, 3, 96, 96) RGB in 0..1 on the model's device; mel: (B, 80, 16) mel windows.
    Returns (B, 3, 96, 96) RGB in 0..1 (float32).
    """
    check_shape(mel, "B 80 16", "Wav2Lip", "mel", B=crops.shape[0])
    p = next(model.parameters())
    faces = face_input(crops.to(p), None if reference is None else reference.to(p))
    faces = faces.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        out = model(mel.to(p).unsqueeze(1), faces)
    return out.flip(1).float().contiguous()


# --- loading ---------------------------------------------------------------------------------

def build_from_state(state: dict[str, torch.Tensor], name: str = "checkpoint", who: str = "LipSyncInference") -> Wav2LipGenerator:
    """A fused, channels-last, eval-mode generator from a state dict (keys as published, no
    ``module.`` prefix). Raises CheckpointError listing missing/unexpected keys and wrong shapes."""
    model = Wav2LipGenerator()
    match_state_dict(model, state, name, who)
    model.eval().fuse()
    return model.to(memory_format=torch.channels_last)


def load_wav2lip(path: str, who: str = "LipSyncInference") -> Wav2LipGenerator:
    """Load a Wav2Lip checkpoint (``.safetensors`` or weights-only ``.pth``) on the CPU."""
    state = read_tensors(path, who)
    model = build_from_state(state, os.path.basename(path), who)
    log.info("%s: loaded Wav2Lip generator from %s", who, os.path.basename(path))
    return model


_CACHE = ModelCache()


def cached_wav2lip(path: str, device: torch.device, who: str = "LipSyncInference") -> Wav2LipGenerator:
    """The model of ``path`` on ``device``, loaded once and reloaded when the file changes."""
    return _CACHE.get(path, lambda p: load_wav2lip(p, who), device)


def release() -> bool:
    """Drop the cached Wav2Lip models (ComfyUI's model management calls this through nodes/_comfy.py
    when it unloads models or needs the memory). True when there was something to drop."""
    held = _CACHE.clear()
    if held:
        log.info("LipSyncInference: Wav2Lip models released")
    return held


# --- face crops ------------------------------------------------------------------------------

PAD_BOTTOM = 0.06
"""Room below the chin, in face-box widths (the published inference pads the detector box by
10 px at the bottom, about this much for the faces it was trained on)."""


def face_track(track: FaceTrack, size: int = FACE_SIZE, pad_bottom: float = PAD_BOTTOM) -> FaceTrack:
    """The face track re-aimed at Wav2Lip's square face crop.

    The crop spans the face box from its top edge down to just below the chin (the tracked
    chin landmark plus ``pad_bottom`` box widths), made square around its centre, without
    rotation, at ``size`` px. Returns a copy of ``track`` with that ``transform`` and
    ``crop_size``, which Composite uses to paste the generated faces back.
    """
    x0, y0, x1, y1 = track.boxes.to(torch.float64).unbind(-1)
    bw = (x1 - x0).clamp_min(1.0)
    chin_y = track.mouth[:, MOUTH_POINTS.index("chin"), 1].to(torch.float64)
    y1 = torch.maximum(y1, chin_y + pad_bottom * bw)
    side = torch.maximum(bw, y1 - y0).clamp_min(1.0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    s = size / side
    half = size / 2.0 - 0.5
    m = torch.zeros(track.num_frames, 2, 3, dtype=torch.float64, device=track.boxes.device)
    m[:, 0, 0] = s
    m[:, 1, 1] = s
    m[:, 0, 2] = half - s * cx
    m[:, 1, 2] = half - s * cy
    return replace(track, transform=m.to(track.transform.dtype), crop_size=int(size))
