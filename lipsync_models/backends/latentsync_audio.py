"""LatentSync's audio conditioning: Whisper-tiny encoder states in 50-token windows per video frame.

As the reference (``latentsync/whisper``: OpenAI's Whisper code, changed to return every layer), and
written here from OpenAI's published checkpoint format (``whisper/tiny.pt``: ``{"dims": ...,
"model_state_dict": ...}``; only the encoder is built, the decoder's tensors are checked and left):

1. Log-mel of the whole 16 kHz line: 400-sample Hann STFT every 160 samples (centred), the last frame
   dropped, power through Whisper's 80 mel filters (Slaney scale and norm, 0-8 kHz), log10 clamped at
   1e-10 and at 8 below the **whole line's** maximum, then (x + 4) / 4.
2. The mel cut into 3000-frame (30 s) segments; each zero-padded (in the mel domain) to 3000 and
   encoded; kept: ``floor(frames / 2)`` encoder steps (50 per second).
3. The states taken: the input to the first block (after the positional embedding) and the output of
   every block, **without** the final LayerNorm (``ln_post``): 5 x 384 per step for whisper-tiny.
   (transformers' ``hidden_states`` would give the last one after the LayerNorm: not what LatentSync
   was trained on.)
4. Frame k's window: steps ``c - 4 .. c + 5`` with ``c = floor(k * 50 / fps)``, clamped to the line
   (the first and last step repeat), step-major: (10 steps x 5 layers, 384) = (50, 384). No
   positional encoding is added. ``fps`` is the clip's own rate (the reference re-encodes to 25).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

AUDIO_RATE = 16000
N_FFT, HOP = 400, 160
SEGMENT_FRAMES = 3000
"""Mel frames per encoder pass (30 s)."""
STEPS_PER_S = 50
LEFT, RIGHT = 4, 6
"""Window: steps [c - LEFT, c + RIGHT) around frame k's step c (the reference's audio_feat_length [2, 2])."""


def mel_filters(n_mels: int = 80) -> torch.Tensor:
    """(n_mels, 201) Whisper's filter bank (librosa's Slaney mel filters for 16 kHz, n_fft 400)."""
    from transformers.audio_utils import mel_filter_bank

    bank = mel_filter_bank(num_frequency_bins=N_FFT // 2 + 1, num_mel_filters=n_mels, min_frequency=0.0,
                           max_frequency=AUDIO_RATE / 2, sampling_rate=AUDIO_RATE, norm="slaney",
                           mel_scale="slaney")
    return torch.from_numpy(bank.T.copy()).float()


def log_mel(wave: torch.Tensor, filters: torch.Tensor) -> torch.Tensor:
    """(80, floor(T / 160)) Whisper log-mel of a (T,) 16 kHz line (see the module's step 1)."""
    x = wave.reshape(-1).float()
    window = torch.hann_window(N_FFT, device=x.device)
    spec = torch.stft(x, N_FFT, HOP, window=window, return_complex=True)
    power = spec[:, :-1].abs() ** 2
    mel = filters.to(x.device) @ power
    logm = mel.clamp(min=1e-10).log10()
    logm = torch.maximum(logm, logm.max() - 8.0)
    return (logm + 4.0) / 4.0


class _LayerNorm(nn.LayerNorm):
    """Whisper's LayerNorm: in float32 whatever the model's dtype (its weights too: CPU kernels refuse a
    float32 input with half-precision weights)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = None if self.weight is None else self.weight.float()
        b = None if self.bias is None else self.bias.float()
        return F.layer_norm(x.float(), self.normalized_shape, w, b, self.eps).to(x.dtype)


class _SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim, bias=False)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, s, d = x.shape

        def split(t):
            return t.reshape(n, s, self.heads, d // self.heads).transpose(1, 2)

        o = F.scaled_dot_product_attention(split(self.query(x)), split(self.key(x)), split(self.value(x)))
        return self.out(o.transpose(1, 2).reshape(n, s, d))


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.attn = _SelfAttention(dim, heads)
        self.attn_ln = _LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.mlp_ln = _LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_ln(x))
        return x + self.mlp(self.mlp_ln(x))


class WhisperAudioEncoder(nn.Module):
    """Whisper's audio encoder in OpenAI's key layout (``conv1``, ``conv2``, ``positional_embedding``,
    ``blocks.N.attn.query``..., ``ln_post``). ``forward`` returns every layer's states, not ``ln_post``'s."""

    def __init__(self, n_mels: int = 80, n_ctx: int = 1500, dim: int = 384, heads: int = 6, layers: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(n_mels, dim, 3, padding=1)
        self.conv2 = nn.Conv1d(dim, dim, 3, stride=2, padding=1)
        self.register_buffer("positional_embedding", torch.zeros(n_ctx, dim))
        self.blocks = nn.ModuleList([_Block(dim, heads) for _ in range(layers)])
        self.ln_post = _LayerNorm(dim)  # loaded (strict) but not applied: LatentSync takes raw states

    @classmethod
    def from_dims(cls, dims: dict) -> "WhisperAudioEncoder":
        return cls(int(dims["n_mels"]), int(dims["n_audio_ctx"]), int(dims["n_audio_state"]),
                   int(dims["n_audio_head"]), int(dims["n_audio_layer"]))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """(N, n_mels, 3000) log-mel -> (N, 1500, layers + 1, dim)."""
        x = F.gelu(self.conv1(mel))
        x = F.gelu(self.conv2(x)).permute(0, 2, 1)
        x = (x + self.positional_embedding).to(x.dtype)
        states = [x]
        for block in self.blocks:
            x = block(x)
            states.append(x)
        return torch.stack(states, dim=2)


def whisper_features(encoder: WhisperAudioEncoder, filters: torch.Tensor, wave: torch.Tensor) -> torch.Tensor:
    """(N, layers + 1, dim) float32 encoder states of a (T,) 16 kHz line, N = sum over 30-s segments of
    floor(mel frames / 2) (about 50 per second). Runs on the encoder's device and dtype."""
    p = next(encoder.parameters())
    mel = log_mel(wave.to(p.device), filters)
    out = []
    for start in range(0, max(mel.shape[1], 1), SEGMENT_FRAMES):
        seg = mel[:, start:start + SEGMENT_FRAMES]
        keep = seg.shape[1] // 2
        seg = F.pad(seg, (0, SEGMENT_FRAMES - seg.shape[1]))
        with torch.inference_mode():
            states = encoder(seg[None].to(p.dtype))[0]
        out.append(states[:keep].float())
    return torch.cat(out, 0)


def window_steps(num_frames: int, fps: float, length: int, first: int = 0) -> torch.Tensor:
    """(F, 10) encoder step of each token group of the windows of frames ``first`` .. ``first + F - 1``,
    clamped to [0, length - 1]."""
    k = torch.arange(int(first), int(first) + int(num_frames), dtype=torch.float64)
    centre = torch.floor(k * STEPS_PER_S / float(fps) + 1e-9).long()
    idx = centre[:, None] + torch.arange(-LEFT, RIGHT)[None]
    return idx.clamp(0, max(int(length) - 1, 0))


def audio_windows(feats: torch.Tensor, num_frames: int, fps: float, first: int = 0) -> torch.Tensor:
    """(F, 10 * L, D) per-frame tokens from (N, L, D) features (step-major), frame k centred at k / fps,
    for the frames ``first`` .. ``first + F - 1`` (a chunk's: the whole clip's would be 77 kB a frame)."""
    n, layers, d = feats.shape
    if n == 0:
        raise ValueError("the audio line is shorter than one Whisper step (20 ms)")
    idx = window_steps(num_frames, fps, n, first).to(feats.device)
    return feats[idx].reshape(int(num_frames), (LEFT + RIGHT) * layers, d)


def window_centre_seconds(num_frames: int, fps: float) -> torch.Tensor:
    """(F,) time in seconds of each frame's centre step (``floor(k * 50 / fps) / 50``): for timing tests."""
    k = torch.arange(int(num_frames), dtype=torch.float64)
    return torch.floor(k * STEPS_PER_S / float(fps) + 1e-9) / STEPS_PER_S


__all__ = ["WhisperAudioEncoder", "whisper_features", "audio_windows", "window_steps", "log_mel", "mel_filters",
           "window_centre_seconds"]
