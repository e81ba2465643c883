"""LoadAudioDriver and lipsync_models.audio: hand-worked values, every container, bad files,
path escapes, GRID clips, and the node called the way ComfyUI calls it."""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import wave as wavmod

import numpy as np
import pytest
import torch

from comfyui_lipsync.lipsync_models import audio as A
from comfyui_lipsync.lipsync_models import media
from comfyui_lipsync.lipsync_models.errors import InputError, MediaError, PathError, SilentAudioError
from comfyui_lipsync.lipsync_models.types import AudioDriver
from comfyui_lipsync.nodes.load_audio_driver import NO_FILE, LoadAudioDriver

from helpers import write_wav
from testdata import GRID, GRID_CLIPS

FFMPEG = None


def ffmpeg(*args: str) -> None:
    global FFMPEG
    if FFMPEG is None:
        import imageio_ffmpeg

        FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
    subprocess.run([FFMPEG, "-nostdin", "-loglevel", "error", "-y", *args], check=True)


def sine(freq: float, seconds: float, sr: int, amp: float = 1.0) -> torch.Tensor:
    t = torch.arange(int(round(seconds * sr)), dtype=torch.float64) / sr
    return amp * torch.sin(2 * math.pi * freq * t)


def peak_freq(x: torch.Tensor, sr: int) -> float:
    x = x.double()
    spec = torch.fft.rfft(x * torch.hann_window(x.shape[0], dtype=torch.float64)).abs()
    return float(torch.fft.rfftfreq(x.shape[0], 1 / sr)[spec.argmax()])


def aud(wave: torch.Tensor, sr: int) -> dict:
    """(C, N) or (N,) -> ComfyUI AUDIO."""
    if wave.ndim == 1:
        wave = wave[None]
    return {"waveform": wave.float()[None], "sample_rate": sr}


# --- paths -----------------------------------------------------------------------------------

def test_resolve_input_file_refuses_escapes(tmp_path):
    root = tmp_path / "input"
    (root / "sub").mkdir(parents=True)
    (root / "ok.wav").write_bytes(b"x")
    (root / "sub" / "deep.wav").write_bytes(b"x")
    outside = tmp_path / "secret.wav"
    outside.write_bytes(b"x")
    (root / "link.wav").symlink_to(outside)
    (root / "inner_link.wav").symlink_to(root / "ok.wav")
    r = str(root)
    assert A.resolve_input_file("ok.wav", r, "T") == os.path.realpath(root / "ok.wav")
    assert A.resolve_input_file("sub/deep.wav", r, "T") == os.path.realpath(root / "sub" / "deep.wav")
    assert A.resolve_input_file("ok.wav [input]", r, "T").endswith("ok.wav")
    assert A.resolve_input_file("inner_link.wav", r, "T") == os.path.realpath(root / "ok.wav")
    with pytest.raises(PathError, match=r"T: '\.\./secret\.wav' leaves the input folder"):
        A.resolve_input_file("../secret.wav", r, "T")
    with pytest.raises(PathError, match=r"'sub/\.\./\.\./secret\.wav' leaves"):
        A.resolve_input_file("sub/../../secret.wav", r, "T")
    with pytest.raises(PathError, match="absolute path"):
        A.resolve_input_file(str(outside), r, "T")
    with pytest.raises(PathError, match="link that points outside"):
        A.resolve_input_file("link.wav", r, "T")
    with pytest.raises(PathError, match="file not found: 'gone.wav'"):
        A.resolve_input_file("gone.wav", r, "T")
    with pytest.raises(PathError, match="no file chosen"):
        A.resolve_input_file("", r, "T")


# --- resampling ------------------------------------------------------------------------------

@pytest.mark.parametrize("sr_in,freq", [(44100, 1000.0), (48000, 3000.0), (22050, 440.0), (8000, 1000.0), (32000, 6000.0)])
def test_resample_keeps_frequency_level_and_exact_length(sr_in, freq):
    x = sine(freq, 1.3, sr_in).float()[None]
    y = A.resample(x, sr_in, 16000)
    assert y.shape == (1, math.ceil(x.shape[1] * 16000 / sr_in))
    mid = y[0, 2000:-2000]
    assert abs(peak_freq(mid, 16000) - freq) <= 16000 / mid.shape[0] + 1e-6
    assert float(mid.pow(2).mean().sqrt()) == pytest.approx(1 / math.sqrt(2), rel=2e-3)
    # sample-exact against the continuous sine at the new instants
    t = torch.arange(y.shape[1], dtype=torch.float64) / 16000
    ref = torch.sin(2 * math.pi * freq * t)
    assert float((y[0].double() - ref)[2000:-2000].abs().max()) < 2e-3


@pytest.mark.parametrize("freq", [9000.0, 11000.0, 20000.0])
def test_resample_removes_content_above_new_nyquist(freq):
    x = sine(freq, 1.0, 44100).float()[None]  # would alias to 16000 - freq (or 4000 Hz) if not filtered
    y = A.resample(x, 44100, 16000)[0, 1000:-1000]
    level_db = 20 * math.log10(float(y.pow(2).mean().sqrt()) / (1 / math.sqrt(2)))
    assert level_db < -60, level_db


def test_resample_follows_dtype_and_chunks_agree():
    x = torch.randn(2, 30000, dtype=torch.float64)
    one = A.resample(x, 44100, 16000)
    pieces = A.resample(x, 44100, 16000, chunk=1000)
    assert one.dtype == torch.float64 and one.device == x.device
    assert torch.allclose(one, pieces, atol=1e-12)
    assert A.resample(x, 16000, 16000).equal(x)
    with pytest.raises(InputError, match="resample: wave must be a"):
        A.resample(x[0], 44100, 16000)


# --- mel -------------------------------------------------------------------------------------

def test_mel_filter_edges_by_hand():
    # Slaney: 55 Hz = 55 * 3/200 = 0.825 mel; 7600 Hz = 15 + 27 ln(7.6)/ln(6.4) = 44.4996 mel;
    # 82 edges, step (44.4996 - 0.825)/81 = 0.539193 mel -> edge 1 = 1.364193 mel = 90.946 Hz.
    edges = A.mel_edges()
    assert edges.shape == (82,)
    assert float(edges[0]) == pytest.approx(55.0, abs=1e-9)
    assert float(edges[-1]) == pytest.approx(7600.0, abs=1e-6)
    assert float(edges[1]) == pytest.approx(90.946, abs=1e-3)
    m_max = 15 + 27 * math.log(7.6) / math.log(6.4)
    step = (m_max - 0.825) / 81
    # the last edge below 1 kHz: mel < 15 -> k = floor((15 - 0.825)/step) = 26, at 26*step+0.825 mel
    k = int((15 - 0.825) / step)
    assert k == 26
    assert float(edges[k]) == pytest.approx((0.825 + k * step) * 200 / 3, abs=1e-6)
    assert float(edges[k + 1]) == pytest.approx(1000 * math.exp((0.825 + (k + 1) * step - 15) * math.log(6.4) / 27), abs=1e-6)
    fb = A.mel_filterbank()
    assert fb.shape == (80, 401)
    # band 0 spans 55 .. 90.946 .. 126.89 Hz; FFT bins every 20 Hz: 60, 80, 100, 120 Hz
    lo, mid, hi = (float(e) for e in edges[:3])
    height = 2 / (hi - lo)
    assert float(fb[0, 3]) == pytest.approx((60 - lo) / (mid - lo) * height, rel=1e-9)
    assert float(fb[0, 5]) == pytest.approx((hi - 100) / (hi - mid) * height, rel=1e-9)
    assert float(fb[0, 2]) == 0 and float(fb[0, 7]) == 0
    # area-normalised: wide bands integrate to 1 (bin width 20 Hz)
    assert torch.allclose(fb[40:].sum(1) * 20, torch.ones(40, dtype=torch.float64), atol=0.02)


def test_log_mel_of_a_bin_centred_tone_by_hand():
    # 1000 Hz = FFT bin 50, amplitude 0.5. Periodic Hann over 800 samples: |X[50]| = a*N/4 = 100,
    # |X[49]| = |X[51]| = a*N/8 = 50; preemphasis scales by |1 - 0.97 e^{-jw}| at w = 2 pi 1000/16000.
    a, f = 0.5, 1000.0
    x = sine(f, 1.0, 16000, a).float()
    mel = A.log_mel(x)
    assert mel.shape == (80, 1 + 16000 // 200)
    w = 2 * math.pi * f / 16000
    g = abs(1 - 0.97 * complex(math.cos(w), -math.sin(w)))
    fb = A.mel_filterbank()
    mag = torch.zeros(401, dtype=torch.float64)
    mag[49], mag[50], mag[51] = 50 * g, 100 * g, 50 * g
    bands = fb @ mag
    db = 20 * torch.log10(bands.clamp_min(1e-5)) - 20
    want = (8 * (db + 100) / 100 - 4).clamp(-4, 4)
    got = mel[:, 40].double()
    top = int(want.argmax())
    assert int(got.argmax()) == top
    assert float(got[top]) == pytest.approx(float(want[top]), abs=0.02)
    near = want > -3.5
    assert torch.allclose(got[near], want[near], atol=0.05)
    # silence is the floor everywhere
    assert A.log_mel(torch.zeros(4000)).eq(-4).all()


def test_log_mel_chunks_agree_and_frame_count():
    x = torch.randn(16000 * 2) * 0.1
    one = A.log_mel(x)
    assert one.shape == (80, 161)
    assert torch.allclose(one, A.log_mel(x, chunk_frames=7), atol=1e-4)
    assert A.log_mel(torch.zeros(100)).shape == (80, 1)


def test_mel_window_starts_by_hand():
    assert A.mel_starts(25, 11).tolist() == [0, 3, 6, 9, 12, 16, 19, 22, 25, 28, 32]
    assert A.mel_starts(30, 11).tolist() == [0, 2, 5, 8, 10, 13, 16, 18, 21, 24, 26]
    mel = torch.arange(40, dtype=torch.float32)[None].repeat(80, 1)  # value = mel frame index
    win = A.mel_windows(mel, 25, 10)
    assert win.shape == (10, 80, 16)
    assert win[5, 0].tolist() == list(range(16, 32))
    assert win[7, 17].tolist() == list(range(22, 38))
    # frame 9 starts at 28: 28..39 exist, the last 4 steps are silence (-4)
    assert win[9, 3].tolist() == list(range(28, 40)) + [-4.0] * 4
    win30 = A.mel_windows(mel, 30, 4)
    assert win30[:, 0, 0].tolist() == [0, 2, 5, 8]


def _numpy_log_mel(x: np.ndarray) -> np.ndarray:
    """Wav2Lip's log-mel written again with numpy and scipy, from its recipe (hparams.py/audio.py):
    preemphasis 0.97, reflect-padded centred frames of 800 every 200, periodic Hann, |rfft|, a
    Slaney mel filterbank 55-7600 Hz built here from the mel-scale formula, 20 log10(max(1e-5, .))
    - 20 dB, mapped from [-100, 0] dB to [-4, 4]. An independent second implementation."""
    from scipy.signal import get_window

    y = np.append(x[:1], x[1:] - 0.97 * x[:-1])
    yp = np.pad(y, 400, mode="reflect")
    n = 1 + len(y) // 200
    idx = np.arange(800)[None] + 200 * np.arange(n)[:, None]
    mag = np.abs(np.fft.rfft(yp[idx] * get_window("hann", 800, fftbins=True), axis=1))  # (n, 401)

    def hz2mel(f):
        return 3 * f / 200 if f < 1000 else 15 + 27 * math.log(f / 1000) / math.log(6.4)

    m = np.linspace(hz2mel(55.0), hz2mel(7600.0), 82)
    edges = np.where(m < 15, 200 * m / 3, 1000 * np.exp((m - 15) * math.log(6.4) / 27))
    freqs = np.arange(401) * 20.0
    fb = np.zeros((80, 401))
    for k in range(80):
        lo, mid, hi = edges[k:k + 3]
        fb[k] = np.maximum(0, np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid))) * 2 / (hi - lo)
    db = 20 * np.log10(np.maximum(1e-5, mag @ fb.T)) - 20
    return np.clip(8 * (db + 100) / 100 - 4, -4, 4).T


@pytest.mark.parametrize("n", [801, 3200, 16123])
def test_log_mel_matches_a_numpy_implementation(device, dtype, n):
    """kornia's recipe for the mel features: shapes at several lengths, device follows the input
    (the result is float32 whatever the input dtype, as documented), values against the
    independent numpy implementation above."""
    g = torch.Generator().manual_seed(n)
    x = torch.randn(n, generator=g, dtype=torch.float64) * 0.1
    x[n // 3: n // 2] = 0.0  # a silent stretch: the floor
    mel = A.log_mel(x.to(device, dtype))
    assert mel.shape == (80, 1 + n // 200) and mel.device.type == device.type and mel.dtype == torch.float32
    want = _numpy_log_mel(x.numpy())
    assert np.abs(mel.double().cpu().numpy() - want).max() < 2e-3
    wins = A.mel_windows(mel, 25.0, 4)
    assert wins.shape == (4, 80, 16) and wins.device.type == device.type


def test_frame_loudness_against_numpy(device, dtype):
    x = torch.randn(16000, generator=torch.Generator().manual_seed(5), dtype=torch.float64) * 0.3
    loud = A.frame_loudness(x.to(device, dtype), 25, 30)  # 30 frames of 640 samples; 5 past the end
    assert loud.shape == (30,) and loud.device.type == device.type and loud.dtype == torch.float32
    xn = np.pad(x.numpy(), (0, 30 * 640 - 16000)).reshape(30, 640)
    want = 10 * np.log10(np.maximum((xn ** 2).mean(1), 1e-10))
    assert np.allclose(loud.double().cpu().numpy(), want, atol=1e-3)


def test_mel_ops_raise_typed_errors_naming_the_input():
    with pytest.raises(InputError, match=r"log_mel: wave16k must be a \(N,\) tensor, got \(2, 100\)"):
        A.log_mel(torch.zeros(2, 100))
    with pytest.raises(InputError, match="log_mel: wave16k must be a .* got list"):
        A.log_mel([0.0] * 100)
    with pytest.raises(InputError, match=r"mel_windows: mel must be a \(80, M\) tensor"):
        A.mel_windows(torch.zeros(1, 80, 10), 25.0, 3)
    with pytest.raises(InputError, match="mel_windows: fps must be positive"):
        A.mel_windows(torch.zeros(80, 10), 0.0, 3)
    with pytest.raises(InputError, match=r"resample: wave must be a \(C, N\) tensor"):
        A.resample(torch.zeros(100), 44100, 16000)


def test_audio_to_16k_serves_the_nodes():
    """The one AUDIO-dict reader of ExtractPhonemes: any channel count and rate -> (N,) mono at 16 kHz,
    integer PCM scaled to [-1, 1), bad dicts refused naming the node."""
    tone = sine(440, 0.5, 44100, 0.5).float()
    stereo = torch.stack([tone, torch.zeros_like(tone)])[None]  # (1, 2, N): the mix is half the tone
    out = A.audio_to_16k({"waveform": stereo, "sample_rate": 44100}, "ExtractPhonemes")
    assert out.shape == (8000,) and out.dtype == torch.float32
    assert abs(peak_freq(out, 16000) - 440) < 5 and float(out.abs().max()) == pytest.approx(0.25, abs=0.01)
    pcm = (tone[None] * 32767).to(torch.int16)
    assert float(A.audio_to_16k({"waveform": pcm, "sample_rate": 44100}, "X").abs().max()) == pytest.approx(0.5, abs=0.01)
    for bad, msg in (({"waveform": torch.zeros(1, 1, 0), "sample_rate": 16000}, "empty"),
                     ({"waveform": torch.zeros(2, 1, 100), "sample_rate": 16000}, "batch of 2"),
                     ({"waveform": torch.zeros(1, 100), "sample_rate": "x"}, "sample_rate must be a number"),
                     ({"wave": 1}, "AUDIO dict")):
        with pytest.raises(InputError, match=f"ExtractPhonemes: .*{msg}"):
            A.audio_to_16k(bad, "ExtractPhonemes")


# --- loudness and voicing --------------------------------------------------------------------

def test_frame_loudness_by_hand():
    sr = 16000
    square = torch.ones(sr)
    square[1::2] = -1
    q = sine(400, 1, sr, 0.1).float()
    x = torch.cat([square, sine(400, 1, sr).float(), q, torch.zeros(sr)])
    loud = A.frame_loudness(x, 25, 100)
    assert loud.shape == (100,)
    assert torch.allclose(loud[:25], torch.zeros(25), atol=1e-4)  # square wave: 0 dBFS
    assert torch.allclose(loud[25:50], torch.full((25,), -3.0103), atol=1e-3)  # 640 samples = 16 periods
    assert torch.allclose(loud[50:75], torch.full((25,), -23.0103), atol=1e-3)
    assert loud[75:].eq(-100).all()
    # past the end counts as silence
    assert A.frame_loudness(x[:sr], 25, 30)[25:].eq(-100).all()


def test_frame_voicing_tone_noise_silence():
    sr = 16000
    g = torch.Generator().manual_seed(0)
    t = torch.arange(sr, dtype=torch.float64) / sr
    voiced = sum(torch.sin(2 * math.pi * 150 * k * t) / k for k in range(1, 8)).float() * 0.1
    noise = torch.randn(sr, generator=g) * 0.1
    x = torch.cat([torch.zeros(sr), voiced, noise])
    v = A.frame_voicing(x, 25, 75)
    assert v.shape == (75,) and float(v.min()) >= 0 and float(v.max()) <= 1
    assert v[:23].eq(0).all()
    assert float(v[27:48].min()) > 0.9
    assert float(v[52:73].max()) < 0.3


def test_demo_line_asset():
    path = A.demo_audio_path()
    assert os.path.getsize(path) < 150_000
    assert "moon" in A.demo_text().lower()
    with wavmod.open(path) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        assert 2.5 <= w.getnframes() / 16000 <= 3.5
    d = A.make_driver(A.load_audio_file(path), 25, None, name="demo_line.wav")
    assert d.num_frames == math.ceil(d.waveform.shape[0] / 16000 * 25 - 1e-6)
    assert float(d.voicing.max()) == 1.0 and float(d.voicing[:3].max()) == 0.0


# --- make_driver -----------------------------------------------------------------------------

def test_make_driver_exact_length_cut_and_pad():
    x = torch.stack([sine(300, 2.0, 44100), sine(500, 2.0, 44100)]).float()
    d = A.make_driver(aud(x, 44100), 30, 47)  # 47/30 s = 1.5667 s: a cut
    assert isinstance(d, AudioDriver)
    assert d.waveform.shape == (round(47 / 30 * 16000),) == (25067,)
    assert d.audio["waveform"].shape == (1, 2, round(47 / 30 * 44100)) == (1, 2, 69090)
    assert d.audio["sample_rate"] == 44100
    assert d.mel.shape == (47, 80, 16) and d.loudness.shape == (47,) and d.voicing.shape == (47,)
    assert torch.equal(d.audio["waveform"][0], x[:, :69090])  # full quality untouched
    p = A.make_driver(aud(x, 44100), 25, 75)  # 3 s: 1 s of silence padded
    assert p.waveform.shape == (48000,)
    assert p.audio["waveform"].shape == (1, 2, 132300)
    assert p.audio["waveform"][0, :, 88200:].eq(0).all()
    # mono mix of two unit sines at different pitches: RMS sqrt(2 * 0.5 / 4) = 0.5 -> -6.02 dBFS
    assert torch.allclose(p.loudness[1:49], torch.full((48,), -6.0206), atol=0.01)
    assert p.loudness[51:].eq(-100).all()
    assert p.mel[60].eq(-4).all()
    auto = A.make_driver(aud(x[:, :44100 + 100], 44100), 25, None)  # 1.0023 s -> 26 frames
    assert auto.num_frames == 26


def test_make_driver_start_and_duration_move_the_audio():
    sr = 16000
    x = torch.zeros(sr * 3)
    x[int(1.5 * sr):int(1.5 * sr) + 160] = 0.8  # a 10 ms click at 1.5 s
    d = A.make_driver(aud(x, sr), 25, None, start=1.0, duration=1.0)
    assert d.num_frames == 25
    assert int(d.waveform.abs().argmax()) == int(0.5 * sr)
    assert int(d.loudness.argmax()) == 12  # 0.5 s at 25 fps
    with pytest.raises(MediaError, match=r"start_offset 4.00 s is past the end of audio \(3.00 s long\)"):
        A.make_driver(aud(x, sr), 25, None, start=4.0)
    with pytest.raises(SilentAudioError, match=r"clip\.wav is silent between 0\.00 s and 1\.00 s"):
        A.make_driver(aud(x, sr), 25, None, duration=1.0, name="clip.wav")


def test_make_driver_mono_mix_normalize_and_errors():
    sr = 22050
    x = torch.stack([sine(200, 1.0, sr, 0.01), sine(200, 1.0, sr, 0.01)]).float()  # -43 dBFS RMS
    d = A.make_driver(aud(x, sr), 25, 25, normalize=True)
    rms_db = 20 * math.log10(float(d.audio["waveform"].pow(2).mean().sqrt()))
    assert rms_db == pytest.approx(-23.0, abs=0.05)
    assert float(d.loudness[5:20].mean()) == pytest.approx(-23.0, abs=0.1)
    opposite = torch.stack([sine(200, 1.0, sr, 0.5), -sine(200, 1.0, sr, 0.5)]).float()
    with pytest.raises(SilentAudioError, match="the 2 channels of st.wav cancel out when mixed to mono"):
        A.make_driver(aud(opposite, sr), 25, 25, name="st.wav")
    peaky = sine(200, 1.0, sr, 0.9).float()
    assert 20 * math.log10(float(A.make_driver(aud(peaky, sr), 25, 25, normalize=True).audio["waveform"].abs().max())) <= -0.99
    with pytest.raises(SilentAudioError, match=r"audio is silent \(every sample is zero\)"):
        A.make_driver(aud(torch.zeros(sr), sr), 25, None)
    with pytest.raises(InputError, match="batch of 2 clips"):
        A.make_driver({"waveform": torch.zeros(2, 1, 100), "sample_rate": sr}, 25, None)
    with pytest.raises(InputError, match="fps must be between 1 and 240 frames per second, got 0"):
        A.make_driver(aud(x, sr), 0, None)
    with pytest.raises(InputError, match="AUDIO dict"):
        A.make_driver(torch.zeros(10), 25, None)


def test_make_driver_device_follows_argument():
    x = sine(200, 0.5, 16000, 0.3).float()
    d = A.make_driver(aud(x, 16000), 25, None, device="cpu")
    for t in (d.waveform, d.mel, d.loudness, d.voicing):
        assert t.device.type == "cpu" and t.dtype == torch.float32


# --- containers and codecs -------------------------------------------------------------------

SRC_SECONDS = 2.0
# name -> (ffmpeg output options, sample rate, has video)
FORMATS = {
    "tone.wav": (["-c:a", "pcm_s16le"], 44100, False),
    "tone_f32.wav": (["-c:a", "pcm_f32le"], 22050, False),
    "tone.mp3": (["-c:a", "libmp3lame", "-b:a", "128k"], 44100, False),
    "tone.flac": (["-c:a", "flac"], 48000, False),
    "tone.ogg": (["-c:a", "libvorbis"], 44100, False),
    "tone.opus": (["-c:a", "libopus"], 48000, False),
    "tone.m4a": (["-c:a", "aac", "-b:a", "128k"], 44100, False),
    "tone.aac": (["-c:a", "aac", "-b:a", "128k", "-f", "adts"], 32000, False),
    "clip.mp4": (["-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac"], 48000, True),
    "clip.mov": (["-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "pcm_s16le"], 44100, True),
    "clip.mkv": (["-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "libvorbis"], 44100, True),
    "clip.webm": (["-c:v", "libvpx", "-b:v", "200k", "-c:a", "libopus"], 48000, True),
    "clip.mpg": (["-c:v", "mpeg1video", "-c:a", "mp2", "-b:a", "192k"], 44100, True),
}
LEFT_HZ, RIGHT_HZ = 440.0, 1000.0


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory):
    """One stereo file per container/codec: 440 Hz on the left, 1 kHz on the right, 2 s; plus
    broken ones. Stereo with distinct tones catches planar/packed mix-ups and swapped channels."""
    d = tmp_path_factory.mktemp("media")
    for name, (opts, sr, video) in FORMATS.items():
        args = ["-f", "lavfi", "-i", f"sine=f={LEFT_HZ}:r={sr}:d={SRC_SECONDS}",
                "-f", "lavfi", "-i", f"sine=f={RIGHT_HZ}:r={sr}:d={SRC_SECONDS}"]
        if video:
            args += ["-f", "lavfi", "-i", f"color=c=gray:s=64x48:r=25:d={SRC_SECONDS}"]
        args += ["-filter_complex", "[0:a][1:a]join=inputs=2:channel_layout=stereo[a]", "-map", "[a]"]
        if video:
            args += ["-map", "2:v"]
        ffmpeg(*args, *opts, "-ar", str(sr), str(d / name))
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:s=64x48:r=25:d=1", "-c:v", "libx264", "-pix_fmt", "yuv420p",
           str(d / "video_only.mp4"))
    (d / "empty.wav").write_bytes(b"")
    rng = np.random.default_rng(1)
    (d / "garbage.mp3").write_bytes(rng.integers(0, 256, 20000, dtype=np.uint8).tobytes())
    (d / "notes.wav").write_text("this is not audio\n" * 50)
    raw = (d / "tone.wav").read_bytes()
    (d / "truncated.wav").write_bytes(raw[:44])  # header only, no samples
    write_wav(d / "silent.wav", np.zeros(16000), 16000)
    write_wav(d / "hiss.wav", rng.normal(0, 10 ** (-95 / 20), 16000), 16000)  # peaks near -80 dBFS: below -70
    return d


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_every_format_decodes_channels_in_order(media_dir, name):
    _, sr, _ = FORMATS[name]
    a = A.load_audio_file(str(media_dir / name))
    wave = a["waveform"]
    assert a["sample_rate"] == sr
    assert wave.shape[:2] == (1, 2) and wave.dtype == torch.float32
    n = wave.shape[2] / sr
    assert abs(n - SRC_SECONDS) < 0.07, n  # codec priming/padding is at most a frame or two
    mid = wave[0, :, int(0.3 * sr):int(1.7 * sr)]
    assert abs(peak_freq(mid[0], sr) - LEFT_HZ) < 2 and abs(peak_freq(mid[1], sr) - RIGHT_HZ) < 2
    assert float(mid.abs().max()) == pytest.approx(0.125, abs=0.01)  # lavfi sine amplitude 1/8
    d = A.make_driver(a, 25, 50, name=name)
    assert d.waveform.shape == (32000,) and d.mel.shape == (50, 80, 16)


def test_read_range_matches_full_decode(media_dir):
    path = str(media_dir / "tone.wav")
    full, sr = media.read_audio(path)
    part = A.load_audio_file(path, start=0.5, duration=0.75)["waveform"][0]
    assert part.shape == (2, int(0.75 * sr))
    assert torch.equal(part, full[:, int(0.5 * sr):int(1.25 * sr)])
    mp3_full, msr = media.read_audio(str(media_dir / "tone.mp3"))
    mp3_part = A.load_audio_file(str(media_dir / "tone.mp3"), start=1.0, duration=0.5)["waveform"][0]
    assert mp3_part.shape == (2, int(0.5 * msr))
    assert torch.allclose(mp3_part, mp3_full[:, msr:msr + mp3_part.shape[1]], atol=1e-4)


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_seeking_gives_the_samples_of_a_full_decode(media_dir, name):
    """The seek path (used past 30 s) forced on short files: pre-roll and the stream's first
    timestamp make a part equal the slice of a decode from the start. Matroska/WebM store
    millisecond timestamps, so there it may sit up to 1 ms off."""
    path = str(media_dir / name)
    full, sr = media.read_audio(path)
    tol = int(0.001 * sr) + 1 if name.endswith((".mkv", ".webm")) else 0
    for start in (0.3, 1.3):
        part, _ = media.read_audio(path, start=start, duration=0.4, seek_after=0.0)
        assert part.shape == (2, int(round(0.4 * sr)))
        first = int(round(start * sr))
        errs = {lag: float((part - full[:, first + lag:first + lag + part.shape[1]]).abs().max())
                for lag in range(-tol, tol + 1)}
        assert min(errs.values()) < 2e-4, (start, min(errs.items(), key=lambda kv: kv[1]))


def test_long_reads_need_a_duration(media_dir):
    with pytest.raises(InputError, match=r"tone\.wav is 0\.0 min long; reading more than 0 min at once is refused"):
        A.load_audio_file(str(media_dir / "tone.wav"), max_seconds=1.0)
    a = A.load_audio_file(str(media_dir / "tone.wav"), duration=1.0, max_seconds=1.0)
    assert a["waveform"].shape[-1] == 44100


@pytest.mark.parametrize("name,message", [
    ("empty.wav", r"empty\.wav is empty \(0 bytes\)"),
    ("garbage.mp3", r"cannot (read|decode the audio of) garbage\.mp3"),
    ("notes.wav", r"cannot read notes\.wav: not a media file or corrupt"),
    ("truncated.wav", r"cannot read truncated\.wav: not a media file or corrupt"),
    ("video_only.mp4", r"video_only\.mp4 has no audio track"),
    ("silent.wav", r"silent\.wav is silent \(every sample is zero\)"),
    ("hiss.wav", r"hiss\.wav is silent \(peak -[789]\d\.\d dBFS, below -70 dBFS\)"),
])
def test_bad_files_name_the_file_through_the_node(media_dir, monkeypatch, name, message):
    monkeypatch.setenv("LIPSYNC_INPUT_DIR", str(media_dir))
    with pytest.raises((MediaError, SilentAudioError), match="LoadAudioDriver: .*" + message) as e:
        LoadAudioDriver().load(name)
    fix = "Choose the file with the spoken line" if name in ("silent.wav", "hiss.wav") else "re-export this one"
    assert fix in str(e.value) and str(media_dir) not in str(e.value)  # the fix; the name, not the folder
    if name != "silent.wav" and name != "hiss.wav":
        assert LoadAudioDriver.VALIDATE_INPUTS(name) is True  # exists: only decoding reveals the problem


def test_node_messages_give_file_times(tmp_path, monkeypatch):
    monkeypatch.setenv("LIPSYNC_INPUT_DIR", str(tmp_path))
    sr = 16000
    x = np.concatenate([sine(300, 1.0, sr, 0.5).numpy(), np.zeros(2 * sr)])
    write_wav(tmp_path / "tail.wav", x, sr)
    with pytest.raises(SilentAudioError, match=r"tail\.wav is silent between 1\.50 s and 2\.50 s"):
        LoadAudioDriver().load(**defaults(audio_file="tail.wav", start_offset=1.5, frame_count=25))
    with pytest.raises(MediaError, match=r"tail\.wav holds no audio samples in the chosen range \(start 5\.00 s\)"):
        LoadAudioDriver().load(**defaults(audio_file="tail.wav", start_offset=5.0))
    audio, driver = LoadAudioDriver().load(**defaults(audio_file="tail.wav", start_offset=0.5, frame_count=25))["result"]
    assert driver.loudness[:12].gt(-10).all() and driver.loudness[13:].eq(-100).all()


# --- real speech (GRID) ----------------------------------------------------------------------

def test_grid_clip_gives_75_frames_in_sync(grid_dir):
    a = A.load_audio_file(str(grid_dir / "swwp2s.mpg"))
    d = A.make_driver(a, 25, 75, name="swwp2s.mpg")
    assert d.num_frames == 75 and d.waveform.shape == (48000,) and d.mel.shape == (75, 80, 16)
    assert d.audio["sample_rate"] == a["sample_rate"]
    # swwp2s.align (units of 1/25000 s): silence to 12250 (0.49 s), "white" 19250-27250, silence from 55250
    assert float(d.loudness[:10].max()) < float(d.loudness[19:27].min()) - 10
    assert float(d.voicing[:10].max()) < 0.1
    assert float(d.voicing[20:26].mean()) > 0.7
    assert float(d.voicing[60:].mean()) < 0.15
    # mel energy follows the words: speech windows well above the leading silence
    assert float(d.mel[20:26].mean()) > float(d.mel[:8].mean()) + 1.0


@pytest.mark.parametrize("clip", GRID_CLIPS)
def test_every_grid_clip_via_node_with_images(grid_dir, monkeypatch, tmp_path, clip):
    shutil.copy(grid_dir / f"{clip}.mpg", tmp_path / f"{clip}.mpg")
    monkeypatch.setenv("LIPSYNC_INPUT_DIR", str(tmp_path))
    images = torch.zeros(75, 8, 8, 3)
    out = LoadAudioDriver().load(f"{clip}.mpg", fps=25.0, images=images)
    audio, driver = out["result"]
    assert driver.num_frames == 75 and driver.fps == 25.0
    assert audio["waveform"].shape[-1] == round(3.0 * audio["sample_rate"])
    assert "75 frames at 25 fps" in out["ui"]["text"][0]
    assert float(driver.voicing.max()) > 0.9 and float(driver.loudness.max()) > -30


# --- the node as ComfyUI calls it ------------------------------------------------------------

def defaults(**over):
    spec = LoadAudioDriver.INPUT_TYPES()
    kw = {k: v[1]["default"] for k, v in spec["required"].items() if "default" in v[1]}
    kw.update(over)
    return kw


def test_node_defaults_on_a_file(media_dir, monkeypatch):
    monkeypatch.setenv("LIPSYNC_INPUT_DIR", str(media_dir))
    spec = LoadAudioDriver.INPUT_TYPES()
    choices, opts = spec["required"]["audio_file"]
    assert opts["audio_upload"] is True
    assert "clip.mkv" in choices and "tone.opus" in choices and "clip.mpg" in choices
    out = LoadAudioDriver().load(**defaults(audio_file="tone.m4a"))
    audio, driver = out["result"]
    assert driver.num_frames == math.ceil(audio["waveform"].shape[-1] / 44100 * 25 - 1e-6)
    assert audio["waveform"].device.type == "cpu"
    # the driver's tensors are computed on the node's compute device (CUDA when present), the AUDIO
    # output goes back to the intermediate device, as ComfyUI expects
    from comfyui_lipsync.nodes import _comfy

    for t in (driver.waveform, driver.mel, driver.loudness, driver.voicing):
        assert t.device.type == _comfy.compute_device().type
    assert audio["waveform"].device.type == _comfy.intermediate_device().type
    text = out["ui"]["text"][0]
    assert text.startswith("tone.m4a: ") and "44100 Hz x 2 ch" in text and "dBFS" in text


def test_node_frame_count_offset_and_duration(media_dir, monkeypatch):
    monkeypatch.setenv("LIPSYNC_INPUT_DIR", str(media_dir))
    node = LoadAudioDriver()
    audio, driver = node.load(**defaults(audio_file="tone.wav", fps=30.0, frame_count=90))["result"]
    assert driver.num_frames == 90 and audio["waveform"].shape == (1, 2, 132300)  # 3 s: 1 s padded
    assert audio["waveform"][0, :, 88200:].eq(0).all()
    audio, driver = node.load(**defaults(audio_file="tone.wav", frame_count=10, start_offset=0.5,
                                         images=torch.zeros(20, 4, 4, 3)))["result"]
    assert driver.num_frames == 10  # frame_count wins over the image count
    full, _ = media.read_audio(str(media_dir / "tone.wav"))
    assert torch.equal(audio["waveform"][0], full[:, 22050:22050 + 17640])
    audio, driver = node.load(**defaults(audio_file="tone.wav", duration=0.5, frame_count=25))["result"]
    assert driver.num_frames == 25
    assert audio["waveform"][0, :, 22050:].eq(0).all() and float(audio["waveform"][0, :, :22050].abs().max()) > 0.1


def test_node_audio_socket_wins_and_empty_input_folder(tmp_path, monkeypatch):
    empty = tmp_path / "input"
    empty.mkdir()
    monkeypatch.setenv("LIPSYNC_INPUT_DIR", str(empty))
    choices = LoadAudioDriver.INPUT_TYPES()["required"]["audio_file"][0]
    assert choices == [NO_FILE]
    assert LoadAudioDriver.VALIDATE_INPUTS(NO_FILE) is True
    assert LoadAudioDriver.IS_CHANGED(NO_FILE) == ""
    with pytest.raises(InputError, match="LoadAudioDriver: no audio given: the input folder has no audio"):
        LoadAudioDriver().load(**defaults(audio_file=NO_FILE))
    x = sine(220, 1.0, 24000, 0.3).float()
    audio, driver = LoadAudioDriver().load(**defaults(audio_file=NO_FILE, audio=aud(x, 24000), start_offset=0.2))["result"]
    assert driver.num_frames == 20 and audio["sample_rate"] == 24000
    assert driver.name == "the audio input"


def test_node_validate_and_is_changed(tmp_path, monkeypatch):
    root = tmp_path / "input"
    root.mkdir()
    monkeypatch.setenv("LIPSYNC_INPUT_DIR", str(root))
    write_wav(root / "a.wav", sine(300, 0.5, 16000, 0.5).numpy(), 16000)
    (tmp_path / "outside.wav").write_bytes((root / "a.wav").read_bytes())
    (root / "out.wav").symlink_to(tmp_path / "outside.wav")
    assert LoadAudioDriver.VALIDATE_INPUTS("a.wav") is True
    assert "leaves the input folder" in LoadAudioDriver.VALIDATE_INPUTS("../outside.wav")
    assert "points outside" in LoadAudioDriver.VALIDATE_INPUTS("out.wav")
    assert "file not found: 'b.wav'" in LoadAudioDriver.VALIDATE_INPUTS("b.wav")
    with pytest.raises(PathError, match="absolute path"):
        LoadAudioDriver().load(**defaults(audio_file=str(root / "a.wav")))
    # ComfyUI passes the types of linked inputs: a connected AUDIO wins over a missing file
    assert LoadAudioDriver.VALIDATE_INPUTS("b.wav", input_types={"audio": "AUDIO"}) is True
    assert LoadAudioDriver.VALIDATE_INPUTS("a.wav", input_types={"images": "IMAGE"}) is True
    assert "the images input takes IMAGE, but an output of type MASK" in LoadAudioDriver.VALIDATE_INPUTS(
        "a.wav", input_types={"images": "MASK"})
    assert "takes AUDIO, but an output of type LIPSYNC_DRIVER" in LoadAudioDriver.VALIDATE_INPUTS(
        NO_FILE, input_types={"audio": "LIPSYNC_DRIVER"})
    assert "the fps input takes FLOAT, but an output of type INT" in LoadAudioDriver.VALIDATE_INPUTS(
        "a.wav", input_types={"fps": "INT"})
    h1 = LoadAudioDriver.IS_CHANGED("a.wav")
    write_wav(root / "a.wav", sine(300, 0.5, 16000, 0.4).numpy(), 16000)
    h2 = LoadAudioDriver.IS_CHANGED("a.wav")
    assert h1 != h2 and len(h1) == 64


# --- bad and unusual audio (issue 15's sweep) --------------------------------------------------

def test_a_wav_cut_short_mid_data_gives_what_it_holds(tmp_path, monkeypatch):
    monkeypatch.setenv("LIPSYNC_INPUT_DIR", str(tmp_path))
    write_wav(tmp_path / "full.wav", sine(300, 2.0, 16000, 0.5).numpy(), 16000)
    raw = (tmp_path / "full.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(raw[:44 + 2 * 16000])  # a copy that stopped after 1 s of 2
    audio, driver = LoadAudioDriver().load(**defaults(audio_file="cut.wav"))["result"]
    assert driver.num_frames == 25 and audio["waveform"].shape[-1] == 16000


@pytest.mark.parametrize("bad, counts", [
    (torch.tensor([float("nan")] * 2 + [float("inf")]), "3 non-finite samples (2 NaN, 1 infinite)"),
    (torch.tensor([float("-inf")]), "1 non-finite samples (0 NaN, 1 infinite)"),
])
def test_non_finite_samples_stop_the_first_node(bad, counts):
    from comfyui_lipsync.nodes.extract_phonemes import ExtractPhonemes
    from comfyui_lipsync.nodes.sync_score import SyncScore

    x = sine(200, 1.0, 16000, 0.3).float().repeat(2, 1)
    x[1, 4000:4000 + bad.numel()] = bad
    expect = "{}: the audio input holds " + re.escape(counts) + " of 32000. Fix the node or file that made it"
    with pytest.raises(InputError, match="^" + expect.format("LoadAudioDriver")):
        LoadAudioDriver().load(**defaults(audio_file=NO_FILE, audio=aud(x, 16000)))
    with pytest.raises(InputError, match="^" + expect.format("ExtractPhonemes")):
        ExtractPhonemes().extract(audio=aud(x, 16000))
    # SyncScore given the raw AUDIO (no driver) names them too, instead of "too little speech"
    with pytest.raises(InputError, match=r"^SyncScore: the audio input holds " + re.escape(counts)):
        SyncScore().run(torch.rand(25, 32, 32, 3), fps=25.0, audio=aud(x, 16000))


@pytest.mark.parametrize("sr", [8000, 11025, 22050, 44100, 48000, 96000])
@pytest.mark.parametrize("channels", [1, 2, 6, 8])
def test_any_rate_from_8_to_96_khz_and_1_to_8_channels(sr, channels):
    # each channel its own tone level; the mono mix must carry the 440 Hz line at 16 kHz
    x = torch.stack([sine(440, 1.0, sr, 0.1 + 0.05 * c).float() for c in range(channels)])
    audio, driver = LoadAudioDriver().load(**defaults(audio_file=NO_FILE, audio=aud(x, sr), fps=30.0))["result"]
    assert audio["sample_rate"] == sr and audio["waveform"].shape == (1, channels, sr)
    assert torch.equal(audio["waveform"][0], x)  # full quality: every channel untouched
    assert driver.num_frames == 30 and driver.waveform.shape == (16000,)
    assert abs(peak_freq(driver.waveform, 16000) - 440.0) < 2.0
    level = 20 * math.log10(float(driver.waveform[2000:-2000].abs().max()))
    assert level == pytest.approx(20 * math.log10(0.1 + 0.025 * (channels - 1)), abs=0.2)  # mean of the amplitudes


def test_multichannel_files_at_the_rate_extremes(tmp_path, monkeypatch):
    monkeypatch.setenv("LIPSYNC_INPUT_DIR", str(tmp_path))
    for sr, ch in ((8000, 1), (96000, 8)):
        data = np.stack([sine(440, 1.0, sr, 0.3).numpy()] * ch, axis=1)
        write_wav(tmp_path / f"t{sr}.wav", data, sr)
        audio, driver = LoadAudioDriver().load(**defaults(audio_file=f"t{sr}.wav"))["result"]
        assert audio["waveform"].shape == (1, ch, sr) and audio["sample_rate"] == sr and driver.num_frames == 25


def test_empty_and_silent_audio_inputs_name_the_node_input_and_fix():
    with pytest.raises(MediaError, match=r"^LoadAudioDriver: the audio input is empty \(0 samples\)\. Choose"):
        LoadAudioDriver().load(**defaults(audio_file=NO_FILE, audio=aud(torch.zeros(2, 0), 44100)))
    with pytest.raises(SilentAudioError, match=r"^LoadAudioDriver: the audio input is silent \(every sample is "
                                               r"zero\)\. Choose the file with the spoken line"):
        LoadAudioDriver().load(**defaults(audio_file=NO_FILE, audio=aud(torch.zeros(2, 48000), 48000)))


@pytest.mark.parametrize("fps", [0.0, -25.0, 1000.0, 0.5, 240.5, float("nan")])
def test_fps_outside_1_to_240_names_the_bounds(fps):
    x = sine(200, 1.0, 16000, 0.3).float()
    with pytest.raises(InputError, match=r"^LoadAudioDriver: fps must be between 1 and 240 frames per second, "
                                         rf"got {fps:g}\. Use the video's frame rate"):
        LoadAudioDriver().load(**defaults(audio_file=NO_FILE, audio=aud(x, 16000), fps=fps))


@pytest.mark.parametrize("fps", [1.0, 240.0])
def test_fps_bounds_themselves_work(fps):
    x = sine(200, 2.0, 16000, 0.3).float()
    _, driver = LoadAudioDriver().load(**defaults(audio_file=NO_FILE, audio=aud(x, 16000), fps=fps))["result"]
    assert driver.num_frames == int(2 * fps) and driver.mel.shape == (int(2 * fps), 80, 16)
