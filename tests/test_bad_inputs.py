"""The bad-input sweep (issue 15, item 7): every node called as ComfyUI calls it (``call_node``: the
widget defaults, then the given inputs) with missing, empty, truncated or mislabelled media, 0- and
1-frame clips, inputs of different lengths, wrong sockets, a MASK of the wrong size or with NaN,
paths that leave their folder, unsafe and broken checkpoints and widget values out of range.

Each error case asserts the pack's own error class (never a KeyError/RuntimeError from inside
numpy or torch) and that the message starts with the node's name and names the input (and, where
it matters, the value). The other cases assert the sensible result. NaN audio, NaN or 0..255
pixels, frame rates and the runner's arguments are swept on other branches.
"""

import os
import pickle

import pytest
import torch

from comfyui_lipsync import NODE_CLASS_MAPPINGS as NODES
from comfyui_lipsync.lipsync_models import media, video_out, weights
from comfyui_lipsync.lipsync_models.backends import WARP
from comfyui_lipsync.lipsync_models.backends.wav2lip import Wav2LipGenerator
from comfyui_lipsync.lipsync_models.errors import (CheckpointError, InputError, LengthMismatchError, LipSyncError,
                                                   MediaError, NoFaceError, PathError)
from comfyui_lipsync.lipsync_runner.cli import call_node

CLIP = "lbbc2a"
N = 10  # frames of the clip used throughout (0.4 s: the warp generator, fast)
DISPLAY = {"LipSyncLoadAudioDriver": "LoadAudioDriver", "LipSyncExtractPhonemes": "ExtractPhonemes",
           "LipSyncMapVisemes": "MapVisemes", "LipSyncMaskLowerFace": "MaskLowerFace",
           "LipSyncInference": "LipSyncInference", "LipSyncComposite": "Composite", "LipSyncSyncScore": "SyncScore"}


@pytest.fixture(scope="module")
def ctx(grid_dir):
    """The chain's good outputs on 10 GRID frames: each bad case changes one input."""
    frames, fps, (wav, sr) = media.read_video(str(grid_dir / f"{CLIP}.mpg"), max_frames=N)
    img = frames.float() / 255.0
    audio = {"waveform": wav[None], "sample_rate": sr}
    drv = call_node(NODES["LipSyncLoadAudioDriver"], audio_file="", audio=audio, images=img, fps=fps)[0]["driver"]
    drv5 = call_node(NODES["LipSyncLoadAudioDriver"], audio_file="", audio=audio, frame_count=5, fps=fps)[0]["driver"]
    ph = call_node(NODES["LipSyncExtractPhonemes"], driver=drv, transcript="lay blue")[0]["phonemes"]
    vis = call_node(NODES["LipSyncMapVisemes"], phonemes=ph, driver=drv, fps=fps)[0]["visemes"]
    vis5 = call_node(NODES["LipSyncMapVisemes"], phonemes=ph, frame_count=5, fps=fps)[0]["visemes"]
    m = call_node(NODES["LipSyncMaskLowerFace"], images=img)[0]
    g = call_node(NODES["LipSyncInference"], images=img, face_track=m["face_track"], visemes=vis, driver=drv)[0]
    return dict(img=img, fps=fps, wav=wav, sr=sr, audio=audio, drv=drv, drv5=drv5, ph=ph, vis=vis, vis5=vis5,
                mask=m["mask"], track=m["face_track"], crops=g["crops"], track2=g["face_track"])


@pytest.fixture
def folders(tmp_path, monkeypatch):
    """Standalone input/ and models/ folders (what ComfyUI's folder_paths gives inside ComfyUI), and
    a folder beside them that no widget may reach."""
    inp, models, outside = tmp_path / "input", tmp_path / "models", tmp_path / "outside"
    for p in (inp, models / "lipsync", models / "syncnet", outside):
        p.mkdir(parents=True)
    monkeypatch.setenv("LIPSYNC_INPUT_DIR", str(inp))
    monkeypatch.setenv("LIPSYNC_MODELS_DIR", str(models))
    return inp, models, outside


def expect(err, key, needles, **inputs) -> str:
    """Call node ``key``; assert it raises ``err`` (one of the pack's) whose message starts with the
    node's name (and ":", or " (" and the option in use) and contains every needle."""
    assert issubclass(err, LipSyncError)
    with pytest.raises(err) as info:
        call_node(NODES[key], **inputs)
    msg = str(info.value)
    assert msg.startswith((DISPLAY[key] + ":", DISPLAY[key] + " (")), msg
    for needle in needles:
        assert needle in msg, f"{needle!r} not in: {msg}"
    return msg


# --- LoadAudioDriver: files -------------------------------------------------------------------

def _grid_bytes(grid_dir) -> bytes:
    return (grid_dir / f"{CLIP}.mpg").read_bytes()


def test_audio_file_missing(folders):
    expect(PathError, "LipSyncLoadAudioDriver", ["'nope.wav'", "input folder"], audio_file="nope.wav", frame_count=N)


def test_audio_file_text_named_wav(folders):
    (folders[0] / "notes.wav").write_text("this is not audio, only text saved under a .wav name\n")
    expect(MediaError, "LipSyncLoadAudioDriver", ["notes.wav", "not a media file"], audio_file="notes.wav",
           frame_count=N)


def test_audio_file_empty(folders):
    (folders[0] / "empty.wav").write_bytes(b"")
    expect(MediaError, "LipSyncLoadAudioDriver", ["empty.wav", "0 bytes"], audio_file="empty.wav", frame_count=N)


def test_audio_file_video_without_sound(folders, ctx):
    video_out.write_video(str(folders[0] / "silent.mp4"), ctx["img"], 25.0, None)
    expect(MediaError, "LipSyncLoadAudioDriver", ["silent.mp4", "no audio track"], audio_file="silent.mp4",
           frame_count=N)


def test_audio_file_cut_inside_its_header(folders, grid_dir):
    (folders[0] / "head.mpg").write_bytes(_grid_bytes(grid_dir)[:2048])
    expect(MediaError, "LipSyncLoadAudioDriver", ["head.mpg"], audio_file="head.mpg", frame_count=N)


def test_audio_file_truncated_reads_what_is_there(folders, grid_dir):
    """A file cut at a tenth decodes the sound it still holds (about 0.3 s of the 3 s clip) and the
    driver covers the frames asked for."""
    data = _grid_bytes(grid_dir)
    (folders[0] / "cut.mpg").write_bytes(data[:len(data) // 10])
    out = call_node(NODES["LipSyncLoadAudioDriver"], audio_file="cut.mpg", frame_count=N)[0]
    seconds = out["audio"]["waveform"].shape[-1] / out["audio"]["sample_rate"]
    assert 0.1 < seconds < 1.0  # a tenth of 3 s, give or take the container's overhead
    assert out["driver"].num_frames == N and bool(torch.isfinite(out["driver"].mel).all())


def test_audio_file_mislabelled_video_named_wav_reads_its_sound(folders, grid_dir):
    """The container is found from the bytes, not the name: an .mpg saved as .wav gives the same sound."""
    (folders[0] / "real.mpg").write_bytes(_grid_bytes(grid_dir))
    (folders[0] / "named.wav").write_bytes(_grid_bytes(grid_dir))
    a = call_node(NODES["LipSyncLoadAudioDriver"], audio_file="real.mpg", frame_count=N)[0]["audio"]
    b = call_node(NODES["LipSyncLoadAudioDriver"], audio_file="named.wav", frame_count=N)[0]["audio"]
    assert a["sample_rate"] == b["sample_rate"] and torch.equal(a["waveform"], b["waveform"])


def test_audio_file_path_traversal(folders, grid_dir):
    (folders[2] / "secret.mpg").write_bytes(_grid_bytes(grid_dir))
    expect(PathError, "LipSyncLoadAudioDriver", ["'../outside/secret.mpg'", "'..'"],
           audio_file="../outside/secret.mpg", frame_count=N)


def test_audio_file_absolute_path(folders, grid_dir):
    target = folders[2] / "secret.mpg"
    target.write_bytes(_grid_bytes(grid_dir))
    expect(PathError, "LipSyncLoadAudioDriver", [repr(str(target)), "absolute path"], audio_file=str(target),
           frame_count=N)


def test_audio_file_link_out_of_the_input_folder(folders, grid_dir):
    target = folders[2] / "secret.mpg"
    target.write_bytes(_grid_bytes(grid_dir))
    os.symlink(target, folders[0] / "link.mpg")
    expect(PathError, "LipSyncLoadAudioDriver", ["'link.mpg'", "outside the input folder"], audio_file="link.mpg",
           frame_count=N)


def test_no_audio_anywhere(folders):
    expect(InputError, "LipSyncLoadAudioDriver", ["no audio"], audio_file="", frame_count=N)


def test_start_offset_past_the_end(folders, grid_dir):
    (folders[0] / "clip.mpg").write_bytes(_grid_bytes(grid_dir))
    expect(MediaError, "LipSyncLoadAudioDriver", ["clip.mpg", "100.00 s"], audio_file="clip.mpg",
           start_offset=100.0, frame_count=N)


# --- LoadAudioDriver: sockets and widgets ------------------------------------------------------

def test_driver_zero_frames(ctx):
    expect(InputError, "LipSyncLoadAudioDriver", ["images", "0 frames"], audio_file="", audio=ctx["audio"],
           images=ctx["img"][:0])


def test_driver_one_frame(ctx):
    """A 1-frame clip gets a 1-frame driver: the audio cut to that frame, so its mel window starts
    as the full driver's frame 0 and is silent (the floor) where the cut audio ends."""
    d = call_node(NODES["LipSyncLoadAudioDriver"], audio_file="", audio=ctx["audio"], images=ctx["img"][:1],
                  fps=ctx["fps"])[0]["driver"]
    assert d.num_frames == 1 and d.mel.shape[1:] == ctx["drv"].mel.shape[1:]
    assert torch.allclose(d.mel[0, :, 0], ctx["drv"].mel[0, :, 0], atol=1e-4)
    assert bool(torch.isfinite(d.mel).all()) and float(d.mel[0, :, -1].max()) == float(d.mel.min())


def test_driver_audio_without_sample_rate(ctx):
    expect(InputError, "LipSyncLoadAudioDriver", ["audio", "sample_rate"], audio_file="",
           audio={"waveform": ctx["wav"][None]}, frame_count=N)


def test_driver_audio_sample_rate_zero(ctx):
    expect(InputError, "LipSyncLoadAudioDriver", ["sample_rate", "got 0"], audio_file="",
           audio={"waveform": ctx["wav"][None], "sample_rate": 0}, frame_count=N)


def test_driver_audio_with_no_samples(ctx):
    expect(MediaError, "LipSyncLoadAudioDriver", ["audio input", "empty (0 samples)"], audio_file="",
           audio={"waveform": ctx["wav"][None, :, :0], "sample_rate": ctx["sr"]}, frame_count=N)


def test_driver_negative_frame_count(ctx):
    expect(InputError, "LipSyncLoadAudioDriver", ["frame_count", "-1"], audio_file="", audio=ctx["audio"],
           frame_count=-1)


# --- ExtractPhonemes / MapVisemes ---------------------------------------------------------------

def test_phonemes_without_audio():
    expect(InputError, "LipSyncExtractPhonemes", ["driver", "AUDIO"], transcript="")


def test_phonemes_unknown_backend(ctx):
    expect(InputError, "LipSyncExtractPhonemes", ["backend", "'nope'"], driver=ctx["drv"], backend="nope")


def test_phonemes_wrong_socket(ctx):
    expect(InputError, "LipSyncExtractPhonemes", ["driver", "dict"], driver={"waveform": ctx["wav"]})


def test_phonemes_transcript_without_words(ctx):
    expect(InputError, "LipSyncExtractPhonemes", ["transcript", "'?!.,;'"], driver=ctx["drv"], transcript="?!.,;")


def test_visemes_unknown_set(ctx):
    expect(InputError, "LipSyncMapVisemes", ["viseme_set", "'nope'"], phonemes=ctx["ph"], driver=ctx["drv"],
           viseme_set="nope")


def test_visemes_wrong_socket(ctx):
    expect(InputError, "LipSyncMapVisemes", ["phonemes", "dict"], phonemes={"x": 1}, driver=ctx["drv"])


def test_visemes_negative_frame_count(ctx):
    expect(InputError, "LipSyncMapVisemes", ["frame_count", "-1"], phonemes=ctx["ph"], driver=ctx["drv"],
           frame_count=-1)


# --- MaskLowerFace ------------------------------------------------------------------------------

def test_mask_zero_frames(ctx):
    expect(InputError, "LipSyncMaskLowerFace", ["images", "0 frames"], images=ctx["img"][:0])


def test_mask_single_image_without_batch_axis(ctx):
    expect(InputError, "LipSyncMaskLowerFace", ["images", "(B, H, W, C)", "(288, 360, 3)"], images=ctx["img"][0])


def test_mask_two_channels(ctx):
    expect(InputError, "LipSyncMaskLowerFace", ["images", "channels", "got 2"], images=ctx["img"][..., :2])


def test_mask_unknown_face_choice(ctx):
    expect(InputError, "LipSyncMaskLowerFace", ["face", "'bogus'"], images=ctx["img"], face="bogus")


def test_mask_unknown_crop_size(ctx):
    expect(InputError, "LipSyncMaskLowerFace", ["crop_size", "'77'"], images=ctx["img"], crop_size="77")


def test_mask_manual_box_not_numbers(ctx):
    expect(InputError, "LipSyncMaskLowerFace", ["manual box", "'abc'"], images=ctx["img"], manual_box="abc")


def test_mask_manual_box_outside_the_frame(ctx):
    expect(InputError, "LipSyncMaskLowerFace", ["manual box", "360x288"], images=ctx["img"],
           manual_box="1000,1000,1100,1100")


def test_mask_no_face_anywhere():
    expect(NoFaceError, "LipSyncMaskLowerFace", ["no face", "3 frames", "manual box"], images=torch.zeros(3, 96, 96, 3))


def test_mask_face_index_past_the_faces(ctx):
    expect(NoFaceError, "LipSyncMaskLowerFace", ["face 5 from the left", "manual box"], images=ctx["img"][:2], face="index",
           face_index=5)


def test_mask_one_frame_and_rgba(ctx):
    """A 1-frame clip gets a 1-frame mask and track; an alpha channel does not move the face."""
    one = call_node(NODES["LipSyncMaskLowerFace"], images=ctx["img"][:1])[0]
    rgba = torch.cat([ctx["img"][:1], torch.full_like(ctx["img"][:1, ..., :1], 0.3)], -1)
    four = call_node(NODES["LipSyncMaskLowerFace"], images=rgba)[0]
    assert one["mask"].shape == (1, 288, 360) and one["face_track"].num_frames == 1
    assert bool(one["face_track"].found.all()) and float(one["mask"].max()) == pytest.approx(1.0)
    assert torch.allclose(four["face_track"].boxes, one["face_track"].boxes)


def test_mask_unknown_detector(ctx):
    expect(InputError, "LipSyncMaskLowerFace", ["detector", "'nope'"], images=ctx["img"][:1], detector="nope")


@pytest.mark.parametrize("size", ["odd 359x287", "40 px face"])
def test_odd_sizes_and_small_faces_go_through(ctx, size):
    """Frames of odd width and height, and frames shrunk to 90x72 (a face about 40 px wide), go through
    MaskLowerFace, LipSyncInference and Composite: the output has the input's size, and the pixels
    that change lie in the lower half of the tracked face box's columns (the mask reaches past the chin)."""
    img = ctx["img"]
    if size == "odd 359x287":
        img = img[:, 1:, :-1]
    else:
        img = torch.nn.functional.interpolate(img.permute(0, 3, 1, 2), scale_factor=0.25, mode="area")
        img = img.permute(0, 2, 3, 1).contiguous()
    track = call_node(NODES["LipSyncMaskLowerFace"], images=img)[0]["face_track"]
    assert bool(track.found.all())
    g = call_node(NODES["LipSyncInference"], images=img, face_track=track, visemes=ctx["vis"], driver=ctx["drv"])[0]
    out = call_node(NODES["LipSyncComposite"], images=img, crops=g["crops"], face_track=g["face_track"])[0]["images"]
    assert out.shape == img.shape
    changed = (out - img).abs().amax(-1) > 1 / 255
    assert int((changed.flatten(1).sum(1) > 0).sum()) >= N // 2  # the mouth moves in most frames
    lo, hi = track.boxes.min(0).values, track.boxes.max(0).values  # the union of the face boxes
    x0, y0, x1, y1 = float(lo[0]), float(lo[1]), float(hi[2]), float(hi[3])
    ys, xs = torch.nonzero(changed.any(0), as_tuple=True)
    assert int(xs.min()) >= x0 and int(xs.max()) <= x1
    assert int(ys.min()) >= 0.5 * (y0 + y1)


# --- LipSyncInference: lengths and sockets -------------------------------------------------------

def _gen(ctx, **over):
    base = dict(images=ctx["img"], face_track=ctx["track"], visemes=ctx["vis"], driver=ctx["drv"])
    return {**base, **over}


def test_generate_fewer_images(ctx):
    expect(LengthMismatchError, "LipSyncInference", ["images 5", "face_track 10", "driver 10"],
           **_gen(ctx, images=ctx["img"][:5]))


def test_generate_short_driver(ctx):
    expect(LengthMismatchError, "LipSyncInference", ["driver 5", "images 10"], **_gen(ctx, driver=ctx["drv5"]))


def test_generate_short_visemes(ctx):
    expect(LengthMismatchError, "LipSyncInference", ["visemes 5", "images 10"], **_gen(ctx, visemes=ctx["vis5"]))


def test_generate_wrong_face_track_socket(ctx):
    expect(InputError, "LipSyncInference", ["face_track", "dict", "MaskLowerFace"], **_gen(ctx, face_track={}))


def test_generate_wrong_visemes_socket(ctx):
    expect(InputError, "LipSyncInference", ["visemes", "PhonemeTrack", "MapVisemes"], **_gen(ctx, visemes=ctx["ph"]))


def test_generate_strength_out_of_range(ctx):
    expect(InputError, "LipSyncInference", ["strength", "5.0"], **_gen(ctx, strength=5.0))


def test_generate_lip_frame_past_the_end(ctx):
    expect(InputError, "LipSyncInference", ["lip_frame 99", "(9)"], **_gen(ctx, model=WARP, lip_frame=99))


def test_generate_batch_size_zero_is_one(ctx):
    """batch_size 0 (a hand-edited workflow) runs one frame at a time: the same crops as the default."""
    out = call_node(NODES["LipSyncInference"], **_gen(ctx, batch_size=0))[0]
    assert torch.allclose(out["crops"], ctx["crops"], atol=1e-5)


# --- LipSyncInference: model names and checkpoints -----------------------------------------------

def test_model_name_climbing_out_of_the_models_folder(folders, ctx):
    """A checkpoint that exists one folder up is never opened through '..'."""
    torch.save(Wav2LipGenerator().state_dict(), folders[1] / "outside.pth")
    expect(PathError, "LipSyncInference", ["'../outside.pth'", "models/lipsync"], **_gen(ctx, model="../outside.pth"))


def test_model_name_absolute(folders, ctx):
    path = folders[2] / "w.pth"
    torch.save(Wav2LipGenerator().state_dict(), path)
    expect(PathError, "LipSyncInference", [repr(str(path)), "absolute"], **_gen(ctx, model=str(path)))


def test_model_gone(folders, ctx):
    expect(CheckpointError, "LipSyncInference", ["'gone.pth'", "models/lipsync"], **_gen(ctx, model="gone.pth"))


class _Payload:
    """Unpickling this runs ``touch <marker>``: the proof that code ran."""
    marker = ""

    def __reduce__(self):
        return (os.system, (f"touch {_Payload.marker}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("layout", ["torch.save", "raw pickle"])
def test_model_pickle_that_runs_code_never_runs(folders, ctx, layout):
    marker = folders[2] / "pwned"
    _Payload.marker = str(marker)
    path = folders[1] / "lipsync" / "evil.pth"
    if layout == "torch.save":
        torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": _Payload()}, path)
    else:
        path.write_bytes(pickle.dumps(_Payload()))
    msg = expect(CheckpointError, "LipSyncInference", ["evil.pth", "not a plain weights file", "--trust-pickle"],
                 **_gen(ctx, model="evil.pth"))
    assert not marker.exists()
    assert "weights_only" not in msg  # torch's own hint (set weights_only=False) is not what we advise
    if layout == "torch.save":
        assert "posix.system" in msg  # the code it would call, named
    # the converter refuses it too, unless told to trust it; the test then stops before trusting it
    with pytest.raises(CheckpointError, match="--trust-pickle"):
        weights.convert_to_safetensors(str(path), str(folders[2] / "evil.safetensors"))
    assert not marker.exists()


def _safetensors(folders, name: str, state: dict) -> str:
    from safetensors.torch import save_file

    path = folders[1] / "lipsync" / name
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return str(path)


def test_model_truncated_safetensors(folders, ctx):
    path = _safetensors(folders, "cut.safetensors", Wav2LipGenerator().state_dict())
    data = open(path, "rb").read()
    open(path, "wb").write(data[:len(data) // 2])
    expect(CheckpointError, "LipSyncInference", ["cut.safetensors", "not a valid .safetensors"],
           **_gen(ctx, model="cut.safetensors"))


def test_model_safetensors_of_another_network(folders, ctx):
    _safetensors(folders, "other.safetensors", {"encoder.weight": torch.zeros(4, 4), "encoder.bias": torch.zeros(4)})
    expect(CheckpointError, "LipSyncInference", ["other.safetensors", "does not fit", "encoder.weight",
                                                 "missing key"], **_gen(ctx, model="other.safetensors"))


def test_model_empty_and_text_checkpoints(folders, ctx):
    (folders[1] / "lipsync" / "empty.pth").write_bytes(b"")
    expect(CheckpointError, "LipSyncInference", ["empty.pth", "0 bytes"], **_gen(ctx, model="empty.pth"))
    (folders[1] / "lipsync" / "readme.pth").write_text("download the weights from ...\n")
    expect(CheckpointError, "LipSyncInference", ["readme.pth", "not a PyTorch checkpoint"],
           **_gen(ctx, model="readme.pth"))


# --- Composite -----------------------------------------------------------------------------------

def _comp(ctx, **over):
    base = dict(images=ctx["img"], crops=ctx["crops"], face_track=ctx["track2"])
    return {**base, **over}


def test_composite_fewer_crops(ctx):
    expect(LengthMismatchError, "LipSyncComposite", ["crops have 3", "10 frames"], **_comp(ctx, crops=ctx["crops"][:3]))


def test_composite_resized_crops(ctx):
    expect(InputError, "LipSyncComposite", ["crops are 50x50", "crop size"], **_comp(ctx, crops=ctx["crops"][:, :50, :50]))


def test_composite_face_track_of_other_frames(ctx):
    expect(LengthMismatchError, "LipSyncComposite", ["face track has 10", "5 frames"],
           **_comp(ctx, images=ctx["img"][:5], crops=ctx["crops"][:5]))


def test_composite_mask_of_the_wrong_size(ctx):
    expect(InputError, "LipSyncComposite", ["mask", "(10, 100, 360)", "(10, 288, 360)"],
           **_comp(ctx, mask=ctx["mask"][:, :100]))


def test_composite_mask_with_a_channel_axis(ctx):
    expect(InputError, "LipSyncComposite", ["mask", "(10, 288, 360, 1)"], **_comp(ctx, mask=ctx["mask"][..., None]))


def test_composite_mask_with_nan(ctx):
    """One NaN inside the mouth region used to become thousands of NaN pixels in the output."""
    bad = ctx["mask"].clone()
    bad[3, 200, 180] = float("nan")
    expect(InputError, "LipSyncComposite", ["mask", "1 NaN/Inf", "1 of its 10", "frame 3"], **_comp(ctx, mask=bad))


def test_composite_mask_with_inf_in_many_frames(ctx):
    bad = ctx["mask"].clone()
    bad[:7, 0, :2] = float("inf")
    expect(InputError, "LipSyncComposite", ["mask", "14 NaN/Inf", "7 of its 10", "0, 1, 2, 3, 4 and 2 more"],
           **_comp(ctx, mask=bad))


def test_composite_mask_outside_0_1_is_clamped(ctx):
    """A mask of -1..2 (e.g. a subtraction upstream) blends like the same mask clamped to 0..1."""
    wide = ctx["mask"] * 3 - 1
    a = call_node(NODES["LipSyncComposite"], **_comp(ctx, mask=wide))[0]["images"]
    b = call_node(NODES["LipSyncComposite"], **_comp(ctx, mask=wide.clamp(0, 1)))[0]["images"]
    assert torch.allclose(a, b, atol=1e-6) and bool(torch.isfinite(a).all())


def test_composite_feather_out_of_range(ctx):
    expect(InputError, "LipSyncComposite", ["feather", "2.0"], **_comp(ctx, feather=2.0))


def test_composite_unknown_blend(ctx):
    expect(InputError, "LipSyncComposite", ["blend", "'nope'"], **_comp(ctx, blend="nope"))


# --- SyncScore -----------------------------------------------------------------------------------

def test_score_without_audio(ctx):
    expect(InputError, "LipSyncSyncScore", ["'audio'", "'driver'"], images=ctx["img"], fps=25.0)


def test_score_short_driver(ctx):
    expect(InputError, "LipSyncSyncScore", ["driver covers 5", "10 images"], images=ctx["img"], driver=ctx["drv5"],
           fps=25.0)


def test_score_face_track_of_other_frames(ctx):
    expect(InputError, "LipSyncSyncScore", ["face track has 10", "5 images"], images=ctx["img"][:5],
           driver=ctx["drv5"], face_track=ctx["track"], fps=25.0)


def test_score_no_face_names_syncscore_and_what_helps(ctx):
    msg = expect(NoFaceError, "LipSyncSyncScore", ["no face", "5 frames", "face_track", "manual face box"],
                 images=torch.zeros(5, 96, 96, 3), driver=ctx["drv5"], fps=25.0)
    assert "MaskLowerFace:" not in msg and "tried the Haar detector" in msg


def test_score_missing_checkpoint(folders, ctx):
    expect(InputError, "LipSyncSyncScore", ["'gone.pth'", "models/syncnet"], images=ctx["img"], driver=ctx["drv"],
           fps=25.0, scorer="gone.pth")


def test_score_negative_window(ctx):
    expect(InputError, "LipSyncSyncScore", ["window_s", "-1.0"], images=ctx["img"], driver=ctx["drv"], fps=25.0,
           window_s=-1.0)


def test_score_search_range_zero(ctx):
    expect(InputError, "LipSyncSyncScore", ["search_range", "got 0"], images=ctx["img"], driver=ctx["drv"],
           fps=25.0, search_range=0)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_score_one_frame_is_not_judged(ctx):
    """One frame cannot be judged: confidence 0 and the report says why."""
    out = call_node(NODES["LipSyncSyncScore"], images=ctx["img"][:1],
                    audio={"waveform": ctx["wav"][None, :, :ctx["sr"] // 25], "sample_rate": ctx["sr"]}, fps=25.0)[0]
    assert out["confidence"] == 0.0
    assert "NOT JUDGEABLE" in out["report"] and "too short" in out["report"]


def test_score_no_face_without_the_face_mesh_says_how_to_get_it(ctx, monkeypatch):
    from comfyui_lipsync.lipsync_models import face

    monkeypatch.setattr(face, "mediapipe_available", lambda: False)
    msg = expect(NoFaceError, "LipSyncSyncScore", ["no face", "pip install mediapipe", "face_track"],
                 images=torch.zeros(5, 96, 96, 3), driver=ctx["drv5"], fps=25.0)
    assert "and the mediapipe face mesh" not in msg  # it did not try what is not installed


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_score_scorer_name_climbing_out_of_the_models_folder(folders, ctx):
    (folders[1] / "outside.pth").write_bytes(b"\x80 not a checkpoint")
    expect(PathError, "LipSyncSyncScore", ["'../outside.pth'", "models/syncnet"], images=ctx["img"],
           driver=ctx["drv"], fps=25.0, scorer="../outside.pth")
