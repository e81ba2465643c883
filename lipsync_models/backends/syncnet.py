"""SyncNet (``syncnet_v2`` layout of syncnet_python) and its LSE-D / LSE-C scores.

Our own implementation, written from the published facts of that code base:

* Network: two towers. Audio: 13 MFCC x 20 steps (0.2 s) -> 2-D CNN -> 512 -> FC -> 1024.
  Video: 5 consecutive face crops, 3 x 224 x 224, BGR, values 0..255 (not normalised) -> 3-D CNN
  -> 512 -> FC -> 1024. Parameter names ``netcnnaud.*``, ``netfcaud.*``, ``netcnnlip.*``,
  ``netfclip.*`` as in the public ``syncnet_v2.model`` state dict.
* Audio features: the defaults of ``python_speech_features.mfcc`` on 16 kHz int16 samples
  (25 ms rectangular windows every 10 ms, pre-emphasis 0.97, 512-point FFT power / 512, 26 mel
  filters 0..8000 Hz, log, orthonormal DCT-II, first 13, lifter 22, c0 replaced by the log
  frame energy): 100 feature frames per second, 4 per video frame at 25 fps.
* Face crops: the face box (size = half its longer side, centre; each median-filtered over 13
  frames) cut from ``y - s`` to ``y + 1.8 s`` and ``x - 1.4 s`` to ``x + 1.4 s``, outside the
  frame filled with grey 110, resized to 224 x 224.
* Scores: window ``i`` (video frames i..i+4, MFCC steps 4i..4i+20) for ``i < min_len - 5``;
  for each video window the Euclidean distances (``pairwise_distance``, eps 1e-6) to the audio
  windows ``i - vshift .. i + vshift`` (zero features outside the clip); mean over windows per
  offset; LSE-D = the minimum of that mean, LSE-C = its median minus the minimum; the
  syncnet offset is ``vshift - argmin``.

Sign: syncnet_python's offset is positive when the audio comes EARLY. The pack reports
positive = audio LATE, so :func:`score_clip` returns ``-(syncnet offset)``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..weights import match_state_dict, read_tensors, strip_prefix
from ..errors import CheckpointError, InputError
from .model_slot import ModelSlot

SYNCNET_FPS = 25.0
SYNCNET_RATE = 16000
MFCC_PER_FRAME = 4
WINDOW_FRAMES = 5
CROP = 224
PAD_GREY = 110.0


# --- network -------------------------------------------------------------------------------

def _conv2(cin, cout, k, **kw):
    return [nn.Conv2d(cin, cout, k, **kw), nn.BatchNorm2d(cout), nn.ReLU()]


def _conv3(cin, cout, k, **kw):
    return [nn.Conv3d(cin, cout, k, **kw), nn.BatchNorm3d(cout), nn.ReLU()]


def _head(width: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, width))


class SyncNetV2(nn.Module):
    """The two-tower SyncNet.

    forward_aud: (N, 1, 13, 20) MFCC windows -> (N, width) embeddings.
    forward_lip: (N, 3, 5, 224, 224) BGR face crops in 0..255 -> (N, width) embeddings.
    """

    def __init__(self, width: int = 1024) -> None:
        super().__init__()
        self.netcnnaud = nn.Sequential(
            *_conv2(1, 64, 3, padding=1), nn.MaxPool2d(1, 1),
            *_conv2(64, 192, 3, padding=1), nn.MaxPool2d(3, (1, 2)),
            *_conv2(192, 384, 3, padding=1),
            *_conv2(384, 256, 3, padding=1),
            *_conv2(256, 256, 3, padding=1), nn.MaxPool2d(3, 2),
            *_conv2(256, 512, (5, 4)),
        )
        self.netfcaud = _head(width)
        self.netfclip = _head(width)
        self.netcnnlip = nn.Sequential(
            *_conv3(3, 96, (5, 7, 7), stride=(1, 2, 2)), nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            *_conv3(96, 256, (1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), padding=(0, 1, 1)),
            *_conv3(256, 256, (1, 3, 3), padding=(0, 1, 1)),
            *_conv3(256, 256, (1, 3, 3), padding=(0, 1, 1)),
            *_conv3(256, 256, (1, 3, 3), padding=(0, 1, 1)), nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            *_conv3(256, 512, (1, 6, 6)),
        )

    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:
        return self.netfcaud(self.netcnnaud(x).flatten(1))

    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:
        return self.netfclip(self.netcnnlip(x).flatten(1))


def load_state(path: str, who: str = "SyncNet") -> dict[str, torch.Tensor]:
    """Read a checkpoint as a flat name -> tensor dict (safetensors, or torch with weights_only),
    without the ``module.``, ``__S__.`` (syncnet_python's wrapper) or ``model.`` prefixes."""
    state = read_tensors(path, who, folder="syncnet")
    for prefix in ("__S__.", "model."):
        state = strip_prefix(state, prefix)
    return state


def build_syncnet(state: dict[str, torch.Tensor], name: str = "checkpoint", who: str = "SyncNet") -> SyncNetV2:
    """A SyncNetV2 in eval mode holding ``state``; CheckpointError naming the mismatching keys."""
    head = state.get("netfcaud.3.weight")
    if head is None or head.ndim != 2:
        raise CheckpointError(
            f"{who}: {name} is not a syncnet_v2 checkpoint: key netfcaud.3.weight missing "
            f"(found {len(state)} keys, e.g. {sorted(state)[:3]})."
        )
    net = SyncNetV2(width=int(head.shape[0]))
    match_state_dict(net, state, name, who, hint="Use the syncnet_v2 weights of syncnet_python.")
    return net.eval()


def load_syncnet(path: str, device: torch.device | str = "cpu", who: str = "SyncNet") -> SyncNetV2:
    """Load a SyncNet checkpoint file onto ``device`` (eval mode)."""
    return build_syncnet(load_state(path, who), os.path.basename(path), who).to(device)


_SLOT = ModelSlot("SyncNet v2")


def load_syncnet_cached(path: str, device: torch.device | str = "cpu", who: str = "SyncNet") -> SyncNetV2:
    """:func:`load_syncnet`, keeping the last network loaded: the same file (path and modification
    time) on the same device is read once; another one replaces it (one network in memory)."""
    key = (path, os.path.getmtime(path), str(device))
    return _SLOT.get(key, lambda: load_syncnet(path, device=device, who=who))


def release() -> bool:
    """Drop the cached network (:meth:`.model_slot.ModelSlot.release`)."""
    return _SLOT.release("SyncScore")


# --- audio features ------------------------------------------------------------------------

def _mel_filters(nfilt: int = 26, nfft: int = 512, rate: int = SYNCNET_RATE) -> torch.Tensor:
    """(nfilt, nfft//2+1) triangular filters on FFT bins floor((nfft+1) * hz / rate)."""
    hi_mel = 2595.0 * math.log10(1.0 + (rate / 2) / 700.0)
    mel = np.linspace(0.0, hi_mel, nfilt + 2)
    bins = np.floor((nfft + 1) * (700.0 * (10.0 ** (mel / 2595.0) - 1.0)) / rate)
    fb = np.zeros((nfilt, nfft // 2 + 1))
    for j in range(nfilt):
        lo, mid, top = bins[j], bins[j + 1], bins[j + 2]
        for i in range(int(lo), int(mid)):
            fb[j, i] = (i - lo) / (mid - lo)
        for i in range(int(mid), int(top)):
            fb[j, i] = (top - i) / (top - mid)
    return torch.from_numpy(fb)


def mfcc(waveform: torch.Tensor, numcep: int = 13) -> torch.Tensor:
    """MFCC as ``python_speech_features.mfcc`` computes them with its defaults, on int16 samples.

    waveform: (N,) float at 16 kHz in [-1, 1] (scaled to the int16 range as a wav file would be).
    Returns (numcep, M) float32 with M = 1 + ceil((N - 400) / 160) (1 when N <= 400).
    """
    if waveform.ndim != 1:
        raise InputError(f"SyncNet mfcc: waveform must have shape (N,), got {tuple(waveform.shape)}.")
    x = (waveform.detach().double().cpu() * 32768.0).round().clamp(-32768, 32767)
    n, flen, step, nfft = x.shape[0], 400, 160, 512
    x = torch.cat([x[:1], x[1:] - 0.97 * x[:-1]]) if n > 0 else x
    frames = 1 if n <= flen else 1 + math.ceil((n - flen) / step)
    x = F.pad(x, (0, (frames - 1) * step + flen - n))
    win = x.unfold(0, flen, step)
    pspec = torch.fft.rfft(win, nfft).abs().square() / nfft
    eps = float(np.finfo(float).eps)
    energy = pspec.sum(1)
    energy = torch.where(energy == 0, torch.full_like(energy, eps), energy)
    feat = pspec @ _mel_filters(nfft=nfft).T
    feat = torch.where(feat == 0, torch.full_like(feat, eps), feat).log()
    k = feat.shape[1]
    n_idx = torch.arange(k, dtype=torch.float64)
    dct = torch.cos(math.pi / k * (n_idx[None, :] + 0.5) * n_idx[:, None])  # (out, in)
    dct = dct * math.sqrt(2.0 / k)
    dct[0] /= math.sqrt(2.0)
    cep = (feat @ dct.T)[:, :numcep]
    cep = cep * (1.0 + 11.0 * torch.sin(math.pi * torch.arange(numcep, dtype=torch.float64) / 22.0))
    cep[:, 0] = energy.log()
    return cep.T.float().contiguous()


# --- face crops ----------------------------------------------------------------------------

def _medfilt(x: np.ndarray, k: int) -> np.ndarray:
    from scipy.signal import medfilt

    k = min(k, len(x) - (1 - len(x) % 2))  # scipy zero-pads: keep the kernel within short tracks
    return medfilt(x, kernel_size=k) if k > 1 else x


def face_crops(images: torch.Tensor, boxes: torch.Tensor, size: int = CROP) -> torch.Tensor:
    """SyncNet face crops.

    images: (B, H, W, C) float 0..1 RGB(A); boxes: (B, 4) face boxes x0, y0, x1, y1 in pixels.
    Returns (B, 3, size, size) float32 BGR in 0..255 on the images' device.
    """
    b, h, w = images.shape[:3]
    bx = boxes.detach().double().cpu().numpy()
    s = _medfilt(np.maximum(bx[:, 3] - bx[:, 1], bx[:, 2] - bx[:, 0]) / 2, 13)
    cy = _medfilt((bx[:, 1] + bx[:, 3]) / 2, 13)
    cx = _medfilt((bx[:, 0] + bx[:, 2]) / 2, 13)
    # crop rectangle in pixel-edge coordinates, as the integer slicing of the original
    y0, y1 = cy - s, cy + s * 1.8
    x0, x1 = cx - s * 1.4, cx + s * 1.4
    # affine grid: output pixel centres -> source pixel centres, normalised (align_corners=False)
    theta = np.zeros((b, 2, 3))
    theta[:, 0, 0] = (x1 - x0) / w
    theta[:, 0, 2] = (x0 + x1) / w - 1.0
    theta[:, 1, 1] = (y1 - y0) / h
    theta[:, 1, 2] = (y0 + y1) / h - 1.0
    out = []
    for i in range(0, b, 32):
        img = images[i:i + 32, ..., :3].float().permute(0, 3, 1, 2).flip(1) * 255.0 - PAD_GREY
        th = torch.from_numpy(theta[i:i + 32]).to(img)
        grid = F.affine_grid(th, [img.shape[0], 3, size, size], align_corners=False)
        out.append(F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + PAD_GREY)
    return torch.cat(out)


# --- scores --------------------------------------------------------------------------------

def calc_pdist(feat_v: torch.Tensor, feat_a: torch.Tensor, vshift: int) -> torch.Tensor:
    """Distances from each video window to the audio windows ``i - vshift .. i + vshift``.

    feat_v, feat_a: (L, D). Returns (L, 2 * vshift + 1); column j holds the distance to audio
    window ``i - vshift + j`` (a zero vector outside 0..L-1), as ``pairwise_distance`` (eps 1e-6).
    """
    win = 2 * vshift + 1
    padded = F.pad(feat_a, (0, 0, vshift, vshift))
    cand = padded.unfold(0, win, 1).transpose(1, 2)  # (L, win, D)
    return F.pairwise_distance(feat_v[:, None, :].expand_as(cand), cand)


@dataclass(frozen=True)
class SyncNetScores:
    """Result of SyncNet scoring.

    dists: (L, 2*vshift+1) per-window distances; mdist: (2*vshift+1,) mean over windows,
    index j = syncnet offset ``vshift - j``; lse_d: min of mdist; lse_c: median(mdist) - lse_d;
    syncnet_offset: vshift - argmin (positive = audio early); framewise_conf: (L,) median(mdist)
    minus each window's distance at the best offset, median-filtered over 9 windows.
    """

    dists: torch.Tensor
    mdist: torch.Tensor
    lse_d: float
    lse_c: float
    syncnet_offset: int
    vshift: int
    framewise_conf: torch.Tensor

    @property
    def offset(self) -> int:
        """Pack convention: positive = audio late."""
        return -self.syncnet_offset


def scores_from_dists(dists: torch.Tensor, vshift: int) -> SyncNetScores:
    """LSE-D, LSE-C and the offset from (L, 2*vshift+1) distances, as SyncNetInstance does."""
    mdist = dists.mean(0)
    minval, minidx = torch.min(mdist, 0)
    med = torch.median(mdist)
    conf = med - minval
    fconf = (med - dists[:, minidx]).cpu().numpy()
    fconf = _medfilt(fconf.astype(np.float64), 9) if len(fconf) else fconf
    return SyncNetScores(
        dists=dists, mdist=mdist, lse_d=float(minval), lse_c=float(conf),
        syncnet_offset=int(vshift - int(minidx)), vshift=vshift,
        framewise_conf=torch.as_tensor(np.asarray(fconf), dtype=torch.float32),
    )


@torch.no_grad()
def embed(net: SyncNetV2, crops: torch.Tensor, cep: torch.Tensor, batch: int = 20,
          on_progress: Callable[[int, int], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Video and audio embeddings per 5-frame window.

    crops: (B, 3, 224, 224) BGR 0..255 at 25 fps; cep: (13, M) MFCC at 100 Hz, M >= 4 * B.
    Windows i = 0 .. L-1 with L = B - 5 (as syncnet_python: the last possible window is left
    out), fewer when the audio is shorter than 4 * (L - 1) + 20 steps.
    Returns (L, D), (L, D) on the network's device.
    """
    dev = next(net.parameters()).device
    last = min(crops.shape[0], (cep.shape[1] - 20) // MFCC_PER_FRAME + WINDOW_FRAMES + 1) - WINDOW_FRAMES
    if last < 1:
        raise InputError(
            f"SyncNet: the clip is too short to score: {crops.shape[0]} frames at 25 fps and "
            f"{cep.shape[1]} MFCC steps give {max(last, 0)} five-frame windows. Give at least 6 frames (0.24 s)."
        )
    vid, aud = [], []
    for i in range(0, last, batch):
        idx = range(i, min(last, i + batch))
        v = torch.stack([crops[j:j + WINDOW_FRAMES] for j in idx]).to(dev)  # (n, 5, 3, H, W)
        vid.append(net.forward_lip(v.permute(0, 2, 1, 3, 4)))
        a = torch.stack([cep[:, MFCC_PER_FRAME * j:MFCC_PER_FRAME * j + 20] for j in idx]).to(dev)
        aud.append(net.forward_aud(a[:, None]))
        if on_progress is not None:
            on_progress(min(last, i + batch), last)
    return torch.cat(vid), torch.cat(aud)


def score_clip(net: SyncNetV2, images: torch.Tensor, boxes: torch.Tensor, waveform: torch.Tensor,
               fps: float, vshift: int = 15, batch: int = 20,
               on_progress: Callable[[int, int], None] | None = None) -> SyncNetScores:
    """Score a clip with SyncNet.

    images: (B, H, W, C) 0..1; boxes: (B, 4) face boxes; waveform: (N,) 16 kHz; fps: clip rate.
    Frames are resampled to 25 fps (nearest frame) when ``fps`` differs, as SyncNet expects.
    The audio window of video frame i starts at i * 0.04 s, as in syncnet_python (min length
    ``min(frames, floor(N / 640))``).
    """
    if fps <= 0:
        raise InputError(f"SyncNet: fps must be positive, got {fps}.")
    b = images.shape[0]
    if abs(fps - SYNCNET_FPS) > 1e-6:
        n25 = int(math.floor(b / fps * SYNCNET_FPS + 1e-9))
        idx = torch.clamp(torch.round(torch.arange(n25) * (fps / SYNCNET_FPS)).long(), max=b - 1)
        images, boxes = images[idx.to(images.device)], boxes[idx.to(boxes.device)]
    n = min(images.shape[0], waveform.shape[0] // 640)
    crops = face_crops(images[:n], boxes[:n])
    cep = mfcc(waveform)
    vid, aud = embed(net, crops, cep, batch=batch, on_progress=on_progress)
    return scores_from_dists(calc_pdist(vid.float().cpu(), aud.float().cpu(), vshift), vshift)
