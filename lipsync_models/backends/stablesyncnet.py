"""LatentSync's StableSyncNet (``stable_syncnet.pt``, LatentSync 1.6), an optional sync judge.

Written from reading bytedance/LatentSync's ``latentsync/models/stable_syncnet.py`` and
``configs/syncnet/syncnet_16_pixel_attn.yaml``; the parameter names match that checkpoint's
state-dict keys so it loads strictly. Two down-sampling encoders of the same design:

* visual: 16 frames of the LOWER HALF of the 256x256 aligned face, RGB in [-1, 1], stacked on
  channels: (B, 48, 128, 256);
* audio: the Wav2Lip/LatentSync log-mel (80 bands, 80 frames/s, ``audio.log_mel``) window of
  those 16 frames at 25 fps, 52 mel frames: (B, 1, 80, 52).

Each ends as a (B, C, 1, 1) map, flattened and L2-normalised; the sync score is the cosine
similarity of the two embeddings (LatentSync trains it towards 1 for in-sync pairs).

Encoder (``DownEncoder``): a 3x3 conv in, then per level a residual block (GroupNorm(32) -> SiLU
-> conv3x3 -> GroupNorm -> SiLU -> conv3x3, a 1x1 shortcut when the width changes, then a 3x3
conv with the level's stride on a zero-padded map, padding right/bottom, both sides on a stride-1
axis) and, where the config asks, an attention block (GroupNorm -> 1x1 conv -> tokens ->
LayerNorm -> 8-head self-attention with biased q/k/v -> + ; LayerNorm -> GEGLU feed-forward x4 ->
+ ; 1x1 conv -> + the block's input); GroupNorm and ReLU out.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from ..weights import match_state_dict, read_tensors, strip_prefix
from .model_slot import ModelSlot
from ..errors import CheckpointError, InputError

WHO = "SyncScore"
NUM_FRAMES = 16
MEL_FRAMES = 52
"""Mel frames per window: ceil(16 frames / 25 fps * 80 mel frames/s) (LatentSync's ``ceil(16 / 5 * 16)``)."""

CONFIG_16_PIXEL_ATTN = {
    "audio_encoder": {"in_channels": 1, "block_out_channels": [32, 64, 128, 256, 512, 1024, 2048],
                      "downsample_factors": [[2, 1], 2, 2, 1, 2, 2, [2, 3]], "attn_blocks": [0, 0, 0, 1, 1, 0, 0]},
    "visual_encoder": {"in_channels": 48, "block_out_channels": [64, 128, 256, 256, 512, 1024, 2048, 2048],
                       "downsample_factors": [[1, 2], 2, 2, 2, 2, 2, 2, 2], "attn_blocks": [0, 0, 0, 0, 1, 1, 0, 0]},
}
"""The LatentSync 1.6 ``stable_syncnet.pt`` configuration (syncnet_16_pixel_attn.yaml)."""


def _pair(f) -> tuple[int, int]:
    return (int(f[0]), int(f[1])) if isinstance(f, (list, tuple)) else (int(f), int(f))


class ResBlock(nn.Module):
    """Pre-activation residual block, then an optional strided 3x3 down-sampling conv."""

    def __init__(self, cin: int, cout: int, down, groups: int = 32):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=1e-6)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, cout, eps=1e-6)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None
        sh, sw = _pair(down)
        self.downsample_conv = None if (sh, sw) == (1, 1) else nn.Conv2d(cout, cout, 3, stride=(sh, sw))
        # F.pad order (left, right, top, bottom): one extra row/column after, both sides on a stride-1 axis
        self.pad = (1 if sw == 1 else 0, 1, 1 if sh == 1 else 0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        h = h + (x if self.conv_shortcut is None else self.conv_shortcut(x))
        if self.downsample_conv is not None:
            h = self.downsample_conv(F.pad(h, self.pad))
        return h


class SelfAttention(nn.Module):
    """Multi-head self-attention over tokens (B, N, C); q/k/v with bias, ``to_out.0`` out."""

    def __init__(self, dim: int, heads: int = 8):
        super().__init__()
        self.heads = heads
        self.to_q, self.to_k, self.to_v = (nn.Linear(dim, dim) for _ in range(3))
        self.to_out = nn.ModuleList([nn.Linear(dim, dim), nn.Dropout(0.0)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = (f(x).reshape(b, n, self.heads, c // self.heads).transpose(1, 2)
                   for f in (self.to_q, self.to_k, self.to_v))
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c)
        return self.to_out[0](out)


class GegluProj(nn.Module):
    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.proj = nn.Linear(dim, 2 * inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, gate = self.proj(x).chunk(2, dim=-1)
        return h * F.gelu(gate)


class FeedForward(nn.Module):
    """GEGLU feed-forward, 4x wide: ``net.0.proj`` (dim -> 2 * 4 dim), ``net.2`` (4 dim -> dim)."""

    def __init__(self, dim: int):
        super().__init__()
        self.net = nn.ModuleList([GegluProj(dim, 4 * dim), nn.Dropout(0.0), nn.Linear(4 * dim, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net[2](self.net[0](x))


class AttentionBlock(nn.Module):
    """Self-attention and feed-forward over the map's positions, residual around the whole block."""

    def __init__(self, dim: int, groups: int = 32):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, dim, eps=1e-6)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim)
        self.conv_in = nn.Conv2d(dim, dim, 1)
        self.conv_out = nn.Conv2d(dim, dim, 1)
        self.attn = SelfAttention(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        t = self.conv_in(self.norm1(x)).flatten(2).transpose(1, 2)  # (B, HW, C)
        t = self.attn(self.norm2(t)) + t
        t = self.ff(self.norm3(t)) + t
        return self.conv_out(t.transpose(1, 2).reshape(b, c, h, w)) + x


class DownEncoder(nn.Module):
    """conv_in, then per level a :class:`ResBlock` (+ an :class:`AttentionBlock` where asked), then
    GroupNorm and ReLU. (B, in_channels, H, W) -> (B, C_last, h, w)."""

    def __init__(self, in_channels: int, block_out_channels, downsample_factors, attn_blocks, **_):
        super().__init__()
        widths = [int(c) for c in block_out_channels]
        self.conv_in = nn.Conv2d(int(in_channels), widths[0], 3, padding=1)
        blocks, cin = [], widths[0]
        for cout, down, attn in zip(widths, downsample_factors, attn_blocks):
            blocks.append(ResBlock(cin, cout, down))
            if int(attn) == 1:
                blocks.append(AttentionBlock(cout))
            cin = cout
        self.down_blocks = nn.ModuleList(blocks)
        self.norm_out = nn.GroupNorm(32, widths[-1], eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for blk in self.down_blocks:
            x = blk(x)
        return F.relu(self.norm_out(x))


class StableSyncNet(nn.Module):
    """Both encoders; ``forward(frames (B, 48, 128, 256), mel (B, 1, 80, 52))`` -> unit embeddings
    (visual (B, C), audio (B, C))."""

    def __init__(self, config: dict | None = None):
        super().__init__()
        config = config or CONFIG_16_PIXEL_ATTN
        self.audio_encoder = DownEncoder(**config["audio_encoder"])
        self.visual_encoder = DownEncoder(**config["visual_encoder"])
        self.eval()

    def forward(self, frames: torch.Tensor, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v = self.visual_encoder(frames).flatten(1)
        a = self.audio_encoder(mel).flatten(1)
        return F.normalize(v, dim=1), F.normalize(a, dim=1)


def similarity(net: StableSyncNet, frames: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
    """Cosine similarity per window, (B,). frames: (B, 16, 3, H, W) aligned faces in [-1, 1] (the
    lower half is cut here); mel: (B, 80, T) log-mel windows. InputError naming the bad input."""
    if frames.ndim != 5 or frames.shape[1] != NUM_FRAMES or frames.shape[2] != 3:
        raise InputError(f"{WHO}: StableSyncNet needs frames (B, 16, 3, H, W), got {tuple(frames.shape)}. "
                         "Give it 16 aligned face crops per window.")
    if mel.ndim != 3 or mel.shape[0] != frames.shape[0] or mel.shape[1] != 80:
        raise InputError(f"{WHO}: StableSyncNet needs mel (B, 80, T) for the same B windows, got {tuple(mel.shape)}.")
    h = frames.shape[3]
    x = frames[:, :, :, h // 2:, :].flatten(1, 2)
    p = next(net.parameters())
    v, a = net(x.to(p), mel[:, None].to(p))
    return (v * a).sum(1)


def build_stablesyncnet(state: dict[str, torch.Tensor], name: str = "checkpoint", who: str = WHO,
                        config: dict | None = None) -> StableSyncNet:
    """A StableSyncNet in eval mode holding ``state`` (strict); CheckpointError naming what differs."""
    state = strip_prefix(state, "model.")
    if not any(k.startswith("visual_encoder.") for k in state):
        raise CheckpointError(f"{who}: {name} is not a StableSyncNet checkpoint (no visual_encoder.* keys; found "
                              f"{len(state)} keys, e.g. {sorted(state)[:3]}). Use LatentSync 1.6's stable_syncnet.pt.")
    net = StableSyncNet(config)
    match_state_dict(net, state, name, who, hint="Use LatentSync 1.6's stable_syncnet.pt.")
    return net.eval()


def load_stablesyncnet(path: str, device: torch.device | str = "cpu", who: str = WHO,
                       config: dict | None = None) -> StableSyncNet:
    """Load ``stable_syncnet.pt`` (weights only: torch's ``weights_only`` loader, or safetensors)."""
    state = read_tensors(path, who, folder="syncnet")
    return build_stablesyncnet(state, os.path.basename(path), who, config).to(device)


_SLOT = ModelSlot("StableSyncNet")


def load_stablesyncnet_cached(path: str, device: torch.device | str = "cpu", who: str = WHO) -> StableSyncNet:
    """:func:`load_stablesyncnet`, keeping the last network loaded (same path, modification time and
    device: read once; another one replaces it)."""
    key = (path, os.path.getmtime(path) if os.path.isfile(path) else 0.0, str(device))
    return _SLOT.get(key, lambda: load_stablesyncnet(path, device=device, who=who))


def release() -> bool:
    """Drop the cached network (:meth:`.model_slot.ModelSlot.release`)."""
    return _SLOT.release(WHO)
