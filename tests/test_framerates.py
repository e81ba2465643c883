"""Any frame rate, exactly: the driver's sample positions, mel windows, SyncScore's offset in
frames of the clip's own rate, and ComfyUI's VIDEO socket (a stand-in object, no ComfyUI)."""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch

from comfyui_lipsync.lipsync_models.errors import InputError, MediaError
from comfyui_lipsync.nodes import _comfy

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
