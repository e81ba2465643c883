"""video_out: mp4 written in memory with PyAV, read back to check pixels, audio timing and tags."""

import math
import re
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from comfyui_lipsync.lipsync_models import media, video_out
from comfyui_lipsync.lipsync_models.errors import InputError

ROOT = Path(__file__).resolve().parents[1]


def _gradient(n=30, h=48, w=64):
    """Smooth frames (codec-friendly) that change over time: (n, h, w, 3) float in [0, 1]."""
    y = torch.linspace(0, 1, h)[:, None].expand(h, w)
    x = torch.linspace(0, 1, w)[None, :].expand(h, w)
    t = torch.linspace(0, 1, n)[:, None, None]
    return torch.stack([x.expand(n, h, w), y.expand(n, h, w), (0.2 + 0.6 * t).expand(n, h, w)], dim=-1)


def _click(sr, seconds=2.0, at=1.0, channels=1):
    """Silence with a 10 ms 1 kHz burst starting at ``at`` seconds: (C, N)."""
    n = int(sr * seconds)
    wave = torch.zeros(channels, n)
    k = int(round(at * sr))
    m = int(0.01 * sr)
    wave[:, k:k + m] = 0.8 * torch.sin(torch.arange(m) * 2 * math.pi * 1000 / sr)
    return wave


def test_version_matches_pyproject():
    text = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^version = "([^"]+)"', text, re.M).group(1) == video_out.VERSION


def test_tags_and_frames_round_trip(tmp_path):
    frames = _gradient()
    path = video_out.write_video(str(tmp_path / "a.mp4"), frames, 25.0, metadata={"title": "take 3"})
    with av.open(path) as c:
        tags = c.metadata
        assert not c.streams.audio  # no audio given: video only
        assert c.streams.video[0].average_rate == 25
    assert tags["comment"] == "lip-synced with ComfyUI-LipSync"
    assert tags["description"] == "lip-synced with ComfyUI-LipSync"
    assert tags["encoder"] == f"ComfyUI-LipSync {video_out.VERSION}"
    assert tags["title"] == "take 3"
    back, fps, audio = media.read_video(path)
    assert back.shape == (30, 48, 64, 3) and fps == 25.0 and audio is None
    err = (back.float() / 255 - frames).abs()
    # H.264 at crf 18 with 4:2:0 chroma on a colour gradient: about 2/255 on average
    assert err.mean() < 3 / 255 and err.max() < 32 / 255


@pytest.mark.parametrize("sr,channels", [(16000, 1), (44100, 2), (22222, 1)])
def test_audio_keeps_timing(tmp_path, sr, channels):
    """A burst at 1.000 s must come back at 1.000 s (±1 ms): one video frame is 40 ms."""
    frames = _gradient(n=50)
    audio = {"waveform": _click(sr, channels=channels)[None], "sample_rate": sr}
    path = video_out.write_video(str(tmp_path / "b.mp4"), frames, 25.0, audio)
    wave, out_sr = media.read_audio(path)
    assert out_sr == (sr if sr in video_out.AAC_RATES else 48000)
    assert wave.shape[0] == channels
    onset = int(np.argmax(wave[0].abs().numpy() > 0.2)) / out_sr
    assert abs(onset - 1.0) < 0.001
    spec = np.abs(np.fft.rfft(wave[0].numpy()))
    assert abs(np.fft.rfftfreq(wave.shape[1], 1 / out_sr)[spec.argmax()] - 1000) < 30
    # AAC pads the last frame: length within one 1024-sample frame of the 2 s clip
    assert 2.0 <= wave.shape[1] / out_sr <= 2.0 + 1024 / out_sr + 1e-6


def test_audio_cut_to_video_length(tmp_path):
    sr = 16000
    audio = {"waveform": _click(sr, seconds=5.0, at=3.0)[None], "sample_rate": sr}
    path = video_out.write_video(str(tmp_path / "c.mp4"), _gradient(n=25), 25.0, audio)  # 1 s of video
    wave, _ = media.read_audio(path)
    assert wave.shape[1] / sr <= 1.0 + 1024 / sr
    assert wave.abs().max() < 0.05  # the burst at 3 s was cut


def test_odd_size_and_ntsc_rate_kept(tmp_path):
    frames = (_gradient(n=12, h=49, w=65) * 255).round().to(torch.uint8)
    path = video_out.write_video(str(tmp_path / "d.mp4"), frames, 30000 / 1001)
    with av.open(path) as c:
        s = c.streams.video[0]
        assert (s.codec_context.width, s.codec_context.height) == (65, 49)
        assert s.average_rate == Fraction(30000, 1001)
    back, _, _ = media.read_video(path)
    assert back.shape == (12, 49, 65, 3)


def test_progress_reaches_total():
    seen = []
    data = video_out.encode_video(_gradient(n=70), 25, on_progress=lambda d, t: seen.append((d, t)))
    assert data[4:8] == b"ftyp" and seen[-1] == (70, 70)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_bad_inputs_name_the_problem():
    with pytest.raises(InputError, match=r"frames must be \(B, H, W, 3\).*\(48, 64, 3\)"):
        video_out.encode_video(torch.zeros(48, 64, 3), 25)
    with pytest.raises(InputError, match="fps must be positive, got 0"):
        video_out.encode_video(torch.zeros(2, 8, 8, 3), 0)
    with pytest.raises(InputError, match="'waveform' and 'sample_rate'"):
        video_out.encode_video(torch.zeros(2, 8, 8, 3), 25, {"waveform": torch.zeros(1, 1, 10)})
    with pytest.raises(InputError, match="needs sample_rate"):
        video_out.encode_video(torch.zeros(2, 8, 8, 3), 25, torch.zeros(1, 100))
