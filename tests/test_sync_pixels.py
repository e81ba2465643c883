"""SyncScore at large frame sizes and its inner-mouth pixel signal (issues 15 and 18):
frame_lip_signal cut by pixels (the same values whatever the budget, every run within it), the
measures reading only the mouth's window, and the pixel components' multiple-correlation curve."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from comfyui_lipsync.lipsync_models import face, media, sync
from comfyui_lipsync.lipsync_models.sync import frames as sync_frames
from comfyui_lipsync.lipsync_models.sync import mouth_pixels


@pytest.fixture(scope="module")
def grid_clip(grid_dir):
    frames, fps, _ = media.read_video(str(grid_dir / "bbaf2n.mpg"))
    img = frames.float() / 255.0
    return img, fps, face.track_faces(img, detector="haar")


def test_frame_lip_signal_is_the_same_whatever_the_pixel_budget(grid_clip, monkeypatch):
    img, _, track = grid_clip
    whole = sync.frame_lip_signal(img, track)
    runs = []
    real = sync_frames._pixel_chunks

    def spy(*a, **k):
        out = real(*a, **k)
        runs.append(out)
        return out

    monkeypatch.setattr(sync_frames, "_pixel_chunks", spy)
    monkeypatch.setattr(sync_frames, "CHUNK_PIXELS", 150_000)
    small = sync_frames.frame_lip_signal(img, track)
    np.testing.assert_allclose(small, whole, atol=1e-6)
    # the small budget did cut the clip into more runs than the 64-frame default would
    assert len(runs[0]) > -(-img.shape[0] // 64)
    assert sum(len(r) for r in runs[0]) == img.shape[0]


def test_pixel_chunks_bound_the_window_of_a_moving_head():
    # a mouth sweeping across a 1080p frame: a 64-frame run would span the whole width
    n = 100
    centre = np.stack([np.linspace(200, 1700, n), np.full(n, 540.0)], 1)
    reach = np.full(n, 150.0)
    budget = 2_000_000
    runs = sync_frames._pixel_chunks(np.arange(n), centre, reach, (1080, 1920), 64, 96 * 96, budget)
    assert np.concatenate(runs).tolist() == list(range(n))
    for r in runs:
        w = min(centre[r, 0].max() + 150, 1920) - max(centre[r, 0].min() - 150, 0) + 2
        h = 300 + 2
        assert len(r) == 1 or (w * h + 96 * 96) * len(r) <= budget


def test_measures_do_not_read_outside_the_mouth_window(grid_clip):
    # NaN far from the face: the measures read only the window around the mouth, so they stay
    # finite (check=False: the NaN check is the caller's, done once per clip)
    img, fps, track = grid_clip
    spoiled = img.clone()
    spoiled[:, :20, :20] = float("nan")
    np.testing.assert_allclose(sync.frame_lip_signal(spoiled, track, check=False), sync.frame_lip_signal(img, track))
    np.testing.assert_allclose(sync.flow_opening(spoiled, track, fps, check=False), sync.flow_opening(img, track, fps))
    got = mouth_pixels.mouth_patches(spoiled, track, check=False)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, mouth_pixels.mouth_patches(img, track))


def test_mouth_components_follow_the_lips(grid_clip):
    # the inner-mouth patch's components explain the track's own lip signal (measured by another
    # method, on the same crops): far above what as many random components explain
    img, fps, track = grid_clip
    comps = mouth_pixels.mouth_components(mouth_pixels.mouth_patches(img, track), fps)
    # 75 frames: one component per FRAMES_PER_COMPONENT frames, at most COMPONENTS
    assert comps.shape == (75, min(mouth_pixels.COMPONENTS, 75 // mouth_pixels.FRAMES_PER_COMPONENT))
    lip = sync.track_lip_signal(track)
    r = mouth_pixels.subspace_curves(comps, {}, {"lip": lip}, fps, np.array([0.0]))[0, 0]
    rng = np.random.default_rng(0)
    chance = [mouth_pixels.subspace_curves(rng.standard_normal(comps.shape), {}, {"lip": lip}, fps,
                                           np.array([0.0]))[0, 0] for _ in range(20)]
    assert r > max(chance) + 0.2


def test_subspace_curve_peaks_at_the_delay_of_a_mixed_signal():
    # audio a; components: a seen 3 frames earlier, mixed into 4 directions with noise
    rng = np.random.default_rng(1)
    n, fps = 200, 25.0
    a = np.convolve(rng.standard_normal(n + 20), np.ones(3) / 3, mode="same")
    seen = a[7:7 + n]  # visual frame i shows a[i + 7]...
    audio = a[4:4 + n]  # ...which the audio plays at frame i + 3
    mix = rng.standard_normal((1, 4))
    comps = seen[:, None] * mix + 0.3 * rng.standard_normal((n, 4))
    lags = np.arange(-8, 8.01, 1.0)
    curves = mouth_pixels.subspace_curves(comps, {}, {"a": audio}, fps, lags)
    assert curves.shape == (2, lags.size)
    assert lags[np.argmax(curves[0])] == 3 and lags[np.argmax(curves[1])] == 3
    # multiple correlation: within 0..1, the same for any mix of the components
    assert curves.min() >= 0 and curves.max() <= 1
    again = mouth_pixels.subspace_curves(comps @ rng.standard_normal((4, 4)), {}, {"a": audio}, fps, lags)
    np.testing.assert_allclose(again, curves, atol=1e-9)
