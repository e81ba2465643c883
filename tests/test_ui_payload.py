"""ui_payload: the ui dicts web/lipsync.js draws must be plain JSON lists with the documented keys."""

import json
import math

import numpy as np
import torch

from comfyui_lipsync.lipsync_models import ui_payload as U
from comfyui_lipsync.lipsync_models.types import Phoneme, PhonemeTrack


def test_wave_peaks_by_hand():
    w = torch.tensor([0.0, 0.5, -1.0, 0.25, 0.1, -0.2])
    assert U.wave_peaks(w, bins=3) == [0.5, 1.0, 0.2]
    assert U.wave_peaks(w[None].repeat(2, 1) * torch.tensor([[1.0], [0.5]]), bins=2) == [1.0, 0.25]  # (C, N): max over channels
    assert U.wave_peaks(torch.zeros(0), bins=4) == [0.0] * 4
    assert len(U.wave_peaks(torch.randn(3), bins=400)) == 3  # never more bins than samples


def test_phonemes_ui_keys_and_values():
    track = PhonemeTrack((Phoneme("SIL", 0.0, 0.2), Phoneme("B", 0.2, 0.26, 0.8)), 0.5, "align")
    ui = U.phonemes_ui(track, torch.ones(8000) * 0.5, 16000)
    assert set(ui) == {"lipsync_phonemes", "lipsync_wave"}
    assert ui["lipsync_phonemes"][1] == {"label": "B", "start": 0.2, "end": 0.26, "confidence": 0.8}
    wave = ui["lipsync_wave"]
    assert isinstance(wave, list) and len(wave) == 1
    assert wave[0]["duration"] == 0.5 and wave[0]["sample_rate"] == 16000 and set(wave[0]["peaks"]) == {0.5}
    json.dumps(ui, allow_nan=False)


def test_cues_ui():
    ui = U.cues_ui([(0.0, 0.12, "X"), (0.12, 0.3, "A")], ("X", "A"), "rhubarb", 25.0, torch.tensor([0.0, 0.5, 1.0]))
    assert ui["lipsync_cues"] == [{"start": 0.0, "end": 0.12, "value": "X"}, {"start": 0.12, "end": 0.3, "value": "A"}]
    info = ui["lipsync_visemes"][0]
    assert info == {"viseme_set": "rhubarb", "names": ["X", "A"], "fps": 25.0, "jaw_open": [0.0, 0.5, 1.0], "duration": 0.3}


def test_sync_ui_plain_json_from_numpy_and_tensors():
    ui = U.sync_ui(np.int64(-2), np.float32(-80.0), torch.tensor(3.25), np.arange(-3, 4), torch.linspace(0, 1, 7), 25.0,
                   visual=torch.full((3000,), float("nan")), windows=[{"start": np.float32(0), "end": 2.0,
                                                                       "offset_frames": np.int64(1), "confidence": torch.tensor(0.5)}])
    s = ui["lipsync_sync"][0]
    text = json.dumps(ui, allow_nan=False)  # NaN would break the browser's JSON
    assert s["offset_frames"] == -2 and s["offset_ms"] == -80.0 and s["confidence"] == 3.25
    assert s["lags"] == [-3, -2, -1, 0, 1, 2, 3] and len(s["curve"]) == 7
    assert len(s["visual"]) <= U.MAX_CURVE and set(s["visual"]) == {0.0}
    assert s["windows"] == [{"start": 0.0, "end": 2.0, "offset_frames": 1, "confidence": 0.5}]
    assert "Infinity" not in text and not math.isnan(s["curve"][0])


def test_sync_ui_carries_the_articulation_peak_only_when_given():
    plain = U.sync_ui(0, 0.0, 0.5, [-1, 0, 1], [0.1, 0.5, 0.2], 25.0)["lipsync_sync"][0]
    assert "raw_peak" not in plain and "natural_lead" not in plain
    s = U.sync_ui(1, 40.0, 0.1, [-1, 0, 1], [0.1, 0.2, 0.5], 25.0, raw_peak=np.float64(1.23456),
                  natural_lead=torch.tensor(0.35))["lipsync_sync"][0]
    assert s["raw_peak"] == 1.2346 and s["natural_lead"] == 0.35
    json.dumps(s, allow_nan=False)

