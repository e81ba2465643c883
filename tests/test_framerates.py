"""Any frame rate, exactly: the driver's sample positions, mel windows, SyncScore's offset in
frames of the clip's own rate, and ComfyUI's VIDEO socket (a stand-in object, no ComfyUI)."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import pytest
import torch

from comfyui_lipsync.lipsync_models import audio as A
from comfyui_lipsync.lipsync_models import sync
from comfyui_lipsync.lipsync_models.errors import InputError, MediaError
from comfyui_lipsync.nodes import _comfy
from comfyui_lipsync.nodes.load_audio_driver import NO_FILE, LoadAudioDriver
from comfyui_lipsync.nodes.sync_score import SyncScore
from helpers import grid_recorded, shift_audio

RATES = [16, Fraction(24000, 1001), 24, 25, Fraction(30000, 1001), 30, 50, Fraction(60000, 1001), 60]
"""The rates of issue 15, 23.976 / 29.97 / 59.94 as the exact NTSC fractions ComfyUI's VIDEO carries."""


class Components:
    """What ComfyUI's ``VideoInput.get_components()`` returns (comfy_api.util.VideoComponents)."""

    def __init__(self, images, audio, frame_rate):
        self.images, self.audio, self.frame_rate, self.metadata = images, audio, frame_rate, None


class StandInVideo:
    """Duck-typed ComfyUI VIDEO: only ``get_components()`` is used."""

    def __init__(self, images, audio=None, frame_rate=Fraction(25)):
        self.parts = Components(images, audio, frame_rate)

    def get_components(self):
        return self.parts


class BrokenVideo:
    def get_components(self):
        raise OSError("moov atom not found")


# --- VIDEO unpacking -----------------------------------------------------------------------

@pytest.mark.parametrize("rate", RATES)
def test_video_components_keeps_the_exact_rate(rate):
    images = torch.rand(3, 8, 8, 3)
    audio = {"waveform": torch.zeros(1, 2, 100), "sample_rate": 44100}
    got_images, got_audio, fps = _comfy.video_components(StandInVideo(images, audio, rate))
    assert got_images is images and got_audio is audio
    assert isinstance(fps, float) and fps == float(Fraction(rate))  # 30000/1001, not 29.97 nor 30


def test_video_components_without_audio_and_as_a_tuple():
    images = torch.rand(2, 4, 4, 3)
    assert _comfy.video_components(StandInVideo(images, None))[1] is None

    class TupleVideo:
        def get_components(self):
            return (images, None, Fraction(24000, 1001))

    assert _comfy.video_components(TupleVideo())[2] == 24000 / 1001


@pytest.mark.parametrize("video, words", [
    (torch.rand(2, 4, 4, 3), ["Node", "VIDEO", "Tensor", "images + fps"]),
    (StandInVideo(torch.rand(0, 4, 4, 3)), ["Node", "no frames"]),
    (StandInVideo(torch.rand(4, 4, 3)), ["Node", "IMAGE batch", "(4, 4, 3)"]),
    (StandInVideo(torch.rand(2, 4, 4, 3), frame_rate=Fraction(0)), ["Node", "frame rate 0"]),
    (StandInVideo(torch.rand(2, 4, 4, 3), frame_rate=None), ["Node", "frame rate", "None"]),
    (StandInVideo(torch.rand(2, 4, 4, 3), frame_rate=float("nan")), ["Node", "frame rate"]),
])
def test_video_components_rejects_what_is_not_a_video(video, words):
    with pytest.raises(InputError) as e:
        _comfy.video_components(video, who="Node")
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_video_components_names_a_decode_failure():
    with pytest.raises(MediaError, match=r"^Node: the video input could not be decoded \(OSError: moov atom"):
        _comfy.video_components(BrokenVideo(), who="Node")


# --- the driver's sample positions ---------------------------------------------------------

def _exact_starts(rate: Fraction, num: int, sr: int) -> torch.Tensor:
    """Independent reference: floor(k * sr / rate + 1/2) in integer arithmetic on the exact rational rate."""
    p, q = rate.numerator, rate.denominator
    k = torch.arange(num + 1, dtype=torch.int64)
    return torch.div(2 * k * sr * q + p, 2 * p, rounding_mode="floor")


@pytest.mark.parametrize("rate", RATES + [Fraction(7, 1), Fraction(120), Fraction(240)])
@pytest.mark.parametrize("sr", [8000, 16000, 44100, 48000, 96000])
def test_frame_samples_are_exact_at_every_rate_with_no_drift(rate, sr):
    # 100,000 frames: 55 min at 29.97 fps; one rounded rate or an accumulated step would drift by thousands
    got = A.frame_samples(float(rate), 100_000, sr)
    assert torch.equal(got, _exact_starts(Fraction(rate), 100_000, sr))


@pytest.mark.parametrize("rate", RATES)
def test_mel_windows_start_at_int_i_80_over_fps_with_no_drift(rate):
    r = Fraction(rate)
    i = torch.arange(100_000, dtype=torch.int64)
    want = torch.div(i * 80 * r.denominator, r.numerator, rounding_mode="floor")
    assert torch.equal(A.mel_starts(float(rate), 100_000), want)


def _clicks(starts: torch.Tensor, frames: list[int], length: int) -> torch.Tensor:
    x = torch.zeros(length)
    x[starts[frames]] = 0.9
    return x


@pytest.mark.parametrize("rate", RATES)
def test_driver_audio_of_frame_k_starts_at_its_sample(rate):
    fps = float(rate)
    n = int(20 * fps)  # 20 s
    frames = [1, 7, n // 3, n // 2 + 1, n - 1]
    # 16 kHz: no resampling, so every per-frame measure sees each click exactly at its frame's first sample
    s16 = _exact_starts(Fraction(rate), n, 16000)
    d = A.make_driver({"waveform": _clicks(s16, frames, int(s16[-1]))[None, None], "sample_rate": 16000}, fps, n)
    assert d.num_frames == n and d.waveform.shape[0] == int(s16[-1])
    assert torch.nonzero(d.waveform).flatten().tolist() == s16[frames].tolist()
    loud = d.loudness > A.LOUDNESS_FLOOR_DB + 1
    assert torch.nonzero(loud).flatten().tolist() == frames  # frame k holds its click, frame k - 1 does not
    # 44.1 kHz stereo: the full-quality output keeps every click where it was; the 16 kHz copy's
    # click peaks sit at round(k * 16000 / fps) within the resampling filter's one sample
    s44 = _exact_starts(Fraction(rate), n, 44100)
    x = _clicks(s44, frames, int(s44[-1]))
    d = A.make_driver({"waveform": torch.stack([x, x])[None], "sample_rate": 44100}, fps, n)
    assert d.audio["waveform"].shape == (1, 2, int(s44[-1]))
    assert torch.nonzero(d.audio["waveform"][0, 0]).flatten().tolist() == s44[frames].tolist()
    w = d.waveform.abs()
    for k in frames:
        at = int(s16[k])
        assert abs(int(torch.argmax(w[at - 20:at + 20])) - 20) <= 1, (k, at)


def test_a_rounded_rate_would_fail_these_checks():
    # the references tell 29.97 from 30 within 4 s (samples) and 40 s (mel windows): int(fps) fails them
    assert not torch.equal(A.frame_samples(30.0, 100, 16000), _exact_starts(Fraction(30000, 1001), 100, 16000))
    assert not torch.equal(A.mel_starts(30.0, 1000), A.mel_starts(30000 / 1001, 1000))


# --- SyncScore at every rate: a GRID clip retimed to the rate, its audio moved by k frames --------

def _retimed_track(track, idx: torch.Tensor):
    """``track`` with frame j taken from frame ``idx[j]`` (every per-frame tensor, extras too)."""
    def pick(v):
        return v[idx] if isinstance(v, torch.Tensor) and v.ndim >= 1 and v.shape[0] == track.num_frames else v

    fields = {f.name: pick(getattr(track, f.name)) for f in dataclasses.fields(track)}
    fields["extras"] = {k: pick(v) for k, v in (track.extras or {}).items()}
    return type(track)(**fields)


@pytest.fixture(scope="module")
def grid_25():
    return grid_recorded("lbbc2a")  # track, 16 kHz line, 25.0, images: a clip the haar lead fits well


@pytest.mark.parametrize("rate", RATES)
def test_sync_score_finds_a_known_offset_at_every_rate(grid_25, rate):
    """The recorded clip shown at ``rate`` (frame j shows the 25 fps frame nearest j / rate, so the
    picture keeps its timing to +-20 ms) with its line moved k frames of ``rate`` late or early.
    SyncScore (articulation, through LoadAudioDriver's driver) must give k in frames of the clip's
    own rate and 1000 k / fps in ms. Exact at 25 fps (the clip as recorded); elsewhere within one
    frame: the nearest-frame retiming moves the picture by up to 20 ms a frame (1.2 frames at 60 fps)
    and the lead was fitted at 25 fps (measured: |peak - lead - k| at most 0.7 frame, at 60 fps)."""
    track, w16, fps0, img = grid_25
    fps = float(rate)
    n = int(3.0 * fps)
    idx = torch.round(torch.arange(n, dtype=torch.float64) * fps0 / fps).long().clamp(max=track.num_frames - 1)
    images, tr = img[idx], _retimed_track(track, idx)
    length = int(A.frame_samples(fps, n, 16000)[-1])
    line = torch.nn.functional.pad(w16, (0, max(length - w16.shape[0], 0)))[:length]
    for k in (-4, 3):
        moved = shift_audio(line, k, fps=fps)
        _, driver = LoadAudioDriver().load(NO_FILE, fps=fps, audio={"waveform": moved[None, None],
                                                                    "sample_rate": 16000}, images=images)["result"]
        out = SyncScore().run(images, fps=fps, driver=driver, face_track=tr, window_s=0.0)["result"]
        offset, ms = out[0], out[1]
        if fps == 25.0:
            assert offset == k
        assert abs(offset - k) <= 1, (fps, k, offset)
        assert ms == pytest.approx(1000.0 * offset / fps, abs=1e-3)  # 29.97: 100.1 ms a 3-frame step, not 100
        assert f"at {fps:g} fps" in out[3]


def test_natural_lead_is_a_time_not_a_frame_count(grid_25):
    track = grid_25[0]
    lead25 = sync.natural_lead_for(track, "envelope")
    assert sync.natural_lead_for(track, "envelope", 60.0) == pytest.approx(lead25 * 60.0 / 25.0)
    assert sync.natural_lead_for(track, "envelope", 30000 / 1001) == pytest.approx(lead25 * 1.2 / 1.001)


# --- VIDEO through LoadAudioDriver ---------------------------------------------------------

def test_load_audio_driver_takes_a_video_rate_frames_and_sound():
    fps = Fraction(30000, 1001)
    images = torch.rand(90, 8, 8, 3)
    sr = 48000
    t = torch.arange(int(3.2 * sr)) / sr
    sound = {"waveform": (0.3 * torch.sin(2 * torch.pi * 220 * t))[None, None].expand(1, 2, -1), "sample_rate": sr}
    out = LoadAudioDriver().load(NO_FILE, fps=25.0, video=StandInVideo(images, sound, fps))
    audio, driver = out["result"]
    assert driver.fps == 30000 / 1001 and driver.num_frames == 90  # the widget's 25 is not used
    assert audio["waveform"].shape == (1, 2, int(_exact_starts(fps, 90, sr)[-1]))  # 3.003 s at 48 kHz
    assert driver.name == "the video's sound" and "90 frames at 29.97 fps" in out["ui"]["text"][0]
    # a connected AUDIO wins over the video's sound; frame_count still wins over the video's length
    other = {"waveform": 0.2 * torch.ones(1, 1, 16000), "sample_rate": 16000}
    _, d2 = LoadAudioDriver().load(NO_FILE, frame_count=30, audio=other,
                                   video=StandInVideo(images, sound, fps))["result"]
    assert d2.name == "the audio input" and d2.num_frames == 30 and d2.fps == 30000 / 1001


def test_load_audio_driver_video_errors_name_the_node_and_input():
    with pytest.raises(InputError, match=r"^LoadAudioDriver: the video input has no sound and no audio is given\. "
                                         r"Connect an AUDIO output"):
        LoadAudioDriver().load(NO_FILE, video=StandInVideo(torch.rand(5, 8, 8, 3), None, Fraction(24)))
    with pytest.raises(InputError, match=r"^LoadAudioDriver: fps must be between 1 and 240 .* got 1000"):
        LoadAudioDriver().load(NO_FILE, video=StandInVideo(torch.rand(5, 8, 8, 3), None, Fraction(1000)),
                               audio={"waveform": torch.ones(1, 1, 100), "sample_rate": 16000})
    with pytest.raises(InputError, match=r"^LoadAudioDriver: the video input must be a ComfyUI VIDEO"):
        LoadAudioDriver().load(NO_FILE, video=torch.rand(5, 8, 8, 3))


def test_load_audio_driver_declares_the_video_socket():
    spec = LoadAudioDriver.INPUT_TYPES()
    assert spec["optional"]["video"][0] == "VIDEO" and "tooltip" in spec["optional"]["video"][1]
    assert spec["optional"]["images"][0] == "IMAGE" and spec["required"]["fps"][0] == "FLOAT"  # IMAGE path kept


@pytest.mark.parametrize("fps", [0.0, -30.0, 1000.0])
def test_sync_score_rejects_a_rate_outside_1_to_240(fps):
    # a FLOAT linked from another node (GetVideoComponents' fps) skips the widget's bounds
    with pytest.raises(InputError, match=rf"^SyncScore: fps must be between 1 and 240 frames per second, got {fps:g}"):
        SyncScore().run(torch.rand(30, 32, 32, 3), fps=fps, audio={"waveform": torch.ones(1, 1, 16000),
                                                                   "sample_rate": 16000})


@pytest.mark.parametrize("rate", [16, 25, 60])
def test_too_short_to_judge_is_a_time_at_every_rate(grid_25, rate):
    # 0.6 s is 36 frames at 60 fps (more than the 20 frames the bound was at 25 fps) and still too short;
    # 1.2 s is 19 frames at 16 fps and long enough
    track, w16, fps0, img = grid_25
    fps = float(rate)
    for seconds, short in ((0.6, True), (1.2, False)):
        n = int(round(seconds * fps))
        start = int(round(1.0 * fps))  # from 1 s: the line is spoken there
        idx = torch.round((start + torch.arange(n, dtype=torch.float64)) * fps0 / fps).long()
        a = int(A.frame_samples(fps, start, 16000)[-1])
        b = int(A.frame_samples(fps, start + n, 16000)[-1])
        r = sync.score_articulation(_retimed_track(track, idx), w16[a:b], fps, window_s=0)
        assert any(note.startswith("clip too short") for note in r.notes) == short, (rate, seconds, r.notes)


class FileBackedVideo:
    """A VIDEO as newer ComfyUI's VideoFromFile: length and rate from the container; decoding the
    frames is what a 1080p clip cannot afford (6 GB for 10 s), so here it fails the test."""

    def __init__(self, count, rate, components=None):
        self.count, self.rate, self.components = count, rate, components

    def get_frame_count(self):
        return self.count

    def get_frame_rate(self):
        return self.rate

    def get_components(self):
        if self.components is None:
            raise AssertionError("the frames were decoded although only the length and rate were needed")
        return self.components


def test_another_line_never_decodes_the_videos_frames():
    line = {"waveform": 0.2 * torch.ones(1, 1, 48000), "sample_rate": 16000}
    video = FileBackedVideo(2997, Fraction(30000, 1001))
    _, d = LoadAudioDriver().load(NO_FILE, audio=line, video=video)["result"]
    assert d.num_frames == 2997 and d.fps == 30000 / 1001  # 100 s of clip: the line padded with silence
    assert _comfy.video_length_and_rate(video) == (2997, 30000 / 1001)
    # an older ComfyUI VIDEO (get_components only) still gives the length, by decoding
    assert _comfy.video_length_and_rate(StandInVideo(torch.rand(7, 4, 4, 3), None, Fraction(24))) == (7, 24.0)
    with pytest.raises(InputError, match=r"^Node: the video input has no frames"):
        _comfy.video_length_and_rate(FileBackedVideo(0, Fraction(25)), who="Node")
    with pytest.raises(InputError, match=r"^Node: the video input has frame rate -25"):
        _comfy.video_length_and_rate(FileBackedVideo(5, Fraction(-25)), who="Node")
    # the video's own sound is needed: then it is decoded
    sound = {"waveform": 0.2 * torch.ones(1, 1, 16000), "sample_rate": 16000}
    own = FileBackedVideo(25, Fraction(25), Components(torch.rand(25, 4, 4, 3), sound, Fraction(25)))
    _, d = LoadAudioDriver().load(NO_FILE, video=own)["result"]
    assert d.num_frames == 25 and d.name == "the video's sound"


class VideoInput:
    """ComfyUI's abstract VIDEO base: its get_stream_source encodes the frames into a new file."""

    def get_stream_source(self):
        raise AssertionError("the frames were encoded to find their file")


class VideoFromFile(VideoInput):
    """An older ComfyUI's VideoFromFile (no get_frame_count): a file behind it, and get_components
    decoding every frame as float, which here fails the test."""

    def __init__(self, path):
        self.path = path

    def get_stream_source(self):
        return self.path

    def get_components(self):
        raise AssertionError("the frames were decoded although only the sound and length were needed")


class VideoFromComponents(VideoInput):
    def __init__(self, components):
        self.components = components

    def get_components(self):
        return self.components


def test_the_videos_own_sound_is_read_from_its_file_without_its_frames(tmp_path):
    """LoadAudioDriver driven by a VIDEO's own sound reads the sound from the VIDEO's file and counts
    its frames there (29.97 fps, 45 frames, a 440 Hz tone); a VIDEO made of frames gives them as before
    (its base class's get_stream_source, which would encode them, is never called)."""
    from comfyui_lipsync.lipsync_models import media, video_out

    rate = Fraction(30000, 1001)
    t = torch.arange(int(16000 * 45 / rate)) / 16000.0
    tone = 0.3 * torch.sin(2 * torch.pi * 440.0 * t)[None]
    path = video_out.write_video(str(tmp_path / "clip.mp4"), torch.rand(45, 32, 32, 3), rate, tone, 16000)
    video = VideoFromFile(path)
    assert _comfy.video_length_and_rate(video) == (45, float(rate))
    _, d = LoadAudioDriver().load(NO_FILE, video=video)["result"]
    assert d.num_frames == 45 and d.fps == float(rate) and d.name == "the video's sound"
    wave, sr = media.read_audio(path)
    want = A.make_driver({"waveform": wave[None], "sample_rate": sr}, float(rate), 45)
    assert torch.equal(d.waveform, want.waveform)
    # a silent file: the node's usual message
    silent = video_out.write_video(str(tmp_path / "silent.mp4"), torch.rand(5, 32, 32, 3), 25)
    with pytest.raises(InputError, match="the video input has no sound and no audio is given"):
        LoadAudioDriver().load(NO_FILE, video=VideoFromFile(silent))
    sound = {"waveform": 0.2 * torch.ones(1, 1, 16000), "sample_rate": 16000}
    framed = VideoFromComponents(Components(torch.rand(25, 4, 4, 3), sound, Fraction(25)))
    assert _comfy.video_file(framed) is None and _comfy.video_length_and_rate(framed) == (25, 25.0)
    _, d = LoadAudioDriver().load(NO_FILE, video=framed)["result"]
    assert d.num_frames == 25 and d.name == "the video's sound"


class TrimmableVideoFromFile(VideoFromFile):
    """A newer ComfyUI's VideoFromFile: it can be trimmed (as_trimmed) without a new file, so its file
    is the whole clip; ``window`` is what get_active_trim_window says (None: it has no such method)."""

    def __init__(self, path, window, components=None):
        super().__init__(path)
        self.window, self.components = window, components
        if window is not None:
            self.get_active_trim_window = lambda: self.window

    def as_trimmed(self, start_time=None, duration=None, strict_duration=False):
        raise AssertionError("not called")

    def get_components(self):
        if self.components is None:
            return super().get_components()
        return self.components


@pytest.mark.parametrize("window, from_file", [((0.0, 0.0), True), ((1.0, 0.0), False), ((0.0, 0.5), False),
                                                (None, False)])
def test_a_trimmed_videos_sound_is_not_read_from_its_whole_file(tmp_path, window, from_file):
    """A VIDEO trimmed by ComfyUI reads from the whole file: its own sound comes from its components
    (the trimmed clip's), never from the file; only a VIDEO that says it is untrimmed is read there."""
    from comfyui_lipsync.lipsync_models import video_out

    path = video_out.write_video(str(tmp_path / "clip.mp4"), torch.rand(50, 32, 32, 3), 25,
                                 0.3 * torch.randn(1, 32000), 16000)
    trimmed = Components(torch.rand(10, 32, 32, 3), {"waveform": 0.1 * torch.ones(1, 1, 6400), "sample_rate": 16000},
                         Fraction(25))
    video = TrimmableVideoFromFile(path, window, None if from_file else trimmed)
    assert (_comfy.video_file(video) == path) is from_file
    _, d = LoadAudioDriver().load(NO_FILE, video=video)["result"]
    assert d.num_frames == (50 if from_file else 10)


def _two_sound_tracks(path, frames=10):
    """An mp4 whose first sound track is silent and whose second is a 440 Hz tone (as phones write a
    second, spatial track)."""
    import av
    import numpy as np

    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt = 32, 32, "yuv420p"
        tracks = [out.add_stream("aac", rate=16000, layout="mono") for _ in range(2)]
        t = np.arange(int(16000 * frames / 25)) / 16000.0
        for k, (st, wave) in enumerate(zip(tracks, (np.zeros_like(t), 0.3 * np.sin(2 * np.pi * 440 * t)))):
            af = av.AudioFrame.from_ndarray(wave.astype(np.float32)[None], format="fltp", layout="mono")
            af.sample_rate, af.pts = 16000, 0
            for pkt in list(st.encode(af)) + list(st.encode(None)):
                out.mux(pkt)
        for i in range(frames):
            vf = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 8 * i, np.uint8), format="rgb24")
            for pkt in vs.encode(vf):
                out.mux(pkt)
        for pkt in vs.encode(None):
            out.mux(pkt)
    return str(path)


def test_a_video_with_two_sound_tracks_or_a_broken_file_is_read_as_comfyui_reads_it(tmp_path):
    """Of several sound tracks ComfyUI takes the last it can decode, so such a file's sound is not read
    by the pack but taken from the VIDEO's components; a file that is no video gives the node's message
    naming the input and the fix, in both ways of reading it."""
    from comfyui_lipsync.lipsync_models import media

    path = _two_sound_tracks(tmp_path / "two.mp4")
    assert media.audio_tracks(path) == 2
    tone = {"waveform": 0.3 * torch.ones(1, 1, 6400), "sample_rate": 16000}
    video = TrimmableVideoFromFile(path, (0.0, 0.0), Components(torch.rand(10, 32, 32, 3), tone, Fraction(25)))
    _, d = LoadAudioDriver().load(NO_FILE, video=video)["result"]
    assert d.num_frames == 10 and float(d.waveform.abs().max()) > 0.1  # the components' sound, not the silent track

    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 100)

    class BrokenFile(VideoFromFile):
        def get_components(self):
            raise OSError("Invalid data found when processing input")

    line = {"waveform": 0.2 * torch.ones(1, 1, 16000), "sample_rate": 16000}
    fix = "Re-encode the file \\(e.g. H.264 mp4\\), or load its frames with another node"
    with pytest.raises(MediaError, match=r"^LoadAudioDriver: the video input could not be read \(cannot read "
                                         rf"junk.mp4: not a media file .*\)\. {fix}"):
        LoadAudioDriver().load(NO_FILE, audio=line, video=BrokenFile(str(junk)))
    with pytest.raises(MediaError, match=rf"^LoadAudioDriver: the video input could not be decoded .*{fix}"):
        LoadAudioDriver().load(NO_FILE, video=BrokenFile(str(junk)))
