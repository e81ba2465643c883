"""A tiny raster plotting helper for node previews, on top of ``PIL.ImageDraw``.

No matplotlib: previews must be cheap, deterministic and dependency-light. A :class:`Canvas`
holds one RGB picture; :meth:`Canvas.axes` places a panel with data limits, ticks and labels;
the panel draws lines, min/max envelopes (waveforms), filled bands, labelled segments,
markers and text in DATA coordinates. :meth:`Canvas.to_image` returns a ComfyUI IMAGE.

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

Colours are names PIL knows ("red", "#1f77b4"), (r, g, b) tuples in 0..255, or an int that
picks from :data:`PALETTE`. Alpha in 0..1 applies to fills.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
import torch
from PIL import Image, ImageColor, ImageDraw, ImageFont

from .errors import InputError

PALETTE = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)
"""Ten distinct colours (the tab10 cycle); ``color=i`` picks ``PALETTE[i % 10]``."""



def rgb(color) -> tuple[int, int, int]:
    """Any accepted colour -> (r, g, b) in 0..255."""
    if isinstance(color, (int, np.integer)) and not isinstance(color, bool):
        return PALETTE[int(color) % len(PALETTE)]
    if isinstance(color, str):
        return ImageColor.getrgb(color)[:3]
    if isinstance(color, (tuple, list)) and len(color) >= 3:
        c = tuple(color[:3])
        if all(isinstance(v, float) for v in c) and max(c) <= 1.0:
            return tuple(int(round(v * 255)) for v in c)
        return tuple(int(v) for v in c)
    raise InputError(f"plot: cannot read colour {color!r}; give a name, '#rrggbb', (r, g, b) or an int.")


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed bitmap font
        return ImageFont.load_default()


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
        self.image = Image.new("RGB", (self.width, self.height), rgb(background))
        self.draw = ImageDraw.Draw(self.image)
        self.font_size = int(font_size)
        self.font = _font(self.font_size)

    # --- layout ------------------------------------------------------------------------------
    def axes(self, box: Sequence[float], xlim=(0.0, 1.0), ylim=(0.0, 1.0), title: str = "",
             xlabel: str = "", ylabel: str = "", frame: bool = True, grid: bool = True,
             xticks: bool = True, yticks: bool = True) -> "Axes":
        """A panel whose PLOT AREA is ``box`` = (x0, y0, x1, y1) in pixels (labels go outside)."""
        return Axes(self, box, xlim, ylim, title, xlabel, ylabel, frame, grid, xticks, yticks)

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
        """Text at pixel (x, y); anchor as in PIL ("la" left-ascender, "mm" centre, ...)."""
        self.draw.text((x, y), s, fill=rgb(color), font=self.font, anchor=anchor)

    def text_size(self, s: str) -> tuple[int, int]:
        x0, y0, x1, y1 = self.draw.textbbox((0, 0), s, font=self.font)
        return x1 - x0, y1 - y0

    # --- output ------------------------------------------------------------------------------
    def to_image(self, device: torch.device | str | None = None) -> torch.Tensor:
        """The picture as a ComfyUI IMAGE: float32 [1, H, W, 3] in 0..1 (CPU unless ``device``)."""
        arr = np.asarray(self.image, dtype=np.float32) / 255.0
        img = torch.from_numpy(arr.copy()).unsqueeze(0)
        return img.to(device) if device is not None else img

    def _blend_polygon(self, points, color, alpha: float) -> None:
        if alpha >= 1.0:
            self.draw.polygon(points, fill=rgb(color))
            return
        overlay = Image.new("RGBA", self.image.size, (0, 0, 0, 0))
        ImageDraw.Draw(overlay).polygon(points, fill=rgb(color) + (int(round(alpha * 255)),))
        self._composite(overlay)

    def _composite(self, overlay: Image.Image) -> None:
        base = self.image.convert("RGBA")
        base.alpha_composite(overlay)
        self.image.paste(base.convert("RGB"))


class Axes:
    """A panel of a :class:`Canvas` with data limits. Draw calls take data coordinates and are
    clipped to the plot area. Change limits with :meth:`set_xlim`/:meth:`set_ylim` BEFORE drawing
    data (the frame and ticks are drawn by :meth:`decorate`, called automatically on the first
    draw and again by :meth:`set_ylim`/:meth:`set_xlim` if nothing was drawn yet)."""

    def __init__(self, canvas: Canvas, box, xlim, ylim, title, xlabel, ylabel, frame, grid,
                 xticks, yticks):
        self.cv = canvas
        self.x0, self.y0, self.x1, self.y1 = (float(v) for v in box)
        if self.x1 - self.x0 < 4 or self.y1 - self.y0 < 4:
            raise InputError(f"plot: axes box {tuple(box)} is too small.")
        self.title, self.xlabel, self.ylabel = title, xlabel, ylabel
        self.frame, self.grid, self.show_xticks, self.show_yticks = frame, grid, xticks, yticks
        self._legend: list[tuple[str, tuple[int, int, int]]] = []
        self._decorated = False
        self.xlim = self._lim(xlim, "xlim")
        self.ylim = self._lim(ylim, "ylim")

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
        x = _as_np(x)
        return self.x0 + (x - self.xlim[0]) / (self.xlim[1] - self.xlim[0]) * (self.x1 - self.x0)

    def py(self, y) -> np.ndarray:
        y = _as_np(y)
        return self.y1 - (y - self.ylim[0]) / (self.ylim[1] - self.ylim[0]) * (self.y1 - self.y0)

    def _clip_x(self, p):
        return np.clip(p, self.x0, self.x1)

    def _clip_y(self, p):
        return np.clip(p, self.y0, self.y1)

    # --- frame, ticks, labels ----------------------------------------------------------------
    def decorate(self) -> "Axes":
        """Draw the frame, grid, ticks and labels (idempotent per limits)."""
        if self._decorated:
            return self
        self._decorated = True
        d, cv = self.cv.draw, self.cv
        grid_c, tick_c = (225, 225, 225), (60, 60, 60)
        if self.show_xticks:
            ticks = nice_ticks(*self.xlim, count=max(2, int((self.x1 - self.x0) / 90)))
            step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
            for t in ticks:
                x = float(self.px(t)[0])
                if self.grid:
                    d.line([(x, self.y0), (x, self.y1)], fill=grid_c)
                d.line([(x, self.y1), (x, self.y1 + 3)], fill=tick_c)
                cv.text(x, self.y1 + 4, _fmt(t, step), color=tick_c, anchor="ma")
        if self.show_yticks:
            ticks = nice_ticks(*self.ylim, count=max(2, int((self.y1 - self.y0) / 40)))
            step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
            for t in ticks:
                y = float(self.py(t)[0])
                if self.grid:
                    d.line([(self.x0, y), (self.x1, y)], fill=grid_c)
                d.line([(self.x0 - 3, y), (self.x0, y)], fill=tick_c)
                cv.text(self.x0 - 5, y, _fmt(t, step), color=tick_c, anchor="rm")
        if self.frame:
            d.rectangle([self.x0, self.y0, self.x1, self.y1], outline=(90, 90, 90))
        if self.title:
            cv.text(self.x0, self.y0 - 3, self.title, color="black", anchor="ld")
        if self.xlabel:
            cv.text((self.x0 + self.x1) / 2, self.y1 + 6 + cv.font_size, self.xlabel,
                    color=tick_c, anchor="ma")
        if self.ylabel:
            cv.text(self.x0 - 8, self.y0 + 1, self.ylabel, color=tick_c, anchor="rt")
        return self

    def _remember(self, label, color):
        if label:
            self._legend.append((label, rgb(color)))

    # --- data --------------------------------------------------------------------------------
    def line(self, x, y, color=0, width: int = 1, label: str = "") -> "Axes":
        """Polyline through (x, y); NaNs break the line. Long series are decimated to about
        two points per pixel column (min and max), so a 10-minute signal draws fast."""
        self.decorate()
        x, y = _as_np(x), _as_np(y)
        if x.shape != y.shape:
            raise InputError(f"plot: line needs x and y of the same length, got {x.size} and {y.size}.")
        ncol = int(self.x1 - self.x0) + 1
        if x.size > 4 * ncol:
            return self.envelope(x, y, color=color, label=label, connect=True, width=width)
        px, py = self._clip_x(self.px(x)), self._clip_y(self.py(y))
        ok = np.isfinite(px) & np.isfinite(py)
        c = rgb(color)
        start = 0
        breaks = np.flatnonzero(~ok).tolist() + [x.size]
        for b in breaks:
            if b - start >= 2:
                self.cv.draw.line(list(zip(px[start:b].tolist(), py[start:b].tolist())), fill=c, width=width)
            elif b - start == 1:
                self.cv.draw.point((float(px[start]), float(py[start])), fill=c)
            start = b + 1
        self._remember(label, color)
        return self

    def envelope(self, x, y, color="gray", label: str = "", connect: bool = False, width: int = 1) -> "Axes":
        """Min/max of ``y`` per pixel column as vertical strokes (waveforms, dense signals).
        x must be increasing."""
        self.decorate()
        x, y = _as_np(x), _as_np(y)
        if x.size == 0:
            return self
        col = np.floor(self.px(x) - self.x0).astype(np.int64)
        keep = (col >= 0) & (col <= int(self.x1 - self.x0)) & np.isfinite(y)
        col, yk = col[keep], y[keep]
        if col.size == 0:
            return self
        starts = np.flatnonzero(np.r_[True, col[1:] != col[:-1]])
        lo = np.minimum.reduceat(yk, starts)
        hi = np.maximum.reduceat(yk, starts)
        cols = col[starts] + self.x0
        plo, phi = self._clip_y(self.py(lo)), self._clip_y(self.py(hi))
        c = rgb(color)
        d = self.cv.draw
        for cx, a, b in zip(cols.tolist(), plo.tolist(), phi.tolist()):
            d.line([(cx, a), (cx, b)], fill=c, width=width)
        if connect and cols.size > 1:
            mid = (plo + phi) / 2
            d.line(list(zip(cols.tolist(), mid.tolist())), fill=c, width=width)
        self._remember(label, color)
        return self

    def band(self, x, lo, hi, color=0, alpha: float = 0.3, label: str = "") -> "Axes":
        """Filled area between ``lo`` and ``hi`` along ``x`` (scalars broadcast)."""
        self.decorate()
        x = _as_np(x)
        lo = np.broadcast_to(_as_np(lo), x.shape) if np.ndim(lo) else np.full(x.shape, float(lo))
        hi = np.broadcast_to(_as_np(hi), x.shape) if np.ndim(hi) else np.full(x.shape, float(hi))
        if x.size < 2:
            return self
        px = self._clip_x(self.px(x))
        top = list(zip(px.tolist(), self._clip_y(self.py(hi)).tolist()))
        bot = list(zip(px.tolist(), self._clip_y(self.py(lo)).tolist()))
        self.cv._blend_polygon(top + bot[::-1], color, alpha)
        self._remember(label, color)
        return self

    def span(self, x0: float, x1: float, color=0, alpha: float = 0.2, y0=None, y1=None,
             label: str = "", text: str = "", text_color="black") -> "Axes":
        """A filled rectangle from x0 to x1 (full height unless y0/y1 given), optional text."""
        self.decorate()
        ya = self.ylim[0] if y0 is None else y0
        yb = self.ylim[1] if y1 is None else y1
        ax0, ax1 = (float(v) for v in self._clip_x(self.px([x0, x1])))
        ay0, ay1 = (float(v) for v in self._clip_y(self.py([yb, ya])))
        if ax1 - ax0 >= 0.5:
            self.cv._blend_polygon([(ax0, ay0), (ax1, ay0), (ax1, ay1), (ax0, ay1)], color, alpha)
        if text and ax1 - ax0 >= self.cv.text_size(text)[0] + 2:
            self.cv.text((ax0 + ax1) / 2, (ay0 + ay1) / 2, text, color=text_color, anchor="mm")
        self._remember(label, color)
        return self

    def segments(self, spans: Iterable[tuple[float, float, str]], y0: float | None = None,
                 y1: float | None = None, colors: dict | None = None, alpha: float = 0.85,
                 labels: bool = True, outline="white") -> "Axes":
        """Coloured, labelled segments such as a timeline of shapes or phonemes.

        spans: (start, end, label) in data x; colours by label from ``colors`` (else the label
        picks a stable PALETTE entry); the label is written inside when it fits. Drawn as one
        overlay, so thousands of segments stay fast.
        """
        self.decorate()
        spans = list(spans)
        ya = self.ylim[0] if y0 is None else y0
        yb = self.ylim[1] if y1 is None else y1
        ay0, ay1 = (float(v) for v in self._clip_y(self.py([yb, ya])))
        overlay = Image.new("RGBA", self.cv.image.size, (0, 0, 0, 0))
        od = ImageDraw.Draw(overlay)
        a = int(round(alpha * 255))
        texts = []
        if spans:
            xs = self._clip_x(self.px([v for s in spans for v in s[:2]])).reshape(-1, 2)
            for (xa, xb), (_, _, lab) in zip(xs.tolist(), spans):
                c = rgb(colors[lab]) if colors and lab in colors else _label_color(lab)
                if xb - xa >= 0.5:
                    od.rectangle([xa, ay0, xb, ay1], fill=c + (a,))
                    if outline is not None and xb - xa >= 3:
                        od.line([(xa, ay0), (xa, ay1)], fill=rgb(outline) + (255,))
                if labels and lab and xb - xa >= 8 and xb - xa >= self.cv.text_size(str(lab))[0] + 2:
                    texts.append(((xa + xb) / 2, (ay0 + ay1) / 2, str(lab)))
        self.cv._composite(overlay)
        for x, y, s in texts:
            self.cv.text(x, y, s, color="black", anchor="mm")
        return self

    def vline(self, x: float, color="black", width: int = 1, label: str = "") -> "Axes":
        self.decorate()
        px = float(self.px(x)[0])
        if self.x0 <= px <= self.x1:
            self.cv.draw.line([(px, self.y0), (px, self.y1)], fill=rgb(color), width=width)
        self._remember(label, color)
        return self

    def hline(self, y: float, color="black", width: int = 1, label: str = "") -> "Axes":
        self.decorate()
        py = float(self.py(y)[0])
        if self.y0 <= py <= self.y1:
            self.cv.draw.line([(self.x0, py), (self.x1, py)], fill=rgb(color), width=width)
        self._remember(label, color)
        return self

    def markers(self, x, y, color=0, size: int = 3, label: str = "") -> "Axes":
        """Filled dots of radius ``size`` pixels at (x, y)."""
        self.decorate()
        px, py = self.px(x), self.py(y)
        c = rgb(color)
        for a, b in zip(px.tolist(), py.tolist()):
            if self.x0 <= a <= self.x1 and self.y0 <= b <= self.y1:
                self.cv.draw.ellipse([a - size, b - size, a + size, b + size], fill=c)
        self._remember(label, color)
        return self

    def text(self, x: float, y: float, s: str, color="black", anchor: str = "la") -> "Axes":
        """Text at data (x, y)."""
        self.decorate()
        self.cv.text(float(self.px(x)[0]), float(self.py(y)[0]), s, color=color, anchor=anchor)
        return self

    def legend(self, corner: str = "upper right") -> "Axes":
        """Legend of the labelled draws so far, in a corner of the plot area."""
        if not self._legend:
            return self
        cv = self.cv
        items = list(dict.fromkeys(self._legend))
        w = max(cv.text_size(s)[0] for s, _ in items) + 26
        h = len(items) * (cv.font_size + 4) + 6
        right = "right" in corner
        upper = "upper" in corner
        bx0 = self.x1 - w - 4 if right else self.x0 + 4
        by0 = self.y0 + 4 if upper else self.y1 - h - 4
        overlay = Image.new("RGBA", cv.image.size, (0, 0, 0, 0))
        ImageDraw.Draw(overlay).rectangle([bx0, by0, bx0 + w, by0 + h], fill=(255, 255, 255, 200),
                                          outline=(150, 150, 150, 255))
        cv._composite(overlay)
        y = by0 + 4
        for s, c in items:
            mid = y + cv.font_size / 2 + 1
            cv.draw.line([(bx0 + 5, mid), (bx0 + 19, mid)], fill=c, width=3)
            cv.text(bx0 + 23, mid, s, color="black", anchor="lm")
            y += cv.font_size + 4
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
