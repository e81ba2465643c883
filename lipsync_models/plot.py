"""Preview plots for the nodes (sync curve, viseme timeline), drawn with matplotlib's Agg
renderer into a ComfyUI IMAGE.

matplotlib is not in ComfyUI's own requirements, but it installs into a ComfyUI venv without
touching torch or numpy (it needs numpy >= 1.23, pillow and pure-Python packages); it replaced a
home-made PIL rasteriser of 460 lines. Only the object API is used (``Figure`` +
``FigureCanvasAgg``, no pyplot), so nothing global changes and threads do not share state; the
output is deterministic.

A :class:`Canvas` holds one RGB picture of ``width`` x ``height`` pixels; :meth:`Canvas.axes`
places a panel whose plot area is a pixel box, with data limits, ticks and labels; the panel
draws lines, min/max envelopes (waveforms), filled bands, labelled segments, markers and text
in DATA coordinates. Limits, labels and tick switches may be changed until the picture is made:
:meth:`Canvas.to_image` applies them and returns a ComfyUI IMAGE.

Example (a signal over time above a timeline of labelled segments)::

    from lipsync_models.plot import Canvas
    cv = Canvas(900, 360)
    top, bottom = cv.rows(2, heights=(2, 1), xlim=(0, 3.0), xlabel="time (s)")
    top.set_ylim(-1, 1)
    top.envelope(t, wave, color="gray")
    top.line(t_frames, score, color=0, width=2, label="score")
    bottom.set_ylim(0, 1)
    bottom.segments([(0.0, 0.4, "X"), (0.4, 0.6, "A")], y0=0, y1=1)
    top.legend()
    image = cv.to_image()            # torch float32 [1, H, W, 3] in 0..1

Colours are names ("red", "#1f77b4"), (r, g, b) tuples in 0..255 (or floats in 0..1), or an
int that picks from :data:`PALETTE`. Alpha in 0..1 applies to fills. Sizes (fonts, line widths,
markers) are in pixels.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D

from .errors import InputError

PALETTE = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)
"""Ten distinct colours (the tab10 cycle); ``color=i`` picks ``PALETTE[i % 10]``."""

DPI = 100
"""Pixels per inch of the figure: sizes given in pixels become ``px * 72 / DPI`` points."""
GRID_COLOR, TICK_COLOR, FRAME_COLOR = (225, 225, 225), (60, 60, 60), (90, 90, 90)
_HA = {"l": "left", "m": "center", "r": "right"}
_VA = {"a": "top", "t": "top", "m": "center", "s": "baseline", "b": "bottom", "d": "bottom"}


def rgb(color) -> tuple[int, int, int]:
    """Any accepted colour -> (r, g, b) in 0..255."""
    if isinstance(color, (int, np.integer)) and not isinstance(color, bool):
        return PALETTE[int(color) % len(PALETTE)]
    if isinstance(color, str):
        try:
            return tuple(int(round(v * 255)) for v in to_rgb(color))
        except ValueError as e:
            raise InputError(f"plot: cannot read colour {color!r}; give a name, '#rrggbb', (r, g, b) or an int.") from e
    if isinstance(color, (tuple, list)) and len(color) >= 3:
        c = tuple(color[:3])
        if all(isinstance(v, float) for v in c) and max(c) <= 1.0:
            return tuple(int(round(v * 255)) for v in c)
        return tuple(int(v) for v in c)
    raise InputError(f"plot: cannot read colour {color!r}; give a name, '#rrggbb', (r, g, b) or an int.")


def _mc(color) -> tuple[float, float, float]:
    """Any accepted colour -> matplotlib's (r, g, b) in 0..1."""
    return tuple(v / 255.0 for v in rgb(color))


def _pt(px: float) -> float:
    """Pixels -> points."""
    return px * 72.0 / DPI


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick positions (1, 2, 2.5, 5 x 10^k steps) covering [lo, hi], about ``count`` of them."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(count, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks, v = [], first
    while v <= hi + 1e-9 * step:
        ticks.append(0.0 if abs(v) < 1e-12 * step else v)
        v += step
    return ticks


def _fmt(v: float, step: float) -> str:
    decimals = max(0, -int(math.floor(math.log10(step))) if step > 0 else 0)
    if step > 0 and abs(step * 10 ** decimals - round(step * 10 ** decimals)) > 1e-6:
        decimals += 1
    return f"{v:.{decimals}f}"


def _as_np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy().reshape(-1)
    return np.asarray(x, dtype=np.float64).reshape(-1)


class Canvas:
    """An RGB picture to draw panels on.

    width, height: size in pixels; background: colour; font_size: pixel size of the text.
    """

    def __init__(self, width: int = 900, height: int = 400, background="white", font_size: int = 12):
        if width < 32 or height < 32:
            raise InputError(f"plot: canvas must be at least 32x32 pixels, got {width}x{height}.")
        self.width, self.height = int(width), int(height)
        self.fig = Figure(figsize=(self.width / DPI, self.height / DPI), dpi=DPI, facecolor=_mc(background))
        self.agg = FigureCanvasAgg(self.fig)
        self.font_size = int(font_size)
        self.font = FontProperties(size=_pt(self.font_size))
        self._panels: list[Axes] = []

    # --- layout ------------------------------------------------------------------------------
    def axes(self, box: Sequence[float], xlim=(0.0, 1.0), ylim=(0.0, 1.0), title: str = "",
             xlabel: str = "", ylabel: str = "", frame: bool = True, grid: bool = True,
             xticks: bool = True, yticks: bool = True) -> "Axes":
        """A panel whose PLOT AREA is ``box`` = (x0, y0, x1, y1) in pixels (labels go outside)."""
        ax = Axes(self, box, xlim, ylim, title, xlabel, ylabel, frame, grid, xticks, yticks)
        self._panels.append(ax)
        return ax

    def rows(self, n: int, heights: Sequence[float] | None = None, xlim=(0.0, 1.0),
             xlabel: str = "", titles: Sequence[str] | None = None, margin=(56, 10, 12, 30),
             gap: int = 22, ylabels: Sequence[str] | None = None) -> list["Axes"]:
        """``n`` panels stacked top to bottom sharing ``xlim``; only the last one shows
        ``xlabel``. heights: relative heights; margin: (left, right, top, bottom) pixels."""
        heights = list(heights) if heights is not None else [1.0] * n
        if len(heights) != n or n < 1:
            raise InputError(f"plot: rows needs n >= 1 and {n} heights, got {heights}.")
        left, right, top, bottom = margin
        titles = list(titles) if titles else [""] * n
        ylabels = list(ylabels) if ylabels else [""] * n
        title_room = [self.font_size + 4 if t else 0 for t in titles]
        avail = self.height - top - bottom - gap * (n - 1) - sum(title_room)
        if avail < 8 * n:
            raise InputError(f"plot: canvas height {self.height} is too small for {n} rows.")
        total = float(sum(heights))
        out, y = [], float(top)
        for i, h in enumerate(heights):
            y += title_room[i]
            hpx = avail * h / total
            box = (left, y, self.width - right, y + hpx)
            out.append(self.axes(box, xlim=xlim, ylim=(0.0, 1.0), title=titles[i],
                                 xlabel=xlabel if i == n - 1 else "", ylabel=ylabels[i],
                                 xticks=True))
            y += hpx + gap
        return out

    # --- free text ---------------------------------------------------------------------------
    def text(self, x: float, y: float, s: str, color="black", anchor: str = "la") -> None:
        """Text at pixel (x, y); anchor as in PIL: horizontal l/m/r, then vertical a/t (top),
        m (centre), s (baseline), b/d (bottom)."""
        self.fig.text(x / self.width, 1.0 - y / self.height, s, color=_mc(color), fontproperties=self.font,
                      ha=_HA[anchor[0]], va=_VA[anchor[1]])

    def text_size(self, s: str) -> tuple[int, int]:
        """(width, height) in pixels of ``s`` in the canvas font."""
        w, h, _ = self.agg.get_renderer().get_text_width_height_descent(s, self.font, ismath=False)
        return int(math.ceil(w)), int(math.ceil(h))

    # --- output ------------------------------------------------------------------------------
    def to_image(self, device: torch.device | str | None = None) -> torch.Tensor:
        """The picture as a ComfyUI IMAGE: float32 [1, H, W, 3] in 0..1 (CPU unless ``device``)."""
        for ax in self._panels:
            ax.decorate()
        self.agg.draw()
        arr = np.asarray(self.agg.buffer_rgba())[..., :3].astype(np.float32) / 255.0
        img = torch.from_numpy(np.ascontiguousarray(arr)).unsqueeze(0)
        return img.to(device) if device is not None else img


class Axes:
    """A panel of a :class:`Canvas` with data limits. Draw calls take data coordinates and are
    clipped to the plot area. Limits (:meth:`set_xlim`/:meth:`set_ylim`), labels and the tick
    switches (``show_xticks``, ``show_yticks``) may change until the picture is made; the frame,
    grid, ticks and labels follow them (:meth:`decorate`)."""

    def __init__(self, canvas: Canvas, box, xlim, ylim, title, xlabel, ylabel, frame, grid,
                 xticks, yticks):
        self.cv = canvas
        self.x0, self.y0, self.x1, self.y1 = (float(v) for v in box)
        if self.x1 - self.x0 < 4 or self.y1 - self.y0 < 4:
            raise InputError(f"plot: axes box {tuple(box)} is too small.")
        self.title, self.xlabel, self.ylabel = title, xlabel, ylabel
        self.frame, self.grid, self.show_xticks, self.show_yticks = frame, grid, xticks, yticks
        self._legend: list[tuple[str, tuple[int, int, int]]] = []
        self.xlim = self._lim(xlim, "xlim")
        self.ylim = self._lim(ylim, "ylim")
        w, h = canvas.width, canvas.height
        self.ax = canvas.fig.add_axes((self.x0 / w, 1.0 - self.y1 / h, (self.x1 - self.x0) / w, (self.y1 - self.y0) / h))
        self.ax.set_facecolor("none")

    @staticmethod
    def _lim(lim, name):
        lo, hi = float(lim[0]), float(lim[1])
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise InputError(f"plot: {name} must be finite, got {lim}.")
        if hi <= lo:
            hi = lo + (abs(lo) * 0.1 or 1.0)
        return lo, hi

    def set_xlim(self, lo: float, hi: float) -> "Axes":
        self.xlim = self._lim((lo, hi), "xlim")
        return self

    def set_ylim(self, lo: float, hi: float) -> "Axes":
        self.ylim = self._lim((lo, hi), "ylim")
        return self

    def autoscale_y(self, *arrays, pad: float = 0.05) -> "Axes":
        """Set ylim to the finite range of the given arrays (plus ``pad`` of the span)."""
        vals = np.concatenate([_as_np(a) for a in arrays]) if arrays else np.zeros(1)
        vals = vals[np.isfinite(vals)]
        if vals.size == 0:
            return self.set_ylim(0.0, 1.0)
        lo, hi = float(vals.min()), float(vals.max())
        span = hi - lo or (abs(hi) or 1.0)
        return self.set_ylim(lo - pad * span, hi + pad * span)

    # --- coordinates -------------------------------------------------------------------------
    def px(self, x) -> np.ndarray:
        """Data x -> canvas pixel column."""
        x = _as_np(x)
        return self.x0 + (x - self.xlim[0]) / (self.xlim[1] - self.xlim[0]) * (self.x1 - self.x0)

    def py(self, y) -> np.ndarray:
        """Data y -> canvas pixel row."""
        y = _as_np(y)
        return self.y1 - (y - self.ylim[0]) / (self.ylim[1] - self.ylim[0]) * (self.y1 - self.y0)

    def _xdata(self, px) -> np.ndarray:
        return self.xlim[0] + (np.asarray(px, dtype=np.float64) - self.x0) / (self.x1 - self.x0) * (self.xlim[1] - self.xlim[0])

    # --- frame, ticks, labels ----------------------------------------------------------------
    def decorate(self) -> "Axes":
        """Apply the limits, frame, grid, ticks and labels as they are now (again at output)."""
        ax, fs = self.ax, _pt(self.cv.font_size)
        ax.set_xlim(*self.xlim)
        ax.set_ylim(*self.ylim)
        for which, show, lim, length, axis in (("x", self.show_xticks, self.xlim, self.x1 - self.x0, ax.xaxis),
                                               ("y", self.show_yticks, self.ylim, self.y1 - self.y0, ax.yaxis)):
            ticks = nice_ticks(*lim, count=max(2, int(length / (90 if which == "x" else 40)))) if show else []
            step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
            axis.set_ticks(ticks, [_fmt(t, step) for t in ticks])
        ax.tick_params(colors=_mc(TICK_COLOR), labelsize=fs, length=3, width=_pt(1), pad=1)
        if self.grid:
            ax.grid(True, color=_mc(GRID_COLOR), linewidth=_pt(1))
        else:
            ax.grid(False)
        ax.set_axisbelow(True)
        for spine in ax.spines.values():
            spine.set_visible(self.frame)
            spine.set_edgecolor(_mc(FRAME_COLOR))
            spine.set_linewidth(_pt(1))
        ax.set_title(self.title, loc="left", fontsize=fs, pad=3)
        ax.set_xlabel(self.xlabel, fontsize=fs, color=_mc(TICK_COLOR), labelpad=1)
        ax.set_ylabel(self.ylabel, fontsize=fs, color=_mc(TICK_COLOR), labelpad=1)
        return self

    def _remember(self, label, color):
        if label:
            self._legend.append((label, rgb(color)))

    # --- data --------------------------------------------------------------------------------
    def line(self, x, y, color=0, width: int = 1, label: str = "") -> "Axes":
        """Polyline through (x, y); NaNs break the line. Long series are decimated to about
        two points per pixel column (min and max), so a 10-minute signal draws fast."""
        x, y = _as_np(x), _as_np(y)
        if x.shape != y.shape:
            raise InputError(f"plot: line needs x and y of the same length, got {x.size} and {y.size}.")
        if x.size > 4 * (int(self.x1 - self.x0) + 1):
            return self.envelope(x, y, color=color, label=label, connect=True, width=width)
        self.ax.plot(x, y, color=_mc(color), linewidth=_pt(width), solid_capstyle="butt")
        self._remember(label, color)
        return self

    def envelope(self, x, y, color="gray", label: str = "", connect: bool = False, width: int = 1) -> "Axes":
        """Min/max of ``y`` per pixel column as vertical strokes (waveforms, dense signals).
        x must be increasing."""
        x, y = _as_np(x), _as_np(y)
        col = np.floor(self.px(x) - self.x0).astype(np.int64)
        keep = (col >= 0) & (col <= int(self.x1 - self.x0)) & np.isfinite(y)
        col, yk = col[keep], y[keep]
        if col.size == 0:
            return self
        starts = np.flatnonzero(np.r_[True, col[1:] != col[:-1]])
        lo, hi = np.minimum.reduceat(yk, starts), np.maximum.reduceat(yk, starts)
        xs = self._xdata(col[starts] + self.x0 + 0.5)
        self.ax.vlines(xs, lo, hi, colors=[_mc(color)], linewidth=_pt(max(width, 1)))
        if connect and xs.size > 1:
            self.ax.plot(xs, (lo + hi) / 2, color=_mc(color), linewidth=_pt(width))
        self._remember(label, color)
        return self

    def band(self, x, lo, hi, color=0, alpha: float = 0.3, label: str = "") -> "Axes":
        """Filled area between ``lo`` and ``hi`` along ``x`` (scalars broadcast)."""
        x = _as_np(x)
        if x.size < 2:
            return self
        lo = np.broadcast_to(_as_np(lo), x.shape) if np.ndim(lo) else np.full(x.shape, float(lo))
        hi = np.broadcast_to(_as_np(hi), x.shape) if np.ndim(hi) else np.full(x.shape, float(hi))
        self.ax.fill_between(x, lo, hi, color=_mc(color), alpha=alpha, linewidth=0)
        self._remember(label, color)
        return self

    def span(self, x0: float, x1: float, color=0, alpha: float = 0.2, y0=None, y1=None,
             label: str = "", text: str = "", text_color="black") -> "Axes":
        """A filled rectangle from x0 to x1 (full height unless y0/y1 given), optional text
        (written when it fits)."""
        ya = self.ylim[0] if y0 is None else y0
        yb = self.ylim[1] if y1 is None else y1
        self.ax.fill_between([x0, x1], [ya, ya], [yb, yb], color=_mc(color), alpha=alpha, linewidth=0)
        ax0, ax1 = np.clip(self.px([x0, x1]), self.x0, self.x1)
        if text and ax1 - ax0 >= self.cv.text_size(text)[0] + 2:
            self.ax.text((x0 + x1) / 2, (ya + yb) / 2, text, color=_mc(text_color), ha="center", va="center",
                         fontproperties=self.cv.font, clip_on=True)
        self._remember(label, color)
        return self

    def segments(self, spans: Iterable[tuple[float, float, str]], y0: float | None = None,
                 y1: float | None = None, colors: dict | None = None, alpha: float = 0.85,
                 labels: bool = True, outline="white") -> "Axes":
        """Coloured, labelled segments such as a timeline of shapes or phonemes.

        spans: (start, end, label) in data x; colours by label from ``colors`` (else the label
        picks a stable PALETTE entry); the label is written inside when it fits; a line of
        ``outline`` colour marks each start. Drawn as one collection, so thousands stay fast.
        """
        spans = list(spans)
        if not spans:
            return self
        ya = self.ylim[0] if y0 is None else y0
        yb = self.ylim[1] if y1 is None else y1
        cols = [_mc(colors[lab]) if colors and lab in colors else _mc(_label_color(lab)) for _, _, lab in spans]
        self.ax.broken_barh([(s, e - s) for s, e, _ in spans], (ya, yb - ya), facecolors=cols, alpha=alpha,
                            linewidth=0)
        widths = np.diff(np.clip(self.px([v for s in spans for v in s[:2]]), self.x0, self.x1).reshape(-1, 2), axis=1)[:, 0]
        if outline is not None:
            starts = [s for (s, _, _), wpx in zip(spans, widths) if wpx >= 3]
            self.ax.vlines(starts, ya, yb, colors=[_mc(outline)], linewidth=_pt(1))
        for (s, e, lab), wpx in zip(spans, widths):
            if labels and lab and wpx >= 8 and wpx >= self.cv.text_size(str(lab))[0] + 2:
                self.ax.text((s + e) / 2, (ya + yb) / 2, str(lab), ha="center", va="center",
                             fontproperties=self.cv.font, clip_on=True)
        return self

    def vline(self, x: float, color="black", width: int = 1, label: str = "") -> "Axes":
        self.ax.axvline(x, color=_mc(color), linewidth=_pt(width))
        self._remember(label, color)
        return self

    def hline(self, y: float, color="black", width: int = 1, label: str = "") -> "Axes":
        self.ax.axhline(y, color=_mc(color), linewidth=_pt(width))
        self._remember(label, color)
        return self

    def markers(self, x, y, color=0, size: int = 3, label: str = "") -> "Axes":
        """Filled dots of radius ``size`` pixels at (x, y)."""
        self.ax.plot(_as_np(x), _as_np(y), linestyle="none", marker="o", markersize=_pt(2 * size),
                     color=_mc(color), markeredgewidth=0)
        self._remember(label, color)
        return self

    def text(self, x: float, y: float, s: str, color="black", anchor: str = "la") -> "Axes":
        """Text at data (x, y); anchor as :meth:`Canvas.text`."""
        self.ax.text(x, y, s, color=_mc(color), fontproperties=self.cv.font, ha=_HA[anchor[0]],
                     va=_VA[anchor[1]], clip_on=False)
        return self

    def legend(self, corner: str = "upper right") -> "Axes":
        """Legend of the labelled draws so far, in a corner of the plot area."""
        if not self._legend:
            return self
        items = list(dict.fromkeys(self._legend))
        handles = [Line2D([], [], color=_mc(c), linewidth=_pt(3)) for _, c in items]
        self.ax.legend(handles, [s for s, _ in items], loc=corner, prop=self.cv.font, framealpha=0.8,
                       edgecolor=_mc((150, 150, 150)), fancybox=False, handlelength=1.5)
        return self


def _label_color(label: str) -> tuple[int, int, int]:
    """A stable palette colour for a label (same label, same colour, across previews)."""
    h = 0
    for ch in str(label):
        h = (h * 131 + ord(ch)) % 1000003
    return PALETTE[h % len(PALETTE)]


def stack(images: Sequence[torch.Tensor]) -> torch.Tensor:
    """Stack IMAGE tensors [1, H_i, W, 3] vertically (widths must match) -> [1, sum H, W, 3]."""
    if not images:
        raise InputError("plot: stack needs at least one image.")
    widths = {int(im.shape[2]) for im in images}
    if len(widths) != 1:
        raise InputError(f"plot: stack needs images of one width, got widths {sorted(widths)}.")
    return torch.cat([im.to(images[0].device) for im in images], dim=1)
