"""The timeline picture of a viseme track (MapVisemes' preview): the shapes over the waveform, the
phonemes, and the five mouth-parameter curves, as a ComfyUI IMAGE."""

from __future__ import annotations

import numpy as np
import torch

from ..types import MOUTH_PARAMS, PhonemeTrack, VisemeTrack
from .tables import VISEME_SETS, normalize_label

PARAM_COLORS = {"jaw_open": (214, 39, 40), "lip_spread": (31, 119, 180), "lip_round": (44, 160, 44),
                "lip_close": (0, 0, 0), "teeth_on_lip": (148, 103, 189)}


def viseme_colors(names) -> dict[str, tuple[int, int, int]]:
    """A stable colour per viseme name (by position in the set; rest shapes light grey)."""
    import colorsys

    from ..plot import PALETTE

    out = {}
    for i, n in enumerate(names):
        if len(names) <= len(PALETTE):
            out[n] = PALETTE[i]
        else:  # many visemes: spread hues, alternate lightness so neighbours differ
            r, g, b = colorsys.hls_to_rgb(i / len(names), 0.55 if i % 2 else 0.7, 0.65)
            out[n] = (int(r * 255), int(g * 255), int(b * 255))
    for vs in VISEME_SETS.values():
        if vs.rest in out and tuple(names) == vs.names:
            out[vs.rest] = (215, 215, 215)
    return out


def preview(track: VisemeTrack, waveform16k: torch.Tensor | None = None,
            phonemes: PhonemeTrack | None = None, width: int = 1024, sample_rate: int = 16000) -> torch.Tensor:
    """Picture of a viseme track: the shapes as coloured, labelled segments on a timeline over
    the waveform (and the phonemes, when given), and the five mouth parameters as curves.

    waveform16k: (N,) mono at ``sample_rate``; returns IMAGE float32 [1, H, W, 3] on the CPU.
    """
    from ..plot import Canvas

    duration = track.num_frames / track.fps
    has_ph = phonemes is not None and len(phonemes.phonemes) > 0
    height = 400 + (40 if has_ph else 0)
    cv = Canvas(width, height)
    heights = [3.0] + ([0.8] if has_ph else []) + [3.0]
    titles = [f"shapes ({track.viseme_set}) over the audio"] + (["phonemes"] if has_ph else []) + \
             ["mouth parameters"]
    axes = cv.rows(len(heights), heights=heights, xlim=(0.0, duration), xlabel="time (s)", titles=titles)
    top = axes[0].set_ylim(-1.0, 1.0)
    colors = viseme_colors(track.names)
    top.show_yticks = False
    top.segments(track.cues, colors=colors, alpha=0.45, labels=False)
    if waveform16k is not None:
        w = waveform16k.detach().float().reshape(-1).cpu()
        if w.numel() > 0:
            peak = float(w.abs().max()) or 1.0
            block = max(1, w.numel() // (4 * width))  # long clips: min/max per block first
            n = (w.numel() // block) * block
            if block > 1 and n > 0:
                wb = w[:n].view(-1, block)
                y = torch.stack([wb.amin(1), wb.amax(1)], 1).reshape(-1)
                t = (torch.arange(y.numel(), dtype=torch.float64) // 2 + 0.5) * block / sample_rate
            else:
                y, t = w, torch.arange(w.numel(), dtype=torch.float64) / sample_rate
            top.envelope(t.numpy(), (y / peak * 0.8).numpy(), color=(70, 70, 70))
    if track.cues:  # shape names in a strip at the top, above the waveform, where they fit
        edges = top.px([c[0] for c in track.cues] + [track.cues[-1][1]])
        wide = np.flatnonzero(np.diff(edges) >= 8)
        for i in wide.tolist():
            s, e, name = track.cues[i]
            if edges[i + 1] - edges[i] >= cv.text_size(name)[0] + 2:
                top.text(0.5 * (s + e), 0.9, name, anchor="mm")
    if has_ph:
        axes[1].show_yticks = False
        axes[1].set_ylim(0, 1)
        spans = [(float(p.start), float(p.end), normalize_label(p.label)) for p in phonemes.phonemes]
        axes[1].segments(spans, colors={"SIL": (235, 235, 235)}, alpha=0.5, outline=(255, 255, 255))
    bottom = axes[-1].set_ylim(0.0, 1.05)
    t = (torch.arange(track.num_frames, dtype=torch.float64) + 0.5) / track.fps
    params = track.params.detach().float().cpu()
    for j, name in enumerate(MOUTH_PARAMS):
        bottom.line(t.numpy(), params[:, j].numpy(), color=PARAM_COLORS[name], width=2 if j == 0 else 1,
                    label=name)
    bottom.legend("upper right")
    return cv.to_image()
