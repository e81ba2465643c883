"""The built-in generator (lipsync_models/generator.py) and LipSyncInference with it.

Checked with the face half's own mouth-opening measure (face.mouth_opening) on the output
crops: the output opening must follow the requested jaw_open track (Pearson r >= 0.9) on GRID
clips and on the still astronaut clip, and footage that already moves must not show through.
Lips drawn in one flat colour (no reference frame) are checked with face.mouth_contrast: the
opening measure counts lips duller than the skin as inner mouth, and the flat colour is.
"""

from dataclasses import replace

import numpy as np
import pytest
import torch

from comfyui_lipsync.lipsync_models import backends, composite, face, generator, media, types
from comfyui_lipsync.lipsync_models import audio as audio_mod
from comfyui_lipsync.lipsync_models.errors import InputError, LengthMismatchError
from comfyui_lipsync.nodes.lipsync_inference import LipSyncInference

G = generator


def _jaw_track(n: int, seed: int) -> torch.Tensor:
    """A varied jaw_open track in [0, 1] (random, lightly smoothed like speech)."""
    g = torch.Generator().manual_seed(seed)
    j = torch.rand(n, generator=g)
    j = torch.nn.functional.avg_pool1d(j[None, None], 3, 1, 1, count_include_pad=False)[0, 0]
    return (j - j.min()) / (j.max() - j.min())


def _params(jaw: torch.Tensor) -> torch.Tensor:
    p = torch.zeros(len(jaw), 5)
    p[:, 0] = jaw
    return p


def _mouth_in_crop(track: types.FaceTrack) -> torch.Tensor:
    m = track.transform.float()
    return track.mouth.float() @ m[:, :, :2].transpose(1, 2) + m[:, None, :, 2]


def _pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(np.corrcoef(a.double().numpy(), b.double().numpy())[0, 1])


def _partial(x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> float:
    """r(x, y) with z held fixed."""
    rxy, rxz, ryz = _pearson(x, y), _pearson(x, z), _pearson(y, z)
    return (rxy - rxz * ryz) / float(np.sqrt((1 - rxz ** 2) * (1 - ryz ** 2)))


@pytest.fixture(scope="module")
def astronaut():
    from skimage import data

    frames = (torch.from_numpy(data.astronaut()).float() / 255)[None].repeat(75, 1, 1, 1)
    track = face.track_faces(frames, crop_size=256)
    crops = composite.crop_faces(frames, track).permute(0, 3, 1, 2).contiguous()
    return frames, track, crops, _mouth_in_crop(track)


@pytest.fixture(scope="module")
def grid_clip(grid_dir):
    frames, fps, aud = media.read_video(str(grid_dir / "bbaf2n.mpg"))
    frames = frames.float() / 255
    track = face.track_faces(frames, crop_size=256)
    return frames, fps, aud, track


def _face_crop(size: int = 128, gap: float = 0.0):
    """A drawn face crop: skin, red lips (closed when gap = 0) centred, and its landmarks."""
    yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    img = torch.empty(3, size, size)
    img[0], img[1], img[2] = 0.85, 0.65, 0.55
    c, w = size / 2, 0.3 * size
    lip = ((xx - c) / (w / 2)) ** 2 + ((yy - c) / (0.08 * size + gap / 2)) ** 2 < 1
    img[:, lip] = torch.tensor([0.75, 0.3, 0.3])[:, None]
    inner = (((xx - c) / (w / 2)) ** 2 < 1) & ((yy - c).abs() < gap / 2)
    img[:, inner] = 0.05
    img = img + 0.02 * torch.sin(xx / 3)[None] * torch.cos(yy / 5)[None]  # some texture
    lm = torch.tensor([[c - w / 2, c], [c + w / 2, c], [c, c - 0.08 * size - gap / 2], [c, c + 0.08 * size + gap / 2],
                       [c, c - gap / 2], [c, c + gap / 2], [c, c - 0.2 * size], [c, c + 0.3 * size]])
    return img.clamp(0, 1), lm


# --- identity ---------------------------------------------------------------------------------

@pytest.mark.parametrize("batch", [1, 3])
def test_rest_pose_is_identity_on_closed_lips(batch):
    img, lm = _face_crop()
    crops = img[None].repeat(batch, 1, 1, 1)
    out = G.generate(crops, lm[None].repeat(batch, 1, 1), torch.tensor([G.REST_POSE] * batch))
    assert out.shape == crops.shape and out.dtype == crops.dtype
    assert (out - crops).abs().max() <= 1e-5


def test_rest_pose_is_identity_on_tracked_still_clip(astronaut):
    _, track, crops, mouth = astronaut
    rest = G.mouth_rest(mouth)
    out = G.generate(crops, mouth, torch.zeros(len(crops), 5), rest=rest)
    assert (out - crops).abs().max() <= 1e-5


def test_strength_zero_gives_the_crops_back():
    img, lm = _face_crop()
    p = torch.tensor([[1.0, 0.5, 0.2, 0.0, 0.3]])
    out = G.generate(img[None], lm[None], p, strength=0.0)
    assert (out - img[None]).abs().max() <= 1e-5
    assert (G.generate(img[None], lm[None], p) - img[None]).abs().max() > 0.2


# --- geometry worked out by hand ----------------------------------------------------------------

def _closed_mouth(width=100.0, c=128.0):
    return torch.tensor([[[c - width / 2, c], [c + width / 2, c], [c, c - 12], [c, c + 14],
                          [c, c], [c, c], [c, c - 40], [c, c + 80]]])


# --- kornia's recipe: reference values, device and dtype ----------------------------------------

def test_wendland_kernel_and_rbf_interpolation_by_hand():
    """Wendland's C2 kernel (1 - r)^4 (4 r + 1): 1 at 0, 3/16 at 1/2 (worked by hand), 0 from 1
    on; the interpolant through control points reproduces their values (up to the small ridge)
    and is exactly 0 farther than the radius from every control point."""
    r = torch.tensor([0.0, 0.5, 1.0, 1.7])
    torch.testing.assert_close(G._wendland(r), torch.tensor([1.0, 3.0 / 16.0, 0.0, 0.0]))
    ctrl = torch.tensor([[[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [7.0, 7.0]]], dtype=torch.float64)
    vals = torch.tensor([[[1.0, -2.0], [0.5, 0.0], [0.0, 3.0], [-1.0, 1.0]]], dtype=torch.float64)
    radius = torch.tensor([15.0], dtype=torch.float64)
    coef = G._rbf_fit(ctrl, vals, radius)
    torch.testing.assert_close(G._rbf_eval(coef, ctrl, ctrl, radius), vals, atol=1e-3, rtol=0)
    far = torch.tensor([[[40.0, 40.0], [-30.0, 0.0]]], dtype=torch.float64)
    assert torch.equal(G._rbf_eval(coef, ctrl, far, radius), torch.zeros(1, 2, 2, dtype=torch.float64))


@pytest.mark.parametrize("batch", [1, 4])
def test_generate_on_each_device_and_dtype(batch, device, dtype):
    """Smoke and batch sizes on each device and float dtype: the output follows the input's device
    and dtype, stays in 0..1, changes the mouth and nothing far from it (the top rows), and agrees
    with the float64 CPU result."""
    img, lm = _face_crop(64)
    crops = img[None].repeat(batch, 1, 1, 1)
    params = torch.zeros(batch, 5)
    params[:, 0] = torch.linspace(0.5, 1.0, batch)
    out = G.generate(crops.to(device, dtype), lm[None].repeat(batch, 1, 1).to(device, dtype), params.to(device, dtype))
    assert out.device.type == device.type and out.dtype == dtype and out.shape == crops.shape
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    diff = (out.cpu().double() - crops.double()).abs()
    assert (diff[:, :, 26:40, 20:44].amax((1, 2, 3)) > 0.05).all() and float(diff[:, :, :8].max()) < 1e-5
    ref = G.generate(crops.double(), lm[None].repeat(batch, 1, 1).double(), params.double())
    torch.testing.assert_close(out.cpu().double(), ref, atol=2e-3, rtol=0)


def test_target_landmarks_jaw_open():
    """jaw_open = 1 on a closed, level mouth 100 px wide (its own rest), worked by hand in terms of
    the named shape constants: the lips part by JAW_MAX widths, the lower lip carrying LOWER_SHARE
    of it; lip thickness, the centre line and the nose do not change."""
    lm = _closed_mouth()
    t = G.target_landmarks(lm, torch.tensor([[1.0, 0, 0, 0, 0]]))[0]
    d = G.JAW_MAX * 100
    # the opening asked for is the opening made: the inner lips end d apart ...
    assert float(t[5, 1] - t[4, 1]) == pytest.approx(d, abs=1e-3)
    # ... the lower lip (and its outer edge, the lip keeps its 14 px) drops its share, the upper
    # lip (keeping its 12 px) lifts the rest
    assert t[5].tolist() == pytest.approx([128, 128 + G.LOWER_SHARE * d], abs=1e-3)
    assert t[3].tolist() == pytest.approx([128, 128 + 14 + G.LOWER_SHARE * d], abs=1e-3)
    assert t[4].tolist() == pytest.approx([128, 128 - (1 - G.LOWER_SHARE) * d], abs=1e-3)
    assert t[2].tolist() == pytest.approx([128, 128 - 12 - (1 - G.LOWER_SHARE) * d], abs=1e-3)
    # the chin follows the jaw, the corners drop and come in symmetrically, the nose stays
    assert t[7].tolist() == pytest.approx([128, 208 + G.CHIN_SHARE * d], abs=1e-3)
    half = 50 * (1 - G.OPEN_NARROW)
    assert t[0].tolist() == pytest.approx([128 - half, 128 + G.CORNER_DROP * d], abs=1e-3)
    assert t[1].tolist() == pytest.approx([128 + half, 128 + G.CORNER_DROP * d], abs=1e-3)
    assert t[6].tolist() == pytest.approx([128, 88], abs=1e-3)
    # half the jaw opens the mouth half as far (the opening is linear in jaw_open)
    t2 = G.target_landmarks(lm, torch.tensor([[0.5, 0, 0, 0, 0]]))[0]
    assert float(t2[5, 1] - t2[4, 1]) == pytest.approx(d / 2, abs=1e-3)


@pytest.mark.parametrize("params, factor", [((0, 1, 0, 0, 0), lambda: 1 + G.SPREAD),
                                            ((0, 0, 1, 0, 0), lambda: 1 - G.ROUND),
                                            ((0, 0, 0, 0, 0), lambda: 1.0)])
def test_target_landmarks_width(params, factor):
    """Spreading widens and rounding narrows the 100-px mouth by the named fractions; the rest
    pose keeps its width; the mouth stays centred."""
    t = G.target_landmarks(_closed_mouth(), torch.tensor([params], dtype=torch.float32))[0]
    assert float(t[1, 0] - t[0, 0]) == pytest.approx(100 * factor(), abs=1e-3)
    assert float(t[1, 0] + t[0, 0]) / 2 == pytest.approx(128, abs=1e-3)


def test_target_landmarks_shape_constants_are_sane():
    """The fitted shape constants (lipsync_models/calibration.py) within what a mouth can do: the
    widest opening inside the range filmed GRID speakers reach (0.15-0.48 of the width), the jaw
    carrying most of it."""
    assert 0.15 <= G.JAW_MAX <= 0.48
    assert 0.5 < G.LOWER_SHARE <= 1


def test_target_landmarks_close_an_open_mouth_at_rest():
    # the footage's mouth is open 20 px; the clip's rest gap is 0: the lips must meet, the
    # lower lip (and chin) carrying 85 % of the closing
    lm = _closed_mouth()
    lm[0, 4, 1] -= 3
    lm[0, 5, 1] += 17
    rest = G.MouthRest(width=torch.tensor(100.0), gap=torch.tensor(0.0))
    t = G.target_landmarks(lm, torch.zeros(1, 5), rest=rest)[0]
    assert float(t[5, 1] - t[4, 1]) == pytest.approx(0.0, abs=1e-3)
    assert float(t[4, 1]) == pytest.approx(125 + 3.0, abs=1e-3)
    assert float(t[7, 1]) == pytest.approx(208 - 17.0, abs=1e-3)


def test_target_lips_take_the_clips_lip_thickness():
    # three frames; in the last the tracker puts the lower outer lip 10 px lower (0.1 mouth
    # widths, beyond twice the 4 % dead zone): the clip's median lower lip (14 px) is used
    lm = _closed_mouth().repeat(3, 1, 1)
    lm[2, 3, 1] += 10
    rest = G.mouth_rest(lm)
    assert float(rest.lower) == pytest.approx(14.0, abs=1e-4) and float(rest.upper) == pytest.approx(12.0, abs=1e-4)
    t = G.target_landmarks(lm, torch.zeros(3, 5), rest=rest)
    assert t[:, 3, 1].tolist() == pytest.approx([142.0, 142.0, 142.0], abs=1e-3)
    assert t[:, 2, 1].tolist() == pytest.approx([116.0, 116.0, 116.0], abs=1e-3)


def test_lip_close_cancels_opening_and_teeth_show_for_f():
    img, lm = _face_crop(128)
    base = G.generate(img[None], lm[None], torch.tensor([[0.6, 0, 0, 1.0, 0]]))
    assert (base - img[None]).abs().max() > 0.01  # pressed lips change the picture ...
    t = G.target_landmarks(lm[None], torch.tensor([[0.6, 0, 0, 1.0, 0]]))[0]
    assert float(t[5, 1] - t[4, 1]) == pytest.approx(0.0, abs=1e-3)  # ... but open nothing
    f = G.generate(img[None], lm[None], torch.tensor([[0.0, 0, 0, 0, 1.0]]))[0]
    tf = G.target_landmarks(lm[None], torch.tensor([[0.0, 0, 0, 0, 1.0]]))[0]
    ys = slice(int(tf[4, 1]) + 1, int(tf[5, 1]))
    mid = f[:, ys, 60:68]
    assert mid.numel() > 0
    # the gap under the lifted upper lip shows bright, unsaturated teeth
    assert float(mid.mean()) > 0.6 and float(mid.max(0).values.mean() - mid.min(0).values.mean()) < 0.2


# --- the opening measure follows the track --------------------------------------------------

def test_opening_follows_jaw_on_still_astronaut(astronaut):
    _, _, crops, mouth = astronaut
    jaw = _jaw_track(len(crops), seed=3)
    out = G.generate(crops, mouth, _params(jaw), rest=G.mouth_rest(mouth))
    opening = face.mouth_opening(out.permute(0, 2, 3, 1))
    assert _pearson(opening, jaw) >= 0.9
    # the warp is local: the eye line (top tenth of the crop, 1.4 mouth widths above the
    # mouth) is untouched
    assert (out[:, :, :24] - crops[:, :, :24]).abs().max() < 1e-5


def _measure(lips: str):
    """The opening measure that reads these lips right, and its name in the face track:
    drawn lips are duller than lbax4n's skin, which face.mouth_opening reads as inner mouth."""
    if lips == "drawn":
        return face.mouth_contrast, lambda track: track.extras["contrast"]
    return face.mouth_opening, lambda track: track.opening


def _rest(crops, mouth, track, lips: str) -> "G.MouthRest":
    """The clip's rest mouth; lips "borrowed": with its closed frame as the node builds it
    (the lips' texture from the footage), "drawn": without (one flat lip colour)."""
    rest = G.mouth_rest(mouth)
    if lips == "drawn":
        return rest
    ref = G.reference_frame(mouth, track.found)
    return replace(rest, ref_crop=crops[ref], ref_mouth=mouth[ref])


@pytest.mark.parametrize("lips", ["drawn", "borrowed"])
@pytest.mark.parametrize("clip, seed", [("lbax4n", 5), ("swwp2s", 7)])
def test_opening_follows_jaw_on_grid(grid_dir, clip, seed, lips):
    frames, _, _ = media.read_video(str(grid_dir / f"{clip}.mpg"))
    frames = frames.float() / 255
    track = face.track_faces(frames, crop_size=256)
    crops = composite.crop_faces(frames, track).permute(0, 3, 1, 2)
    mouth = _mouth_in_crop(track)
    jaw = _jaw_track(len(frames), seed)
    out = G.generate(crops, mouth, _params(jaw), rest=_rest(crops, mouth, track, lips))
    measure, of_track = _measure(lips)
    opening = measure(out.permute(0, 2, 3, 1))
    assert _pearson(opening, jaw) >= 0.9
    # the speaker's own motion does not show through, not even beyond what the jaw track
    # explains (partial correlation with the jaw track held fixed)
    orig = of_track(track).float()
    assert abs(_pearson(opening, orig)) < 0.4
    # Show-through is a positive partial r. Over 75 frames a partial r with no relation at all
    # has a standard error of about 1 / sqrt(72) = 0.12. Measured on the four cases here: +0.08,
    # +0.09, +0.29 and -0.35 (lbax4n with borrowed lips, a small over-correction: the output
    # opens a little less where the footage opens). The bars: below +0.4, about one standard
    # error above the largest positive figure (mixing 30 % of the footage back into the output
    # measures +0.72 to +0.93 on three of the four cases); above -0.5, about one standard error
    # beyond the known over-correction.
    partial = _partial(opening, orig, jaw)
    assert -0.5 < partial < 0.4, partial


@pytest.mark.parametrize("lips", ["drawn", "borrowed"])
def test_footage_motion_is_removed_at_rest(grid_dir, lips):
    # lbax4n: the speaker with the widest mouth motion of the GRID clips
    frames, _, _ = media.read_video(str(grid_dir / "lbax4n.mpg"))
    frames = frames.float() / 255
    track = face.track_faces(frames, crop_size=256)
    crops = composite.crop_faces(frames, track).permute(0, 3, 1, 2)
    mouth = _mouth_in_crop(track)
    out = G.generate(crops, mouth, torch.zeros(len(frames), 5), rest=_rest(crops, mouth, track, lips))
    measure, _ = _measure(lips)
    before = measure(crops.permute(0, 2, 3, 1))
    after = measure(out.permute(0, 2, 3, 1))
    # the mouth is re-rendered closed in every frame: what is left is the measure's own noise
    # (borrowed lips: 0.011 against 0.070; a warp-only generator left 0.039 with the contrast)
    assert float(after.std()) < 0.3 * float(before.std())
    assert float(after.max()) < 0.5 * float(before.max())


def test_borrowed_lips_come_from_a_closed_frame_of_usual_width():
    gaps = [4.0, 0.0, 6.0, 20.0, 0.1, 5.0, 7.0, 3.0, 8.0, 9.0]  # px of a 100-px mouth
    lm = _closed_mouth().repeat(len(gaps), 1, 1)
    for i, g in enumerate(gaps):
        lm[i, 4, 1] -= g / 2
        lm[i, 5, 1] += g / 2
    assert G.reference_frame(lm) == 1
    lm[1, 1, 0] += 30  # the most closed frame is too wide: the next closed one is taken
    assert G.reference_frame(lm) == 4
    found = torch.ones(len(gaps), dtype=torch.bool)
    found[4] = False  # ... unless the face was lost there
    assert G.reference_frame(lm, found) == 7


def test_borrowed_lips_carry_the_reference_texture_not_this_frames():
    # the reference: textured red lips; this frame: the same face whose lips are painted flat
    # green (anything the footage has there). The re-rendered lips must be the reference's.
    ref, lm = _face_crop(128)
    yy, xx = torch.meshgrid(torch.arange(128).float(), torch.arange(128).float(), indexing="ij")
    stripes = 0.08 * torch.sin(xx / 1.5)
    lip = ref[1] < 0.45
    ref = ref + (stripes * lip)[None]
    frame = ref.clone()
    frame[:, lip] = torch.tensor([0.2, 0.6, 0.2])[:, None]
    p = torch.tensor([[0.8, 0.0, 0.0, 0.0, 0.0]])
    rest = replace(G.mouth_rest(lm[None]), ref_crop=ref, ref_mouth=lm)
    out = G.generate(frame[None], lm[None], p, rest=rest)[0]
    t = G.target_landmarks(lm[None], p, rest=rest)[0]
    # the middle of the upper lip in the output: red, and striped like the reference
    y = int(round(float(t[2, 1] + t[4, 1]) / 2))
    band = out[:, y, 54:74]
    assert float(band[0].mean()) > float(band[1].mean()) + 0.2  # red, not green
    assert float(band[1].std()) > 0.03  # the stripes (drawn lips are one flat colour)
    drawn = G.generate(frame[None], lm[None], p, rest=G.mouth_rest(lm[None]))[0][:, y, 54:74]
    assert float(drawn[1].std()) < 0.5 * float(band[1].std())
    # a brighter frame brightens the borrowed lips with it
    bright = G.generate((frame * 1.2).clamp(0, 1)[None], lm[None], p, rest=rest)[0][:, y, 54:74]
    assert float(bright.mean()) > 1.1 * float(band.mean())


def test_borrowed_lips_keep_the_footage_texture_on_grid(grid_dir):
    # lbax4n: the lips' fine detail (horizontal second differences in the lip band) survives
    # with borrowed lips and is lost with drawn ones
    frames, _, _ = media.read_video(str(grid_dir / "lbax4n.mpg"))
    frames = frames[:20].float() / 255
    track = face.track_faces(frames, crop_size=256)
    crops = composite.crop_faces(frames, track).permute(0, 3, 1, 2)
    mouth = _mouth_in_crop(track)
    p = _params(torch.full((20,), 0.5))
    t = G.target_landmarks(mouth, p, rest=G.mouth_rest(mouth))

    def detail(img, marks):
        out = []
        for i in range(len(img)):
            y = int(round(float(marks[i, 3, 1] + marks[i, 5, 1]) / 2))  # middle of the lower lip
            x0, x1 = int(marks[i, 0, 0]) + 10, int(marks[i, 1, 0]) - 10
            row = img[i, 1, y, x0:x1]
            out.append(float((row[2:] - 2 * row[1:-1] + row[:-2]).abs().mean()))
        return float(np.mean(out))

    original = detail(crops, mouth)
    borrowed = detail(G.generate(crops, mouth, p, rest=_rest(crops, mouth, track, "borrowed")), t)
    drawn = detail(G.generate(crops, mouth, p, rest=_rest(crops, mouth, track, "drawn")), t)
    assert borrowed > 0.6 * original and borrowed > 2 * drawn


# --- batching, determinism, dtype ---------------------------------------------------------------

def test_batches_agree_and_runs_are_deterministic(astronaut):
    _, _, crops, mouth = astronaut
    crops, mouth = crops[:6], mouth[:6]
    rest = G.mouth_rest(mouth)
    p = _params(torch.linspace(0.1, 0.9, 6))
    p[:, 1] = torch.linspace(0, 1, 6)
    whole = G.generate(crops, mouth, p, rest=rest)
    again = G.generate(crops, mouth, p, rest=rest)
    assert torch.equal(whole, again)
    parts = torch.cat([G.generate(crops[i:i + 2], mouth[i:i + 2], p[i:i + 2], rest=rest) for i in (0, 2, 4)])
    assert (whole - parts).abs().max() < 1e-4
    f64 = G.generate(crops.double(), mouth.double(), p.double(), rest=rest)
    assert f64.dtype == torch.float64 and (f64.float() - whole).abs().max() < 1e-3


def test_inputs_not_modified(astronaut):
    _, _, crops, mouth = astronaut
    c, m = crops[:2].clone(), mouth[:2].clone()
    G.generate(c, m, _params(torch.tensor([1.0, 0.5])))
    assert torch.equal(c, crops[:2]) and torch.equal(m, mouth[:2])


def test_bad_inputs_raise_clear_errors():
    img, lm = _face_crop()
    with pytest.raises(InputError, match="mouth parameters"):
        G.generate(img[None], lm[None], torch.zeros(1, 4))
    with pytest.raises(InputError, match="crops"):
        G.generate(img, lm[None], torch.zeros(1, 5))
    with pytest.raises(InputError, match="strength"):
        G.generate(img[None], lm[None], torch.zeros(1, 5), strength=3.0)


# --- the node ---------------------------------------------------------------------------------

def _node_inputs(grid_clip, jaw=None, n_vis=None, n_drv=None):
    frames, fps, (wav, sr), track = grid_clip
    t = len(frames)
    driver = audio_mod.make_driver({"waveform": wav[None], "sample_rate": sr}, fps, n_drv or t)
    n = n_vis or t
    jaw = jaw if jaw is not None else _jaw_track(n, 11)
    vis = types.VisemeTrack(weights=torch.ones(n, 1), params=_params(jaw), names=("A",), viseme_set="test", fps=fps)
    return frames, track, vis, driver


def _defaults():
    """The node's widget defaults, with the warp generator (this file's subject) as the model; the
    default model, the clip's own mouths, is tested in test_mouth_bank.py."""
    req = LipSyncInference.INPUT_TYPES()["required"]
    d = {k: v[1]["default"] for k, v in req.items() if len(v) > 1 and "default" in v[1]}
    return {**d, "model": backends.WARP}


def test_node_interface():
    spec = LipSyncInference.INPUT_TYPES()
    req = spec["required"]
    assert all("tooltip" in s[1] for group in spec.values() for s in group.values())
    assert req["model"][0][0] == "built-in (no weights)" and req["model"][1]["default"] == "built-in (no weights)"
    assert backends.WARP in req["model"][0]
    assert LipSyncInference.RETURN_TYPES == ("IMAGE", types.FACE_TRACK)
    assert LipSyncInference.CATEGORY == "lipsync/generate"
    assert len(LipSyncInference.OUTPUT_TOOLTIPS) == 2


def test_node_builtin_on_grid(grid_clip):
    frames, track, vis, driver = _node_inputs(grid_clip)
    crops, out_track = LipSyncInference().run(frames, track, vis, driver, **_defaults())
    assert crops.shape == (len(frames), 256, 256, 3) and crops.dtype == torch.float32
    # the track Composite needs is the input's, with a report line naming the generator
    assert out_track.transform is track.transform and out_track.mouth is track.mouth
    assert out_track.report.splitlines()[-1] == f"generator: {backends.WARP}"
    assert _pearson(face.mouth_opening(crops), vis.param("jaw_open")) >= 0.9
    # ready for Composite: same frame count, size and track
    pasted = composite.composite(frames[:4], crops[:4], _slice_track(out_track, 4))
    assert pasted.shape == frames[:4].shape


def _slice_track(track, n):
    return track.frames(slice(0, n))


def test_node_lip_frame_picks_whose_lips_the_mouth_wears(grid_clip, caplog):
    frames, track, vis, driver = _node_inputs(grid_clip)
    d = _defaults()
    assert LipSyncInference.INPUT_TYPES()["optional"]["lip_frame"][1]["default"] == -1
    with caplog.at_level("INFO", logger="comfyui_lipsync"):
        auto, _ = LipSyncInference().run(frames, track, vis, driver, **d)
    ref = G.reference_frame(_mouth_in_crop(track), track.found)
    assert f"lips from frame {ref}" in caplog.text
    same, _ = LipSyncInference().run(frames, track, vis, driver, lip_frame=ref, **d)
    assert torch.equal(auto, same)
    # another frame's lips: a different picture, the same mouth motion
    other = (ref + 30) % len(frames)
    moved, _ = LipSyncInference().run(frames, track, vis, driver, lip_frame=other, **d)
    assert (moved - auto).abs().amax() > 0.05
    assert _pearson(face.mouth_opening(moved), vis.param("jaw_open")) >= 0.9
    with pytest.raises(InputError, match="lip_frame 75 is past the clip's last frame \\(74\\)"):
        LipSyncInference().run(frames, track, vis, driver, lip_frame=75, **d)


def test_node_length_mismatch_names_every_count(grid_clip):
    frames, track, vis, driver = _node_inputs(grid_clip, n_vis=74, n_drv=76)
    with pytest.raises(LengthMismatchError) as e:
        LipSyncInference().run(frames, track, vis, driver, **_defaults())
    msg = str(e.value)
    for part in ("LipSyncInference", "images 75", "face_track 75", "visemes 74", "driver 76"):
        assert part in msg


def test_node_progress_per_batch(grid_clip, monkeypatch):
    from comfyui_lipsync.nodes import _comfy

    calls = []
    monkeypatch.setattr(_comfy.Progress, "hook", staticmethod(lambda done, total: calls.append((done, total))))
    frames, track, vis, driver = _node_inputs(grid_clip)
    LipSyncInference().run(frames, track, vis, driver, model=backends.WARP, strength=1.0, batch_size=32)
    assert calls == [(1, 3), (2, 3), (3, 3)]
