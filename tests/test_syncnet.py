"""SyncNet backend: MFCC, face crops, distances and scores, checkpoint loading (random weights)."""

import math

import numpy as np
import pytest
import torch

from comfyui_lipsync.lipsync_models import media
from comfyui_lipsync.lipsync_models.backends import syncnet
from comfyui_lipsync.lipsync_models.errors import CheckpointError, InputError


# --- MFCC ------------------------------------------------------------------------------------

# python_speech_features 0.6 ``mfcc(x, 16000)`` of the int16 signal below, first 6 of 13
# coefficients of its 6 frames (computed once with that library; it is not a dependency).
PSF_REFERENCE = np.array([
    [20.2969, 12.1006, -25.9607, 0.1001, -2.1000, -48.7838],
    [20.2994, 13.5070, -16.4984, 6.9970, 10.1300, -43.1794],
    [20.2979, 14.2406, -15.0982, 10.5490, 13.0221, -43.1178],
    [20.3064, 13.3259, -16.8390, 6.2866, 9.5407, -43.3382],
    [20.2940, 10.3262, -21.2249, -1.4071, 2.2222, -47.1933],
    [20.3055, 10.7006, -20.7262, -0.6317, 3.0823, -46.5881],
])


def _two_tones(n=1200):
    t = np.arange(n)
    x = np.round(8000 * np.sin(2 * np.pi * 440 * t / 16000) + 3000 * np.sin(2 * np.pi * 1900 * t / 16000 + 0.3))
    return torch.from_numpy(x.astype(np.float32) / 32768.0)


def test_mfcc_matches_python_speech_features_reference():
    cep = syncnet.mfcc(_two_tones())
    assert cep.shape == (13, 6)
    np.testing.assert_allclose(cep[:6].T.numpy(), PSF_REFERENCE, atol=2e-3)


@pytest.mark.parametrize("n,frames", [(48000, 299), (401, 2), (400, 1), (100, 1), (560, 2), (561, 3)])
def test_mfcc_frame_count(n, frames):
    # 1 + ceil((N - 400) / 160) windows of 25 ms every 10 ms, the last one zero-padded
    assert syncnet.mfcc(torch.zeros(n) + 0.01).shape == (13, frames)


def test_mfcc_energy_coefficient_by_hand():
    # a constant int16 signal c: after pre-emphasis the frame is [c, 0.03c x 399]; c0 is
    # log(sum_{k=0..256} |X_k|^2 / 512) of its 512-point rfft. By Parseval the full spectrum sums
    # to 512 * sum(x^2), and the half spectrum to (that + |X_0|^2 + |X_256|^2) / 2, with
    # X_0 = sum(x) = 12.97c and X_256 = sum((-1)^n x_n) = c - 0.03c = 0.97c.
    c = 1000.0
    cep = syncnet.mfcc(torch.full((400,), c / 32768.0))
    energy = (512 * (c ** 2 + 399 * (0.03 * c) ** 2) + (12.97 * c) ** 2 + (0.97 * c) ** 2) / 2 / 512
    assert cep[0, 0].item() == pytest.approx(math.log(energy), rel=1e-5)
    silent = syncnet.mfcc(torch.zeros(800))
    assert silent[0, 0].item() == pytest.approx(math.log(np.finfo(float).eps), rel=1e-6)


def test_mfcc_rejects_batched_waveform():
    with pytest.raises(InputError, match=r"\(N,\)"):
        syncnet.mfcc(torch.zeros(2, 100))


# --- distances and scores -------------------------------------------------------------------

def test_calc_pdist_and_scores_by_hand():
    v = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    a = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    d = syncnet.calc_pdist(v, a, vshift=1)
    r2 = math.sqrt(2)
    # column j = audio window i - 1 + j, zero vector outside the clip
    want = torch.tensor([[1.0, 0.0, 1.0], [r2, 1.0, 0.0], [r2, 1.0, r2]])
    torch.testing.assert_close(d, want, atol=1e-5, rtol=0)
    s = syncnet.scores_from_dists(d, vshift=1)
    torch.testing.assert_close(s.mdist, torch.tensor([(1 + 2 * r2) / 3, 2 / 3, (1 + r2) / 3]), atol=1e-5, rtol=0)
    assert s.lse_d == pytest.approx(2 / 3, abs=1e-5)
    assert s.lse_c == pytest.approx((r2 - 1) / 3, abs=1e-5)  # median (1+r2)/3 minus min 2/3
    assert s.syncnet_offset == 0 and s.offset == 0


@pytest.mark.parametrize("k", [-3, -1, 2, 4])
def test_offset_sign_audio_late_is_positive(k):
    g = torch.Generator().manual_seed(1)
    v = torch.randn(30, 8, generator=g)
    a = torch.randn(30, 8, generator=g)
    for i in range(30):  # audio delayed by k windows: audio window i carries video window i - k
        if 0 <= i - k < 30:
            a[i] = v[i - k]
    s = syncnet.scores_from_dists(syncnet.calc_pdist(v, a, vshift=5), vshift=5)
    assert s.offset == k and s.syncnet_offset == -k
    assert s.lse_c > 0
    assert s.framewise_conf.shape == (30,)


# --- face crops -----------------------------------------------------------------------------

def test_face_crops_geometry_colour_order_and_grey_padding():
    img = torch.zeros(2, 100, 120, 3)
    img[..., 0] = 1.0  # pure red
    box = torch.tensor([[0.0, 0.0, 20.0, 20.0]] * 2)  # s = 10, centre (10, 10): crop x -4..24, y 0..28
    crops = syncnet.face_crops(img, box)
    assert crops.shape == (2, 3, 224, 224)
    # BGR in 0..255: red lands in channel 2
    assert crops[0, :, 112, 112].tolist() == pytest.approx([0.0, 0.0, 255.0], abs=1e-3)
    # columns left of x = -0.5 come from the grey padding, as the original's np.pad(110)
    assert crops[0, :, :, :20].allclose(torch.full((3, 224, 20), 110.0))
    # the crop is 1.4 s either side of the centre: column for source x = 0.5 (first pixel centre)
    col = int((0.5 + 4) / 28 * 224)
    assert crops[0, 2, 100, col + 2].item() == pytest.approx(255.0, abs=1e-3)


# --- network and checkpoints ---------------------------------------------------------------

@pytest.fixture(scope="module")
def random_net():
    torch.manual_seed(0)
    net = syncnet.SyncNetV2()
    for m in net.modules():  # non-trivial running statistics so eval mode matters
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 2.0)
    return net.eval()


def test_state_dict_keys_follow_syncnet_v2(random_net):
    sd = random_net.state_dict()
    assert sd["netcnnaud.0.weight"].shape == (64, 1, 3, 3)
    assert sd["netcnnaud.18.weight"].shape == (512, 256, 5, 4)
    assert sd["netcnnlip.0.weight"].shape == (96, 3, 5, 7, 7)
    assert sd["netcnnlip.18.weight"].shape == (512, 256, 1, 6, 6)
    assert sd["netfcaud.3.weight"].shape == (1024, 512)
    assert sd["netfclip.1.running_var"].shape == (512,)
    with torch.no_grad():
        assert random_net.forward_aud(torch.randn(2, 1, 13, 20)).shape == (2, 1024)
        assert random_net.forward_lip(torch.randn(1, 3, 5, 224, 224)).shape == (1, 1024)


def test_checkpoint_round_trip_pth_and_safetensors(random_net, tmp_path):
    from safetensors.torch import save_file

    sd = random_net.state_dict()
    old = {f"__S__.{k}": v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    torch.save(old, tmp_path / "syncnet_v2.model")  # the original's layout, older torch: no counters
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "syncnet.safetensors"))
    x = torch.randn(2, 1, 13, 20)
    with torch.no_grad():
        want = random_net.forward_aud(x)
        for name in ("syncnet_v2.model", "syncnet.safetensors"):
            net = syncnet.load_syncnet(str(tmp_path / name))
            assert not net.training
            torch.testing.assert_close(net.forward_aud(x), want)


def test_comfyui_unloading_models_drops_the_judges(random_net, tmp_path):
    """The SyncScore node registers the SyncNet v2 and StableSyncNet caches with ComfyUI's model
    management: its "Unload models" drops the networks, which are read again on the next run."""
    from comfyui_lipsync.lipsync_models.backends import stablesyncnet
    from comfyui_lipsync.nodes import _comfy
    from comfyui_lipsync.nodes import sync_score  # noqa: F401  (registers at import)

    path = tmp_path / "syncnet_v2.model"
    torch.save(random_net.state_dict(), path)
    a = syncnet.load_syncnet_cached(str(path))
    assert syncnet.load_syncnet_cached(str(path)) is a
    stablesyncnet._SLOT.get("stable_syncnet.pt", torch.nn.Identity)  # as a loaded one sits
    assert {syncnet.release, stablesyncnet.release} <= set(_comfy._RELEASES)
    assert _comfy.release_models() is True
    assert not stablesyncnet._SLOT.holds("stable_syncnet.pt") and syncnet.load_syncnet_cached(str(path)) is not a
    assert syncnet.release() is True and syncnet.release() is False and stablesyncnet.release() is False


def test_checkpoint_errors_are_clear(random_net, tmp_path):
    sd = dict(random_net.state_dict())
    miss = {k: v for k, v in sd.items() if k != "netcnnlip.0.weight"}
    torch.save(miss, tmp_path / "miss.pth")
    with pytest.raises(CheckpointError, match=r"1 missing key\(s\): netcnnlip\.0\.weight"):
        syncnet.load_syncnet(str(tmp_path / "miss.pth"))
    bad = dict(sd)
    bad["netcnnaud.0.weight"] = torch.zeros(32, 1, 3, 3)
    torch.save(bad, tmp_path / "shape.pth")
    with pytest.raises(CheckpointError, match=r"netcnnaud\.0\.weight \(32, 1, 3, 3\) \(expected \(64, 1, 3, 3\)\)"):
        syncnet.load_syncnet(str(tmp_path / "shape.pth"))
    torch.save({"encoder.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not a syncnet_v2 checkpoint"):
        syncnet.load_syncnet(str(tmp_path / "other.pth"))
    (tmp_path / "junk.pth").write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read junk.pth"):
        syncnet.load_syncnet(str(tmp_path / "junk.pth"))
    torch.save({"a": [1, 2]}, tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="holds no tensors"):
        syncnet.load_syncnet(str(tmp_path / "list.pth"))
    with pytest.raises(CheckpointError, match="not found"):
        syncnet.load_syncnet(str(tmp_path / "absent.pth"))


def test_score_clip_on_grid_frames_and_fps_resampling(random_net, grid_dir):
    frames, fps, (wav, sr) = media.read_video(str(grid_dir / "bbaf2n.mpg"), max_frames=12)
    assert fps == 25
    images = frames[:12].float() / 255.0
    wav16 = torch.nn.functional.interpolate(wav.mean(0)[None, None], scale_factor=16000 / sr, mode="linear")[0, 0]
    boxes = torch.tensor([[120.0, 60.0, 240.0, 200.0]]).repeat(12, 1)
    s = syncnet.score_clip(random_net, images, boxes, wav16, fps=25, vshift=3)
    assert s.dists.shape == (12 - 5, 7)  # windows 0..6, offsets -3..3
    # the same clip at 50 fps with every frame doubled resamples to the same 25 fps frames
    s50 = syncnet.score_clip(random_net, images.repeat_interleave(2, 0), boxes.repeat_interleave(2, 0),
                             wav16, fps=50, vshift=3)
    torch.testing.assert_close(s50.dists, s.dists)
    with pytest.raises(InputError, match="too short"):
        syncnet.score_clip(random_net, images[:5], boxes[:5], wav16, fps=25)


def test_scores_from_a_distance_matrix_by_hand():
    # 3 windows x 5 offsets (vshift 2): column j is syncnet offset 2 - j. Worked by hand:
    # means per column (5, 5, 3, 2, 6); LSE-D = min = 2 (column 3); median 5; LSE-C = 5 - 2 = 3;
    # syncnet offset 2 - 3 = -1 (audio late in syncnet_python's sign), so the pack's offset is +1
    d = torch.tensor([[5.0, 4.0, 3.0, 1.0, 6.0], [6.0, 5.0, 4.0, 2.0, 5.0], [4.0, 6.0, 2.0, 3.0, 7.0]])
    s = syncnet.scores_from_dists(d, vshift=2)
    assert s.mdist.tolist() == [5.0, 5.0, 3.0, 2.0, 6.0]
    assert (s.lse_d, s.lse_c, s.syncnet_offset, s.offset) == (2.0, 3.0, -1, 1)
    # framewise: median - each window's distance at the best offset = (4, 3, 2), then a median
    # filter whose 9-window kernel is cut to the track's 3 windows; scipy zero-pads, so the
    # medians of (0, 4, 3), (4, 3, 2), (3, 2, 0)
    assert s.framewise_conf.tolist() == [3.0, 3.0, 2.0]
    # 11 windows with the best column constant: the filter returns the constant inside, and
    # within 4 windows of either end at least 5 of the 9 values are real ones, so the same
    d11 = torch.tensor([[3.0, 1.0, 2.0]]).repeat(11, 1)
    s11 = syncnet.scores_from_dists(d11, vshift=1)
    assert (s11.lse_d, s11.lse_c, s11.offset) == (1.0, 1.0, 0)
    assert s11.framewise_conf.tolist() == [1.0] * 11

