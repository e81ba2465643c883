"""The LatentSync backend on the tiny configuration of its own classes (lipsync_models.backends.latentsync_unet
.TINY), written in the public file layout by bench/parity_latentsync.py: UNet shapes and what its temporal and
audio layers do, determinism for a seed, the strict loaders' errors, the audio-window timing at 16, 25 and
29.97 fps, the mask's shape, the alignment on a recorded GRID clip, frames without a face, progress, and the
parity script's own logic (the reference checkout is not here; the bench states the figure measured with it)."""

from __future__ import annotations

import importlib.util
import math
import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import CodeOnLoad
import torch

for _need in ("diffusers", "transformers"):  # diffusers: VAE and DDIM; transformers: Whisper's mel filters
    pytest.importorskip(_need, reason=f"the LatentSync backend needs {_need} (an optional dependency)")

from comfyui_lipsync.lipsync_models import composite  # noqa: E402
from comfyui_lipsync.lipsync_models.backends import latentsync as L, latentsync_align as LA  # noqa: E402
from comfyui_lipsync.lipsync_models.backends import latentsync_audio as A, latentsync_files as LF  # noqa: E402
from comfyui_lipsync.lipsync_models.backends import latentsync_unet as U  # noqa: E402
from comfyui_lipsync.lipsync_models.errors import CheckpointError, InputError  # noqa: E402
from comfyui_lipsync.lipsync_models.types import MOUTH_POINTS, AudioDriver  # noqa: E402

_spec = importlib.util.spec_from_file_location(
    "parity_latentsync", Path(__file__).resolve().parents[1] / "bench" / "parity_latentsync.py")
P = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(P)
SIZE = 64
"""Crop side for the tests (the tiny UNet takes any multiple of 64; the published models 256 / 512)."""


@pytest.fixture(scope="module")
def layout(tmp_path_factory) -> str:
    return P.write_layout(str(tmp_path_factory.mktemp("latentsync")), "tiny", "tiny", seed=3)


@pytest.fixture()
def copy(layout, tmp_path) -> str:
    dst = str(tmp_path / "latentsync")
    shutil.copytree(layout, dst)
    return dst


@pytest.fixture(scope="module")
def grid():
    from helpers import grid_recorded

    track, wave, fps, images = grid_recorded("bbaf2n")
    n = 6
    return track.frames(slice(0, n)), wave[: int(round(n / fps * 16000))], fps, images[:n]


def _driver(wave: torch.Tensor, n: int, fps: float) -> AudioDriver:
    z = torch.zeros(n)
    return AudioDriver(waveform=wave, fps=fps, num_frames=n, mel=torch.zeros(n, 80, 16), loudness=z, voicing=z,
                       audio={"waveform": wave[None, None], "sample_rate": 16000})


def _tiny_unet(seed: int = 0) -> U.LatentSyncUNet:
    torch.manual_seed(seed)
    m = U.LatentSyncUNet(U.TINY).eval()
    with torch.no_grad():  # the zero-initialised projections of training would hide the layers under test
        for p in m.parameters():
            if p.ndim >= 2:
                p.normal_(0, 1 / math.sqrt(p[0].numel()))
    return m


# --- the UNet ------------------------------------------------------------------------------------

@pytest.mark.parametrize("b, f, h", [(1, 1, 8), (2, 5, 8), (1, 3, 12)])
def test_unet_shapes(b, f, h):
    m = _tiny_unet()
    x, audio = torch.randn(b, 13, f, h, h), torch.randn(b, f, 50, 384)
    with torch.no_grad():
        out = m(x, torch.tensor(500), audio)
    assert out.shape == (b, 4, f, h, h) and torch.isfinite(out).all()


def test_unet_frames_attend_to_each_other_and_to_their_audio():
    """Changing frame 0 moves frame 2's prediction (motion modules, and the frame-spanning GroupNorms);
    frame 2's audio moves frame 2 more than frame 0; no audio differs from zero audio only through
    attention to zeros (the guidance's unconditional branch)."""
    m = _tiny_unet()
    g = torch.Generator().manual_seed(1)
    x, audio = torch.randn(1, 13, 4, 8, 8, generator=g), torch.randn(1, 4, 50, 384, generator=g)
    with torch.no_grad():
        base = m(x, 300, audio)
        x2 = x.clone()
        x2[:, :, 0] += 1.0
        moved = m(x2, 300, audio)
        a2 = audio.clone()
        a2[:, 2] = torch.randn(50, 384, generator=g)
        heard = m(x, 300, a2)
        silent = m(x, 300, torch.zeros_like(audio))
        none = m(x, 300, None)
    assert (moved - base)[:, :, 2].abs().max() > 1e-3
    d = (heard - base).abs()
    assert d[:, :, 2].max() > 1e-3 and d[:, :, 2].max() > d[:, :, 0].max()
    assert not torch.allclose(silent, none)
    with pytest.raises(ValueError, match="at most 24 frames"):
        m(torch.randn(1, 13, 25, 8, 8), 1, None)


def test_unet_is_deterministic_and_timestep_matters():
    a, b = _tiny_unet(7), _tiny_unet(7)
    x, audio = torch.randn(2, 13, 3, 8, 8), torch.randn(2, 3, 50, 384)
    with torch.no_grad():
        assert torch.equal(a(x, 10, audio), b(x, 10, audio))
        assert not torch.allclose(a(x, 10, audio), a(x, 900, audio))


def test_full_architecture_matches_the_published_size():
    """LatentSync 1.5/1.6's UNet: 1,267,944,644 numbers in its state dict (weights and the frame encodings),
    as the reference's UNet3DConditionModel of stage2_512.yaml reports for the published file."""
    with torch.device("meta"):
        m = U.LatentSyncUNet(U.FULL)
    state = m.state_dict()
    assert sum(v.numel() for v in state.values()) == 1_267_944_644
    assert state["conv_in.weight"].shape == (320, 13, 3, 3)
    assert state["down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight"].shape == (320, 384)
    pe = "up_blocks.3.motion_modules.2.temporal_transformer.transformer_blocks.0.attention_blocks.1.pos_encoder.pe"
    assert state[pe].shape == (1, 24, 320)
    assert not any(k.startswith("mid_block.motion_modules") for k in state)


def test_reused_features_repeat_the_whole_pass_on_the_same_input():
    """The reuse path (conv_in, the last up block's last layer on the kept features, conv_out) given the
    input the kept features came from reproduces the whole pass; the deep blocks do not run on it."""
    m = _tiny_unet(2)
    x, audio = torch.randn(2, 13, 3, 8, 8), torch.randn(2, 3, 50, 384)
    deep = []
    m.mid_block.register_forward_hook(lambda *a: deep.append(1))
    reuse = U.FeatureReuse(3)
    with torch.no_grad():
        whole = m(x, 400, audio)
        first = m(x, 400, audio, reuse=reuse)
        assert len(deep) == 2
        again = m(x, 400, audio, reuse=reuse)
        assert len(deep) == 2  # reused: the middle block did not run
        moved = m(x + 0.5, 400, audio, reuse=reuse)
        assert len(deep) == 2
        fresh = m(x + 0.5, 400, audio, reuse=reuse)  # the 4th call is whole again (every 3rd)
        assert len(deep) == 3
    assert torch.equal(first, whole)
    assert torch.allclose(again, whole, atol=1e-5)
    assert not torch.allclose(moved, fresh, atol=1e-3)  # new input, old deep features: an approximation
    with pytest.raises(ValueError, match="at least 1"):
        U.FeatureReuse(0)


def _deepcache_by_hooks(m: U.LatentSyncUNet, interval: int) -> None:
    """DeepCache's rule for cache_branch_id 0 (its DeepCacheSDHelper), written independently of
    FeatureReuse as output-replacing hooks: on a call that is not a multiple of ``interval``, every down
    block, the middle block, every up block but the last, and the ResNets and attentions of the last up
    block's layers but its last return what they returned on the last whole call; motion modules run."""
    state = {"call": -1, "kept": {}}
    m.register_forward_pre_hook(lambda *a: state.update(call=state["call"] + 1))
    last = m.up_blocks[-1]
    cached = [*m.down_blocks, m.mid_block, *m.up_blocks[:-1], *last.resnets[:-1]]
    cached += list(last.attentions[:-1]) if last.attentions is not None else []
    for i, mod in enumerate(cached):
        def hook(mod, args, out, i=i):
            if state["call"] % interval == 0:
                state["kept"][i] = out
                return None
            return state["kept"][i]
        mod.register_forward_hook(hook)


@pytest.mark.parametrize("layers", [1, 2])
def test_feature_reuse_is_deepcaches_rule(layers):
    cfg = replace(U.TINY, layers=layers)
    torch.manual_seed(5)
    ours, theirs = U.LatentSyncUNet(cfg).eval(), U.LatentSyncUNet(cfg).eval()
    with torch.no_grad():
        for p in ours.parameters():
            if p.ndim >= 2:
                p.normal_(0, 1 / math.sqrt(p[0].numel()))
    theirs.load_state_dict(ours.state_dict())
    _deepcache_by_hooks(theirs, 3)
    reuse, g = U.FeatureReuse(3), torch.Generator().manual_seed(6)
    audio = torch.randn(2, 3, 50, 384, generator=g)
    with torch.no_grad():
        for k, t in enumerate([981, 931, 881, 831, 781, 731, 681]):
            x = torch.randn(2, 13, 3, 8, 8, generator=g)
            a, b = ours(x, t, audio, reuse=reuse), theirs(x, t, audio)
            assert torch.allclose(a, b, atol=1e-6), k
            if k % 3:
                assert not torch.allclose(a, ours(x, t, audio), atol=1e-3), k  # a reused call is not a whole one


# --- audio -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fps, k, step", [(25.0, 1, 2), (25.0, 374, 748), (16.0, 1, 3), (16.0, 3, 9),
                                          (16.0, 959, 2996), (30000 / 1001, 1, 1), (30000 / 1001, 1000, 1668),
                                          (30000 / 1001, 1798, 2999)])
def test_window_centre_by_hand(fps, k, step):
    """Frame k's window is centred on Whisper step floor(k * 50 / fps) of the clip's own rate (by hand:
    16 fps, k = 3: 9.375 -> 9; 29.97 fps, k = 1000: 1668.33 -> 1668), steps c-4 .. c+5."""
    idx = A.window_steps(k + 1, fps, 10**6)[k]
    assert idx.tolist() == [max(i, 0) for i in range(step - 4, step + 6)]  # steps before the line: step 0


@pytest.mark.parametrize("fps", [16.0, 25.0, 30000 / 1001])
def test_windows_follow_the_clock_over_ten_minutes(fps):
    """Over 10 minutes every frame's window centre lies in [k / fps - 20 ms, k / fps]: no drift (the
    reference re-encodes to 25 fps instead; at 29.97 a rounded rate would drift 3.3 %)."""
    n = int(600 * fps)
    t = A.window_centre_seconds(n, fps)
    exact = torch.arange(n, dtype=torch.float64) / fps
    assert float((exact - t).min()) >= -1e-9 and float((exact - t).max()) < 0.02


def test_chunk_windows_are_the_whole_clips_windows():
    """A chunk's tokens (built per chunk, not for the whole clip at once) are the whole clip's rows."""
    feats = torch.randn(400, 5, 384)
    whole = A.audio_windows(feats, 200, 30000 / 1001)
    assert torch.equal(A.audio_windows(feats, 16, 30000 / 1001, first=48), whole[48:64])
    assert torch.equal(A.audio_windows(feats, 7, 30000 / 1001, first=193), whole[193:])


def test_windows_clamp_at_the_line_ends_and_keep_the_token_order():
    n_steps, layers = 30, 5
    feats = torch.arange(n_steps, dtype=torch.float32)[:, None, None].expand(n_steps, layers, 2) * 1.0
    feats = feats + torch.arange(layers)[None, :, None] * 0.1
    win = A.audio_windows(feats, 20, 25.0)  # frame 19 -> centre step 38, past the line's 30
    assert win.shape == (20, 50, 2)
    assert win[0, ::5, 0].round().tolist() == [0, 0, 0, 0, 0, 1, 2, 3, 4, 5]  # steps -4..-1 repeat step 0
    assert win[19, ::5, 0].round().tolist() == [29] * 10
    assert torch.allclose(win[3, :5, 0] - win[3, 0, 0], torch.tensor([0, 0.1, 0.2, 0.3, 0.4]))  # layers inside a step


def test_whisper_features_rate_layers_and_no_final_norm(layout):
    enc = LF.load_whisper(LF.find_files(layout))
    wave = torch.from_numpy(P.inputs(50, 64, seed=4)[1])[:int(31.3 * 16000) // 100]  # 3.13 s
    filters = A.mel_filters()
    feats = A.whisper_features(enc, filters, wave)
    assert feats.shape == ((len(wave) // 160) // 2, 5, 384)  # 156 steps of 20 ms, 5 states of 384
    mel = A.log_mel(wave, filters)
    seg = torch.nn.functional.pad(mel, (0, 3000 - mel.shape[1]))[None]
    with torch.no_grad():
        x = torch.nn.functional.gelu(enc.conv2(torch.nn.functional.gelu(enc.conv1(seg)))).permute(0, 2, 1)
        x = x + enc.positional_embedding
        for b in enc.blocks:
            x = b(x)
    assert torch.allclose(feats[:, 4], x[0, : feats.shape[0]], atol=1e-5)  # the last block's raw output
    assert not torch.allclose(feats[:, 4], enc.ln_post(x)[0, : feats.shape[0]], atol=1e-2)


def _slaney_hz(mel):
    """Slaney's mel scale back to Hz: linear (200/3 Hz per mel) below 1 kHz (15 mel), log above."""
    return torch.where(mel < 15, mel * 200 / 3, 1000 * torch.exp((mel - 15) * math.log(6.4) / 27))


def test_whisper_mel_filters_are_slaney():
    """Whisper's bank: 80 triangles over 0-8 kHz (201 bins of 40 Hz) centred on Slaney mel steps, each of
    unit area (Slaney normalisation: height 2 / width)."""
    f = A.mel_filters()
    assert f.shape == (80, 201)
    top = 15 + 27 * math.log(8000 / 1000) / math.log(6.4)
    centres = _slaney_hz(torch.linspace(0, top, 82, dtype=torch.float64))[1:-1]
    peaks = f.argmax(1).double() * 40.0
    assert float((peaks - centres).abs().max()) <= 20.0 + 1e-6  # within half a bin
    area = f.double().sum(1) * 40.0  # sampled every 40 Hz: exact enough once a triangle spans 10+ bins
    assert torch.allclose(area[45:], torch.ones(35, dtype=torch.float64), atol=0.03)


# --- mask and alignment --------------------------------------------------------------------------------

def test_mask_shape_by_hand():
    m = LA.template_mask(256)
    assert m.shape == (256, 256)
    assert m[60, 128] == 1 and m[100, 128] == 1  # forehead, nose gap between the cheek bands
    assert m[100, 40] == 0 and m[100, 210] == 0  # cheeks
    assert m[200, 128] == 0 and m[200, 20] == 1  # mouth and chin; outside the U
    assert m[250, 128] == 1  # below the U
    # the reference's mask.png keeps 59.30 % of the 256 x 256 crop (measured on the image)
    assert float(m.mean()) == pytest.approx(0.5930, abs=0.006)
    m512 = LA.template_mask(512)
    assert float((m512 - torch.nn.functional.interpolate(m[None, None], size=512)[0, 0]).abs().mean()) < 0.01


def test_alignment_puts_the_recorded_mouth_in_the_masked_u(grid):
    """On a recorded GRID clip (haar track): in the aligned 512 crop the mouth corners fall inside the
    repainted U, left and right of the centre, and the nose above the mouth; the crop is upright."""
    track, _, _, _ = grid
    at = LA.align_track(track, 512)
    m = at.transform.double()
    pts = track.mouth.double() @ m[:, :, :2].transpose(1, 2) + m[:, None, :, 2]
    mask = LA.template_mask(512)
    for name in ("corner_left", "corner_right", "lower_outer"):
        p = pts[:, MOUTH_POINTS.index(name)].round().long()
        assert torch.all(mask[p[:, 1], p[:, 0]] == 0), name
    cl, cr = pts[:, MOUTH_POINTS.index("corner_left")], pts[:, MOUTH_POINTS.index("corner_right")]
    assert torch.all(cl[:, 0] < 256) and torch.all(cr[:, 0] > 256)
    assert float((cl[:, 1] - cr[:, 1]).abs().max()) < 6  # level
    assert torch.all(pts[:, MOUTH_POINTS.index("nose"), 1] < cl[:, 1])


# --- files ---------------------------------------------------------------------------------------------

def test_loaders_load_the_public_layout(layout):
    files = LF.find_files(layout)
    unet = LF.load_unet(files, U.TINY)
    enc = LF.load_whisper(files)
    assert isinstance(unet, U.LatentSyncUNet) and not unet.training
    assert len(enc.blocks) == 4 and enc.conv1.weight.shape == (384, 80, 3)


def test_missing_files_are_named(copy):
    os.remove(os.path.join(copy, "whisper", "tiny.pt"))
    with pytest.raises(CheckpointError, match=r"LatentSync file whisper/tiny.pt is missing.*Whisper-tiny"):
        LF.find_files(copy)
    os.remove(os.path.join(copy, "latentsync_unet.pt"))
    with pytest.raises(CheckpointError, match=r"latentsync_unet.pt is missing"):
        LF.find_files(copy)


def test_whisper_one_folder_up_is_shared(copy, tmp_path):
    shutil.move(os.path.join(copy, "whisper"), str(tmp_path / "whisper"))
    assert LF.find_files(copy).whisper == str(tmp_path / "whisper" / "tiny.pt")


def test_strict_unet_keys_and_shapes_name_the_file(copy):
    path = os.path.join(copy, "latentsync_unet.pt")
    ckpt = torch.load(path, weights_only=True)
    state = ckpt["state_dict"]
    state.pop("conv_in.bias")
    state["extra.weight"] = torch.zeros(1)
    state["conv_out.weight"] = torch.zeros(4, 2, 3, 3)
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError) as e:
        LF.load_unet(LF.find_files(copy), U.TINY)
    msg = str(e.value)
    assert "latentsync_unet.pt" in msg and "conv_in.bias" in msg and "extra.weight" in msg
    assert "conv_out.weight (4, 2, 3, 3)" in msg and "LatentSync" in msg


def test_full_file_into_tiny_or_reverse_is_refused(copy):
    with pytest.raises(CheckpointError, match="shape mismatch"):
        LF.load_unet(LF.find_files(copy), U.FULL)


def test_frame_encodings_may_be_absent(copy):
    path = os.path.join(copy, "latentsync_unet.pt")
    ckpt = torch.load(path, weights_only=True)
    ckpt["state_dict"] = {k: v for k, v in ckpt["state_dict"].items() if not k.endswith("pos_encoder.pe")}
    torch.save(ckpt, path)
    unet = LF.load_unet(LF.find_files(copy), U.TINY)
    pe = unet.down_blocks[0].motion_modules[0].temporal_transformer.transformer_blocks[0].attention_blocks[0].pos_encoder.pe
    assert pe[0, 1, 0].item() == pytest.approx(math.sin(1.0)) and pe[0, 1, 1].item() == pytest.approx(math.cos(1.0))


def test_whisper_stray_keys_are_refused(copy):
    path = os.path.join(copy, "whisper", "tiny.pt")
    ckpt = torch.load(path, weights_only=True)
    ckpt["model_state_dict"]["proj.weight"] = torch.zeros(2)
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match=r"whisper/tiny.pt is not an OpenAI-format Whisper checkpoint.*proj.weight"):
        LF.load_whisper(LF.find_files(copy))


def test_pickle_with_code_is_refused(copy):
    torch.save({"state_dict": {"conv_in.weight": torch.zeros(1)}, "x": CodeOnLoad()},
               os.path.join(copy, "latentsync_unet.pt"))
    with pytest.raises(CheckpointError, match="refused to load latentsync_unet.pt"):
        LF.load_unet(LF.find_files(copy), U.TINY)


# --- the clip ------------------------------------------------------------------------------------------

def _run(layout, grid, **kw):
    track, wave, fps, images = grid
    kw = {"steps": 2, **kw}
    return L.lipsync_latentsync(images, track, _driver(wave, track.num_frames, fps), layout, size=SIZE,
                                unet_config=U.TINY, **kw)


def test_clip_shapes_determinism_progress_and_seed(layout, grid):
    L.release()
    calls = []
    a, ta = _run(layout, grid, on_progress=lambda d, t: calls.append((d, t)))
    b, _ = _run(layout, grid)
    c, _ = _run(layout, grid, seed=5)
    n = grid[0].num_frames
    assert a.shape == (n, SIZE, SIZE, 3) and 0 <= a.min() and a.max() <= 1
    assert torch.equal(a, b)
    assert not torch.allclose(a, c, atol=1e-3)
    # the models stay cached; ComfyUI's model management drops them through the node's registered release
    from comfyui_lipsync.nodes import _comfy, lipsync_inference  # noqa: F401  (registers the release)
    assert L.release in _comfy._RELEASES
    assert _comfy.release_models() is True and L.release() is False
    assert calls == [(1, 2), (2, 2)]  # one chunk of 6 frames, 2 steps
    assert ta.crop_size == SIZE and "LatentSync 1.6" in ta.report
    crops = composite.crop_faces(grid[3], ta)[..., :3]
    keep = LA.template_mask(SIZE).bool()
    assert torch.allclose(a[:, keep], crops[:, keep], atol=1e-5)  # the kept part is the input's
    assert (a[:, ~keep] - crops[:, ~keep]).abs().mean() > 0.02  # the masked part is redrawn


def test_half_precision_runs_and_stays_near_float32(layout, grid):
    """The dtype path a GPU takes (weights and activations in half precision; Whisper's LayerNorms and the
    scheduler in float32), run here in bfloat16, which CPUs have: finite crops, within bfloat16's
    precision (8 bits of mantissa, about 0.4 %) of float32's over two steps."""
    full, _ = _run(layout, grid)
    half, tr = _run(layout, grid, dtype=torch.bfloat16)
    assert half.dtype == torch.float32 and torch.isfinite(half).all()
    d = (half - full).abs()
    assert d.mean() < 0.01 and d.max() < 0.1, (d.mean(), d.max())
    assert "weights in bfloat16" in tr.report


def test_frames_without_a_face_pass_through(layout, grid):
    track, wave, fps, images = grid
    lost = replace(track, found=torch.tensor([True, False, True, True, False, True]))
    out, ta = _run(layout, (lost, wave, fps, images))
    crops = composite.crop_faces(images, ta)[..., :3]
    assert torch.equal(out[1], crops[1]) and torch.equal(out[4], crops[4])
    assert (out[0] - crops[0]).abs().max() > 0.05


def test_bad_arguments_are_refused(layout, grid):
    with pytest.raises(InputError, match="steps must be at least 1"):
        L.lipsync_latentsync(grid[3], grid[0], _driver(grid[1], 6, grid[2]), layout, steps=0)
    with pytest.raises(InputError, match="version must be one of 1.6, 1.5"):
        L.lipsync_latentsync(grid[3], grid[0], _driver(grid[1], 6, grid[2]), layout, version="2.0")


def test_feature_reuse_on_a_clip(layout, grid):
    """reuse 0 and 1 are the whole UNet every step; reuse 3 with 3 steps reuses on steps 2 and 3 (the
    middle block runs once per chunk) and changes the result; the report says so."""
    L.release()
    base, _ = _run(layout, grid, steps=3)
    same, _ = _run(layout, grid, steps=3, reuse=1)
    assert torch.equal(base, same)
    models = L.cached_models(LF.find_files(layout), "cpu", cfg=U.TINY)
    deep = []
    hook = models.unet.mid_block.register_forward_hook(lambda *a: deep.append(1))
    try:
        fast, tr = _run(layout, grid, steps=3, reuse=3)
    finally:
        hook.remove()
    assert len(deep) == 1
    assert not torch.allclose(base, fast, atol=1e-3)
    assert "deep features reused between every 3 steps" in tr.report
    with pytest.raises(InputError, match="feature_reuse must be between 0"):
        _run(layout, grid, reuse=11)


def test_each_chunk_hears_its_own_frames(layout, grid, tiny_cache, monkeypatch):
    """Chunks of 4 frames (for the test): the second chunk's tokens are the whole clip's rows 4 and 5, in
    the node and in the runner's streamed generator, which makes the node's crops chunk by chunk."""
    from comfyui_lipsync.lipsync_models.backends import latentsync_stream as LS

    track, wave, fps, images = grid
    track = replace(track, found=torch.ones(track.num_frames, dtype=torch.bool))
    driver = _driver(wave, track.num_frames, fps)
    monkeypatch.setattr(L, "CHUNK", 4)
    feats, heard = [], []
    whisper, denoise = L.whisper_features, L.denoise_chunk
    monkeypatch.setattr(L, "whisper_features", lambda *a: feats.append(whisper(*a)) or feats[-1])
    monkeypatch.setattr(L, "denoise_chunk", lambda m, faces, tokens, *a: heard.append(tokens) or
                        denoise(m, faces, tokens, *a))
    node, _ = L.lipsync_latentsync(images, track, driver, layout, size=SIZE, steps=1, unet_config=U.TINY)
    whole = A.audio_windows(feats[0], 6, fps)
    assert len(heard) == 2 and torch.equal(heard[0], whole[:4]) and torch.equal(heard[1], whole[4:])
    gen = LS.LatentSyncStream(track, driver, LS.LatentSyncJob(LF.find_files(layout), steps=1), 1.0, "cpu")
    gen.size, gen.out_track = SIZE, LA.align_track(track, SIZE)  # the node's test size
    gen.noise, gen.keep = L.initial_noise(SIZE, 1247), LA.template_mask(SIZE)
    streamed = torch.cat([gen.generate(0, images[:4]), gen.generate(4, images[4:])])
    assert torch.equal(heard[3], whole[4:])
    assert torch.allclose(streamed, node, atol=1e-5)

    # the runner's bar moves with every denoising step: 2 steps on chunks of 4 + 2 frames
    gen.job = LS.LatentSyncJob(LF.find_files(layout), steps=2)
    done = []
    gen.on_frames = done.append
    gen.generate(0, images)
    assert done == [2.0, 4.0, 5.0, 6.0]


def test_vae_slices_give_the_whole_batchs_result(layout):
    models = L.load_models(LF.find_files(layout), "cpu", cfg=U.TINY)
    x = torch.rand(L.VAE_SLICE + 2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(4)) * 2 - 1
    z = L.encode(models, x)
    with torch.inference_mode():
        one = [models.vae.encode(x[i:i + 1]).latent_dist.mean * L.SCALING for i in range(len(x))]
        back = [models.vae.decode(z[i:i + 1] / L.SCALING).sample for i in range(len(x))]
    assert torch.allclose(z, torch.cat(one), atol=1e-5)
    assert torch.allclose(L.decode(models, z.transpose(0, 1)[None]), torch.cat(back), atol=1e-5)


def test_memory_estimate_and_report(layout, grid):
    """The estimate: the published sizes' weights in the dtype, more working memory at 512 px than at 256 px
    and with guidance than without; the report states it before the run (in the log) and after."""
    gb = 1024 ** 3
    e16, e32 = L.memory_estimate(512, torch.float16), L.memory_estimate(512, torch.float32)
    assert e16["weights"] == (1_267_944_644 + L.VAE_NUMBERS + L.WHISPER_NUMBERS) * 2
    assert e32["weights"] == 2 * e16["weights"] and e32["working"] == 2 * e16["working"]
    assert L.memory_estimate(256, torch.float16)["working"] < e16["working"]
    assert L.memory_estimate(512, torch.float16, guidance=1.0)["working"] <= e16["working"]
    assert 2.5 * gb < e16["weights"] < 2.6 * gb
    _, tr = _run(layout, grid)
    assert "needs about" in tr.report and "GB of CPU memory" in tr.report


def test_a_missing_library_is_said_before_any_file_is_read(layout, monkeypatch):
    from comfyui_lipsync.lipsync_models.backends import musetalk_files as MF
    from comfyui_lipsync.lipsync_models.errors import DependencyError

    def missing(who, model="MuseTalk"):
        raise DependencyError(f"{who}: {model} needs the 'transformers' package: pip install transformers.")

    def read(*a, **k):
        raise AssertionError("a file was read before the libraries were checked")

    monkeypatch.setattr(MF, "_transformers", missing)
    monkeypatch.setattr(LF, "load_unet", read)
    with pytest.raises(DependencyError, match="LatentSync needs the 'transformers' package"):
        L.load_models(LF.find_files(layout), "cpu", cfg=U.TINY)


@pytest.fixture()
def tiny_cache(monkeypatch):
    """The runner loads the published shape; these tests' files are the tiny configuration."""
    load = L.cached_models
    monkeypatch.setattr(L, "cached_models", lambda files, device, dtype=None, who=L.WHO, cfg=U.TINY:
                        load(files, device, dtype, who, U.TINY))
    L.release()
    yield
    L.release()


def test_streamed_generator_makes_the_nodes_crops(layout, grid, tiny_cache):
    """The runner's LatentSync generator, handed 16-frame chunks of frames, makes the node's crops."""
    from comfyui_lipsync.lipsync_models.backends import latentsync_stream as LS
    from testdata import grid_clip
    from comfyui_lipsync.lipsync_models import media

    track, wave, fps, _ = grid
    images, _, _ = media.read_video(str(grid_clip("bbaf2n")), max_frames=6)
    images = images.float() / 255
    driver = _driver(wave, track.num_frames, fps)
    node, _ = L.lipsync_latentsync(images, track, driver, layout, version="1.5", steps=1, unet_config=U.TINY)
    job = LS.LatentSyncJob(LF.find_files(layout), "1.5", steps=1)
    gen = LS.prepare(track, driver, job)
    assert gen.chunk_frames == 16 and gen.full == frozenset()
    streamed = gen.generate(0, images)
    assert streamed.shape == node.shape == (6, 256, 256, 3)
    assert torch.allclose(streamed, node, atol=1e-5)
    assert "LatentSync 1.5" in gen.report_track().report
    with pytest.raises(ValueError, match="multiples of 16"):
        gen.generate(3, images[3:])


def test_runner_runs_latentsync(layout, tmp_path, tiny_cache, capsys, monkeypatch):
    """`--latentsync DIR` on a 20-frame GRID clip (two chunks: 16 + 4): frame count, size and rate kept,
    the lower face redrawn, the top of the frame not; bad options refused before decoding; no phonemes
    extracted (LatentSync reads the sound itself)."""
    from comfyui_lipsync.lipsync_models import media
    from comfyui_lipsync.lipsync_runner import cli
    from comfyui_lipsync.nodes.extract_phonemes import ExtractPhonemes
    from test_musetalk import _clip_and_line

    monkeypatch.setattr(ExtractPhonemes, "extract", lambda *a, **k: pytest.fail("phonemes extracted for LatentSync"))

    video, line = _clip_and_line(tmp_path / "in", "bbaf2n", 20)
    out = tmp_path / "out.mp4"
    base = ["--video", str(video), "--audio", str(line), "-o", str(out)]
    assert cli.main(base + ["--latentsync", layout, "--steps", "0"]) == 2
    assert "--steps 0: must be between 1 and 100" in capsys.readouterr().err
    assert cli.main(base + ["--latentsync", layout, "--musetalk", layout]) == 2
    assert "give one generator" in capsys.readouterr().err
    assert cli.main(base + ["--latentsync", layout, "--vae", str(tmp_path / "gone.safetensors")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: --vae ") and "no such file" in err, err
    assert cli.main(base + ["--feature-reuse", "3"]) == 2
    assert "--feature-reuse is an option of LatentSync: give --latentsync DIR too" in capsys.readouterr().err
    calls = []
    bar_call = cli.Bar.__call__
    monkeypatch.setattr(cli.Bar, "__call__", lambda self, d, t: calls.append((self.stage, d, t)) or bar_call(self, d, t))
    code = cli.main(base + ["--latentsync", layout, "--latentsync-version", "1.5", "--steps", "1", "--no-score",
                            "-q", "--transcript", ""])
    assert code == 0, capsys.readouterr().err[-2000:]
    # the 20 frames are one call of the generator (two chunks): the bar moves after the first chunk's step
    assert ("Composite", 16, 20) in calls, calls
    src, _, _ = media.read_video(str(video))
    got, rate, _ = media.read_video(str(out))
    assert got.shape == src.shape == (20, 288, 360, 3) and rate == 25.0
    rows = (got.float() - src.float()).abs().mean(dim=(0, 2, 3))  # per image row
    assert rows[:60].median() < rows.max() / 3, rows  # above the face: codec noise only (x264's edge rows more)
    assert rows.max() > 4.0, rows.max()  # the lower face: redrawn by the random network


# --- the parity script's own logic ---------------------------------------------------------------------

def test_parity_script_detects_one_changed_operation(tmp_path, capsys):
    """Without the reference: the backend compared with itself is exact; with one operation on the path
    changed (the motion modules' frame encoding halved, the mask one latent row lower, the audio windows
    one step later) the script reports > 1e-2."""
    args = ["--size", "tiny", "--res", "64", "--frames", "3", "--workdir", str(tmp_path), "--reuse"]
    assert P.main(args) == 0.0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "max abs diff: 0"
    for what in ("pe", "mask", "window"):
        assert P.main(args + ["--perturb", what]) > 1e-2, what


def test_node_lists_the_latentsync_folders(layout, tmp_path, monkeypatch):
    from comfyui_lipsync.nodes import _comfy
    from comfyui_lipsync.nodes.lipsync_inference import LipSyncInference

    models = tmp_path / "models"
    monkeypatch.setenv("LIPSYNC_MODELS_DIR", str(models))
    entry16, entry15 = list(_comfy.LATENTSYNC_ENTRIES)
    # listed before the files are there (a workflow using it loads); running it says where they go
    assert _comfy.latentsync_files() == {}
    assert entry16 in LipSyncInference.INPUT_TYPES()["required"]["model"][0]
    with pytest.raises(CheckpointError, match=r"no LatentSync 1.6 files found: put latentsync_unet.pt .* "
                                              r"models/lipsync/latentsync/"):
        LipSyncInference().run(None, None, None, None, model=entry16)
    shutil.copytree(layout, models / "lipsync" / "latentsync")
    shutil.copytree(layout, models / "lipsync" / "latentsync" / "1.5", ignore=shutil.ignore_patterns("whisper"))
    types = LipSyncInference.INPUT_TYPES()
    choices = types["required"]["model"][0]
    assert entry16 in choices and entry15 in choices
    assert not any(c.startswith("latentsync/") for c in choices)  # its files are not offered as Wav2Lip files
    assert types["optional"]["steps"][1]["default"] == 20
    found = _comfy.latentsync_files()
    assert found[entry15][0] == "1.5" and found[entry15][1].endswith(os.path.join("latentsync", "1.5"))
    assert LF.find_files(found[entry15][1]).whisper.endswith(os.path.join("latentsync", "whisper", "tiny.pt"))
