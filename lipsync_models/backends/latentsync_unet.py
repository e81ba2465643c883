"""LatentSync's 3D UNet (versions 1.5 and 1.6 share it), written for this pack from the published design.

A Stable-Diffusion-1.5-shaped UNet over 16-frame video latents ``(B, 13, F, H/8, W/8)`` (noise 4 +
mask 1 + masked-frame latents 4 + reference latents 4) predicting the noise ``(B, 4, F, H/8, W/8)``.
Cross-attention layers look at Whisper-tiny audio tokens ``(B, F, 50, 384)``; every down and up block
has a motion module (temporal self-attention) after each of its layers; the middle block has none.
Layer names follow ``latentsync_unet.pt``'s state dict (``down_blocks.0.attentions.0...``), so the
published weights load key for key (:func:`.latentsync_files.load_unet` loads strictly).

The shape comes from :class:`UNetConfig` (the published ``configs/unet/stage2_512.yaml``: widths
320/640/1280/1280, two layers per down block, three per up block, 8 heads, cross-attention width 384,
motion modules of 8 heads and a frame encoding of up to 24 frames). :data:`TINY` is a small
configuration of the same classes for tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .latentsync_layers import (Downsample, FrameConv, MotionModule, ResBlock, SpatialTransformer,
                                TimeMLP, Upsample, frame_encoding, timestep_features)


@dataclass(frozen=True)
class UNetConfig:
    """The architecture. ``cross`` says which resolution levels (down order) have audio cross-attention."""

    widths: tuple[int, ...] = (320, 640, 1280, 1280)
    cross: tuple[bool, ...] = (True, True, True, False)
    layers: int = 2
    heads: int = 8
    in_channels: int = 13
    out_channels: int = 4
    context_dim: int = 384
    groups: int = 32
    eps: float = 1e-5
    motion_heads: int = 8
    motion_frames: int = 24

    @property
    def time_dim(self) -> int:
        return 4 * self.widths[0]


FULL = UNetConfig()
"""LatentSync 1.5 / 1.6 (``stage2.yaml`` / ``stage2_512.yaml``; they differ only in the image size)."""
TINY = UNetConfig(widths=(32, 64), cross=(True, False), layers=1, heads=2, context_dim=384, groups=8,
                  motion_heads=4)
"""Two levels 32/64 wide (motion-module GroupNorms keep 32 groups, as the reference's)."""


class DownBlock(nn.Module):
    """``layers`` x (ResBlock [+ spatial transformer] + motion module), then a stride-2 conv unless last."""

    def __init__(self, cfg: UNetConfig, c_in: int, c_out: int, cross: bool, last: bool) -> None:
        super().__init__()
        n = cfg.layers
        self.resnets = nn.ModuleList([ResBlock(c_in if i == 0 else c_out, c_out, cfg.time_dim, cfg.groups, cfg.eps)
                                      for i in range(n)])
        self.attentions = nn.ModuleList([SpatialTransformer(c_out, cfg.heads, cfg.context_dim, cfg.groups)
                                         for _ in range(n)]) if cross else None
        self.motion_modules = nn.ModuleList([MotionModule(c_out, cfg.motion_heads, cfg.motion_frames)
                                             for _ in range(n)])
        self.downsamplers = None if last else nn.ModuleList([Downsample(c_out)])

    def forward(self, x, temb, audio):
        skips = []
        for i, (res, motion) in enumerate(zip(self.resnets, self.motion_modules)):
            x = res(x, temb)
            if self.attentions is not None:
                x = self.attentions[i](x, audio)
            x = motion(x)
            skips.append(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
            skips.append(x)
        return x, skips


class UpBlock(nn.Module):
    """``layers + 1`` x (concat a skip, ResBlock [+ spatial transformer] + motion module), then 2x up unless last."""

    def __init__(self, cfg: UNetConfig, c_prev: int, c_out: int, c_skip_last: int, cross: bool, last: bool) -> None:
        super().__init__()
        n = cfg.layers + 1
        ins = [(c_prev if i == 0 else c_out) + (c_skip_last if i == n - 1 else c_out) for i in range(n)]
        self.resnets = nn.ModuleList([ResBlock(c, c_out, cfg.time_dim, cfg.groups, cfg.eps) for c in ins])
        self.attentions = nn.ModuleList([SpatialTransformer(c_out, cfg.heads, cfg.context_dim, cfg.groups)
                                         for _ in range(n)]) if cross else None
        self.motion_modules = nn.ModuleList([MotionModule(c_out, cfg.motion_heads, cfg.motion_frames)
                                             for _ in range(n)])
        self.upsamplers = None if last else nn.ModuleList([Upsample(c_out)])

    def forward(self, x, skips: list, temb, audio, size=None, start: int = 0, keep: dict | None = None):
        """Layers ``start``.. of the block (``skips`` holds their skips). ``keep``: a dict that receives
        the input of the last layer as ``"h"`` (the deep features :class:`FeatureReuse` keeps)."""
        for i, (res, motion) in enumerate(zip(self.resnets, self.motion_modules)):
            if i < start:
                continue
            if keep is not None and i == len(self.resnets) - 1:
                keep["h"] = x
            x = res(torch.cat([x, skips.pop()], dim=1), temb)
            if self.attentions is not None:
                x = self.attentions[i](x, audio)
            x = motion(x)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x, size)
        return x


class MidBlock(nn.Module):
    """ResBlock, spatial transformer, ResBlock (no motion module)."""

    def __init__(self, cfg: UNetConfig, c: int) -> None:
        super().__init__()
        self.resnets = nn.ModuleList([ResBlock(c, c, cfg.time_dim, cfg.groups, cfg.eps) for _ in range(2)])
        self.attentions = nn.ModuleList([SpatialTransformer(c, cfg.heads, cfg.context_dim, cfg.groups)])

    def forward(self, x, temb, audio):
        x = self.resnets[0](x, temb)
        return self.resnets[1](self.attentions[0](x, audio), temb)


def _level(key: str, levels: int) -> int:
    """Resolution level (down order) of a ``down_blocks.i`` / ``up_blocks.i`` key."""
    part, i = key.split(".")[:2]
    return int(i) if part == "down_blocks" else levels - 1 - int(i)


class LatentSyncUNet(nn.Module):
    """Noise prediction of LatentSync. ``forward(sample (B, 13, F, h, w), t (B,) or scalar,
    audio (B, F, S, 384) or None) -> (B, 4, F, h, w)``."""

    def __init__(self, cfg: UNetConfig = FULL) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.widths
        self.conv_in = FrameConv(cfg.in_channels, w[0], 3, padding=1)
        self.time_embedding = TimeMLP(w[0], cfg.time_dim)
        last = len(w) - 1
        self.down_blocks = nn.ModuleList([DownBlock(cfg, w[max(i - 1, 0)], w[i], cfg.cross[i], i == last)
                                          for i in range(len(w))])
        self.mid_block = MidBlock(cfg, w[-1])
        rw, rcross = list(reversed(w)), list(reversed(cfg.cross))
        self.up_blocks = nn.ModuleList([UpBlock(cfg, rw[max(i - 1, 0)], rw[i], rw[min(i + 1, last)], rcross[i],
                                                i == last) for i in range(len(w))])
        self.conv_norm_out = nn.GroupNorm(cfg.groups, w[0], eps=cfg.eps)
        self.conv_out = FrameConv(w[0], cfg.out_channels, 3, padding=1)

    @staticmethod
    def frame_encodings(cfg: UNetConfig) -> dict[str, torch.Tensor]:
        """The motion modules' frame-encoding buffers (fixed sinusoids) by state-dict key."""
        with torch.device("meta"):
            keys = [k for k in LatentSyncUNet(cfg).state_dict() if k.endswith("pos_encoder.pe")]
        width = {k: cfg.widths[_level(k, len(cfg.widths))] for k in keys}
        return {k: frame_encoding(cfg.motion_frames, width[k]) for k in keys}

    @property
    def dtype(self) -> torch.dtype:
        return self.conv_in.weight.dtype

    def time_embed(self, t, batch: int, device) -> torch.Tensor:
        t = torch.as_tensor(t, device=device)
        t = t.reshape(1).expand(batch) if t.ndim == 0 else t.expand(batch)
        return self.time_embedding(timestep_features(t, self.cfg.widths[0]).to(self.dtype))

    def forward(self, sample: torch.Tensor, t, audio: torch.Tensor | None = None,
                reuse: "FeatureReuse | None" = None) -> torch.Tensor:
        """``reuse``: DeepCache-style reuse of the deep features (see :class:`FeatureReuse`); None = off."""
        temb = self.time_embed(t, sample.shape[0], sample.device)
        x = self.conv_in(sample)
        if reuse is not None and reuse.step():
            last = self.up_blocks[-1]
            x = last(reuse.kept["h"], [x], temb, audio, start=len(last.resnets) - 1)
            return self.conv_out(F.silu(self.conv_norm_out(x)))
        skips = [x]
        for block in self.down_blocks:
            x, s = block(x, temb, audio)
            skips.extend(s)
        x = self.mid_block(x, temb, audio)
        factor = 2 ** (len(self.up_blocks) - 1)
        odd = any(s % factor for s in sample.shape[-2:])
        for i, block in enumerate(self.up_blocks):
            n = len(block.resnets)
            mine, skips = skips[-n:], skips[:-n]
            size = tuple(skips[-1].shape[-2:]) if odd and skips else None
            last = i == len(self.up_blocks) - 1
            x = block(x, mine, temb, audio, size, keep=reuse.kept if reuse is not None and last else None)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class FeatureReuse:
    """DeepCache-style reuse of deep features across denoising steps (Ma, Fang and Wang, "DeepCache",
    CVPR 2024), as LatentSync's ``--enable_deepcache`` runs it (DeepCache's ``cache_interval=3,
    cache_branch_id=0``): every ``interval``-th step (the first of a chunk included) runs the whole UNet
    and keeps the input of the last up block's last layer; the steps between run only ``conv_in`` on the
    new latents, that last layer (ResNet, audio attention, motion module) on the kept features and the
    fresh ``conv_in`` skip, and ``conv_out``. One object per chunk (the features belong to its latents)."""

    def __init__(self, interval: int) -> None:
        if int(interval) < 1:
            raise ValueError(f"feature reuse interval must be at least 1, got {interval}")
        self.interval, self.calls, self.kept = int(interval), 0, {}

    def step(self) -> bool:
        """Count a UNet call; True when this one reuses the kept features (not a full step)."""
        reuse = self.calls % self.interval != 0 and "h" in self.kept
        self.calls += 1
        return reuse
