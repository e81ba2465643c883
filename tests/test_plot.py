"""Tests of the preview plotting helper (lipsync_models/plot.py)."""

import numpy as np
import pytest
import torch

from comfyui_lipsync.lipsync_models import plot
from comfyui_lipsync.lipsync_models.errors import InputError


def _px(img, x, y):
    return tuple((img[0, int(y), int(x)] * 255).round().int().tolist())


def test_image_is_comfy_image():
    img = plot.Canvas(200, 100).to_image()
    assert img.shape == (1, 100, 200, 3) and img.dtype == torch.float32
    assert float(img.min()) == 1.0  # blank white canvas


def test_data_coordinates_map_to_pixels():
    cv = plot.Canvas(300, 200)
    ax = cv.axes((50, 20, 250, 170), xlim=(0, 10), ylim=(-1, 1), grid=False, xticks=False, yticks=False)
    # x=5 is the middle of 50..250, y=0 is the middle of 20..170
    assert ax.px(5)[0] == pytest.approx(150)
    assert ax.py(0)[0] == pytest.approx(95)
    assert ax.py(1)[0] == pytest.approx(20) and ax.py(-1)[0] == pytest.approx(170)


def test_span_fills_the_right_pixels_with_its_colour():
    cv = plot.Canvas(300, 200)
    ax = cv.axes((50, 20, 250, 170), xlim=(0, 10), ylim=(0, 1), grid=False, xticks=False, yticks=False)
    ax.span(2, 4, color=(255, 0, 0), alpha=1.0)
    img = cv.to_image()
    assert _px(img, 110, 95) == (255, 0, 0)      # x = 3 inside the span
    assert _px(img, 150, 95) == (255, 255, 255)  # x = 5 outside


def test_segments_colours_labels_and_alpha_blend():
    cv = plot.Canvas(300, 120)
    ax = cv.axes((0, 0, 299, 119), xlim=(0, 3), ylim=(0, 1), grid=False, frame=False,
                 xticks=False, yticks=False)
    ax.segments([(0, 1, "A"), (1, 2, "B")], colors={"A": (0, 0, 255), "B": (0, 255, 0)},
                alpha=0.5, labels=False, outline=None)
    img = cv.to_image()
    r, g, b = _px(img, 50, 60)
    assert b == 255 and abs(r - 127) <= 2 and abs(g - 127) <= 2  # half blue over white
    r, g, b = _px(img, 150, 60)
    assert g == 255 and abs(r - 127) <= 2
    assert _px(img, 250, 60) == (255, 255, 255)  # x in (2, 3): no segment


def test_line_draws_and_long_series_are_decimated_fast():
    import time
    cv = plot.Canvas(400, 200)
    ax = cv.axes((40, 10, 390, 180), xlim=(0, 600), ylim=(-1, 1))
    t = np.linspace(0, 600, 600 * 16000 // 10)  # 960k points
    t0 = time.perf_counter()
    ax.line(t, np.sin(t), color="black")
    assert time.perf_counter() - t0 < 5.0
    img = cv.to_image()
    # the envelope of a sine covers the whole range: a dark pixel near the top and the bottom
    col = img[0, 11:180, 200].sum(-1)
    assert float(col.min()) < 0.5


def test_nice_ticks():
    assert plot.nice_ticks(0, 1, 5) == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert plot.nice_ticks(0, 3, 3) == pytest.approx([0, 1, 2, 3])
    assert plot.nice_ticks(-1, 1, 4) == pytest.approx([-1, -0.5, 0, 0.5, 1])


def test_colours_and_errors():
    assert plot.rgb("red") == (255, 0, 0)
    assert plot.rgb(0) == plot.PALETTE[0]
    assert plot.rgb((0.0, 1.0, 0.0)) == (0, 255, 0)
    with pytest.raises(InputError):
        plot.rgb(object())
    with pytest.raises(InputError):
        plot.Canvas(10, 10)
    with pytest.raises(InputError):
        plot.Canvas(100, 100).rows(20)
    cv = plot.Canvas(100, 100)
    ax = cv.axes((10, 10, 90, 90))
    with pytest.raises(InputError, match="same length"):
        ax.line([0, 1], [0, 1, 2])


def test_rows_share_x_and_stack():
    cv = plot.Canvas(300, 300)
    rows = cv.rows(3, heights=(1, 2, 1), xlim=(0, 5), titles=["a", "b", "c"])
    assert len(rows) == 3
    assert all(r.xlim == (0.0, 5.0) for r in rows)
    assert rows[0].y1 < rows[1].y0 < rows[1].y1 < rows[2].y0
    h = [r.y1 - r.y0 for r in rows]
    assert h[1] == pytest.approx(2 * h[0])
    out = plot.stack([cv.to_image(), plot.Canvas(300, 50).to_image()])
    assert out.shape == (1, 350, 300, 3)
    with pytest.raises(InputError):
        plot.stack([cv.to_image(), plot.Canvas(200, 50).to_image()])


def test_settings_changed_before_output_are_drawn():
    """Callers set limits, labels and tick switches after making a panel (sync.plot, visemes.preview):
    the picture follows what they are when it is made."""
    def picture(**later):
        cv = plot.Canvas(300, 200)
        ax = cv.axes((50, 20, 250, 150), xlim=(0, 10), ylim=(0, 1), xticks=False, yticks=False)
        for k, v in later.items():
            setattr(ax, k, v)
        ax.line([0, 10], [0, 1], color="black")
        return cv.to_image()

    plain = picture()
    labelled = picture(xlabel="time (s)")
    ticked = picture(show_yticks=True)
    below = (labelled - plain)[0, 151:, :].abs().sum()  # the label is under the plot area
    left = (ticked - plain)[0, :, :50].abs().sum()       # the tick labels left of it
    assert float(below) > 10 and float(left) > 10
    assert torch.equal(picture()[0, 20:150, 50:250], plain[0, 20:150, 50:250])  # deterministic
