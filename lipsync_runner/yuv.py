"""Frames kept as the decoder gives them (8-bit 4:2:0, PyAV's ``yuv420p`` layout) through the
runner's last pass, so that neither the full frames' conversion to RGB after decoding nor their
conversion back before encoding is made (the latter alone cost the encoder 40 % more CPU on 1080p):
only the face region is converted to RGB, generated and composited, and only the pixels Composite
changed are written back. Every other pixel reaches the encoder as the input's own bytes.

A frame of H x W is an (H * 3 / 2, W) uint8 array: the Y plane (H, W), then U and V (H / 2, W / 2
each), row-major, one after the other (what ``av.VideoFrame.to_ndarray()`` gives for ``yuv420p``).
The conversions are FFmpeg's (swscale, through PyAV) in the frames' own colour space, the same ones
the decoder's RGB output and the encoder's input conversion use: a region's RGB equals the whole
frame's RGB there, and a region converted back equals the whole frame converted back, away from the
region's edge (which Composite never changes: :func:`..lipsync_models.stream_track.face_region`'s
margin).
"""

from __future__ import annotations

import numpy as np

from ..lipsync_models.media import SWS_THREADS

UNSPECIFIED = 2
"""PyAV's ``colorspace`` of a frame that states none (FFmpeg's default conversion is then used)."""
CONVERT_MARGIN = 4
"""Pixels converted back around the changed ones (:func:`put_changed`): the conversion to 4:2:0
filters the chroma over neighbouring pixels, and a box converted alone differs from the whole frame's
conversion only within 2 pixels of its edge."""


def planes(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views (Y (H, W), U (H/2, W/2), V (H/2, W/2)) into one (H * 3 / 2, W) frame."""
    h, w = frame.shape[0] * 2 // 3, frame.shape[1]
    flat = frame.reshape(-1)
    y, c = h * w, (h // 2) * (w // 2)
    return flat[:y].reshape(h, w), flat[y:y + c].reshape(h // 2, w // 2), flat[y + c:y + 2 * c].reshape(h // 2, w // 2)


def even_box(box, width: int, height: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) grown to even coordinates (whole 2x2 chroma blocks), inside the frame."""
    x0, y0, x1, y1 = (int(v) for v in box)
    return x0 - x0 % 2, y0 - y0 % 2, min(width, x1 + x1 % 2), min(height, y1 + y1 % 2)


SWS_SLACK = 256
"""Bytes kept after a frame's pixels in :func:`_frame`'s buffer: swscale's converters read up to 64
bytes past the end of a plane (at widths of 2 mod 4), which a buffer of the exact size does not have."""


def _frame(arr: np.ndarray, fmt: str, space: int):
    import av

    # one copy into a buffer with slack after it, and a frame over that buffer (``from_ndarray`` copies
    # row by row: 1.5 ms a 1080p frame; a frame over the caller's array would let swscale read past it)
    buf = np.empty(arr.size + SWS_SLACK, np.uint8)
    view = buf[:arr.size].reshape(arr.shape)
    np.copyto(view, arr)
    vf = av.VideoFrame.from_numpy_buffer(view, format=fmt)
    if space != UNSPECIFIED:
        vf.colorspace = space
    return vf


def region(frame: np.ndarray, box) -> np.ndarray:
    """The part ``box`` = (x0, y0, x1, y1) (even) of a frame as a (h * 3 / 2, w) frame of its own."""
    x0, y0, x1, y1 = box
    y, u, v = planes(frame)
    h, w = y1 - y0, x1 - x0
    cy, cx = slice(y0 // 2, y1 // 2), slice(x0 // 2, x1 // 2)
    return np.concatenate([y[y0:y1, x0:x1].ravel(), u[cy, cx].ravel(), v[cy, cx].ravel()]).reshape(h * 3 // 2, w)


def region_rgb(frame, box) -> np.ndarray:
    """(y1 - y0, x1 - x0, 3) uint8 RGB of the part ``box`` = (x0, y0, x1, y1) of a decoded PyAV frame in
    ``yuv420p``: the box grown to whole 2x2 chroma blocks is cut from the frame's planes and converted
    alone (the same RGB the whole frame's conversion gives there), then cut back to ``box``."""
    if frame.format.name != "yuv420p":  # (a clip probed as plain 4:2:0 decodes so)
        frame = frame.reformat(format="yuv420p", threads=SWS_THREADS)
    x0, y0, x1, y1 = (int(v) for v in box)
    h, w = frame.height, frame.width
    ex0, ey0, ex1, ey1 = even_box((x0, y0, x1, y1), w, h)
    parts = []
    for plane, (ph, pw), d in zip(frame.planes, ((h, w), (h // 2, w // 2), (h // 2, w // 2)), (1, 2, 2)):
        rows = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:ph, :pw]
        parts.append(rows[ey0 // d:ey1 // d, ex0 // d:ex1 // d].ravel())
    sub = np.concatenate(parts).reshape((ey1 - ey0) * 3 // 2, ex1 - ex0)
    rgb = to_rgb(sub, int(frame.colorspace))
    return np.ascontiguousarray(rgb[y0 - ey0:y1 - ey0, x0 - ex0:x1 - ex0])


def to_rgb(frame: np.ndarray, space: int = UNSPECIFIED, size: tuple[int, int] | None = None) -> np.ndarray:
    """(h * 3 / 2, w) -> (h, w, 3) uint8 RGB, or scaled to ``size`` = (w, h) with the area filter
    first (in 4:2:0, as :func:`..lipsync_models.media.iter_video` scales while decoding)."""
    vf = _frame(frame, "yuv420p", space)
    if size is None:
        return vf.to_ndarray(format="rgb24", threads=SWS_THREADS)
    vf = vf.reformat(width=int(size[0]), height=int(size[1]), interpolation="AREA", threads=SWS_THREADS)
    return vf.to_ndarray(format="rgb24", threads=SWS_THREADS)


def from_rgb(rgb: np.ndarray, space: int = UNSPECIFIED) -> np.ndarray:
    """(h, w, 3) uint8 RGB (even h, w) -> (h * 3 / 2, w) in colour space ``space``."""
    return _frame(rgb, "rgb24", space).reformat(format="yuv420p", threads=SWS_THREADS).to_ndarray()  # into ``space``


def put_changed(frame: np.ndarray, box, old: np.ndarray, new: np.ndarray, space: int = UNSPECIFIED,
                margin: int = CONVERT_MARGIN) -> int:
    """Write the pixels of region ``box`` (even) where ``new`` (h, w, 3) uint8 RGB differs from
    ``old`` into ``frame`` (in place): their Y, and U and V of every 2x2 block with a changed pixel.
    Only the changed pixels' bounding box grown by ``margin`` is converted. Returns how many pixels
    changed (0: the frame is left as it was)."""
    d = np.bitwise_xor(new, old)
    changed = (d[..., 0] | d[..., 1] | d[..., 2]) != 0  # (numpy's any() over 3 channels is 10x slower)
    rows, cols = np.flatnonzero(changed.any(1)), np.flatnonzero(changed.any(0))
    if not len(rows):
        return 0
    h, w = changed.shape
    bx0, by0, bx1, by1 = even_box((max(int(cols[0]) - margin, 0), max(int(rows[0]) - margin, 0),
                                   int(cols[-1]) + 1 + margin, int(rows[-1]) + 1 + margin), w, h)
    sub = changed[by0:by1, bx0:bx1]
    ny, nu, nv = planes(from_rgb(new[by0:by1, bx0:bx1], space))
    fy, fu, fv = planes(frame)
    x0, y0 = box[0] + bx0, box[1] + by0
    sh, sw = sub.shape
    np.copyto(fy[y0:y0 + sh, x0:x0 + sw], ny, where=sub)
    c = sub.reshape(sh // 2, 2, sw // 2, 2)
    block = c[:, 0, :, 0] | c[:, 0, :, 1] | c[:, 1, :, 0] | c[:, 1, :, 1]
    cy, cx = slice(y0 // 2, (y0 + sh) // 2), slice(x0 // 2, (x0 + sw) // 2)
    np.copyto(fu[cy, cx], nu, where=block)
    np.copyto(fv[cy, cx], nv, where=block)
    return int(np.count_nonzero(changed))
