"""The layers of LatentSync's 3D UNet (bytedance/LatentSync, code Apache-2.0), written for this pack.

Video tensors are ``(B, C, F, H, W)``. Module and attribute names follow the published checkpoint's
state-dict keys (``latentsync_unet.pt``), so its weights load key for key; the maths is the one of the
reference, with these points that decide parity:

* the ResNet blocks' GroupNorms see the whole ``(C, F, H, W)`` volume (statistics over all frames of a
  chunk at once), while the spatial transformers' and the motion modules' GroupNorms see one frame;
* every convolution is 2D, frame by frame;
* attention is softmax(q k^T / sqrt(head width)) v with bias-free q, k, v projections;
* feed-forwards are GEGLU (exact GELU on the gate) to 4x the width;
* a motion module attends over the frames at each pixel, after adding a sinusoidal encoding of the
  frame index (max 24 frames) to its input; its output projection is added to the module's input.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _frames_first(x: torch.Tensor) -> torch.Tensor:
    """(B, C, F, H, W) -> (B*F, C, H, W)."""
    b, c, f, h, w = x.shape
    return x.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)


def _frames_back(x: torch.Tensor, f: int) -> torch.Tensor:
    """(B*F, C, H, W) -> (B, C, F, H, W)."""
    bf, c, h, w = x.shape
    return x.reshape(bf // f, f, c, h, w).permute(0, 2, 1, 3, 4)


class FrameConv(nn.Conv2d):
    """A 2D convolution applied to each frame of a (B, C, F, H, W) video."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D401
        return _frames_back(super().forward(_frames_first(x)), x.shape[2])


def timestep_features(t: torch.Tensor, dim: int) -> torch.Tensor:
    """(B,) timesteps -> (B, dim) float32 sinusoids: [cos | sin] of t * 10000^(-i / (dim/2))."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = t[:, None].float() * freqs[None]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


class TimeMLP(nn.Module):
    """Timestep features -> the embedding every ResNet block takes (``time_embedding.linear_1/2``)."""

    def __init__(self, dim_in: int, dim: int) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(dim_in, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(x)))


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, the time embedding added between, a 1x1 shortcut when widths differ."""

    def __init__(self, c_in: int, c_out: int, temb: int, groups: int, eps: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c_in, eps=eps)
        self.conv1 = FrameConv(c_in, c_out, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb, c_out)
        self.norm2 = nn.GroupNorm(groups, c_out, eps=eps)
        self.conv2 = FrameConv(c_out, c_out, 3, padding=1)
        self.conv_shortcut = FrameConv(c_in, c_out, 1) if c_in != c_out else None

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # the norm spans all frames (5D GroupNorm)
        h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        skip = x if self.conv_shortcut is None else self.conv_shortcut(x)
        return skip + h


class Attention(nn.Module):
    """Multi-head attention; ``context`` None = self-attention. Keys: to_q, to_k, to_v, to_out.0."""

    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: int | None = None) -> None:
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim or dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim or dim, inner, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(inner, dim), nn.Dropout(0.0)])

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        n, s, d = x.shape
        return x.reshape(n, s, self.heads, d // self.heads).transpose(1, 2)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        ctx = x if context is None else context
        q, k, v = self._split(self.to_q(x)), self._split(self.to_k(ctx)), self._split(self.to_v(ctx))
        out = F.scaled_dot_product_attention(q, k, v)
        n, h, s, d = out.shape
        return self.to_out[0](out.transpose(1, 2).reshape(n, s, h * d))


class GEGLU(nn.Module):
    def __init__(self, dim: int, inner: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, inner * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.gelu(gate)


class FeedForward(nn.Module):
    """GEGLU to 4x the width and back (keys ``net.0.proj``, ``net.2``)."""

    def __init__(self, dim: int, mult: int = 4) -> None:
        super().__init__()
        self.net = nn.ModuleList([GEGLU(dim, dim * mult), nn.Dropout(0.0), nn.Linear(dim * mult, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net[2](self.net[0](x))


class SpatialBlock(nn.Module):
    """Self-attention over a frame's pixels, cross-attention on its audio tokens, feed-forward."""

    def __init__(self, dim: int, heads: int, context_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, heads, dim // heads)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = Attention(dim, heads, dim // heads, context_dim)
        self.ff = FeedForward(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, audio: torch.Tensor | None) -> torch.Tensor:
        x = self.attn1(self.norm1(x)) + x
        if audio is not None:
            x = self.attn2(self.norm2(x), audio) + x
        return self.ff(self.norm3(x)) + x


class SpatialTransformer(nn.Module):
    """Per-frame transformer with audio cross-attention (GroupNorm eps 1e-6, 1x1 conv projections)."""

    def __init__(self, dim: int, heads: int, context_dim: int, groups: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, dim, eps=1e-6)
        self.proj_in = nn.Conv2d(dim, dim, 1)
        self.transformer_blocks = nn.ModuleList([SpatialBlock(dim, heads, context_dim)])
        self.proj_out = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor, audio: torch.Tensor | None) -> torch.Tensor:
        """x (B, C, F, H, W); audio (B, F, S, D) tokens per frame, or None (no cross-attention)."""
        f = x.shape[2]
        y = _frames_first(x)
        n, c, h, w = y.shape
        t = self.proj_in(self.norm(y)).permute(0, 2, 3, 1).reshape(n, h * w, c)
        ctx = audio.reshape(n, *audio.shape[2:]) if audio is not None else None
        for block in self.transformer_blocks:
            t = block(t, ctx)
        t = self.proj_out(t.reshape(n, h, w, c).permute(0, 3, 1, 2))
        return _frames_back(t + y, f)


def frame_encoding(length: int, dim: int) -> torch.Tensor:
    """(1, length, dim) sinusoidal encoding of the frame index: sin at even, cos at odd channels."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(1, length, dim)
    pe[0, :, 0::2] = torch.sin(pos * freq)
    pe[0, :, 1::2] = torch.cos(pos * freq)
    return pe


class TemporalAttention(Attention):
    """Self-attention across frames at each pixel; the frame encoding (``pos_encoder.pe``) is added first."""

    def __init__(self, dim: int, heads: int, max_frames: int) -> None:
        super().__init__(dim, heads, dim // heads)
        self.pos_encoder = nn.Module()
        self.pos_encoder.register_buffer("pe", frame_encoding(max_frames, dim))

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:  # type: ignore[override]
        bf, s, c = x.shape
        seq = x.reshape(bf // frames, frames, s, c).transpose(1, 2).reshape(-1, frames, c)
        if frames > self.pos_encoder.pe.shape[1]:
            raise ValueError(f"a motion module takes at most {self.pos_encoder.pe.shape[1]} frames, got {frames}")
        seq = seq + self.pos_encoder.pe[:, :frames].to(seq.dtype)
        out = super().forward(seq)
        return out.reshape(bf // frames, s, frames, c).transpose(1, 2).reshape(bf, s, c)


class TemporalBlock(nn.Module):
    """Two temporal self-attentions (each pre-LayerNorm, residual) and a GEGLU feed-forward."""

    def __init__(self, dim: int, heads: int, max_frames: int, attentions: int = 2) -> None:
        super().__init__()
        self.attention_blocks = nn.ModuleList([TemporalAttention(dim, heads, max_frames) for _ in range(attentions)])
        self.norms = nn.ModuleList([nn.LayerNorm(dim) for _ in range(attentions)])
        self.ff = FeedForward(dim)
        self.ff_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        for attn, norm in zip(self.attention_blocks, self.norms):
            x = attn(norm(x), frames) + x
        return self.ff(self.ff_norm(x)) + x


class TemporalTransformer(nn.Module):
    """GroupNorm (32 groups, eps 1e-6, per frame), linear in, temporal blocks, linear out, residual."""

    def __init__(self, dim: int, heads: int, max_frames: int, groups: int = 32) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, dim, eps=1e-6)
        self.proj_in = nn.Linear(dim, dim)
        self.transformer_blocks = nn.ModuleList([TemporalBlock(dim, heads, max_frames)])
        self.proj_out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = x.shape[2]
        y = _frames_first(x)
        n, c, h, w = y.shape
        t = self.proj_in(self.norm(y).permute(0, 2, 3, 1).reshape(n, h * w, c))
        for block in self.transformer_blocks:
            t = block(t, f)
        t = self.proj_out(t).reshape(n, h, w, c).permute(0, 3, 1, 2)
        return _frames_back(t + y, f)


class MotionModule(nn.Module):
    """AnimateDiff's "Vanilla" temporal module as LatentSync uses it (key ``temporal_transformer``)."""

    def __init__(self, dim: int, heads: int = 8, max_frames: int = 24) -> None:
        super().__init__()
        self.temporal_transformer = TemporalTransformer(dim, heads, max_frames)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.temporal_transformer(x)


class Downsample(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = FrameConv(c, c, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest 2x in H and W (frames kept), then a 3x3 convolution."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = FrameConv(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        dtype = x.dtype
        y = x.float() if dtype == torch.bfloat16 else x
        y = F.interpolate(y, size=(y.shape[2], *size), mode="nearest") if size is not None else \
            F.interpolate(y, scale_factor=(1.0, 2.0, 2.0), mode="nearest")
        return self.conv(y.to(dtype))
