"""Track one face through a clip of any length, window by window, on a downscaled copy.

A long clip cannot be held in memory to be tracked at once, so :class:`WindowTracker` takes its frames
chunk by chunk (already scaled down to :func:`track_size`), tracks overlapping windows with
:func:`..face.track_faces` and joins them into one track (:func:`stitch`): in each overlap the two
windows' tracks are cross-faded linearly, so the track stays continuous (no seam in the mouth crops)
and each window's smoothing sees the frames on both sides of where it takes over. A window where no
face is found holds its neighbours' boxes with ``found`` False (those frames pass through unchanged);
only a clip without any face raises :class:`NoFaceError`. :func:`scale_track` brings the track to the
full-size frames.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np
import torch

from .errors import InputError, NoFaceError
from .face import track_faces
from .face.track import cut_note, template_note
from .types import CUT, TEMPLATE_MOVED, FaceTrack

WHO = "MaskLowerFace"

TRACK_SIDE = 640
"""Frames are tracked with their longer side scaled to at most this many pixels: a face filling a
third of the frame's width is then still wider than the 96-px analysis crop the mouth is measured on,
and a 10-minute clip's tracking windows stay small."""
WINDOW = 200
"""Frames tracked at once in a long clip (held as float32 at :data:`TRACK_SIDE`: 0.55 GB for 640x360;
the last window takes what is left, up to ``WINDOW + OVERLAP - 1`` frames)."""
WHOLE_CLIP = 350
"""A clip of up to this many frames (14 s at 25 fps) is tracked in one window (:func:`window_for`):
0.97 GB as float32 at 640x360, and no frame tracked twice (a 10-s clip took two windows, 50 frames
of them tracked in both). Longer clips take :data:`WINDOW`-frame windows: 300-frame windows raised
the peak of a 10-minute 1080p run to 3.7 GB (2.3 GB with these), its memory growing over the
tracking pass."""
OVERLAP = 50
"""Frames two neighbouring windows share: longer than the track's widest temporal filter (a median of
15 frames and a Gaussian of sigma 5 on the roll) so both windows' tracks are settled where they are
cross-faded. ``WINDOW - OVERLAP`` is a multiple of the Haar tracker's detection step (5), so every
window detects on the same key frames as a track of the whole clip would."""

_PER_FRAME = ("boxes", "mouth", "opening", "transform")


def window_for(frames: int) -> int:
    """The tracking window for a clip of ``frames`` frames (the count its file states): the whole clip
    up to :data:`WHOLE_CLIP` frames, else :data:`WINDOW`."""
    return max(int(frames), WINDOW) if int(frames) <= WHOLE_CLIP else WINDOW


def track_size(width: int, height: int, side: int = TRACK_SIDE) -> tuple[int, int]:
    """(width, height) of the tracking copy: scaled so its longer side is at most ``side`` (never
    up), both even."""
    f = min(1.0, float(side) / max(width, height))
    return max(2, int(round(width * f / 2)) * 2), max(2, int(round(height * f / 2)) * 2)


def scale_track(track: FaceTrack, size: tuple[int, int]) -> FaceTrack:
    """The track of frames resized from ``track.frame_size`` to ``size`` = (width, height): boxes,
    landmarks and the frame -> crop transforms in the new frame's pixels (pixel centres map as a
    resize maps them: x' + 0.5 = f (x + 0.5)); the crop itself is unchanged."""
    h0, w0 = track.frame_size
    w1, h1 = int(size[0]), int(size[1])
    fx, fy = w1 / w0, h1 / h0
    f = torch.tensor([fx, fy], dtype=torch.float64)
    off = 0.5 * f - 0.5
    pt = lambda p: (p.double() * f + off).to(p.dtype)  # noqa: E731
    m = track.transform.double()
    a = m[:, :, :2] / f  # crop = A x_old + t, x_old = (x_new - off) / f
    t = m[:, :, 2] - (a @ off[:, None])[..., 0]
    boxes = track.boxes.double().view(-1, 2, 2) * f + off
    extras = dict(track.extras)
    if isinstance(extras.get("face_width"), torch.Tensor):
        extras["face_width"] = extras["face_width"] * fx
    return replace(track, boxes=boxes.view(-1, 4).to(track.boxes.dtype), mouth=pt(track.mouth),
                   transform=torch.cat([a, t[..., None]], 2).to(track.transform.dtype), frame_size=(h1, w1),
                   extras=extras)


def _hold(track: FaceTrack, n: int, at: int) -> FaceTrack:
    """``n`` frames holding frame ``at`` of ``track``, none of them found."""
    idx = torch.full((n,), int(at), dtype=torch.long)
    per = {k: getattr(track, k)[idx] for k in _PER_FRAME}
    extras = {k: (v[idx] if _frame_tensor(v, track.num_frames) else v) for k, v in track.extras.items()}
    for k in (CUT, TEMPLATE_MOVED):  # events of that frame, not states to hold
        if k in extras:
            extras[k] = torch.zeros_like(extras[k])
    return replace(track, **per, found=torch.zeros(n, dtype=torch.bool), extras=extras)


def _frame_tensor(v, b: int) -> bool:
    return isinstance(v, torch.Tensor) and v.ndim >= 1 and v.shape[0] == b


def _fill_missing(windows: list) -> list[FaceTrack]:
    """Windows without a face (None, with their length) take their nearest tracked neighbour's edge."""
    real = [i for i, w in enumerate(windows) if isinstance(w[1], FaceTrack)]
    if not real:
        raise NoFaceError(f"{WHO}: no face found in any frame of the clip. Check that the face is frontal "
                          "and visible, or give the face box (manual box x0,y0,x1,y1).")
    out = []
    for i, (start, tr) in enumerate(windows):
        if isinstance(tr, FaceTrack):
            out.append(tr)
            continue
        j = min(real, key=lambda r: abs(r - i))
        src = windows[j][1]
        out.append(_hold(src, int(tr), 0 if j > i else src.num_frames - 1))
    return out


def stitch(windows: list[tuple[int, FaceTrack | int]]) -> FaceTrack:
    """One track from overlapping windows, in order: (first frame, FaceTrack or, for a window
    without a face, its frame count). Each overlap is cross-faded linearly from the earlier window
    to the later; ``found`` and the per-frame extras switch at the overlap's middle."""
    if not windows:
        raise InputError(f"{WHO}: no frames to track.")
    tracks = _fill_missing(windows)
    starts = [int(s) for s, _ in windows]
    total = starts[-1] + tracks[-1].num_frames
    first = tracks[0]
    out = {k: torch.empty((total,) + tuple(getattr(first, k).shape[1:]), dtype=torch.float64) for k in _PER_FRAME}
    found = torch.zeros(total, dtype=torch.bool)
    extras = {k: (torch.empty((total,) + tuple(v.shape[1:]), dtype=v.dtype) if _frame_tensor(v, first.num_frames)
                  else v) for k, v in first.extras.items()}
    for i, (s, tr) in enumerate(zip(starts, tracks)):
        n = tr.num_frames
        nxt = starts[i + 1] if i + 1 < len(starts) else total
        ov_prev = (starts[i - 1] + tracks[i - 1].num_frames - s) if i else 0
        w = torch.ones(n, dtype=torch.float64)
        if ov_prev > 0:
            w[:ov_prev] = (torch.arange(ov_prev, dtype=torch.float64) + 1) / (ov_prev + 1)
        ov_next = max(s + n - nxt, 0)
        own = slice(s + ov_prev // 2, s + n - (ov_next - ov_next // 2))  # the next window's starts here
        for k in _PER_FRAME:
            v = getattr(tr, k).detach().cpu().double()
            wk = w.view((-1,) + (1,) * (v.ndim - 1))
            if ov_prev > 0:  # blend into what the previous window wrote
                out[k][s:s + ov_prev] = (1 - wk[:ov_prev]) * out[k][s:s + ov_prev] + wk[:ov_prev] * v[:ov_prev]
            out[k][s + ov_prev:s + n] = v[ov_prev:]
        found[own] = tr.found.detach().cpu()[own.start - s:own.stop - s]
        for k, v in extras.items():
            src = tr.extras.get(k)
            if isinstance(v, torch.Tensor) and _frame_tensor(src, n):
                v[own] = src.detach().cpu()[own.start - s:own.stop - s].to(v.dtype)
        # a window cannot compare its first found frame with a face seen before a stretch without it:
        # where that frame is its own, the previous window's verdict stands if it saw the frame, else
        # the frame begins another shot (it may be another face)
        hits = torch.nonzero(tr.found.detach().cpu()).flatten()
        f0 = s + int(hits[0]) if len(hits) else -1
        if CUT in extras and i and own.start <= f0 < own.stop and bool(found[:f0].any()) and not bool(found[f0 - 1]):
            p0, prev = starts[i - 1], tracks[i - 1]
            seen = f0 < p0 + prev.num_frames and bool(prev.found[f0 - p0]) and CUT in prev.extras
            extras[CUT][f0] = float(prev.extras[CUT][f0 - p0]) if seen else 1.0
    dev = first.boxes.device
    per = {k: out[k].to(device=dev, dtype=getattr(first, k).dtype) for k in _PER_FRAME}
    return replace(first, **per, found=found.to(dev), extras=extras,
                   report=_report(windows, found, first, extras.get(TEMPLATE_MOVED), extras.get(CUT)))


def _runs(idx: np.ndarray) -> list[tuple[int, int]]:
    """Consecutive runs (first, last) of sorted frame indices."""
    if len(idx) == 0:
        return []
    cut = np.nonzero(np.diff(idx) > 1)[0]
    return list(zip(idx[np.r_[0, cut + 1]].tolist(), idx[np.r_[cut, len(idx) - 1]].tolist()))


def _report(windows, found: torch.Tensor, first: FaceTrack, moved: torch.Tensor | None = None,
            cuts: torch.Tensor | None = None) -> str:
    total = len(found)
    head = first.report.splitlines()[0] if first.report else ""
    lost = np.nonzero(~found.numpy())[0]
    spans = _runs(lost)
    lines = [head, f"tracked in {len(windows)} overlapping windows"]
    if len(lost):
        listing = ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in spans[:12])
        lines.append(f"no face in {len(lost)} of {total} frames (they pass through unchanged): frames {listing}"
                     f"{' ...' if len(spans) > 12 else ''}")
    else:
        lines.append(f"face found in all {total} frames")
    if isinstance(moved, torch.Tensor) and bool((moved > 0).any()):
        lines.append(template_note(np.nonzero((moved > 0).numpy())[0].tolist()))
    if isinstance(cuts, torch.Tensor) and bool((cuts > 0).any()):
        lines.append(cut_note(np.nonzero((cuts > 0).numpy())[0].tolist()))
    return "\n".join(x for x in lines if x)


class WindowTracker:
    """Feed chunks of a clip (``push``, (n, h, w, 3) uint8 at the tracking size, in order); ``finish``
    returns the stitched track of every frame pushed. Holds at most one window of frames (float32).

    track_kwargs go to :func:`..face.track_faces` (detector, face_index, manual_box, crop_size)."""

    def __init__(self, window: int = WINDOW, overlap: int = OVERLAP,
                 on_window: Callable[[int], None] | None = None, **track_kwargs):
        if not 0 <= overlap < window // 2:
            raise InputError(f"{WHO}: the overlap ({overlap}) must be under half the window ({window}).")
        self.window, self.overlap, self.kwargs = int(window), int(overlap), track_kwargs
        self.on_window = on_window
        self.buf: list[torch.Tensor] = []
        self.held = 0  # frames in buf
        self.start = 0  # clip index of buf's first frame
        self.windows: list[tuple[int, FaceTrack | int]] = []

    def push(self, frames: torch.Tensor) -> None:
        self.buf.append(frames)
        self.held += int(frames.shape[0])
        while self.held >= self.window + self.overlap:  # keep enough for the next window's overlap
            self._track(self.window)

    def _track(self, n: int) -> None:
        frames = torch.cat(self.buf)
        win = frames[:n].to(torch.float32).div_(255.0)
        try:
            tr = track_faces(win, **self.kwargs)
        except NoFaceError:
            tr = n
        self.windows.append((self.start, tr))
        del win
        keep = frames[n - self.overlap:] if n < frames.shape[0] else frames[:0]
        self.buf = [keep] if keep.shape[0] else []
        self.start += n - self.overlap
        self.held = int(keep.shape[0])
        if self.on_window is not None:
            self.on_window(self.start + self.overlap)

    def finish(self) -> FaceTrack:
        """Track what is left and stitch every window."""
        if self.held > self.overlap or not self.windows:
            if self.held == 0:
                raise InputError(f"{WHO}: no frames to track.")
            self._track(self.held)
        return stitch(self.windows)


REGION_MARGIN = 4
"""Pixels added around the crops' footprint in :func:`face_region` (bilinear sampling's neighbours)."""


def face_region(track: FaceTrack, margin: int = REGION_MARGIN) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the part of the frame, clamped to it, that every frame's crop of ``track``
    samples (the crop square mapped back to the frame, plus ``margin``). Crops cut from this region
    (with :func:`in_region`) equal crops cut from the whole frame, and Composite changes nothing
    outside it."""
    h, w = track.frame_size
    m = torch.zeros((track.num_frames, 3, 3), dtype=torch.float64)
    m[:, :2] = track.transform.detach().cpu().double()
    m[:, 2, 2] = 1.0
    inv = torch.linalg.inv(m)
    s = float(track.crop_size)
    sq = torch.tensor([[0.0, 0.0, 1.0], [s, 0.0, 1.0], [0.0, s, 1.0], [s, s, 1.0]], dtype=torch.float64)
    pts = torch.einsum("bij,kj->bki", inv[:, :2], sq).reshape(-1, 2)
    lo, hi = pts.min(0).values, pts.max(0).values
    x0, y0 = (max(0, int(np.floor(float(v))) - margin) for v in lo)
    x1, y1 = min(w, int(np.ceil(float(hi[0]))) + margin + 1), min(h, int(np.ceil(float(hi[1]))) + margin + 1)
    if x1 <= x0 or y1 <= y0:
        return 0, 0, w, h  # the crops lie outside the frame: let the full frame say so
    return x0, y0, x1, y1


def in_region(track: FaceTrack, region: tuple[int, int, int, int]) -> FaceTrack:
    """The track of the frames cut to ``region`` = (x0, y0, x1, y1): a shift of every coordinate."""
    x0, y0, x1, y1 = (int(v) for v in region)
    off = torch.tensor([float(x0), float(y0)], dtype=torch.float64)
    m = track.transform.double()
    t = m[:, :, 2] + (m[:, :, :2] @ off[:, None])[..., 0]
    boxes = track.boxes.double().view(-1, 2, 2) - off
    return replace(track, boxes=boxes.view(-1, 4).to(track.boxes.dtype),
                   mouth=(track.mouth.double() - off).to(track.mouth.dtype),
                   transform=torch.cat([m[:, :, :2], t[..., None]], 2).to(track.transform.dtype),
                   frame_size=(y1 - y0, x1 - x0))
