"""The Wav2Lip-compatible backend, checkpoint loading and the converter.

Every model here has random weights made by the test itself (no weights are downloaded); the
published checkpoints' layout (a dict with ``state_dict``, keys prefixed ``module.``) is
rebuilt from our own module.
"""

import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from comfyui_lipsync.lipsync_models import composite, face, media, types, weights
from comfyui_lipsync.lipsync_models import audio as audio_mod
from comfyui_lipsync.lipsync_models.backends import wav2lip as W
from comfyui_lipsync.lipsync_models.errors import CheckpointError
from comfyui_lipsync.nodes.lipsync_inference import LipSyncInference

ROOT = Path(__file__).resolve().parents[1]


def _random_model(seed: int = 0) -> W.Wav2LipGenerator:
    torch.manual_seed(seed)
    m = W.Wav2LipGenerator()
    with torch.no_grad():  # non-trivial batch-norm statistics, so fusing is really tested
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.normal_(0, 0.1)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.normal_(0, 0.1)
    return m.eval()


@pytest.fixture(scope="module")
def model():
    return _random_model()


def _published_layout(m: torch.nn.Module) -> dict:
    """What wav2lip.pth holds: a training dict with a DataParallel state_dict."""
    return {"state_dict": {"module." + k: v for k, v in m.state_dict().items()},
            "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4}]}, "global_step": 123, "global_epoch": 4}


# --- the architecture --------------------------------------------------------------------------

def test_parameter_names_and_shapes_match_the_published_checkpoints(model):
    sd = model.state_dict()
    # a few entries written out from the published layer list
    expected = {
        "face_encoder_blocks.0.0.conv_block.0.weight": (16, 6, 7, 7),
        "face_encoder_blocks.1.0.conv_block.0.weight": (32, 16, 3, 3),
        "face_encoder_blocks.2.3.conv_block.1.running_var": (64,),
        "face_encoder_blocks.6.1.conv_block.0.weight": (512, 512, 1, 1),
        "audio_encoder.0.conv_block.0.weight": (32, 1, 3, 3),
        "audio_encoder.9.conv_block.0.weight": (256, 128, 3, 3),
        "audio_encoder.12.conv_block.0.weight": (512, 512, 1, 1),
        "face_decoder_blocks.0.0.conv_block.0.weight": (512, 512, 1, 1),
        "face_decoder_blocks.1.0.conv_block.0.weight": (1024, 512, 3, 3),  # transposed: (in, out, k, k)
        "face_decoder_blocks.3.0.conv_block.0.weight": (768, 384, 3, 3),
        "face_decoder_blocks.6.2.conv_block.1.weight": (64,),
        "output_block.0.conv_block.0.weight": (32, 80, 3, 3),
        "output_block.1.weight": (3, 32, 1, 1),
        "output_block.1.bias": (3,),
    }
    for k, shape in expected.items():
        assert tuple(sd[k].shape) == shape, k
    assert len([k for k in sd if k.endswith("num_batches_tracked")]) == 50  # one per conv unit: 18 + 13 + 18 + 1
    n = sum(p.numel() for p in model.parameters())
    assert 36.2e6 < n < 36.4e6  # 36.3 M, as the published generator


@pytest.mark.parametrize("batch", [1, 3])
def test_forward_shapes_and_range(model, batch):
    with torch.inference_mode():
        out = model(torch.randn(batch, 1, 80, 16), torch.rand(batch, 6, 96, 96))
    assert out.shape == (batch, 3, 96, 96)
    assert float(out.min()) >= 0 and float(out.max()) <= 1


def test_fused_model_matches_unfused():
    ref = _random_model(1)
    fused = W.build_from_state(ref.state_dict())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    mel, faces = torch.randn(2, 1, 80, 16), torch.rand(2, 6, 96, 96)
    with torch.inference_mode():
        a = ref(mel, faces)
        b = fused(mel, faces.contiguous(memory_format=torch.channels_last))
    assert (a - b).abs().max() < 1e-4


def test_face_input_is_bgr_with_lower_half_masked():
    crops = torch.zeros(1, 3, 96, 96)
    crops[:, 0] = 1.0  # pure red in RGB
    crops[:, 1] = 0.5
    x = W.face_input(crops)
    assert x.shape == (1, 6, 96, 96)
    # BGR: red lands in channel 2 (and 5 for the reference); the target's lower half is zero
    assert float(x[0, 2, :48].min()) == 1.0 and float(x[0, 0, :48].max()) == 0.0
    assert float(x[0, :3, 48:].abs().max()) == 0.0
    assert float(x[0, 5].min()) == 1.0 and float(x[0, 4].min()) == 0.5 and float(x[0, 3].max()) == 0.0


def test_run_wav2lip_converts_back_to_rgb():
    # a model whose output is its input's first BGR channel proves the RGB <-> BGR round trip
    class Echo(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(1))

        def forward(self, mel, faces):
            return faces[:, 3:6]  # the reference crop, BGR

    crops = torch.rand(2, 3, 96, 96)
    out = W.run_wav2lip(Echo(), crops, torch.zeros(2, 80, 16))
    assert torch.allclose(out, crops)


# --- checkpoints -----------------------------------------------------------------------------

def test_pth_with_module_prefix_and_safetensors_load_the_same(tmp_path, model):
    from safetensors.torch import save_file

    pth = tmp_path / "w.pth"
    torch.save(_published_layout(model), pth)
    st = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(st))
    a, b = weights.read_tensors(str(pth)), weights.read_tensors(str(st))
    assert set(a) == set(model.state_dict()) == set(b)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_missing_unexpected_and_wrong_shapes_are_listed(tmp_path, model):
    sd = dict(model.state_dict())
    del sd["output_block.1.bias"]
    del sd["audio_encoder.3.conv_block.0.weight"]
    sd["extra.head.weight"] = torch.zeros(3)
    sd["face_encoder_blocks.0.0.conv_block.0.weight"] = torch.zeros(16, 3, 7, 7)
    path = tmp_path / "bad.pth"
    torch.save({"state_dict": sd}, path)
    with pytest.raises(CheckpointError) as e:
        W.load_wav2lip(str(path))
    msg = str(e.value)
    assert "bad.pth" in msg
    assert "2 missing key(s): audio_encoder.3.conv_block.0.weight, output_block.1.bias" in msg
    assert "1 unexpected key(s): extra.head.weight" in msg
    assert "face_encoder_blocks.0.0.conv_block.0.weight (16, 3, 7, 7) (expected (16, 6, 7, 7))" in msg


def test_checkpoint_without_num_batches_tracked_loads(tmp_path, model):
    sd = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "old.pth"
    torch.save(sd, path)
    W.load_wav2lip(str(path))


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {_Evil.marker}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    _Evil.marker = str(marker)
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": _Evil()}, path)
    with pytest.raises(CheckpointError, match="refused to load evil.pth"):
        weights.read_tensors(str(path))
    assert not marker.exists()
    # a raw (non-zip) pickle with the same payload
    raw = tmp_path / "evil_raw.pt"
    raw.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(CheckpointError):
        weights.read_tensors(str(raw))
    assert not marker.exists()


def test_non_tensor_and_broken_files_are_refused(tmp_path):
    plain = tmp_path / "lists.pth"
    torch.save({"state_dict": {"a": [1, 2, 3]}, "note": "no tensors"}, plain)
    with pytest.raises(CheckpointError, match="holds no tensors"):
        weights.read_tensors(str(plain))
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        weights.read_tensors(str(empty))
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(CheckpointError, match="not a valid .safetensors"):
        weights.read_tensors(str(junk))
    corrupt = tmp_path / "corrupt.pth"
    with zipfile.ZipFile(corrupt, "w") as z:
        z.writestr("archive/data.pkl", b"garbage")
    with pytest.raises(CheckpointError, match="corrupt.pth"):
        weights.read_tensors(str(corrupt))
    with pytest.raises(CheckpointError, match="unknown checkpoint type"):
        p = tmp_path / "w.onnx"
        p.write_bytes(b"x")
        weights.read_tensors(str(p))


def test_converter_command(tmp_path, model):
    src = tmp_path / "wav2lip.pth"
    torch.save(_published_layout(model), src)
    dst = tmp_path / "wav2lip.safetensors"
    r = subprocess.run([sys.executable, "-m", "lipsync_models.convert", str(src), str(dst)],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "wrote 352 tensors" in r.stdout
    from safetensors.torch import load_file

    out = load_file(str(dst))
    ref = model.state_dict()
    assert set(out) == set(ref) and all(torch.equal(out[k], ref[k]) for k in ref)
    bad = subprocess.run([sys.executable, "-m", "lipsync_models.convert", str(src), str(tmp_path / "x.pth")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and ".safetensors" in bad.stderr


def test_model_cache_reloads_only_when_the_file_changes(tmp_path, model):
    path = tmp_path / "c.pth"
    torch.save({"state_dict": model.state_dict()}, path)
    cache = weights.ModelCache()
    a = cache.get(str(path), W.load_wav2lip, torch.device("cpu"))
    b = cache.get(str(path), W.load_wav2lip, torch.device("cpu"))
    assert a is b and cache.loads == 1
    torch.save({"state_dict": _random_model(2).state_dict()}, path)
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))
    c = cache.get(str(path), W.load_wav2lip, torch.device("cpu"))
    assert c is not a and cache.loads == 2


def test_comfyui_unloading_models_drops_the_wav2lip_cache(tmp_path, model):
    """ComfyUI's "Unload models" (and a GPU request still short) reaches the Wav2Lip cache too: the
    node registers its release at import (as MuseTalk's and LatentSync's)."""
    from comfyui_lipsync.nodes import _comfy
    from comfyui_lipsync.nodes import lipsync_inference  # noqa: F401  (registers at import)

    path = tmp_path / "c.pth"
    torch.save({"state_dict": model.state_dict()}, path)
    W.release()
    a = W.cached_wav2lip(str(path), torch.device("cpu"))
    assert W.cached_wav2lip(str(path), torch.device("cpu")) is a  # kept between runs
    assert W.release in _comfy._RELEASES
    assert _comfy.release_models() is True
    assert W.cached_wav2lip(str(path), torch.device("cpu")) is not a  # read again after the release
    assert W.release() is True and W.release() is False


# --- face crops and the node -------------------------------------------------------------------

@pytest.fixture(scope="module")
def clip(grid_dir):
    frames, fps, (wav, sr) = media.read_video(str(grid_dir / "lbbc2a.mpg"), max_frames=6)
    frames = frames.float() / 255
    track = face.track_faces(frames, crop_size=256)
    n = len(frames)
    driver = audio_mod.make_driver({"waveform": wav[None], "sample_rate": sr}, fps, n)
    vis = types.VisemeTrack(weights=torch.ones(n, 1), params=torch.zeros(n, 5), names=("X",), viseme_set="test", fps=fps)
    return frames, track, vis, driver


def test_face_track_for_wav2lip(clip):
    _, track, _, _ = clip
    t = W.face_track(track)
    assert t.crop_size == 96 and t.transform.shape == track.transform.shape
    m = t.transform.double()
    x0, y0, x1, y1 = track.boxes.double().unbind(-1)
    # the face box top edge maps inside the crop's top, the chin into its lower half, centred
    top = m[:, 1, 0] * (x0 + x1) / 2 + m[:, 1, 1] * y0 + m[:, 1, 2]
    chin = track.mouth[:, 7].double()
    chin_y = m[:, 1, 0] * chin[:, 0] + m[:, 1, 1] * chin[:, 1] + m[:, 1, 2]
    cx = m[:, 0, 0] * (x0 + x1) / 2 + m[:, 0, 2]
    assert bool(((top > -1) & (top < 10)).all())
    assert bool(((chin_y > 60) & (chin_y < 95)).all())
    assert torch.allclose(cx, torch.full_like(cx, 47.5), atol=1e-3)
    # no rotation, square pixels
    assert torch.allclose(m[:, 0, 1], torch.zeros_like(cx)) and torch.allclose(m[:, 0, 0], m[:, 1, 1])
    # the other fields are passed on unchanged
    assert t.mouth is track.mouth and t.boxes is track.boxes


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_node_runs_a_checkpoint_from_the_models_folder(tmp_path, monkeypatch, clip, model, fmt):
    from safetensors.torch import save_file

    folder = tmp_path / "models" / "lipsync"
    folder.mkdir(parents=True)
    name = f"wav2lip_gan.{fmt}"
    if fmt == "pth":
        torch.save(_published_layout(model), folder / name)
    else:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / name))
    monkeypatch.setenv("LIPSYNC_MODELS_DIR", str(tmp_path / "models"))
    req = LipSyncInference.INPUT_TYPES()["required"]
    assert name in req["model"][0]
    frames, track, vis, driver = clip
    crops, out_track = LipSyncInference().run(frames, track, vis, driver, model=name, strength=1.0, batch_size=4)
    assert crops.shape == (len(frames), 96, 96, 3) and out_track.crop_size == 96
    # the same as running the model by hand on the same face crops and mel windows
    faces = composite.crop_faces(frames, out_track).permute(0, 3, 1, 2)
    ref = W.run_wav2lip(W.build_from_state(model.state_dict()), faces, driver.mel)
    assert (crops - ref.permute(0, 2, 3, 1)).abs().max() < 1e-4
    # and Composite pastes them back into the frames with the returned track
    pasted = composite.composite(frames, crops, out_track)
    assert pasted.shape == frames.shape
    # half strength is halfway between the face crops and the generated faces
    half, _ = LipSyncInference().run(frames, track, vis, driver, model=name, strength=0.5, batch_size=4)
    mid = 0.5 * (faces.permute(0, 2, 3, 1) + ref.permute(0, 2, 3, 1))
    assert (half - mid).abs().max() < 1e-4


def test_node_reports_a_vanished_checkpoint(tmp_path, monkeypatch, clip):
    monkeypatch.setenv("LIPSYNC_MODELS_DIR", str(tmp_path))
    frames, track, vis, driver = clip
    with pytest.raises(CheckpointError, match="gone.pth"):
        LipSyncInference().run(frames, track, vis, driver, model="gone.pth", strength=1.0, batch_size=4)


def test_refusal_names_the_object_and_the_trusted_conversion(tmp_path, model):
    """A real-world reason for a refusal: the training script pickled its argparse options beside the
    weights. The message names that object, not torch's 'weights_only=False'; the converter refuses
    it as well, and converts it only when told to trust it, into a file the node then loads."""
    import argparse

    src = tmp_path / "trained.pth"
    torch.save({**_published_layout(model), "args": argparse.Namespace(lr=1e-4)}, src)
    with pytest.raises(CheckpointError) as info:
        weights.read_tensors(str(src), "LipSyncInference")
    msg = str(info.value)
    assert "argparse.Namespace" in msg and "weights_only" not in msg
    assert "--trust-pickle trained.pth trained.safetensors" in msg
    dst = tmp_path / "trained.safetensors"
    run = [sys.executable, "-m", "lipsync_models.convert", str(src), str(dst)]
    refused = subprocess.run(run, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1 and "argparse.Namespace" in refused.stderr and not dst.exists()
    done = subprocess.run(run + ["--trust-pickle"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = weights.read_tensors(str(dst))
    ref = model.state_dict()
    assert set(out) == set(ref) and all(torch.equal(out[k], ref[k]) for k in ref)


def test_free_memory_for_model_asks_comfyui_on_a_gpu_only(monkeypatch):
    from comfyui_lipsync.nodes import _comfy

    calls = []

    class FakeMM:
        device = torch.device("cuda", 0)

        def get_torch_device(self):
            return self.device

        def free_memory(self, nbytes, device, keep_loaded=()):
            calls.append((nbytes, device))

    fake = FakeMM()
    monkeypatch.setattr(_comfy, "_mm", fake)
    _comfy.free_memory_for_model(123_456_789)
    assert calls == [(123_456_789, torch.device("cuda", 0))]
    fake.device = torch.device("cpu")
    _comfy.free_memory_for_model(5)
    monkeypatch.setattr(_comfy, "_mm", None)
    _comfy.free_memory_for_model(5)
    assert len(calls) == 1


def test_node_frees_memory_before_loading_a_checkpoint(tmp_path, monkeypatch, clip, model):
    from comfyui_lipsync.nodes import _comfy

    (tmp_path / "lipsync").mkdir()
    path = tmp_path / "lipsync" / "w.pth"
    torch.save(model.state_dict(), path)
    monkeypatch.setenv("LIPSYNC_MODELS_DIR", str(tmp_path))
    asked = []
    monkeypatch.setattr(_comfy, "free_memory_for_model", asked.append)
    frames, track, vis, driver = clip
    LipSyncInference().run(frames, track, vis, driver, model="w.pth", strength=1.0, batch_size=4)
    assert asked == [2 * os.path.getsize(path)]
    LipSyncInference().run(frames, track, vis, driver, strength=1.0, batch_size=4)  # built-in: no model to load
    assert len(asked) == 1
