"""LatentSync's StableSyncNet as an optional judge (lipsync_models/backends/stablesyncnet.py), on a tiny
random configuration: shapes, the 1.6 checkpoint's key layout (worked out from its config), strict
weights-only loading, device/dtype, input errors, and the parity script's own logic."""

import sys
from pathlib import Path

import pytest
import torch

from comfyui_lipsync.lipsync_models.backends import stablesyncnet as ss
from comfyui_lipsync.lipsync_models.errors import CheckpointError, InputError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import parity_stablesyncnet as parity  # noqa: E402

TINY = parity.TINY


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    net = ss.StableSyncNet(TINY)
    for p in net.parameters():
        p.data.normal_(0.0, 0.05)
    return net.eval()


def _inputs(b=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 16, 3, 256, 256, generator=g) * 2 - 1, torch.randn(b, 80, ss.MEL_FRAMES, generator=g)


def test_embeddings_are_unit_vectors_and_similarity_a_cosine(tiny):
    frames, mel = _inputs(3)
    with torch.no_grad():
        v, a = tiny(frames[:, :, :, 128:].flatten(1, 2), mel[:, None])
        sim = ss.similarity(tiny, frames, mel)
    assert v.shape == a.shape == (3, 64)  # both encoders end at a 1x1 map of the last width
    assert torch.allclose(v.norm(dim=1), torch.ones(3), atol=1e-5)
    assert sim.shape == (3,) and torch.allclose(sim, torch.nn.functional.cosine_similarity(v, a), atol=1e-6)
    # only the lower half of the face is seen: changing the upper half changes nothing
    other = frames.clone()
    other[:, :, :, :128] = 0.0
    with torch.no_grad():
        assert torch.allclose(ss.similarity(tiny, other, mel), sim, atol=1e-6)
        assert not torch.allclose(ss.similarity(tiny, frames, mel.roll(7, dims=2)), sim, atol=1e-4)


def test_batch_sizes_agree(tiny):
    frames, mel = _inputs(3)
    with torch.no_grad():
        whole = ss.similarity(tiny, frames, mel)
        one = torch.cat([ss.similarity(tiny, frames[i:i + 1], mel[i:i + 1]) for i in range(3)])
    assert torch.allclose(whole, one, atol=1e-5)


def test_the_1_6_checkpoint_layout_from_its_config():
    with torch.device("meta"):
        net = ss.StableSyncNet()
    sd = net.state_dict()
    # visual attn_blocks [0,0,0,0,1,1,0,0]: levels 0-4 are modules 0-4, level 4's attention is 5,
    # level 5 is 6 and its attention 7, levels 6-7 are 8-9. Widths 512 and 1024 there.
    assert sd["visual_encoder.down_blocks.5.attn.to_q.weight"].shape == (512, 512)
    assert sd["visual_encoder.down_blocks.7.ff.net.0.proj.weight"].shape == (2 * 4 * 1024, 1024)
    assert sd["visual_encoder.down_blocks.9.downsample_conv.weight"].shape == (2048, 2048, 3, 3)
    assert "visual_encoder.down_blocks.9.conv_shortcut.weight" not in sd  # 2048 -> 2048
    assert sd["visual_encoder.conv_in.weight"].shape == (64, 48, 3, 3)
    # audio attn_blocks [0,0,0,1,1,0,0]: attention after levels 3 (256) and 4 (512) = modules 4 and 6
    assert sd["audio_encoder.down_blocks.4.norm2.weight"].shape == (256,)
    assert sd["audio_encoder.down_blocks.6.attn.to_out.0.bias"].shape == (512,)
    assert "audio_encoder.down_blocks.3.downsample_conv.weight" not in sd  # factor 1 at level 3
    assert sd["audio_encoder.norm_out.weight"].shape == (2048,)


def test_full_configuration_ends_at_one_by_one():
    # the output sizes of the strided convs worked out by hand: 80x52 -> 40x52 -> 20x26 -> 10x13 ->
    # 10x13 -> 5x6 -> 2x3 -> 1x1; 128x256 -> 128x128 -> 64 -> ... -> 1
    with torch.device("meta"):
        net = ss.StableSyncNet()
        v = net.visual_encoder(torch.empty(1, 48, 128, 256))
        a = net.audio_encoder(torch.empty(1, 1, 80, 52))
    assert tuple(v.shape) == (1, 2048, 1, 1) and tuple(a.shape) == (1, 2048, 1, 1)


def test_strict_weights_only_loading(tiny, tmp_path):
    path = tmp_path / "stable_syncnet.pt"
    torch.save({"state_dict": tiny.state_dict()}, path)
    net = ss.load_stablesyncnet(str(path), config=TINY)
    frames, mel = _inputs(1)
    with torch.no_grad():
        assert torch.equal(ss.similarity(net, frames, mel), ss.similarity(tiny, frames, mel))
    sd = dict(tiny.state_dict())
    sd.pop("audio_encoder.conv_in.bias")
    with pytest.raises(CheckpointError, match="audio_encoder.conv_in.bias"):
        ss.build_stablesyncnet(sd, "cut.pt", config=TINY)
    sd = dict(tiny.state_dict(), **{"visual_encoder.extra.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="visual_encoder.extra.weight"):
        ss.build_stablesyncnet(sd, "extra.pt", config=TINY)
    with pytest.raises(CheckpointError, match="not a StableSyncNet checkpoint"):
        ss.build_stablesyncnet({"netfcaud.3.weight": torch.zeros(2, 2)}, "syncnet_v2.model", config=TINY)
    # the full layout does not take the tiny weights: every mismatching shape is named
    with pytest.raises(CheckpointError, match="expected"):
        ss.build_stablesyncnet(tiny.state_dict(), "tiny.pt")


def test_a_pickled_object_is_refused(tmp_path):
    path = tmp_path / "stable_syncnet.pt"
    torch.save({"model": _Evil()}, path)
    with pytest.raises(CheckpointError):
        ss.load_stablesyncnet(str(path), config=TINY)
    with pytest.raises(CheckpointError, match="not found"):
        ss.load_stablesyncnet(str(tmp_path / "missing.pt"), config=TINY)


class _Evil:
    pass


def test_device_and_dtype(tiny, device):
    frames, mel = _inputs(2)
    net64 = ss.build_stablesyncnet({k: v.double() for k, v in tiny.state_dict().items()}, config=TINY)
    net64 = net64.double().to(device)
    with torch.no_grad():
        ref = ss.similarity(tiny, frames, mel)
        got = ss.similarity(net64, frames.to(device), mel.to(device))
    assert got.dtype == torch.float64 and got.device.type == torch.device(device).type
    assert torch.allclose(got.cpu().float(), ref, atol=1e-4)


def test_input_errors(tiny):
    frames, mel = _inputs(2)
    with pytest.raises(InputError, match=r"frames \(B, 16, 3, H, W\)"):
        ss.similarity(tiny, frames[:, :8], mel)
    with pytest.raises(InputError, match=r"mel \(B, 80, T\)"):
        ss.similarity(tiny, frames, mel[:1])


class _PadMoved(ss.StableSyncNet):
    """Our module with one operation changed: the second visual level pads before, not after."""

    def __init__(self, config):
        super().__init__(config)
        self.visual_encoder.down_blocks[1].pad = (1, 0, 1, 0)


def test_parity_script_passes_on_the_same_module_and_fails_on_a_changed_one():
    assert parity.compare(ss.StableSyncNet(TINY), TINY, seed=0) <= parity.BAR
    assert parity.compare(_PadMoved(TINY), TINY, seed=0) > 100 * parity.BAR


def test_parity_script_exit_status(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(parity, "load_reference", lambda d: _PadMoved)
    assert parity.main(["--reference", str(tmp_path)]) == 1
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("max abs diff: ")
    monkeypatch.setattr(parity, "load_reference", lambda d: ss.StableSyncNet)
    assert parity.main(["--reference", str(tmp_path)]) == 0


# --- SyncScore with the neural judge ---------------------------------------------------------------

@pytest.fixture(scope="module")
def grid_short(grid_dir):
    from comfyui_lipsync.lipsync_models import face, media
    from comfyui_lipsync.lipsync_models.phonemes import to_analysis_rate

    frames, fps, (wav, sr) = media.read_video(str(grid_dir / "bbaf2n.mpg"), max_frames=40)
    img = frames.float() / 255.0
    w16 = to_analysis_rate(wav, sr)
    n16 = int(round(img.shape[0] / fps * 16000))
    w16 = torch.nn.functional.pad(w16, (0, max(n16 - w16.shape[0], 0)))[:n16]
    return img, fps, wav, sr, w16, face.track_faces(img, detector="haar")


def test_score_stablesyncnet_follows_the_audio_late_sign(tiny, grid_short):
    from comfyui_lipsync.lipsync_models.sync.stablesync_scorer import score_stablesyncnet
    from helpers import shift_audio

    img, fps, wav, sr, w16, track = grid_short
    r0 = score_stablesyncnet(tiny, img, track, w16, fps, search_range=6, stride=8)
    assert r0.method == "stablesyncnet" and r0.lags.tolist() == list(range(-6, 7)) and r0.scores.shape == (13,)
    assert r0.peak_confidence >= r0.confidence and -6 <= r0.offset_frames <= 6
    # the audio 5 frames late (5 frames = 16 mel frames exactly at 25 fps): the window of frames i
    # now meets at offset k the sound it met at k - 5, so the curve moves 5 offsets right; where
    # the window read past the clip's end before (silence padding), it differs
    r5 = score_stablesyncnet(tiny, img, track, shift_audio(w16, 5, fps), fps, search_range=6, stride=8)
    a, b = r0.scores[:8], r5.scores[5:]
    assert float((a - b).abs().max()) < 0.25 * float(r0.scores.max() - r0.scores.min()) + 1e-6


def test_syncscore_node_reports_stablesyncnet_beside(tiny, grid_short, tmp_path, monkeypatch):
    from comfyui_lipsync.nodes.sync_score import ARTICULATION, ARTICULATION_PHONEMES, STABLE, SyncScore

    img, fps, wav, sr, w16, track = grid_short
    (tmp_path / "syncnet").mkdir()
    torch.save(tiny.state_dict(), tmp_path / "syncnet" / "stable_syncnet.pt")
    monkeypatch.setenv("LIPSYNC_MODELS_DIR", str(tmp_path))
    monkeypatch.setattr(ss, "CONFIG_16_PIXEL_ATTN", TINY)  # the tiny file stands for the real one
    spec = SyncScore.INPUT_TYPES()
    # listed as the articulation scorer with the neural judge beside it, not as a syncnet_v2 scorer
    assert spec["required"]["scorer"][0] == [ARTICULATION, ARTICULATION_PHONEMES, STABLE + "stable_syncnet.pt"]
    audio = {"waveform": w16[None, None], "sample_rate": 16000}
    out = SyncScore().run(img, fps=fps, search_range=4, scorer=STABLE + "stable_syncnet.pt", window_s=0.0,
                          audio=audio, face_track=track)
    report = out["result"][3]
    assert "SyncScore (articulation)" in report and "StableSyncNet (LatentSync): offset" in report
    plain = SyncScore().run(img, fps=fps, search_range=4, scorer=ARTICULATION, window_s=0.0, audio=audio,
                            face_track=track)
    assert "StableSyncNet" not in plain["result"][3] and plain["result"][0] == out["result"][0]
    (tmp_path / "syncnet" / "stable_syncnet.pt").unlink()
    with pytest.raises(InputError, match="not in models/syncnet any more"):
        SyncScore().run(img, fps=fps, search_range=4, scorer=STABLE + "stable_syncnet.pt", window_s=0.0,
                        audio=audio, face_track=track)
