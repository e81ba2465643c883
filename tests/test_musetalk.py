"""The MuseTalk 1.5 backend on tiny random configs of the real classes (diffusers UNet2DConditionModel and
AutoencoderKL, transformers Whisper), written in the public file layout by bench/parity_musetalk.py:
shapes, determinism, batching, missing faces, the crop rule, the strict loader's errors, the audio-window
timing against a synthetic click track, and the parity script's own logic (the reference checkout itself
is not here; the bench states the figure measured with it)."""

from __future__ import annotations

import importlib.util
import math
import os
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers", reason="the MuseTalk backend needs diffusers (an optional dependency)")
pytest.importorskip("transformers", reason="the MuseTalk backend needs transformers")

from comfyui_lipsync.lipsync_models import backends, composite  # noqa: E402
from comfyui_lipsync.lipsync_models.backends import musetalk as M  # noqa: E402
from comfyui_lipsync.lipsync_models.backends import musetalk_files as MF  # noqa: E402
from comfyui_lipsync.lipsync_models.errors import CheckpointError, InputError  # noqa: E402
from comfyui_lipsync.lipsync_models.types import MOUTH_PARAMS, MOUTH_POINTS, AudioDriver, FaceTrack, VisemeTrack  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _parity():
    spec = importlib.util.spec_from_file_location("parity_musetalk", ROOT / "bench" / "parity_musetalk.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


P = _parity()


@pytest.fixture(scope="module")
def layout(tmp_path_factory) -> str:
    return P.write_layout(str(tmp_path_factory.mktemp("musetalk")), "tiny", seed=3)


@pytest.fixture()
def copy(layout, tmp_path) -> str:
    """A writable copy of the tiny layout, to break."""
    dst = str(tmp_path / "musetalk")
    shutil.copytree(layout, dst)
    return dst


def _track(n: int, h: int = 288, w: int = 360, found=None) -> FaceTrack:
    """A face of 120 px box width, nose at y 150, chin at y 200, the mouth opening a little on odd frames."""
    boxes = torch.tensor([[120.0, 90.0, 240.0, 215.0]]).repeat(n, 1) + torch.arange(n)[:, None] * 0.5
    pts = {"corner_left": (160, 175), "corner_right": (200, 175), "upper_outer": (180, 168),
           "lower_outer": (180, 184), "upper_inner": (180, 173), "lower_inner": (180, 177),
           "nose": (180, 150), "chin": (180, 200)}
    mouth = torch.tensor([pts[k] for k in MOUTH_POINTS], dtype=torch.float32).repeat(n, 1, 1)
    mouth[1::2, MOUTH_POINTS.index("lower_inner"), 1] += 6
    s = 256 / 160
    t = torch.tensor([[s, 0, 128 - s * 180], [0, s, 128 - s * 175]], dtype=torch.float32).repeat(n, 1, 1)
    found = torch.ones(n, dtype=torch.bool) if found is None else torch.as_tensor(found)
    return FaceTrack(boxes=boxes, mouth=mouth, opening=torch.zeros(n), transform=t, crop_size=256,
                     frame_size=(h, w), found=found)


def _frames(n: int, h: int = 288, w: int = 360) -> torch.Tensor:
    g = torch.Generator().manual_seed(5)
    low = torch.rand(n, 3, 9, 11, generator=g)
    return torch.nn.functional.interpolate(low, size=(h, w), mode="bilinear").permute(0, 2, 3, 1).contiguous()


def _driver(n: int, fps: float = 25.0, seed: int = 2):
    line = torch.from_numpy(P.inputs(max(n, 1), seed)[1])[: int(round(n / fps * M.AUDIO_RATE))]
    z = torch.zeros(n)
    return AudioDriver(waveform=line, fps=fps, num_frames=n, mel=torch.zeros(n, 80, 16), loudness=z,
                       voicing=z, audio={"waveform": line[None, None], "sample_rate": M.AUDIO_RATE})


# --- audio ---------------------------------------------------------------------------------------

def test_positional_encoding_known_values():
    pe = M.positional_encoding(50, 384, dtype=torch.float64)
    assert pe.shape == (50, 384)
    assert torch.equal(pe[0, 0::2], torch.zeros(192, dtype=torch.float64))
    assert torch.equal(pe[0, 1::2], torch.ones(192, dtype=torch.float64))
    # by hand: channel 2i at position p is sin(p / 10000^(2i/384)), channel 2i+1 its cosine
    for p, i in [(1, 0), (7, 5), (49, 100), (33, 191)]:
        ang = p / 10000 ** (2 * i / 384)
        assert pe[p, 2 * i].item() == pytest.approx(math.sin(ang), abs=1e-5)
        assert pe[p, 2 * i + 1].item() == pytest.approx(math.cos(ang), abs=1e-5)


def _click_energy(fps: float, seconds: float, every: int):
    """A click (one sample) at the exact time of every ``every``-th frame; the line's energy per 20-ms
    Whisper step as (N, 1, 1) features."""
    n = int(seconds * M.AUDIO_RATE)
    line = np.zeros(n)
    frames = np.arange(0, int(seconds * fps), every)
    line[np.floor(frames * M.AUDIO_RATE / fps).astype(int)] = 1.0
    hop = M.AUDIO_RATE // M.WHISPER_FPS
    energy = (line[: n // hop * hop].reshape(-1, hop) ** 2).sum(1)
    return torch.from_numpy(energy)[:, None, None].float(), frames


@pytest.mark.parametrize("fps", [16.0, 25.0, 30000 / 1001])
def test_window_timing_against_click_track(fps):
    """Over 60 s, every clicked frame's window holds its click at step 4 (80 ms after the window starts:
    two frames of 25-fps context before it), with no drift at the end; the reference rule (``int(fps)``,
    left pad ``2 * ceil(50 / int(fps))``) is off by seconds at 29.97 fps by then, and 4 steps early at 16."""
    feats, frames = _click_energy(fps, 60.0, 7)
    num = int(60.0 * fps)
    pe = M.positional_encoding(M.WINDOW, 1)
    win = M.audio_windows(feats, num, fps)[..., 0] - pe[:, 0]  # (F, 10): the energy each window sees
    assert win.shape == (num, M.WINDOW)
    assert torch.all(win[torch.from_numpy(frames)].argmax(1) == M.OFFSET)
    assert torch.all(win[torch.from_numpy(frames)].sum(1) == 1.0)  # the click is seen once, whole
    k = frames[-1]
    ref_fps = int(fps)
    ref_start = math.floor(k * 50 / ref_fps) - 2 * math.ceil(50 / ref_fps)
    ours = int(M.window_starts(k + 1, fps)[k])
    if fps == 25.0:
        assert ours == ref_start
    else:
        assert abs(ours - ref_start) >= 4  # the reference's window would miss this click's position


def test_whisper_features_rate_and_segments(layout):
    files = MF.find_files(layout)
    enc, ext = MF.load_whisper(files)
    wave = torch.from_numpy(P.inputs(8, 4)[1])
    long = torch.cat([wave] * 98)[: int(31.3 * M.AUDIO_RATE)]  # past one 30-s segment
    f = M.whisper_features(enc, ext, long)
    assert f.shape == (math.floor(31.3 * 50), enc.config.encoder_layers + 1, enc.config.d_model)
    assert torch.isfinite(f).all()
    assert f[1500:].abs().sum() > 0  # the second segment is encoded, not padding
    short = M.whisper_features(enc, ext, long[: 30 * M.AUDIO_RATE])
    assert torch.allclose(short, f[:1500], atol=1e-5)  # the first segment does not see the second


def test_audio_windows_rejects_bad_fps():
    with pytest.raises(InputError, match="fps must be positive"):
        M.audio_windows(torch.zeros(10, 5, 384), 3, 0.0)


# --- crops ---------------------------------------------------------------------------------------

def test_crop_rule_by_hand():
    tr = _track(3)
    ct = M.crop_track(tr)
    assert ct.crop_size == 256
    # frame 0: x 120..240, nose 150 and chin 200 -> top 100, bottom 210 (10 px below the chin)
    m = ct.transform[0].double()
    pts = torch.tensor([[119.5, 99.5], [239.5, 209.5], [180.0, 150.0]], dtype=torch.float64)
    uv = pts @ m[:, :2].T + m[:, 2]
    assert uv[0].tolist() == pytest.approx([-0.5, -0.5], abs=1e-4)  # outer pixel edges (float32 transform) map to the crop's
    assert uv[1].tolist() == pytest.approx([255.5, 255.5], abs=1e-4)
    # the nose halfway between the top and the chin (the margin lies below the chin)
    assert uv[2, 1].item() == pytest.approx((150 - 99.5) * 256 / 110 - 0.5, abs=1e-4)
    # a face near the top: the box is cut at the frame's edge; near the bottom, the margin is
    near = replace(tr, mouth=tr.mouth - torch.tensor([0.0, 120.0]))
    assert M.crop_boxes(near)[0, 1].item() == 0.0
    low = replace(tr, mouth=tr.mouth + torch.tensor([0.0, 85.0]))
    assert M.crop_boxes(low)[0, 3].item() == 288.0


# --- the clip ------------------------------------------------------------------------------------

def test_clip_shapes_determinism_and_batches(layout):
    n = 5
    images, tr, drv = _frames(n), _track(n), _driver(n)
    calls = []
    a, ta = M.lipsync_musetalk(images, tr, drv, layout, batch_size=2, on_progress=lambda d, t: calls.append((d, t)))
    b, _ = M.lipsync_musetalk(images, tr, drv, layout, batch_size=2)
    c, _ = M.lipsync_musetalk(images, tr, drv, layout, batch_size=5)
    assert a.shape == (n, 256, 256, 3) and a.dtype == torch.float32
    assert 0 <= a.min() and a.max() <= 1
    assert torch.equal(a, b)  # the latent mean: no sampling
    assert torch.allclose(a, c, atol=1e-4)  # batch size does not change a frame (conv rounding only)
    assert calls == [(1, 3), (2, 3), (3, 3)]
    assert ta.crop_size == 256 and "MuseTalk 1.5" in ta.report
    crops = composite.crop_faces(images, ta)[..., :3]
    assert (a - crops).abs().amax(dim=(1, 2, 3)).min() > 0.05  # every frame was redrawn


def test_missing_faces_pass_through_in_order(layout):
    n = 4
    images, drv = _frames(n), _driver(n)
    tr = _track(n, found=[True, False, True, False])
    out, ta = M.lipsync_musetalk(images, tr, drv, layout, batch_size=3, lip_frame=0)
    crops = composite.crop_faces(images, ta)[..., :3]
    assert torch.equal(out[1], crops[1]) and torch.equal(out[3], crops[3])
    full, _ = M.lipsync_musetalk(images, _track(n), drv, layout, batch_size=3, lip_frame=0)
    assert torch.allclose(out[[0, 2]], full[[0, 2]], atol=1e-4)  # found frames keep their own audio


def test_reference_frame_choice(layout):
    n = 4
    images, tr, drv = _frames(n), _track(n), _driver(n)
    own, _ = M.lipsync_musetalk(images, tr, drv, layout, lip_frame=M.OWN_FRAME)
    fixed, t0 = M.lipsync_musetalk(images, tr, drv, layout, lip_frame=3)
    assert "from frame 3" in t0.report
    assert torch.allclose(own[3], fixed[3], atol=1e-4)  # frame 3 is its own reference either way
    assert (own[0] - fixed[0]).abs().max() > 1e-3  # another reference, another picture
    assert M.reference_index(tr, -1) % 2 == 0  # automatic: a closed mouth (even frames are closed)
    with pytest.raises(InputError, match="lip_frame 4 is outside the clip"):
        M.reference_index(tr, 4)


def test_node_dispatch_routes_a_folder(layout):
    n = 3
    images, tr, drv = _frames(n), _track(n), _driver(n)
    vis = VisemeTrack(weights=torch.ones(n, 1), params=torch.zeros(n, len(MOUTH_PARAMS)), names=("X",),
                      viseme_set="t", fps=25.0)
    crops, ta = backends.lipsync(images, tr, vis, drv, model=layout, batch_size=2, lip_frame=0)
    assert crops.shape == (n, 256, 256, 3) and "MuseTalk" in ta.report


# --- the loader ----------------------------------------------------------------------------------

def test_loader_loads_the_public_layout(layout):
    files = MF.find_files(layout)
    models = M.load_models(files, "cpu", torch.float32)
    assert models.scaling == pytest.approx(0.18215)
    assert models.unet.config.in_channels == 8 and models.unet.config.cross_attention_dim == 384


@pytest.mark.parametrize("rel, what", [
    ("musetalkV15/unet.pth", "UNet weights"), ("musetalkV15/musetalk.json", "musetalk.json"),
    ("whisper/preprocessor_config.json", "preprocessor_config.json"),
    ("whisper/pytorch_model.bin", "pytorch_model.bin"), ("sd-vae/diffusion_pytorch_model.bin", "weights"),
])
def test_missing_file_is_named(copy, rel, what):
    os.remove(os.path.join(copy, rel))
    with pytest.raises(CheckpointError, match=rf"MuseTalk file {rel} is missing.*{what}"):
        MF.find_files(copy)


def test_strict_keys_name_the_file(copy):
    path = os.path.join(copy, "musetalkV15", "unet.pth")
    state = torch.load(path, weights_only=True)
    state["extra.weight"] = torch.zeros(1)
    state.pop("conv_in.bias")
    state["conv_out.weight"] = torch.zeros(1, 2)
    torch.save(state, path)
    with pytest.raises(CheckpointError) as e:
        MF.load_unet(MF.find_files(copy))
    msg = str(e.value)
    assert "musetalkV15/unet.pth" in msg and "conv_in.bias" in msg and "extra.weight" in msg
    assert "conv_out.weight (1, 2)" in msg


def test_whisper_stray_keys_and_vae_mismatch(copy):
    wpath = os.path.join(copy, "whisper", "pytorch_model.bin")
    state = torch.load(wpath, weights_only=True)
    state["lm_head.bias"] = torch.zeros(3)
    torch.save(state, wpath)
    with pytest.raises(CheckpointError, match=r"whisper/pytorch_model.bin holds keys that are not Whisper's \(lm_head.bias\)"):
        MF.load_whisper(MF.find_files(copy))
    vpath = os.path.join(copy, "sd-vae", "diffusion_pytorch_model.bin")
    vs = torch.load(vpath, weights_only=True)
    vs.pop("quant_conv.weight")
    torch.save(vs, vpath)
    with pytest.raises(CheckpointError, match=r"sd-vae/diffusion_pytorch_model.bin .*quant_conv.weight.*sd-vae-ft-mse"):
        MF.load_vae(MF.find_files(copy))


class _Payload:  # a pickle that is more than tensors
    def __reduce__(self):
        return (print, ("code ran",))


def test_pickle_with_code_is_refused(copy):
    torch.save({"conv_in.weight": torch.zeros(1), "x": _Payload()}, os.path.join(copy, "musetalkV15", "unet.pth"))
    with pytest.raises(CheckpointError, match="refused to load unet.pth"):
        MF.load_unet(MF.find_files(copy))


def test_vae_single_file_errors_name_the_file(copy, tmp_path):
    """A VAE file from ComfyUI's models/vae (Stable Diffusion key layout) that does not convert, or is
    missing, is refused with the file's name (never a KeyError from the converter)."""
    from safetensors.torch import save_file

    bad = tmp_path / "vae-ft-mse-840000-ema-pruned.safetensors"
    save_file({"encoder.down.0.block.0.conv1.weight": torch.zeros(128, 3, 3, 3)}, str(bad))
    shutil.rmtree(os.path.join(copy, "sd-vae"))
    with pytest.raises(CheckpointError, match="sd-vae/config.json is missing"):
        MF.find_files(copy)
    with pytest.raises(CheckpointError, match="VAE file gone.safetensors not found"):
        MF.find_files(copy, vae=str(tmp_path / "gone.safetensors"))
    with pytest.raises(CheckpointError, match="vae-ft-mse-840000-ema-pruned.safetensors"):
        MF.load_vae(MF.find_files(copy, vae=str(bad)))


# --- the parity script's own logic --------------------------------------------------------------------

def test_parity_script_detects_one_changed_operation(capsys):
    """Without the reference: the script's comparison of the backend with itself is exact, and with one
    operation on the path changed (a positional-encoding constant, the window offset, the mask half) it
    reports > 1e-3, the issue's bar (measured 0.027, 0.145 and 0.56 at 4 frames of this architecture)."""
    assert P.main(["--size", "tiny", "--frames", "3"]) <= P.BAR
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("max abs diff: ")
    for what in ("pe", "offset", "mask"):
        assert P.main(["--size", "tiny", "--frames", "3", "--perturb", what]) > 1e-3, what


def test_node_lists_and_runs_the_musetalk_folder(layout, tmp_path, monkeypatch):
    from comfyui_lipsync.nodes import _comfy
    from comfyui_lipsync.nodes.lipsync_inference import LipSyncInference

    models = tmp_path / "models"
    monkeypatch.setenv("LIPSYNC_MODELS_DIR", str(models))
    assert _comfy.MUSETALK_ENTRY not in LipSyncInference.INPUT_TYPES()["required"]["model"][0]
    shutil.copytree(layout, models / "lipsync" / "musetalk")
    choices = LipSyncInference.INPUT_TYPES()["required"]["model"][0]
    assert _comfy.MUSETALK_ENTRY in choices
    assert not any(c.startswith("musetalk/") for c in choices)  # its files are not offered as Wav2Lip files
    n = 2
    images, tr, drv = _frames(n), _track(n), _driver(n)
    vis = VisemeTrack(weights=torch.ones(n, 1), params=torch.zeros(n, len(MOUTH_PARAMS)), names=("X",),
                      viseme_set="t", fps=25.0)
    crops, ta = LipSyncInference().run(images, tr, vis, drv, model=_comfy.MUSETALK_ENTRY, batch_size=2, lip_frame=0)
    assert crops.shape == (n, 256, 256, 3) and "MuseTalk 1.5" in ta.report
