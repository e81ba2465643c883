"""Composite: aligned crops out, generated crops back in, only inside the lower-face mask."""

import dataclasses
import math

import numpy as np
from dataclasses import replace

import pytest
import torch

from comfyui_lipsync.lipsync_models import composite as C
from comfyui_lipsync.lipsync_models.errors import InputError, LengthMismatchError
from comfyui_lipsync.lipsync_models.types import FaceTrack
from comfyui_lipsync.nodes import _comfy
from comfyui_lipsync.nodes.composite import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS, Composite

TOL = 1.0 / 255

# Mouth landmarks in a mouth-centred crop, as fractions of the crop side (face.py's geometry:
# mouth 0.27 wide at the centre, nose bottom 0.14 above it, chin 0.24 below), MOUTH_POINTS order.
CROP_LANDMARKS = torch.tensor([
    [0.5 - 0.135, 0.5], [0.5 + 0.135, 0.5], [0.5, 0.45], [0.5, 0.56],
    [0.5, 0.49], [0.5, 0.51], [0.5, 0.36], [0.5, 0.74],
], dtype=torch.float64)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small tensors: one thread is faster and steady on a busy 2-core machine (a parallel region
    waits for a descheduled thread); restored after this module."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def similarity(scale, angle, cx, cy, size):
    """(2, 3) frame->crop matrix: frame point (cx, cy) to the crop centre, rotated, scaled."""
    a, b = scale * math.cos(angle), scale * math.sin(angle)
    rot = torch.tensor([[a, b], [-b, a]], dtype=torch.float64)
    half = (size - 1) / 2
    t = torch.tensor([half, half], dtype=torch.float64) - rot @ torch.tensor([cx, cy], dtype=torch.float64)
    return torch.cat([rot, t[:, None]], 1)


def make_track(mats, size, hw):
    """A FaceTrack from (B, 2, 3) matrices with landmarks placed consistently in the crop."""
    mats = torch.as_tensor(mats, dtype=torch.float64)
    b = mats.shape[0]
    full = torch.zeros(b, 3, 3, dtype=torch.float64)
    full[:, :2], full[:, 2, 2] = mats, 1
    inv = torch.linalg.inv(full)
    pts = (CROP_LANDMARKS * (size - 1))[None] @ inv[:, :2, :2].transpose(1, 2) + inv[:, None, :2, 2]
    xy = pts.float()
    boxes = torch.cat([xy.amin(1) - 20, xy.amax(1) + 20], 1)
    return FaceTrack(boxes=boxes, mouth=xy, opening=torch.zeros(b), transform=mats.float(),
                     crop_size=size, frame_size=tuple(hw), found=torch.ones(b, dtype=torch.bool))


@pytest.fixture(scope="module")
def astronaut():
    from skimage import data

    return torch.from_numpy(data.astronaut()).float() / 255  # (512, 512, 3), lips near (223, 147)


@pytest.fixture(scope="module")
def clip(astronaut):
    """Four astronaut frames with different scale / rotation / translation of the crop."""
    frames = astronaut[None].repeat(4, 1, 1, 1)
    frames[1] = torch.roll(astronaut, shifts=(3, -5), dims=(0, 1))
    size = 128
    mats = torch.stack([
        similarity(0.9, 0.0, 223, 147, size),      # crop a bit larger than the face region
        similarity(1.7, 0.15, 218, 150, size),     # upscaled, rotated
        similarity(0.55, -0.3, 225, 140, size),    # downscaled, rotated the other way
        similarity(1.0, 0.0, 480, 20, size),       # half off the frame (top-right corner)
    ])
    return frames, make_track(mats, size, (512, 512))


def frame_mask(track, frames, **kw):
    """The blend mask composite uses, read back in frame space: paste white onto black."""
    black = torch.zeros_like(frames)
    white = torch.ones(track.num_frames, track.crop_size, track.crop_size, 3)
    return C.composite(black, white, track, color_match=False, keep_detail=False, **kw)[..., 0]


# --- crop_faces --------------------------------------------------------------------------------

def test_crop_faces_integer_shift_is_an_exact_slice(astronaut):
    frames = astronaut[None].repeat(2, 1, 1, 1)
    mats = torch.tensor([[[1, 0, -100], [0, 1, -60]], [[1, 0, -150], [0, 1, -90]]], dtype=torch.float64)
    crops = C.crop_faces(frames, make_track(mats, 96, (512, 512)))
    assert crops.shape == (2, 96, 96, 3)
    torch.testing.assert_close(crops[0], astronaut[60:156, 100:196], atol=1e-5, rtol=0)
    torch.testing.assert_close(crops[1], astronaut[90:186, 150:246], atol=1e-5, rtol=0)


def test_crop_faces_rotation_and_scale_known_values():
    # frame pixel value = x + 1000 y (a linear ramp): bilinear sampling reproduces it exactly
    h, w = 300, 400
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    ramp = (xs + 1000 * ys)
    frames = (ramp / 1e6)[None, ..., None].repeat(1, 1, 1, 3).float()
    m = similarity(2.0, math.pi / 6, 200, 150, 64)
    crops = C.crop_faces(frames, make_track(m[None], 64, (h, w)))
    full = torch.eye(3, dtype=torch.float64)
    full[:2] = m
    inv = torch.linalg.inv(full)
    for u, v in [(0, 0), (31, 31), (63, 10), (5, 60)]:
        x, y = (inv[:2, :2] @ torch.tensor([u, v], dtype=torch.float64) + inv[:2, 2]).tolist()
        assert crops[0, v, u, 0].item() == pytest.approx((x + 1000 * y) / 1e6, abs=2e-6)
    # the crop centre is the frame point (200, 150)
    assert crops[0, 31:33, 31:33, 0].mean().item() == pytest.approx((200 + 1000 * 150) / 1e6, abs=2e-6)


def test_crop_faces_size_rescales_the_same_area():
    # on a linear ramp, a half-size crop pixel is exactly the mean of its 2x2 block of the full crop
    h, w = 200, 240
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    frames = ((xs + 300 * ys) / 1e5)[None, ..., None].repeat(1, 1, 1, 3).float()
    track = make_track(similarity(1.3, 0.4, 120, 100, 128)[None], 128, (h, w))
    big = C.crop_faces(frames, track)
    small = C.crop_faces(frames, track, size=64)
    assert small.shape == (1, 64, 64, 3)
    blocks = big[0].unfold(0, 2, 2).unfold(1, 2, 2).mean((-1, -2))  # (64, 64, 3)
    torch.testing.assert_close(small[0], blocks, atol=2e-6, rtol=0)


def test_crop_faces_rgba_and_device_argument(astronaut):
    rgba = torch.cat([astronaut, torch.full_like(astronaut[..., :1], 0.5)], -1)[None]
    track = make_track(similarity(1.0, 0.0, 223, 147, 64)[None], 64, (512, 512))
    crops = C.crop_faces(rgba, track, device="cpu")
    assert crops.shape == (1, 64, 64, 4) and crops.dtype == rgba.dtype
    assert torch.allclose(crops[..., 3], torch.tensor(0.5))


def test_crop_faces_of_uint8_frames_are_the_rounded_crops_of_their_floats(clip):
    """Decoded uint8 frames are cut as they are (no float copy of them): uint8 crops, each pixel the
    float crop of the same frames times 255 rounded to nearest (one level off at most, where the two
    sums land on either side of a half)."""
    frames, track = clip
    u8 = (frames * 255).round().to(torch.uint8)
    got = C.crop_faces(u8, track, size=96)
    want = (C.crop_faces(u8.float() / 255, track, size=96) * 255).round()
    assert got.dtype == torch.uint8 and got.shape == (4, 96, 96, 3)
    diff = (got.float() - want).abs()
    assert float(diff.max()) <= 1 and float((diff > 0).float().mean()) < 1e-3
    assert float(got.float().std()) > 20  # real picture content, not a blank crop


def test_crop_faces_unit_cuts_uint8_frames_as_their_float_copy(clip):
    """unit=True: float crops of uint8 frames, exactly those of ``frames.float() / 255``."""
    frames, track = clip
    u8 = (frames * 255).round().to(torch.uint8)
    got = C.crop_faces(u8, track, size=96, unit=True)
    assert got.dtype == torch.float32 and torch.equal(got, C.crop_faces(u8.float() / 255, track, size=96))
    rows = C.crop_faces(u8, track, size=96, unit=True, rows=[2])
    assert torch.equal(rows[2], got[2]) and not rows[[0, 1, 3]].any()


def test_crop_faces_of_uint8_frames_checks_their_shape(clip):
    _, track = clip
    with pytest.raises(InputError, match="crop_faces"):
        C.crop_faces(torch.zeros(4, 512, 512, 2, dtype=torch.uint8), track)
    with pytest.raises(InputError, match="crop_faces"):
        C.crop_faces(torch.zeros(4, 512, 512, dtype=torch.uint8), track)


# --- composite: acceptance ---------------------------------------------------------------------

@pytest.mark.parametrize("blend", C.BLENDS)
@pytest.mark.parametrize("color_match", [True, False])
def test_untouched_crops_give_back_the_input(clip, blend, color_match):
    frames, track = clip
    crops = C.crop_faces(frames, track)
    out = C.composite(frames, crops, track, blend=blend, color_match=color_match)
    assert out.shape == frames.shape and out.dtype == frames.dtype
    assert (out - frames).abs().max().item() <= TOL


def test_untouched_crops_with_a_given_mask(clip):
    frames, track = clip
    mask = torch.ones(frames.shape[:3])
    out = C.composite(frames, C.crop_faces(frames, track), track, mask=mask)
    assert (out - frames).abs().max().item() <= TOL


@pytest.mark.parametrize("blend", C.BLENDS)
def test_altered_crops_change_only_inside_the_mask(clip, blend):
    frames, track = clip
    crops = torch.zeros(4, 128, 128, 3)
    crops[..., 1] = 1.0  # solid green
    before = frames.clone()
    out = C.composite(frames, crops, track, blend=blend, color_match=False)
    assert torch.equal(frames, before)  # input not modified
    # the support of the default mask, worked out here from the landmarks: the crop-space
    # ellipse from the nose (0.36) to 15 % below the chin (0.74 + 0.057), 1.3 mouth widths wide
    s = 127
    cx, top, bottom, ax = 0.5 * s, 0.36 * s, (0.74 + 0.15 * 0.38) * s, 1.3 * 0.27 * s
    cy, ay = (top + bottom) / 2, (bottom - top) / 2
    reach = 1.5  # the crop-space mask is resampled bilinearly: its support grows by < sqrt(2) px
    ys, xs = torch.meshgrid(torch.arange(512.0), torch.arange(512.0), indexing="ij")
    changed = (out != frames).any(-1)
    for i in range(4):
        m = track.transform[i].double()
        u = m[0, 0] * xs + m[0, 1] * ys + m[0, 2]
        v = m[1, 0] * xs + m[1, 1] * ys + m[1, 2]
        inside = ((u - cx) / (ax + reach)) ** 2 + ((v - cy) / (ay + reach)) ** 2 < 1.0
        inside &= (u > -1) & (u < s + 1) & (v > -1) & (v < s + 1)
        assert not (changed[i] & ~inside).any(), f"frame {i}: pixels outside the mask changed"
        assert changed[i].sum() > 0.5 * inside.sum(), f"frame {i}: too few pixels changed"
    # at the mask centre the picture is the crop (green)
    for i in range(3):
        full = torch.eye(3, dtype=torch.float64)
        full[:2] = track.transform[i].double()
        x, y = (torch.linalg.inv(full)[:2] @ torch.tensor([cx, cy, 1.0], dtype=torch.float64)).round().long().tolist()
        torch.testing.assert_close(out[i, y, x], torch.tensor([0.0, 1.0, 0.0]), atol=1e-4, rtol=0)


def test_no_seam_and_no_box_edge():
    # smooth background, flat crop of another colour: the only change is the mask's soft edge
    h, w = 240, 320
    ys, xs = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    frames = torch.stack([0.6 + 0.1 * xs, 0.45 + 0.1 * ys, 0.4 + 0 * xs], -1)[None]
    size, scale = 128, 1.25
    track = make_track(similarity(scale, 0.2, 160, 120, size)[None], size, (h, w))
    crops = torch.full((1, size, size, 3), 0.2)
    step = (frames - 0.2).abs().max().item()  # the largest colour step to hide
    grad = lambda im: max((im[:, 1:] - im[:, :-1]).abs().max().item(), (im[1:] - im[:-1]).abs().max().item())
    base = grad(frames[0])
    hard = C.composite(frames, crops, track, feather=0.0, color_match=False)
    assert grad(hard[0]) > 0.9 * step  # a hard edge is a seam: the test can fail
    for feather in (0.08, 0.2):
        edge_px = feather * size / scale  # soft-edge width in frame pixels
        for blend in C.BLENDS:
            out = C.composite(frames, crops, track, feather=feather, color_match=False, blend=blend)
            # smoothstep's steepest slope is 1.5 / width, plus the footprint edge and rounding
            assert grad(out[0]) <= base + 1.5 * step / edge_px * 1.3 + 1e-3, (feather, blend)
    # a given mask larger than the crop: the crop's footprint edge is feathered too, no box edge
    big = C.composite(frames, crops, track, mask=torch.ones(1, h, w), feather=0.08, color_match=False)
    assert (big != frames).any()
    assert grad(big[0]) <= base + 1.5 * step / (0.08 * size / scale) * 1.3 + 1e-3


def test_color_match_reduces_the_difference_in_the_ring(clip):
    frames, track = clip
    tinted = (C.crop_faces(frames, track) * torch.tensor([0.7, 0.8, 0.75]) + torch.tensor([0.25, 0.05, 0.2])).clamp(0, 1)
    m = frame_mask(track, frames)
    ring = (m > 0.1) & (m < 0.9)
    assert ring[:3].sum() > 200
    plain = C.composite(frames, tinted, track, color_match=False)
    matched = C.composite(frames, tinted, track, color_match=True)
    err_plain = (plain - frames).abs()[ring].mean().item()
    err_matched = (matched - frames).abs()[ring].mean().item()
    assert err_matched < 0.3 * err_plain
    # deep inside the mask the tint is corrected too (gain/offset per channel)
    core = m > 0.999
    assert (matched - frames).abs()[core].mean().item() < 0.3 * (plain - frames).abs()[core].mean().item()


def test_color_params_known_values():
    gen = torch.tensor([0.2, 0.4]).repeat(8).view(1, 1, 4, 4).expand(1, 3, 4, 4)
    ref = 0.5 * gen + 0.3
    mask = torch.full((1, 1, 4, 4), 0.5)
    a, b = C._color_params(gen, ref, mask, max_gain=2.0)
    torch.testing.assert_close(a.flatten(), torch.full((3,), 0.5))
    torch.testing.assert_close(b.flatten(), torch.full((3,), 0.3))
    # by default the spread changes by at most 1.25x (here 1 / 1.25); the means still match:
    # b = mean(ref) - a * mean(gen) = 0.45 - 0.8 * 0.3
    a, b = C._color_params(gen, ref, mask)
    torch.testing.assert_close(a.flatten(), torch.full((3,), 0.8))
    torch.testing.assert_close(b.flatten(), torch.full((3,), 0.21))
    # an empty mask changes nothing
    a, b = C._color_params(gen, ref, torch.zeros(1, 1, 4, 4))
    assert torch.equal(a.flatten(), torch.ones(3)) and torch.equal(b.flatten(), torch.zeros(3))


@pytest.mark.parametrize("hair", [0.25, 0.40])
def test_color_params_follow_the_skin_not_hair_at_the_edge(hair):
    """The crop's lower face comes from another frame: in the current frame a share ``hair`` of the ring
    at the mask's edge is hair (dark), in the crop it is skin (with its own texture, not the frame's).
    The skin differs by a warmer tint (+0.05 red), which is what the match must bring; the hair must
    not set the contrast (a full-ring spread match asked for 2x, the mouth then painted in deep red
    and black). A true change of contrast on every pixel is still matched."""
    g = torch.Generator().manual_seed(3)
    h = w = 64
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    mask = (1.0 - ((yy - 32.0) ** 2 + (xx - 32.0) ** 2).sqrt().sub(18).div(10).clamp(0, 1))[None, None]
    crop = 0.6 + 0.03 * torch.randn(1, 3, h, w, generator=g)
    tint = torch.tensor([0.05, 0.0, 0.0]).view(1, 3, 1, 1)
    ref = 0.6 + 0.03 * torch.randn(1, 3, h, w, generator=g) + tint
    ring = (4 * mask * (1 - mask))[0, 0]
    cols = int(torch.searchsorted(ring.sum(0).cumsum(0) / ring.sum(), torch.tensor(hair)))  # hair from the left
    ref[..., :, :cols] = 0.08 + 0.02 * torch.rand(1, 3, h, cols, generator=g)
    assert abs(float(ring[:, :cols].sum() / ring.sum()) - hair) < 0.03
    a, b = C._color_params(crop, ref, mask, max_gain=2.0)
    assert (a.flatten() - 1.0).abs().max() < 0.1, a.flatten()
    assert (a.flatten() * 0.6 + b.flatten() - (0.6 + tint.flatten())).abs().max() < 0.02, (a.flatten(), b.flatten())
    a, b = C._color_params(crop, 0.7 * crop + 0.2, mask, max_gain=2.0)
    torch.testing.assert_close(a.flatten(), torch.full((3,), 0.7), atol=1e-4, rtol=0)


def test_band_masks_and_multiband():
    m = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0]).view(1, 1, 1, 5)
    bands = C.band_masks(m, 3)
    assert len(bands) == 4
    # band 0: slope 8 -> clamp((m - .5) * 8 + .5)
    torch.testing.assert_close(bands[0].flatten(), torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0]))
    torch.testing.assert_close(bands[2].flatten(), torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0]))  # slope 2
    torch.testing.assert_close(bands[3], m)
    # flat change: only the low-pass band carries it -> same as alpha
    ramp = torch.linspace(0, 1, 64).view(1, 1, 1, 64).expand(1, 1, 64, 64)
    flat = torch.full((1, 3, 64, 64), 0.3)
    torch.testing.assert_close(C._multiband(flat, ramp), ramp * flat, atol=1e-5, rtol=0)
    # fine checkerboard change: switched over a narrow strip, nothing where the mask is low
    checker = ((torch.arange(64)[:, None] + torch.arange(64)[None]) % 2 - 0.5).float().expand(1, 3, 64, 64) * 0.4
    mb = C._multiband(checker, ramp)
    low = ramp < 0.3
    assert mb.abs()[low.expand_as(mb)].max().item() < 0.25 * (ramp * checker).abs()[low.expand_as(mb)].max().item()
    assert torch.equal(C._multiband(checker, torch.zeros_like(ramp)), torch.zeros_like(checker))


def test_laplacian_differs_from_alpha_on_detail_but_not_with_a_hard_mask(clip):
    frames, track = clip
    crops = torch.rand(4, 128, 128, 3, generator=torch.Generator().manual_seed(0))
    a = C.composite(frames, crops, track, blend="alpha", color_match=False)
    lap = C.composite(frames, crops, track, blend="laplacian", color_match=False)
    assert (a - lap).abs().max().item() > 0.05
    changed_l = (lap != frames).any(-1)
    assert not (changed_l & (frame_mask(track, frames) == 0)).any()  # never outside the mask
    hard_a = C.composite(frames, crops, track, blend="alpha", color_match=False, feather=0.0)
    hard_l = C.composite(frames, crops, track, blend="laplacian", color_match=False, feather=0.0)
    m = frame_mask(track, frames, feather=0.0)
    hard = ((m == 0) | (m == 1))[..., None].expand_as(hard_a)  # all but the one-pixel resampled rim
    assert hard.float().mean() > 0.99
    torch.testing.assert_close(hard_a[hard], hard_l[hard], atol=2e-4, rtol=0)


def test_rgba_alpha_kept(clip):
    frames, track = clip
    alpha = torch.rand(frames.shape[:3] + (1,), generator=torch.Generator().manual_seed(1))
    rgba = torch.cat([frames, alpha], -1)
    crops = torch.cat([torch.zeros(4, 128, 128, 3), torch.zeros(4, 128, 128, 1)], -1)
    out = C.composite(rgba, crops, track)
    assert out.shape == rgba.shape
    assert torch.equal(out[..., 3], rgba[..., 3])
    assert (out[..., :3] != frames).any()
    same = C.composite(rgba, C.crop_faces(rgba, track), track)
    assert (same - rgba).abs().max().item() <= TOL


def test_chunking_gives_the_same_result(clip):
    frames, track = clip
    crops = (C.crop_faces(frames, track) * 0.8 + torch.rand(4, 128, 128, 3, generator=torch.Generator().manual_seed(2)) * 0.2)
    for blend in C.BLENDS:
        one = C.composite(frames, crops, track, blend=blend, chunk=16)
        for chunk in (1, 3):
            torch.testing.assert_close(C.composite(frames, crops, track, blend=blend, chunk=chunk), one, atol=1e-5, rtol=0)


@pytest.mark.parametrize("blend", C.BLENDS)
def test_a_soft_given_mask_bounds_the_change(clip, blend):
    """The blend's alpha never exceeds a given soft mask (issue 14: a one-pixel fringe just outside
    MaskLowerFace's mask changed by up to 6/255): 0 outside it; in alpha mode at most the mask's
    value inside (multi-band spreads its low band further than the weight, within the mask)."""
    frames, track = clip
    crops = torch.zeros(4, 128, 128, 3)
    crops[..., 1] = 1.0
    ys, xs = torch.meshgrid(torch.arange(512.0), torch.arange(512.0), indexing="ij")
    r = torch.sqrt((xs - 223) ** 2 + (ys - 170) ** 2)
    mask = ((60 - r) / 20).clamp(0, 1)[None].repeat(4, 1, 1)  # a feathered disc on the mouth
    for feather in (0.05, 0.2):
        out = C.composite(frames, crops, track, mask=mask, feather=feather, blend=blend, color_match=False)
        change = (out - frames).abs().amax(-1)
        assert torch.equal(out[mask == 0], frames[mask == 0])
        if blend == "alpha":
            assert bool((change <= mask + 1e-5).all()), float((change - mask).max())
        assert float(change[:3].amax()) > 0.5  # the mouth did change


@pytest.mark.parametrize("blend", C.BLENDS)
@pytest.mark.parametrize("given", [None, "soft", "hard"])
def test_windows_give_composite_s_frames(clip, blend, given):
    """composite_windows pasted into the frames gives composite's output: the same floats for float
    frames, and for uint8 frames composite's output on their float copy rounded to nearest, byte for
    byte; frames without a face give no window."""
    frames, track = clip
    track = replace(track, found=torch.tensor([True, True, False, True]))
    crops = C.crop_faces(frames, track).flip(1).contiguous()  # another mouth: pixels change
    mask = None if given is None else torch.zeros(frames.shape[:3])
    if mask is not None:
        mask[:, 100:300, 150:300] = 1.0
    opts = {"blend": blend, "mask": mask, "feather": 0.0 if given == "hard" else 0.08}
    want = C.composite(frames, crops, track, **opts)
    got = frames.clone()
    for i, x, y, win in C.composite_windows(frames, crops, track, **opts):
        assert i != 2
        got[i, y:y + win.shape[0], x:x + win.shape[1]] = win
    assert torch.equal(got, want) and float((want - frames).abs().max()) > 0.2
    u8 = (frames * 255).round().to(torch.uint8)
    want = (C.composite(u8.float() / 255, crops, track, **opts) * 255 + 0.5).clamp(0, 255).to(torch.uint8)
    got = u8.clone()
    for i, x, y, win in C.composite_windows(u8, crops, track, **opts):
        assert win.dtype == torch.uint8
        got[i, y:y + win.shape[0], x:x + win.shape[1]] = win
    assert torch.equal(got, want)
    with pytest.raises(InputError, match="Composite: uint8 images"):
        next(C.composite_windows(u8[..., :2], crops, track))


def test_frames_without_a_face_pass_through(clip):
    """A frame whose face the track did not find (only interpolated there) keeps every pixel."""
    frames, track = clip
    crops = torch.zeros(4, 128, 128, 3)
    crops[..., 0] = 1.0
    lost = replace(track, found=torch.tensor([True, False, True, False]))
    for mask in (None, torch.ones(4, 512, 512)):
        out = C.composite(frames, crops, lost, mask=mask, color_match=False)
        assert torch.equal(out[1], frames[1]) and torch.equal(out[3], frames[3])
        assert not torch.equal(out[0], frames[0]) and not torch.equal(out[2], frames[2])


def test_given_mask_is_used_and_limited_to_the_crop(clip):
    frames, track = clip
    crops = torch.ones(4, 128, 128, 3)
    mask = torch.zeros(4, 512, 512)
    mask[:, 100:300, 150:300] = 1.0
    out = C.composite(frames, crops, track, mask=mask, feather=0.0, color_match=False)
    changed = (out != frames).any(-1)
    assert not (changed & (mask == 0)).any()
    m = frame_mask(track, frames, mask=mask, feather=0.0)
    assert changed.sum() >= 0.99 * (m > 0).sum()
    # limited to the crop's footprint: frame 2's crop (scale 0.55, 233 px) covers the box, frame
    # 0's (142 px) does not: fewer pixels change there
    assert changed[0].sum() < changed[2].sum() <= (mask[2] > 0).sum()
    # an empty mask changes nothing; one mask for all frames is broadcast
    assert torch.equal(C.composite(frames, crops, track, mask=torch.zeros(1, 512, 512)), frames)
    one = C.composite(frames, crops, track, mask=mask[:1], feather=0.0, color_match=False)
    torch.testing.assert_close(one, out, atol=0, rtol=0)
    # feather softens a given mask: the edge is no longer a step
    soft = frame_mask(track, frames, mask=mask, feather=0.1)
    assert ((soft[2] > 0.05) & (soft[2] < 0.95)).sum() > 500


# --- blurs against scipy (independent reference values) ----------------------------------------

@pytest.mark.parametrize("shape", [(1, 1, 20, 24), (3, 2, 16, 17)])
def test_blur5_matches_scipy(shape, device, dtype):
    """The 5-tap binomial blur is scipy's 1-D convolution with [1 4 6 4 1] / 16 along each axis,
    with the edge mirrored without repeating the edge pixel (scipy mode "mirror" = torch "reflect")."""
    from scipy import ndimage

    from comfyui_lipsync.lipsync_models import blend

    x = torch.rand(shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    k = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0
    ref = ndimage.convolve1d(ndimage.convolve1d(x.numpy(), k, axis=-1, mode="mirror"), k, axis=-2, mode="mirror")
    got = blend._blur5(x.to(device, dtype))
    assert got.device.type == device.type and got.dtype == dtype and got.shape == x.shape
    torch.testing.assert_close(got.cpu().double(), torch.from_numpy(ref), atol=1e-6, rtol=0)


@pytest.mark.parametrize("sigma", [0.8, 2.5])
def test_gauss_blur_matches_scipy(sigma, device, dtype):
    """The mask softening is scipy's gaussian_filter with the same radius (ceil(3 sigma)) and
    mirrored edges; sums of a constant image stay constant."""
    from scipy import ndimage

    from comfyui_lipsync.lipsync_models import blend

    x = torch.rand(2, 1, 30, 26, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    r = math.ceil(3.0 * sigma)
    ref = np.stack([ndimage.gaussian_filter(x[i, 0].numpy(), sigma, mode="mirror", truncate=r / sigma)
                    for i in range(2)])[:, None]
    got = blend._gauss_blur(x.to(device, dtype), sigma)
    assert got.device.type == device.type and got.dtype == dtype
    torch.testing.assert_close(got.cpu().double(), torch.from_numpy(ref), atol=1e-5, rtol=0)
    ones = torch.ones(1, 1, 12, 12, device=device, dtype=dtype)
    torch.testing.assert_close(blend._gauss_blur(ones, sigma), ones)


# --- device and dtype ---------------------------------------------------------------------------

@pytest.mark.parametrize("batch", [1, 4])
def test_composite_on_each_device_and_dtype(clip, batch, device, dtype):
    """Smoke and batch sizes on each device and float dtype: untouched crops give the frames back,
    white crops pasted on black give the blend mask (0 at the frame corner, 1 at the mouth), the
    output on the frames' device and dtype."""
    frames, track = clip
    frames = frames[:batch].to(device, dtype)
    track = dataclasses.replace(track, **{k: getattr(track, k)[:batch] for k in ("boxes", "mouth", "opening", "transform",
                                                                     "found")})
    crops = C.crop_faces(frames, track)
    assert crops.shape == (batch, 128, 128, 3) and crops.device.type == device.type and crops.dtype == dtype
    same = C.composite(frames, crops, track)
    assert same.device.type == device.type and same.dtype == dtype
    assert (same - frames).abs().max().item() <= TOL
    black = torch.zeros_like(frames)
    white = torch.ones(batch, 128, 128, 3, device=device, dtype=dtype)
    m = C.composite(black, white, track, color_match=False, keep_detail=False)[..., 0]
    assert float(m[0, 0, 0]) == 0.0 and float(m[0, 147, 223]) == pytest.approx(1.0, abs=1e-4)


def test_output_follows_frames_dtype_and_progress(clip):
    frames, track = clip
    calls = []
    half = frames.half()
    out = C.composite(half, torch.zeros(4, 128, 128, 3), track, chunk=3, on_progress=lambda d, t: calls.append((d, t)))
    assert out.dtype == torch.float16 and out.shape == half.shape
    assert calls == [(3, 4), (4, 4)]
    same = C.composite(half, C.crop_faces(half, track), track)
    assert (same.float() - half.float()).abs().max().item() <= 2 * TOL
    double = frames.double()
    out = C.composite(double, torch.zeros(4, 128, 128, 3), track)
    m = frame_mask(track, frames)
    assert out.dtype == torch.float64 and torch.equal(out[m == 0], double[m == 0])


# --- errors ------------------------------------------------------------------------------------

def test_errors(clip):
    frames, track = clip
    crops = C.crop_faces(frames, track)
    with pytest.raises(LengthMismatchError, match=r"4 frames.*crops have 3"):
        C.composite(frames, crops[:3], track)
    with pytest.raises(LengthMismatchError, match=r"3 frames.*face track has 4"):
        C.composite(frames[:3], crops[:3], track)
    with pytest.raises(InputError, match=r"crops are 64x64.*crop size is 128x128"):
        C.composite(frames, crops[:, :64, :64], track)
    with pytest.raises(InputError, match=r"made on 512x512 frames.*images are 512x256"):
        C.composite(frames[:, :256], crops, track)
    with pytest.raises(InputError, match=r"3 or 4 channels, got 2"):
        C.composite(frames[..., :2], crops, track)
    with pytest.raises(InputError, match=r"3 or 4 channels, got 1"):
        C.composite(frames, crops[..., :1], track)
    with pytest.raises(InputError, match=r"mask is \(4, 256, 256\)"):
        C.composite(frames, crops, track, mask=torch.ones(4, 256, 256))
    with pytest.raises(InputError, match=r"mask is \(2, 512, 512\)"):
        C.composite(frames, crops, track, mask=torch.ones(2, 512, 512))
    with pytest.raises(InputError, match="blend must be one of"):
        C.composite(frames, crops, track, blend="poisson")
    with pytest.raises(InputError, match="feather must be between 0 and 1"):
        C.composite(frames, crops, track, feather=-0.1)
    broken = track.transform.clone()
    broken[2] = 0.0
    with pytest.raises(InputError, match=r"not invertible .* in 1 of 4 frames, first frame 2"):
        C.composite(frames, crops, dataclasses.replace(track, transform=broken))
    with pytest.raises(InputError, match="FaceTrack"):
        C.composite(frames, crops, {"transform": track.transform})
    with pytest.raises(LengthMismatchError, match=r"4 frames but the face track has 2"):
        C.crop_faces(frames, make_track(track.transform[:2].double(), 128, (512, 512)))


# --- node ----------------------------------------------------------------------------------------

def node_defaults():
    spec = Composite.INPUT_TYPES()
    return {k: v[1]["default"] for k, v in spec["required"].items() if "default" in v[1]}


def test_node_registration_and_inputs():
    assert NODE_CLASS_MAPPINGS == {"LipSyncComposite": Composite}
    assert NODE_DISPLAY_NAME_MAPPINGS == {"LipSyncComposite": "Composite"}
    spec = Composite.INPUT_TYPES()
    assert list(spec["required"]) == ["images", "crops", "face_track", "feather", "color_match", "blend"]
    assert spec["required"]["face_track"][0] == "LIPSYNC_FACE_TRACK"
    assert spec["required"]["blend"][0] == ["feathered alpha", "multi-band"]
    assert spec["optional"]["mask"][0] == "MASK"
    for section in spec.values():
        for name, (_, opts) in section.items():
            assert opts.get("tooltip"), name
    assert Composite.CATEGORY == "lipsync/generate" and Composite.RETURN_TYPES == ("IMAGE",)


def test_node_run(clip, monkeypatch):
    frames, track = clip
    calls = []
    monkeypatch.setattr(_comfy.Progress, "hook", staticmethod(lambda d, t: calls.append((d, t))))
    node = Composite()
    crops = torch.zeros(4, 128, 128, 3)
    (out,) = getattr(node, Composite.FUNCTION)(images=frames, crops=crops, face_track=track, **node_defaults())
    assert out.shape == frames.shape and out.device == _comfy.intermediate_device()
    assert (out != frames).any() and calls[-1] == (4, 4)
    ref = C.composite(frames, crops, track, feather=0.08, color_match=True, blend="alpha")
    torch.testing.assert_close(out, ref, atol=0, rtol=0)
    kw = dict(node_defaults(), blend="multi-band")
    (same,) = node.run(images=frames, crops=C.crop_faces(frames, track), face_track=track, **kw)
    assert (same - frames).abs().max().item() <= TOL
    (masked,) = node.run(images=frames, crops=crops, face_track=track, mask=torch.zeros(1, 512, 512), **node_defaults())
    assert torch.equal(masked, frames)
    with pytest.raises(InputError, match="blend must be one of"):
        node.run(images=frames, crops=crops, face_track=track, blend="poisson")
    with pytest.raises(LengthMismatchError, match="4 frames"):
        node.run(images=frames, crops=crops[:2], face_track=track)


def test_out_of_range_input_kept_outside_the_mask(clip):
    frames, track = clip
    bright = frames * 1.3  # not a valid IMAGE, but pixels outside the mask must still be kept
    out = C.composite(bright, torch.zeros(4, 128, 128, 3), track, color_match=False)
    m = frame_mask(track, frames)
    assert torch.equal(out[m == 0], bright[m == 0])
    assert (out[m > 0.99] <= 1.0).all()


# --- real faces: tracked by MaskLowerFace's library --------------------------------------------

@pytest.fixture(scope="module")
def grid_clip(grid_dir):
    from comfyui_lipsync.lipsync_models import face, media

    frames, _, _ = media.read_video(str(grid_dir / "bbaf2n.mpg"), max_frames=20)
    frames = frames.float() / 255
    return frames, face.track_faces(frames)


def test_real_grid_clip_round_trip_and_mouth_change(grid_clip):
    frames, track = grid_clip
    crops = C.crop_faces(frames, track)
    assert crops.shape == (20, track.crop_size, track.crop_size, 3)
    for blend in C.BLENDS:
        same = C.composite(frames, crops, track, blend=blend)
        assert same.shape == frames.shape and (same - frames).abs().max().item() <= TOL
    # a generator that moved the mouth down by 5 % of the crop
    moved = torch.roll(crops, track.crop_size // 20, dims=1)
    out = C.composite(frames, moved, track)
    changed = (out != frames).any(-1)
    for i in range(0, 20, 5):
        x0, y0, x1, y1 = track.boxes[i].tolist()
        nose_y = track.mouth[i, 6, 1].item()
        ys, xs = torch.nonzero(changed[i], as_tuple=True)
        assert len(ys) > 500
        assert xs.min() >= x0 and xs.max() <= x1, "changes reach beyond the face's sides"
        assert ys.min() >= nose_y - 2, "changes reach above the nose"
        assert ys.max() <= y1 + 0.2 * (y1 - y0), "changes reach far below the chin"
        cx, cy = track.mouth[i, :2].mean(0).round().long().tolist()
        assert changed[i, cy, cx]


def test_own_pixels_get_the_mean_alone_and_their_mouth_renewed(grid_clip):
    """The clip's own mouths (a track marked ``OWN_PIXELS``) are the clip's pixels, already in their
    frame's light: Composite moves their mean colour and keeps their contrast, so a mouth taken from a
    frame whose ring is flatter (a neutral face under a smile's shadows) is not darkened; any other
    crop still gets the ring's contrast. And under a chosen mouth that differs little from the frame's
    own, none of the own mouth's detail is kept (keep_detail keeps it elsewhere)."""
    from comfyui_lipsync.lipsync_models.types import OWN_PIXELS

    frames, track = grid_clip
    crops = C.crop_faces(frames, track)
    mean = crops.mean((1, 2), keepdim=True)
    flat = (mean + 0.6 * (crops - mean) + torch.tensor([0.04, 0.0, -0.03])).clamp(0, 1)  # flatter, tinted
    own = replace(track, extras={**track.extras, OWN_PIXELS: torch.ones(track.num_frames, dtype=torch.bool)})
    gains = {}
    orig = C._color_params
    for name, tr in (("own", own), ("other", track)):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(C, "_color_params", lambda *a: gains.setdefault(name, []).append(orig(*a)) or gains[name][-1])
            C.composite(frames, flat, tr)
    a_own = torch.cat([a for a, _ in gains["own"]])
    a_other = torch.cat([a for a, _ in gains["other"]])
    assert torch.equal(a_own, torch.ones_like(a_own))  # the mean alone
    assert a_other.flatten().min() > 1.2  # the contrast back toward the frame's (at most 1.25x)
    for tr in (own, track):  # the tint is taken off in both: the lower face keeps the frame's mean colour
        out = C.composite(frames, flat, tr)
        shift = (out - frames)[(out != frames).any(-1)].mean(0)
        assert shift.abs().max() < 0.015, shift
    # a crop that blurs the frame's own mouth a little (a chosen mouth of nearly the same shape): at the
    # mouth's centre an own-pixels crop is taken as it is, while for another generator's crop
    # keep_detail keeps some of the frame's own detail there
    soft = torch.nn.functional.avg_pool2d(crops.permute(0, 3, 1, 2), 5, 1, 2, count_include_pad=False)
    soft = soft.permute(0, 2, 3, 1)
    kept, renewed = C.composite(frames, soft, track), C.composite(frames, soft, own)
    want = C.composite(frames, soft, own, keep_detail=False)
    for i in range(0, 20, 5):
        cx, cy = track.mouth[i, :4].mean(0).round().long().tolist()
        win = (i, slice(cy - 2, cy + 3), slice(cx - 4, cx + 5))
        assert (renewed[win] - want[win]).abs().max() < 1e-5  # the crop, as without keep_detail
        assert (kept[win] - frames[win]).abs().mean() < (renewed[win] - frames[win]).abs().mean()  # kept some
    # the mark is per frame: frames not marked (a frame keeping its own mouth, a warped one) are
    # composited as any other crop, and the marked ones as above
    half = replace(track, extras={**track.extras, OWN_PIXELS: torch.arange(track.num_frames) % 2 == 0})
    mixed = C.composite(frames, soft, half)
    assert torch.equal(mixed[0::2], renewed[0::2]) and torch.equal(mixed[1::2], kept[1::2])


def test_real_astronaut_still(astronaut):
    from comfyui_lipsync.lipsync_models import face

    frames = astronaut[None].repeat(8, 1, 1, 1)
    track = face.track_faces(frames)
    crops = C.crop_faces(frames, track)
    assert (C.composite(frames, crops, track) - frames).abs().max().item() <= TOL
    out = C.composite(frames, torch.full_like(crops, 0.2), track, color_match=False)
    changed = (out != frames).any(-1)
    # (nearly) the same region in every frame of a still shot
    for i in range(1, 8):
        iou = (changed[0] & changed[i]).sum() / (changed[0] | changed[i]).sum()
        assert iou > 0.95, (i, iou)
    ys, xs = torch.nonzero(changed[0], as_tuple=True)
    # scikit-image's astronaut: face x 177-272, y 66-172 (chin ~172), lips x 202-245, y 139-155
    assert xs.min() >= 177 and xs.max() <= 285 and ys.min() >= 110 and ys.max() <= 195
    assert changed[0, 147, 225] and changed[0, 150, 215]
    assert not changed[0, :110].any()  # eyes and nose untouched
