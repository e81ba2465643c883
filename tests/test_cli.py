"""The headless runner: `python -m lipsync_runner` on the built-in demo, on a folder of real clips,
its progress bar and its error messages."""

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from comfyui_lipsync.lipsync_models import media, video_out
from comfyui_lipsync.lipsync_models.errors import InputError
from comfyui_lipsync.lipsync_runner import cli
from helpers import write_wav

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The README's main job, run as a user runs it (a separate process from the repo root)."""
    out = tmp_path_factory.mktemp("demo") / "demo.mp4"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("PYTHONUNBUFFERED", None)  # stdout on a pipe is buffered, as a user's is: the runner flushes it
    r = subprocess.run([sys.executable, "-m", "lipsync_runner", "demo", "-o", str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=300, env=env)
    return r, out


def test_demo_writes_a_speaking_clip(demo):
    r, out = demo
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"wrote {out}" in r.stdout
    frames, fps, audio = media.read_video(str(out))
    assert fps == 25.0 and frames.shape[0] >= 75 and frames.shape[1:] == (512, 512, 3)
    with av.open(str(out)) as c:
        assert c.metadata["comment"] == "lip-synced with ComfyUI-LipSync"
        assert c.metadata["encoder"].startswith("ComfyUI-LipSync")
    # the driver audio is in the file and lasts as long as the picture
    wave, sr = audio
    assert abs(wave.shape[1] / sr - frames.shape[0] / fps) < 0.08
    assert wave.abs().max() > 0.1
    # the astronaut's mouth moves (lips x 202-245, y 139-155); her eyes and the background do not
    f = frames.float()
    mouth = f[:, 135:165, 195:250].std(dim=0).mean()
    eyes = f[:, 100:125, 190:260].std(dim=0).mean()
    corner = f[:, 0:80, 400:512].std(dim=0).mean()
    assert mouth > 4.0, mouth
    assert eyes < 1.5 and corner < 1.5, (eyes, corner)


def test_demo_prints_progress_and_sync_report(demo):
    r, _ = demo
    for stage in ("LoadAudioDriver", "ExtractPhonemes", "MapVisemes", "MaskLowerFace", "LipSyncInference",
                  "Composite", "SyncScore", "encode"):
        assert stage in r.stderr, f"no progress line for {stage}:\n{r.stderr}"
    assert "done in" in r.stderr
    # the SyncScore report: the mouth was driven by this very line, so the measured offset is
    # within +-1 frame, the accuracy SyncScore is held to on GRID (issue 13); a runner that
    # shifted or dropped the audio, or a mouth that did not move with it, would miss that
    m = re.search(r"SyncScore \(\w+\): offset ([+-]\d+) frames", r.stdout)
    assert m, r.stdout
    assert abs(int(m.group(1))) <= 1, r.stdout


def _short_clip(path: Path, grid: Path, clip: str, audio_from: str, frames: int = 20):
    """A 20-frame GRID clip whose sound is taken from another GRID clip (as a separate wav)."""
    GRID = grid
    imgs, fps, _ = media.read_video(str(GRID / f"{clip}.mpg"), max_frames=frames)
    video_out.write_video(str(path / "clips" / f"{clip}.mp4"), imgs, fps)
    wave, sr = media.read_audio(str(GRID / f"{audio_from}.mpg"), duration=frames / fps)
    (path / "lines").mkdir(exist_ok=True)
    write_wav(path / "lines" / f"{clip}.wav", wave.mean(0).numpy(), sr)


def test_folder_of_clips_pairs_by_name(tmp_path, grid_dir):
    _short_clip(tmp_path, grid_dir, "bbaf2n", "lbax4n")
    _short_clip(tmp_path, grid_dir, "swwp2s", "lrwp9a")
    code = cli.main(["--video", str(tmp_path / "clips"), "--audio", str(tmp_path / "lines"),
                     "-o", str(tmp_path / "out"), "--no-score", "-q", "--transcript", ""])
    assert code == 0
    for name in ("bbaf2n", "swwp2s"):
        frames, fps, audio = media.read_video(str(tmp_path / "out" / f"{name}.mp4"))
        assert frames.shape == (20, 288, 360, 3) and fps == 25.0
        src, _ = media.read_audio(str(tmp_path / "lines" / f"{name}.wav"))
        got, sr = audio
        n = min(src.shape[1], got.shape[1]) - 200
        # the sound is the driver line, in time (AAC: correlation, not equality)
        r = np.corrcoef(src[0, 100:n].numpy(), got[0, 100:n].numpy())[0, 1]
        assert r > 0.95, r


def test_errors_are_clear(tmp_path, capsys):
    (tmp_path / "clips").mkdir()
    (tmp_path / "lines").mkdir()
    video_out.write_video(str(tmp_path / "clips" / "take1.mp4"), torch.zeros(3, 16, 16, 3), 25)
    assert cli.main(["--video", str(tmp_path / "clips"), "--audio", str(tmp_path / "lines"), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no audio file with the same name as take1" in err
    assert cli.main(["--video", str(tmp_path / "clips" / "take1.mp4"), "--audio", str(tmp_path / "clips" / "take1.mp4"),
                     "-o", str(tmp_path / "o.mp4"), "--model", "wav2lip_missing.pth"]) == 2
    assert "--model 'wav2lip_missing.pth' is neither a listed model" in capsys.readouterr().err
    assert cli.main(["-o", str(tmp_path / "o.mp4")]) == 2
    assert "give --video and --audio" in capsys.readouterr().err


def test_run_as_a_module_exits_with_main_s_code_and_its_message(tmp_path):
    """``python -m lipsync_runner`` leaves with main()'s exit code, its output flushed (it skips the
    interpreter's teardown): 2 and the one-line error for a missing file (the demo above: 0 and the
    whole report on a pipe)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    r = subprocess.run([sys.executable, "-m", "lipsync_runner", "--video", str(tmp_path / "none.mp4"), "--audio",
                        str(tmp_path / "none.wav"), "-o", str(tmp_path / "out.mp4")], cwd=ROOT,
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "none.mp4" in r.stderr and "not found" in r.stderr and "Traceback" not in r.stderr


def test_missing_file_message(tmp_path, capsys):
    code = cli.main(["--video", str(tmp_path / "nope.mp4"), "--audio", str(tmp_path / "x.wav"), "-o", str(tmp_path / "o.mp4")])
    assert code == 2
    assert "--video" in (err := capsys.readouterr().err) and "nope.mp4: file not found" in err


def test_progress_bar_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    s = Tty()
    bar = cli.Bar(stream=s, mininterval=0.0)  # every update drawn
    bar.start("MaskLowerFace")
    bar(3, 6)
    bar.finish()
    text = s.getvalue()
    assert "[2/9] MaskLowerFace" in text  # MaskLowerFace (the tracking pass) is the 2nd of the 9 stages
    assert " 50%|" in text and "3/6" in text  # drawn in place at 3 of 6
    assert "100%|" in text and "6/6" in text  # a finished stage is shown complete
    assert text.rstrip().splitlines()[-1].startswith("done in")


def test_progress_bar_in_a_log():
    """Not a terminal (CI, a log file): each stage written when it starts and when it ends, not
    at every step."""
    s = io.StringIO()
    bar = cli.Bar(stream=s)
    bar.start("decode")
    for i in range(1, 101):
        bar(i, 100)
    bar.start("encode")
    bar(1, 2)
    bar.finish()
    text = s.getvalue()
    assert text.count("[1/9] decode") == 2 and text.count("[9/9] encode") == 2
    assert "100/100" in text and "2/2" in text and "1/2" not in text
    assert "50/100" not in text


def test_nodes_called_with_their_defaults():
    class Fake:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"x": ("INT", {"default": 3}), "mode": (["a", "b"], {"default": "b"}),
                                 "first": (["p", "q"],), "img": ("IMAGE",)},
                    "optional": {"s": ("STRING", {"default": "hi"})}}
        RETURN_TYPES = ("INT", "STRING")
        RETURN_NAMES = ("n", "text")
        FUNCTION = "go"

        def go(self, x, mode, first, img=None, s=""):
            return {"ui": {"text": [s]}, "result": (x * 2, f"{mode}{first}{s}")}

    assert cli.widget_defaults(Fake) == {"x": 3, "mode": "b", "first": "p", "s": "hi"}
    out, ui = cli.call_node(Fake, x=5, img=None)
    assert out == {"n": 10, "text": "bphi"} and ui == {"text": ["hi"]}


def test_still_picture_speaks(tmp_path, capsys):
    """--video can be a picture: it becomes a still clip as long as the line, at --fps."""
    from PIL import Image
    from skimage import data

    Image.fromarray(data.astronaut()).resize((256, 256)).save(tmp_path / "astronaut.png")
    from comfyui_lipsync.lipsync_models import audio as A

    wave, sr = media.read_audio(A.demo_audio_path(), start=0.2, duration=1.2)
    write_wav(tmp_path / "line.wav", wave[0].numpy(), sr)
    out = tmp_path / "still.mp4"
    assert cli.main(["--video", str(tmp_path / "astronaut.png"), "--audio", str(tmp_path / "line.wav"),
                     "-o", str(out), "--fps", "24", "--no-score", "-q"]) == 0
    frames, fps, audio = media.read_video(str(out))
    assert frames.shape == (29, 256, 256, 3) and fps == 24.0  # ceil(1.2 s x 24 = 28.8) frames
    f = frames.float()
    assert f[:, 67:83, 98:125].std(dim=0).mean() > 3.0          # the mouth (half the 512 px coordinates)
    assert f[:, 0:40, 200:256].std(dim=0).mean() < 1.5          # the background corner does not move
    # --lip-frame reaches LipSyncInference: a frame past the clip is refused with the node's message
    assert cli.main(["--video", str(tmp_path / "astronaut.png"), "--audio", str(tmp_path / "line.wav"),
                     "-o", str(tmp_path / "again.mp4"), "--fps", "24", "--no-score", "-q", "--lip-frame", "29"]) == 2
    assert "lip_frame 29 is past the clip's last frame (28)" in capsys.readouterr().err
    # --breath-open is checked against MapVisemes' range before anything is decoded
    assert cli.main(["--video", str(tmp_path / "astronaut.png"), "--audio", str(tmp_path / "line.wav"),
                     "-o", str(tmp_path / "again.mp4"), "--fps", "24", "--no-score", "-q", "--breath-open", "1.5"]) == 2
    assert "--breath-open 1.5: must be between 0 and 1" in capsys.readouterr().err


def test_model_path_runs_a_wav2lip_checkpoint(tmp_path, grid_dir, monkeypatch, capsys):
    """--model models/lipsync/<file>: the runner points the models folder there and the node loads
    the checkpoint (a random-weight Wav2Lip generator saved as safetensors)."""
    from safetensors.torch import save_file

    from comfyui_lipsync.lipsync_models.backends.wav2lip import Wav2LipGenerator

    from comfyui_lipsync.nodes.extract_phonemes import ExtractPhonemes

    monkeypatch.setenv("LIPSYNC_MODELS_DIR", "unset")  # restored after the test (the runner sets it)
    monkeypatch.delenv("LIPSYNC_MODELS_DIR")
    # Wav2Lip reads the sound itself: the runner must not spend time extracting phonemes for it
    monkeypatch.setattr(ExtractPhonemes, "extract", lambda *a, **k: pytest.fail("phonemes extracted for Wav2Lip"))
    torch.manual_seed(0)
    ckpt = tmp_path / "models" / "lipsync" / "w2l_random.safetensors"
    ckpt.parent.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in Wav2LipGenerator().state_dict().items()}, str(ckpt))
    _short_clip(tmp_path, grid_dir, "lbax4n", "lbax4n", frames=12)
    out = tmp_path / "w2l.mp4"
    code = cli.main(["--video", str(tmp_path / "clips" / "lbax4n.mp4"), "--audio", str(tmp_path / "lines" / "lbax4n.wav"),
                     "-o", str(out), "--model", str(ckpt), "--no-score", "--transcript", "bin blue at l four now"])
    assert code == 0 and os.environ["LIPSYNC_MODELS_DIR"] == str((tmp_path / "models").resolve())
    err = capsys.readouterr().err
    assert "note: --transcript and --backend are not used" in err
    # the bars count the stages this clip goes through: no ExtractPhonemes, no SyncScore (--no-score)
    assert "[4/7] MapVisemes" in err and "[7/7] encode" in err and "ExtractPhonemes" not in err
    frames, _, _ = media.read_video(str(out))
    assert frames.shape == (12, 288, 360, 3)


def test_only_the_built_in_generators_get_phonemes(tmp_path, grid_dir, monkeypatch):
    """The built-in generators follow MapVisemes' track, so the runner extracts the line's phonemes
    for them (the neural ones are checked in their own runner tests, which fail on extraction)."""
    from comfyui_lipsync.nodes.extract_phonemes import ExtractPhonemes

    calls = []
    real = ExtractPhonemes.extract
    monkeypatch.setattr(ExtractPhonemes, "extract", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    _short_clip(tmp_path, grid_dir, "lbax4n", "lbax4n", frames=12)
    for model in ("", "built-in: warp (drawn lips)"):
        code = cli.main(["--video", str(tmp_path / "clips" / "lbax4n.mp4"), "--audio", str(tmp_path / "lines" / "lbax4n.wav"),
                         "-o", str(tmp_path / f"out{len(calls)}.mp4"), "--no-score", "-q"] + (["--model", model] if model else []))
        assert code == 0
    assert len(calls) == 2


# --- the runner's checks before any work (issue 15's sweep) -------------------------------------------

@pytest.fixture()
def clip_and_line(tmp_path):
    """A 3-frame clip and a 0.2 s line: enough for the checks, which must fail before decoding."""
    video = tmp_path / "take.mp4"
    video_out.write_video(str(video), torch.zeros(3, 16, 16, 3), 25)
    line = tmp_path / "line.wav"
    write_wav(line, np.zeros(3200), 16000)
    return video, line


def _no_decoding(monkeypatch):
    """Make any decoding fail loudly, so a check that passes through to the work is caught."""
    def boom(*a, **k):
        raise AssertionError("decoded before the arguments were checked")

    monkeypatch.setattr(media, "read_audio", boom)
    monkeypatch.setattr(media, "probe_video", boom)
    monkeypatch.setattr(media, "read_video", boom)


def test_output_equal_to_the_input_is_refused(clip_and_line, capsys, monkeypatch):
    video, line = clip_and_line
    before = video.read_bytes()
    _no_decoding(monkeypatch)
    assert cli.main(["--video", str(video), "--audio", str(line), "-o", str(video)]) == 2
    err = capsys.readouterr().err
    assert "-o" in err and "--video file itself" in err and "never overwritten" in err
    # the same file through another spelling, a hard link and a symbolic link
    other = video.parent / "sub"
    other.mkdir()
    os.link(video, video.parent / "hard.mp4")
    os.symlink(video, video.parent / "soft.mp4")
    for alias in (other / ".." / video.name, video.parent / "hard.mp4", video.parent / "soft.mp4"):
        assert cli.main(["--video", str(video), "--audio", str(line), "-o", str(alias)]) == 2, alias
        assert "--video file itself" in capsys.readouterr().err
    # the line is an input too
    assert cli.main(["--video", str(video), "--audio", str(line), "-o", str(line)]) == 2
    assert "--audio file itself" in capsys.readouterr().err
    assert video.read_bytes() == before


def test_a_folder_of_clips_never_writes_over_its_inputs(tmp_path, capsys, monkeypatch):
    clips = tmp_path / "clips"
    video_out.write_video(str(clips / "a.mp4"), torch.zeros(3, 16, 16, 3), 25)
    (clips / "a.wav").write_bytes(b"RIFF")
    before = (clips / "a.mp4").read_bytes()
    _no_decoding(monkeypatch)
    assert cli.main(["--video", str(clips), "--audio", str(clips), "-o", str(clips)]) == 2
    assert "a.mp4: this is the --video file itself" in capsys.readouterr().err
    assert (clips / "a.mp4").read_bytes() == before


@pytest.mark.parametrize("flag,value,bounds", [
    ("--fps", "1000", "between 1 and 240"), ("--fps", "0", "between 1 and 240"), ("--fps", "-25", "between 1 and 240"),
    ("--fps", "nan", "between 1 and 240"), ("--strength", "50", "between 0 and 1.5"),
    ("--strength", "-0.5", "between 0 and 1.5"), ("--lip-frame", "-2", "between -1 and"),
    ("--breath-open", "3", "between 0 and 1"), ("--fps", "inf", "between 1 and 240"),
    # the neural entries of LipSyncInference's list are not Wav2Lip checkpoints for --model
    ("--model", "MuseTalk 1.5 (models/lipsync/musetalk)", "use --musetalk DIR"),
    ("--model", "LatentSync 1.6 (models/lipsync/latentsync)", "use --latentsync DIR")])
def test_each_argument_is_checked_before_decoding(clip_and_line, capsys, monkeypatch, flag, value, bounds):
    video, line = clip_and_line
    _no_decoding(monkeypatch)
    out = video.parent / "out.mp4"
    assert cli.main(["--video", str(video), "--audio", str(line), "-o", str(out), flag, value]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: {flag} ") and bounds in err[-1], err
    assert not out.exists()


def test_threads_are_checked_and_set(clip_and_line, capsys, monkeypatch):
    from comfyui_lipsync.lipsync_runner import stream

    video, line = clip_and_line
    _no_decoding(monkeypatch)
    out = video.parent / "out.mp4"
    assert cli.main(["--video", str(video), "--audio", str(line), "-o", str(out), "--threads", "-1"]) == 2
    assert "error: --threads -1: must be between 0 and 1024" in capsys.readouterr().err
    import cv2

    before = (torch.get_num_threads(), cv2.getNumThreads())
    try:
        assert stream.set_threads(3) == (3,) + before and torch.get_num_threads() == 3
        n = stream.set_threads(0)[0]  # automatic: half the usable CPUs, at least one
        assert n == max(1, len(os.sched_getaffinity(0)) // 2) and torch.get_num_threads() == n
        assert cv2.getNumThreads() == n
    finally:
        stream.set_threads(*before)
    assert (torch.get_num_threads(), cv2.getNumThreads()) == before


def test_unknown_viseme_set_names_the_choices(clip_and_line, capsys, monkeypatch):
    video, line = clip_and_line
    _no_decoding(monkeypatch)
    assert cli.main(["--video", str(video), "--audio", str(line), "-o", str(video.parent / "o.mp4"),
                     "--visemes", "klingon"]) == 2
    err = capsys.readouterr().err
    assert "--visemes 'klingon'" in err and "rhubarb" in err


def test_output_folder_that_cannot_be_made_is_reported_first(clip_and_line, capsys, monkeypatch):
    video, line = clip_and_line
    _no_decoding(monkeypatch)
    blocker = video.parent / "afile"
    blocker.write_text("not a folder")
    out = blocker / "sub" / "o.mp4"  # its folder would have to be made inside a file
    assert cli.main(["--video", str(video), "--audio", str(line), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len([x for x in err if x.strip()]) == 1, err  # one line, no traceback
    assert err[-1].startswith(f"error: -o {out}: cannot create the output folder"), err
    if os.geteuid() != 0:  # root writes anywhere
        ro = video.parent / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            assert cli.main(["--video", str(video), "--audio", str(line), "-o", str(ro / "o.mp4")]) == 2
            assert "not writable" in capsys.readouterr().err
        finally:
            ro.chmod(0o700)


# --- the streamed chain -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ntsc_clip(tmp_path_factory, grid_dir):
    """A GRID clip re-timed to 29.97 fps (30000/1001) and its own sound as the line."""
    from fractions import Fraction

    d = tmp_path_factory.mktemp("ntsc")
    frames, _, _ = media.read_video(str(grid_dir / "bbaf2n.mpg"))
    rate = Fraction(30000, 1001)
    video_out.write_video(str(d / "clip.mp4"), frames, rate)
    wave, sr = media.read_audio(str(grid_dir / "bbaf2n.mpg"))
    write_wav(d / "line.wav", wave.mean(0).numpy(), sr)
    return d, rate, int(frames.shape[0])


def _captured_run(monkeypatch, d, out, chunk_pixels, planar=True, keep_bytes=None):
    """Run the CLI with pass 3 cut into chunks of ``chunk_pixels``; returns the frames handed to
    the encoder (uint8: (n, H * 3 / 2, W) 4:2:0 planes, or with ``planar`` False the RGB path's
    (n, H, W, 3)) and the exit code."""
    from comfyui_lipsync.lipsync_runner import stream

    got = []
    for name in ("write", "write_yuv"):
        real = getattr(video_out.VideoWriter, name)

        def capture(self, frames, real=real):
            got.append(torch.as_tensor(np.asarray(frames)).clone())
            real(self, frames)

        monkeypatch.setattr(video_out.VideoWriter, name, capture)
    if not planar:
        monkeypatch.setattr(media.VideoInfo, "plain_yuv420", property(lambda self: False))
    monkeypatch.setattr(stream, "CHUNK_PIXELS", chunk_pixels)
    if keep_bytes is not None:
        monkeypatch.setattr(stream, "KEEP_SMALL_BYTES", keep_bytes)
    rc = cli.main(["--video", str(d / "clip.mp4"), "--audio", str(d / "line.wav"), "-o", str(out), "-q", "--no-score"])
    monkeypatch.undo()
    return (torch.cat(got) if got else None), rc


def _input_planes(path) -> torch.Tensor:
    return torch.cat([torch.from_numpy(f) for _, f, _ in media.iter_yuv(str(path), chunk=32)])


def test_streamed_output_keeps_rate_count_and_has_no_seams(ntsc_clip, monkeypatch, capsys):
    d, rate, n = ntsc_clip
    small, rc1 = _captured_run(monkeypatch, d, d / "small.mp4", 7 * 288 * 360)  # chunks of 7 frames
    big, rc2 = _captured_run(monkeypatch, d, d / "big.mp4", 10 ** 9)  # one chunk of 64, then 11
    assert rc1 == 0 and rc2 == 0, capsys.readouterr().err[-2000:]
    # chunk boundaries leave no trace: the frames are the same however the clip is cut. Float rounding
    # of a different face region may move a pixel by one level; where it moves a pixel in one cutting
    # and not in the other, that output alone writes the pixel (its Y, and its 2x2 block's U and V)
    # back through RGB, whose 8-bit round trip may add a level or more (up to 16 in chroma at colour
    # edges of a GRID frame): a handful of samples. A seam would move a frame's whole mouth (thousands)
    assert small.shape == big.shape == (n, 288 * 3 // 2, 360)  # the decoder's 4:2:0 planes, as they came
    diff = (small.int() - big.int()).abs()
    assert float((diff > 0).float().mean()) < 1e-3 and float((diff > 1).float().mean()) < 1e-5
    assert int((diff > 0).flatten(1).sum(1).max()) < 50  # no frame's mouth moved as a whole
    src = _input_planes(d / "clip.mp4")
    assert float((small.float() - src.float()).abs().amax(dim=(0,)).max()) > 30  # the mouth did change
    for name in ("small.mp4", "big.mp4"):
        info = media.probe_video(str(d / name))
        assert info.rate == rate and info.frames == n, (info.rate, info.frames)  # exact rate, every frame
        with av.open(str(d / name)) as c:
            a = c.streams.audio[0]
            assert abs(float(a.duration * a.time_base) - n / float(rate)) < 0.03  # no drift: n / rate
    assert not list(d.glob(".*.partial*"))  # the partial file became the output


def test_render_threads_puts_the_counts_back_after_an_error(monkeypatch):
    import cv2

    from comfyui_lipsync.lipsync_runner import stream

    monkeypatch.setattr(stream, "usable_cpus", lambda: 4)
    before = stream.set_threads(3)
    try:
        with pytest.raises(RuntimeError):
            with stream.render_threads(0) as n:
                assert n == 2 and torch.get_num_threads() == 2 and cv2.getNumThreads() == 2
                raise RuntimeError("the encoder failed")
        assert (torch.get_num_threads(), cv2.getNumThreads()) == (3, 3)
    finally:
        stream.set_threads(*before[1:])


@pytest.mark.parametrize("asked, cpus, want", [(0, 4, (4, 2)), (0, 1, (1, 1)), (3, 4, (3, 3))])
def test_passes_before_the_last_use_every_cpu_and_the_last_half(ntsc_clip, monkeypatch, capsys, asked, cpus, want):
    """--threads 0: the tracking and collecting passes (their decoder light) get every CPU, the last
    pass, whose decoder and encoder run beside it, half; an explicit --threads holds for every pass;
    the counts are put back at the end."""
    import cv2

    from comfyui_lipsync.lipsync_runner import stream

    d, _, _ = ntsc_clip
    seen = {}

    def spy(name, fn):
        def wrapped(*a, **k):
            seen[name] = (torch.get_num_threads(), cv2.getNumThreads())
            return fn(*a, **k)
        monkeypatch.setattr(stream, name, wrapped)

    for name in ("track_pass", "collect_pass", "render_pass"):
        spy(name, getattr(stream, name))
    monkeypatch.setattr(stream, "usable_cpus", lambda: cpus)
    before = (torch.get_num_threads(), cv2.getNumThreads())
    rc = cli.main(["--video", str(d / "clip.mp4"), "--audio", str(d / "line.wav"), "-o", str(d / "t.mp4"), "-q",
                   "--no-score", "--threads", str(asked)])
    assert rc == 0, capsys.readouterr().err[-2000:]
    assert seen["track_pass"] == seen["collect_pass"] == (want[0], want[0])
    assert seen["render_pass"] == (want[1], want[1])
    assert (torch.get_num_threads(), cv2.getNumThreads()) == before


def test_planar_pass_changes_only_the_mouth_and_matches_the_rgb_path(ntsc_clip, monkeypatch, capsys):
    """Kept in the decoder's 4:2:0 planes, pass 3 hands the encoder the input's own bytes wherever
    Composite changed nothing, and where it did, the RGB path's pixels converted as the encoder
    converts them; the RGB path instead converts every pixel there and back."""
    from comfyui_lipsync.lipsync_runner import yuv

    d, _, n = ntsc_clip
    planar, rc1 = _captured_run(monkeypatch, d, d / "planar.mp4", 10 ** 9)
    rgb, rc2 = _captured_run(monkeypatch, d, d / "rgb.mp4", 10 ** 9, planar=False)
    assert rc1 == 0 and rc2 == 0, capsys.readouterr().err[-2000:]
    assert rgb.shape == (n, 288, 360, 3) and planar.shape == (n, 432, 360)
    src = _input_planes(d / "clip.mp4").numpy()
    src_rgb = np.stack([yuv.to_rgb(f) for f in src])
    changed = (rgb.numpy() != src_rgb).any(-1)  # (n, 288, 360): where the RGB path's output differs
    assert 0.002 < changed.mean() < 0.2, changed.mean()  # the mouth, not the frame
    same_y = np.stack([yuv.planes(f)[0] for f in planar.numpy()]) == np.stack([yuv.planes(f)[0] for f in src])
    # luma untouched outside the change: the input's bytes (the two paths cut the face region a pixel
    # apart, and float rounding there may change a pixel in one path and leave it in the other: 1 of 7.4 M)
    assert (~same_y[~changed]).mean() < 1e-5
    assert not same_y[changed].all()
    conv = np.stack([yuv.planes(yuv.from_rgb(f))[0] for f in rgb.numpy()])  # RGB path, as the encoder converts it
    got = np.stack([yuv.planes(f)[0] for f in planar.numpy()])
    assert (got[changed] == conv[changed]).mean() > 0.99  # the same new mouth
    src_y = np.stack([yuv.planes(f)[0] for f in src])
    assert (conv[~changed] != src_y[~changed]).mean() > 0.05  # the RGB round trip moves pixels it never changed


def _grid_line(grid_dir, clip: str, path, seconds: float) -> None:
    """The first ``seconds`` of a GRID clip's sound as a mono 16-bit WAV line."""
    wave, sr = media.read_audio(str(grid_dir / f"{clip}.mpg"))
    write_wav(path, wave.mean(0)[: int(seconds * sr)].numpy(), sr)


def test_a_bt709_clip_stays_in_its_planes_and_the_output_states_bt709(tmp_path, grid_dir, monkeypatch, capsys):
    """A clip in BT.709 (phones and most cameras) takes the planar pass as a BT.601 one does, and the
    output states the input's matrix, range, primaries and transfer, so players convert its untouched
    bytes as the input's: away from the mouth it reads back as the input does."""
    from comfyui_lipsync.lipsync_runner import yuv

    frames, _, _ = media.read_video(str(grid_dir / "bbaf2n.mpg"))
    frames = frames[:50]
    tags = {"colorspace": 1, "color_range": 1, "color_primaries": 1, "color_trc": 1}
    w = video_out.VideoWriter(str(tmp_path / "clip.mp4"), (360, 288), 25, colour=tags)
    try:
        w.write(frames)  # RGB converted into BT.709, as the tags say
    finally:
        w.close()
    info = media.probe_video(str(tmp_path / "clip.mp4"))
    assert info.colour == tags and info.plain_yuv420
    src = media.read_video(str(tmp_path / "clip.mp4"))[0]
    planes = np.stack([f for _, chunk, _ in media.iter_yuv(str(tmp_path / "clip.mp4"), chunk=64) for f in chunk])
    as_601 = torch.from_numpy(np.stack([yuv.to_rgb(p) for p in planes]))  # the same bytes read as BT.601
    err = lambda x: float((x.float() - frames.float()).abs().mean())  # noqa: E731
    assert err(src) < 2.5 < err(as_601) - 2  # read back as written (x264 at crf 18: ~2 levels; BT.601: ~6)
    _grid_line(grid_dir, "bbaf2n", tmp_path / "line.wav", seconds=2)
    got, rc = _captured_run(monkeypatch, tmp_path, tmp_path / "out.mp4", 10 ** 9)
    assert rc == 0, capsys.readouterr().err[-2000:]
    assert got.shape == (50, 288 * 3 // 2, 360)  # the decoder's planes were handed to the encoder
    assert media.probe_video(str(tmp_path / "out.mp4")).colour == tags
    out = media.read_video(str(tmp_path / "out.mp4"))[0]
    top = (out[:, :120].float() - src[:, :120].float()).abs()  # above the mouth: untouched bytes, re-encoded
    assert float(top.mean()) < 1.5 and float((out.float() - src.float()).abs().amax()) > 30  # the mouth changed
    for bad, msg in (({"matrix": 1}, "unknown colour tags"), ({"color_range": 2}, "limited-range"),
                     ({"colorspace": 10}, "colour matrix 10")):
        with pytest.raises(InputError, match=msg):
            video_out.VideoWriter(str(tmp_path / "x.mp4"), (8, 8), 25, colour=bad)
        assert not (tmp_path / "x.mp4").exists()  # refused before the file is made


def test_a_bt709_clip_not_in_plain_420_comes_out_tagged_bt709(tmp_path, grid_dir, monkeypatch, capsys):
    """A BT.709 clip in 4:4:4 (or 10-bit, 4:2:2, full range) goes through RGB, decoded by its tags; the
    output is written in BT.709 and says so, with the input's primaries and transfer. Before, it came
    out untagged in BT.601, which players read as BT.709 at HD sizes, shifting every colour (PyAV
    reads untagged video as BT.601, so only the tags show it)."""
    frames, _, _ = media.read_video(str(grid_dir / "bbaf2n.mpg"))
    frames = frames[:50]
    with av.open(str(tmp_path / "clip.mp4"), "w") as c:
        vs = c.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt = 360, 288, "yuv444p"
        vs.options = {"crf": "18"}
        for k, v in (("colorspace", 1), ("color_range", 1), ("color_primaries", 1), ("color_trc", 1)):
            setattr(vs.codec_context, k, v)
        for i, img in enumerate(frames.numpy()):
            vf = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv444p", dst_colorspace=1)
            vf.colorspace, vf.color_range, vf.pts = 1, 1, i
            for p in vs.encode(vf):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
    tags = {"colorspace": 1, "color_range": 1, "color_primaries": 1, "color_trc": 1}
    info = media.probe_video(str(tmp_path / "clip.mp4"))
    assert info.colour == tags and not info.plain_yuv420 and info.pix_fmt == "yuv444p"
    src = media.read_video(str(tmp_path / "clip.mp4"))[0]
    assert float((src.float() - frames.float()).abs().mean()) < 2.5  # decoded by its tags: as written
    _grid_line(grid_dir, "bbaf2n", tmp_path / "line.wav", seconds=2)
    got, rc = _captured_run(monkeypatch, tmp_path, tmp_path / "out.mp4", 10 ** 9)
    assert rc == 0, capsys.readouterr().err[-2000:]
    assert got.shape == (50, 288, 360, 3)  # the RGB path
    assert media.probe_video(str(tmp_path / "out.mp4")).colour == tags
    out = media.read_video(str(tmp_path / "out.mp4"))[0]
    top = (out[:, :120].float() - src[:, :120].float()).abs()  # above the mouth: re-encoded once more
    assert float(top.mean()) < 2.5 and float((out.float() - src.float()).abs().amax()) > 30  # the mouth changed
    assert video_out.writable_colour({}) == {}  # an untagged clip stays untagged (BT.601 both ways)
    assert video_out.writable_colour({"colorspace": 10, "color_range": 2, "color_trc": 16}) == {
        "color_trc": 16, "color_range": 1}  # a matrix it cannot write in is not stated; range as written


def test_pass_two_from_kept_or_decoded_frames_gives_the_same_output(ntsc_clip, monkeypatch, capsys):
    """Pass 2 cuts its alignment crops from the tracking-size frames pass 1 kept, or, for a clip too
    long to keep, from a second decode: the frames handed to the encoder are the same bytes."""
    from comfyui_lipsync.lipsync_runner import stream

    d, _, n = ntsc_clip
    calls = []
    real = stream.collect_pass
    monkeypatch.setattr(stream, "collect_pass", lambda *a: calls.append(a[-1] is not None) or real(*a))
    kept, rc1 = _captured_run(monkeypatch, d, d / "kept.mp4", 10 ** 9)
    monkeypatch.setattr(stream, "collect_pass", lambda *a: calls.append(a[-1] is not None) or real(*a))
    decoded, rc2 = _captured_run(monkeypatch, d, d / "decoded.mp4", 10 ** 9, keep_bytes=0)
    assert rc1 == 0 and rc2 == 0, capsys.readouterr().err[-2000:]
    assert calls == [True, False]
    assert kept.shape == decoded.shape == (n, 432, 360) and torch.equal(kept, decoded)


def test_audio_chain_beside_tracking_gives_the_output_of_the_chain_in_turn(ntsc_clip, monkeypatch, capsys):
    """The audio chain runs in a thread beside the tracking pass, for the frame count the file states.
    Its output is the one the chain run after tracking gives, and a file whose stated count is wrong
    (here 5 frames too many) gets the chain run again for the frames it has: the same bytes."""
    from comfyui_lipsync.lipsync_runner import stream

    d, _, n = ntsc_clip
    used = []
    real_result = cli._AudioAhead.result
    monkeypatch.setattr(cli._AudioAhead, "result", lambda self, b: used.append(self.b == b) or real_result(self, b))
    beside, rc1 = _captured_run(monkeypatch, d, d / "beside.mp4", 10 ** 9)
    real_init = stream.FileFrames.__init__

    def overstated(self, *a, **k):
        real_init(self, *a, **k)
        self.stated += 5

    monkeypatch.setattr(cli._AudioAhead, "result", lambda self, b: used.append(self.b == b) or real_result(self, b))
    monkeypatch.setattr(stream.FileFrames, "__init__", overstated)
    again, rc2 = _captured_run(monkeypatch, d, d / "again.mp4", 10 ** 9)

    def understated(self, *a, **k):  # 2 frames: the thread's line is 67 ms of silence, which the chain refuses
        real_init(self, *a, **k)
        self.stated = 2

    monkeypatch.setattr(cli._AudioAhead, "result", lambda self, b: used.append(self.b == b) or real_result(self, b))
    monkeypatch.setattr(stream.FileFrames, "__init__", understated)
    under, rc3 = _captured_run(monkeypatch, d, d / "under.mp4", 10 ** 9)
    assert rc1 == 0 and rc2 == 0 and rc3 == 0, capsys.readouterr().err[-2000:]
    assert used == [True, False, False]  # the thread's chain used, then run again for the true count
    assert beside.shape == again.shape == (n, 432, 360) and torch.equal(beside, again) and torch.equal(beside, under)
    assert float((beside.float() - _input_planes(d / "clip.mp4").float()).abs().max()) > 30  # a mouth moved


def test_audio_chain_beside_tracking_raises_its_error_in_the_runner(ntsc_clip, monkeypatch, capsys):
    """An error the audio chain meets in its thread reaches the user as the chain run in turn gives
    it: the runner's clear message, exit code 2, no traceback and no output file."""
    d, _, _ = ntsc_clip
    real = media.read_audio

    def with_nan(*a, **k):
        wave, sr = real(*a, **k)
        wave = wave.clone()
        wave[0, 100] = float("nan")
        return wave, sr

    monkeypatch.setattr(media, "read_audio", with_nan)
    calls = []
    real_chain = cli._audio_chain
    monkeypatch.setattr(cli, "_audio_chain", lambda *a, **k: calls.append(1) or real_chain(*a, **k))
    out = d / "nan.mp4"
    assert cli.main(["--video", str(d / "clip.mp4"), "--audio", str(d / "line.wav"), "-o", str(out), "-q"]) == 2
    err = capsys.readouterr().err
    assert "LoadAudioDriver" in err and "NaN" in err and "Traceback" not in err, err[-2000:]
    assert calls == [1]  # raised from the thread's run, not from a second run after it
    assert not out.exists()


GUARDED = r"""
import ctypes, mmap, sys
import numpy as np
from lipsync_runner.pack import load_pack
load_pack()
from comfyui_lipsync.lipsync_runner import yuv
libc = ctypes.CDLL(None)
def guarded(shape):  # an array that ends where a page nobody may read begins
    n, page = int(np.prod(shape)), mmap.PAGESIZE
    size = (n + page - 1) // page * page
    m = mmap.mmap(-1, size + page)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
    assert libc.mprotect(ctypes.c_void_p(addr + size), ctypes.c_size_t(page), 0) == 0
    return np.frombuffer(m, np.uint8, count=n, offset=size - n).reshape(shape), m
for w in (2, 30, 66, 98, 854, 1918):
    a, m1 = guarded((54, w))
    a[:] = 128
    yuv.to_rgb(a, 1)
    r, m2 = guarded((36, w, 3))
    r[:] = 100
    yuv.from_rgb(r, 1)
print("read nothing past the frames")
"""


def test_the_4_2_0_conversions_never_read_past_a_frame():
    """swscale reads up to 64 bytes past a plane's end at widths of 2 mod 4: the runner's conversions
    of face regions and changed boxes give it frames with room after them, so an array that ends at
    the edge of readable memory converts (a frame over the array itself crashed the process there)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    r = subprocess.run([sys.executable, "-c", GUARDED], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0 and "read nothing past the frames" in r.stdout, (r.returncode, r.stderr[-2000:])


def test_progress_from_other_threads_is_not_drawn():
    import threading

    seen = []
    hook = cli.main_thread_only(lambda done, total: seen.append((done, total)))
    hook(1, 4)
    t = threading.Thread(target=hook, args=(2, 4))
    t.start()
    t.join()
    hook(3, 4)
    assert seen == [(1, 4), (3, 4)]
