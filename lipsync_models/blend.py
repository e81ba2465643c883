"""The blending steps of paste-back (:func:`.composite.composite`), on crop-window tensors
(b, c, h, w): colour matching (gain and offset per channel from a ring of the mask), multi-band
(Laplacian) blending with per-band masks, and the blurs they use. Each follows its input's
device and dtype.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _blur5(x: torch.Tensor) -> torch.Tensor:
    """Separable 5-tap binomial blur [1 4 6 4 1] / 16 with reflected edges. x: (b, c, h, w).

    Written as shifted sums, not with kornia: ``kornia.filters.filter2d_separable`` with the same
    kernel gives the same values (within 2e-7) but took 211 ms against 95 ms here on (19, 3, 200,
    200) and 144 ms against 18 ms on (64, 3, 120, 140) (kornia 0.9, torch 2.13 CPU, 2 threads; its
    grouped convolution is slow on the CPU). ``kornia.geometry.transform.pyrdown`` would replace
    blur + decimation in :func:`_multiband` but resamples bilinearly (other values) and was 4-6x
    slower (58.7 against 9.1 ms on (19, 3, 200, 200)).
    """
    for dim in (-1, -2):
        n = x.shape[dim]
        mode = "reflect" if n > 2 else "replicate"
        pad = (2, 2, 0, 0) if dim == -1 else (0, 0, 2, 2)
        p = F.pad(x, pad, mode=mode)
        t = lambda k: p.narrow(dim, k, n)  # noqa: E731
        x = (t(0) + t(4) + 4.0 * (t(1) + t(3)) + 6.0 * t(2)) * (1.0 / 16.0)
    return x


def _up(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def band_masks(mask: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """Blend masks for ``levels`` Laplacian bands (finest first) and the low-pass rest.

    The low-pass rest uses ``mask`` itself (the widest transition allowed); band k uses ``mask``
    sharpened around 0.5 with slope min(2 ** (levels - k), 8), so fine detail switches over a
    narrow strip. Each is 0 wherever ``mask`` is 0. (A per-pixel curve, not a filter: kornia has no
    counterpart.)
    """
    out = []
    for k in range(levels):
        slope = float(min(2 ** (levels - k), 8))
        out.append(((mask - 0.5) * slope + 0.5).clamp(0.0, 1.0) * (mask > 0))
    out.append(mask)
    return out


def _multiband(delta: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Blend the change ``delta`` (b, c, h, w) band by band with :func:`band_masks` of ``mask``
    (b, 1, h, w). With a 0/1 mask, or one level, this equals ``mask * delta``."""
    h, w = delta.shape[-2:]
    levels = max(1, min(4, int(math.log2(max(min(h, w), 1) / 8)))) if min(h, w) >= 16 else 1
    gauss = [delta]
    for _ in range(levels):
        gauss.append(_blur5(gauss[-1])[..., ::2, ::2])
    sizes = [g.shape[-2:] for g in gauss]
    bands = [gauss[k] - _up(gauss[k + 1], sizes[k]) for k in range(levels)] + [gauss[-1]]
    out = torch.zeros_like(delta)
    for k, (band, weight) in enumerate(zip(bands, band_masks(mask, levels))):
        for j in range(k - 1, -1, -1):
            band = _up(band, sizes[j])
        out += weight * band
    return out


SPREAD_GAIN_MAX = 1.25
"""Colour matching scales a crop's spread (contrast) per channel by at most this factor, or its
inverse. The ring it is measured in holds whatever lies at the mask's edge: where the crop's lower
face comes from another frame (the clip's own mouths), a turned head puts hair or shadow there in one
and skin in the other. A full-ring spread match (up to 2x before) then gave the whole mouth 1.6-1.8x
the contrast: deep red lips and black gaps on LatentSync's demo 1, where a quarter of the frames asked
for more than 1.25 or less than 0.8 in some channel (2 % once the ring is weighted toward the pixels
that agree, :func:`_agreeing`; a frame wearing its own mouth asks for exactly 1). The same bound as the
bank's own colour gain (:mod:`.mouth_bank`); set by reasoning, not fitted."""


AGREE_ROUNDS = 3
"""Rounds of :func:`_agreeing`, each from the means the previous round's weights give. On the hair
test of tests/test_composite.py (dark hair over a share of the ring in the frame, skin in the crop),
one round holds while hair covers a fifth of the ring and lets it set the contrast (2x) from 30 %;
three rounds hold up to 44 % (at 49 %, half the ring, nothing can tell which side is the skin)."""


def _color_params(gen: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor,
                  max_gain: float | torch.Tensor = SPREAD_GAIN_MAX) -> tuple[torch.Tensor, torch.Tensor]:
    """Per frame and channel gain a and offset b so that ``a * gen + b`` has the mean and spread
    of ``ref`` in the ring just inside the mask edge (weights 4 m (1 - m); the whole mask when it
    has no soft edge), weighted toward the pixels where the two agree once their means are
    matched (:func:`_agreeing`). gen, ref: (b, c, h, w); mask (b, 1, h, w). Returns (b, c, 1, 1) each."""
    ring = 4.0 * mask * (1.0 - mask)
    hard = ring.sum((2, 3), keepdim=True) < 16.0
    ring = torch.where(hard, mask, ring).flatten(2)  # (b, 1, N)
    on = torch.nonzero(ring.amax(0)[0] > 0)[:, 0]  # the pixels some frame's ring covers: a band of the window
    if not len(on):  # no mask anywhere: nothing to match
        one = torch.ones((gen.shape[0], gen.shape[1], 1, 1), dtype=gen.dtype, device=gen.device)
        return one, torch.zeros_like(one)
    dt = torch.float32 if gen.device.type == "mps" else torch.float64  # sums over a ring: float64 where there is one
    ring = ring[..., on].transpose(1, 2).to(dt)  # (b, N', 1)
    g, r = gen.flatten(2)[..., on].to(dt), ref.flatten(2)[..., on].to(dt)  # (b, c, N')
    total = ring.sum(1, keepdim=True)  # (b, 1, 1)
    empty = total < 1.0
    total = total.clamp_min(1e-6)
    w = ring
    for _ in range(AGREE_ROUNDS):  # the means the agreement is read from, less and less pulled by what differs
        tw = w.sum(1, keepdim=True).clamp_min(1e-6)
        mg, mr = (g @ w) / tw, (r @ w) / tw  # weighted means, (b, c, 1)
        w = _agreeing(ring, g - mg, r - mr, total)
    ring, total = w, w.sum(1, keepdim=True).clamp_min(1e-6)
    mg, mr = (g @ ring) / total, (r @ ring) / total
    vg = ((g * g) @ ring / total - mg * mg).clamp_min(0.0)
    vr = ((r * r) @ ring / total - mr * mr).clamp_min(0.0)
    flat = vg < 1e-8
    a = torch.where(flat | empty, torch.ones_like(vg), torch.sqrt(vr / vg.clamp_min(1e-8)))
    lim = torch.as_tensor(max_gain, device=a.device, dtype=a.dtype)  # one limit, or one per frame (b,)
    lim = lim.view(-1, 1, 1) if lim.ndim else lim
    a = torch.minimum(torch.maximum(a, 1.0 / lim), lim)
    b = torch.where(empty, torch.zeros_like(mr), mr - a * mg)
    return a[..., None].to(gen.dtype), b[..., None].to(gen.dtype)  # (b, c, 1, 1)


MEDIAN_BINS = 8192
"""Bins of the histogram :func:`_agreeing` reads its weighted median from, over 0..6 (the largest
difference of two 0..1 pictures less their means, summed over three channels): 0.0007 wide, 1.5 %
of a typical 0.05. Fixed, so a frame's median does not depend on the frames beside it."""


def _agreeing(ring: torch.Tensor, g: torch.Tensor, r: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    """The ring's weights (b, N, 1) lowered where ``g`` and ``r`` (b, c, N), each less its mean, differ
    more than is usual for this ring: times exp(-(d / median d)^2), d the pixel's difference summed over
    the channels, the median weighted by the ring (read from a histogram of :data:`MEDIAN_BINS` bins:
    no sort). A colour cast or a change of contrast moves every pixel alike (the two spreads keep
    their ratio under any weights); what differs in content (hair or shadow at the jaw in one crop
    and skin in the other, as when the lower face comes from another frame) stops setting the colour."""
    w = ring[..., 0]  # (b, N)
    d = (g - r).abs().sum(1)  # (b, N)
    top = 6.0
    k = (d * (MEDIAN_BINS / top)).long().clamp_(0, MEDIAN_BINS - 1)
    hist = torch.zeros((w.shape[0], MEDIAN_BINS), dtype=w.dtype, device=w.device).scatter_add_(1, k, w)
    below = (hist.cumsum(1) < 0.5 * total[:, 0]).sum(1, keepdim=True)  # the bin the half weight falls in
    med = (below.to(w.dtype) + 0.5) * (top / MEDIAN_BINS)
    return (w * torch.exp(-(d / med) ** 2))[..., None]


def _gauss_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of (b, 1, h, w) ``x`` (a given mask), radius ceil(3 sigma), reflected edges
    (replicated when the image is not wider than the radius).

    ``kornia.filters.gaussian_blur2d`` with the same kernel size, sigma and border gives the same
    values (equal bit for bit) but was not faster on the CPU: 60 against 60 ms on (19, 1, 200, 200),
    116 against 89 ms on (64, 1, 120, 140), 229 against 102 ms on (8, 1, 256, 256) (sigma 6.8, the
    default feather on a 256-px crop; kornia 0.9, torch 2.13, 2 threads), so it stays written out.
    """
    r = max(1, int(math.ceil(3.0 * sigma)))
    t = torch.arange(-r, r + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    mode = "reflect" if min(x.shape[-2:]) > r else "replicate"
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode=mode), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, r, r), mode=mode), k.view(1, 1, -1, 1))
