"""ComfyUI AUDIO dicts: unpacking them (one reader for every node), the 16 kHz mono mix, loudness
normalisation, and the AudioDriver that drives a clip's frames."""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F

from ..errors import InputError, MediaError, SilentAudioError
from ..types import ANALYSIS_RATE, AudioDriver
from .frames import frame_loudness, frame_samples, frame_voicing
from .mel import log_mel, mel_windows
from .resampling import resample

log = logging.getLogger("comfyui_lipsync")

SILENCE_DBFS = -70.0
"""Audio whose peak stays below this level (dBFS) counts as silent."""
NORMALIZE_TARGET_DB = -23.0
"""Loudness target of ``normalize``: gated RMS of -23 dBFS (EBU R128's -23 LUFS level, without
the K-weighting filter), with the gain capped so that the peak stays at or below -1 dBFS."""
NORMALIZE_GATE_DB = -50.0
FPS_MIN, FPS_MAX = 1.0, 240.0
"""Frame rates a driver is made for (the fps widgets' bounds): any rate in between, exactly."""


def _unpack_audio(audio, who: str, name: str = "the audio input") -> tuple[torch.Tensor, int]:
    """ComfyUI AUDIO dict -> (waveform (C, N) float, sample rate). InputError naming ``who`` and
    ``name`` for anything else, and for NaN or infinite samples (counted)."""
    if not isinstance(audio, dict) or "waveform" not in audio or "sample_rate" not in audio:
        raise InputError(f"{who}: audio must be a ComfyUI AUDIO dict with 'waveform' and 'sample_rate', "
                         f"got {type(audio).__name__}.")
    wave, sr = audio["waveform"], audio["sample_rate"]
    if not isinstance(wave, torch.Tensor):
        raise InputError(f"{who}: audio waveform must be a tensor, got {type(wave).__name__}.")
    if wave.ndim == 3:
        if wave.shape[0] != 1:
            raise InputError(f"{who}: audio holds a batch of {wave.shape[0]} clips (waveform {tuple(wave.shape)}); "
                             "one line drives one clip. Split the batch and use one item.")
        wave = wave[0]
    elif wave.ndim == 1:
        wave = wave[None]
    elif wave.ndim != 2:
        raise InputError(f"{who}: audio waveform must have shape (B, C, N), got {tuple(wave.shape)}.")
    try:
        sr = int(sr)
    except (TypeError, ValueError):
        raise InputError(f"{who}: audio sample_rate must be a number, got {sr!r}.") from None
    if sr <= 0:
        raise InputError(f"{who}: audio sample_rate must be positive, got {sr}.")
    if wave.shape[0] == 0:
        raise InputError(f"{who}: audio has no channels (waveform {tuple(wave.shape)}).")
    if not wave.is_floating_point():
        wave = wave.float() / float(torch.iinfo(wave.dtype).max + 1)
    bad = int((~torch.isfinite(wave)).sum())
    if bad:
        nan = int(torch.isnan(wave).sum())
        raise InputError(f"{who}: {name} holds {bad} non-finite samples ({nan} NaN, {bad - nan} infinite) of "
                         f"{wave.numel()}. Fix the node or file that made it (a TTS or effect that overflowed), "
                         "or re-export the audio.")
    return wave, sr


def to_analysis_rate(waveform: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Mono mix and anti-aliased resampling to 16 kHz.

    waveform: (N,), (C, N) or (B, C, N) float; the first batch item is used -> (N,) float32 on
    the input's device.
    """
    x = waveform
    if x.ndim == 3:
        x = x[0]
    if x.ndim == 2:
        x = x.float().mean(0)
    if x.ndim != 1:
        raise InputError(f"ExtractPhonemes: audio waveform must be (B, C, N), got {tuple(waveform.shape)}.")
    if int(sample_rate) == ANALYSIS_RATE:
        return x.float()
    return resample(x.float()[None], int(sample_rate), ANALYSIS_RATE)[0]


def audio_to_16k(audio, who: str) -> torch.Tensor:
    """ComfyUI AUDIO dict (one clip, any rate and channel count) -> (N,) float32 mono at 16 kHz
    on the waveform's device. Raises InputError naming ``who`` for anything else, or for an
    empty waveform."""
    wave, sr = _unpack_audio(audio, who)
    if wave.shape[-1] == 0:
        raise InputError(f"{who}: the audio input is empty (0 samples). Check the audio source.")
    return to_analysis_rate(wave, sr)


def _fit(wave: torch.Tensor, length: int) -> torch.Tensor:
    """Cut or pad (with zeros) the last axis to exactly ``length`` samples."""
    n = wave.shape[-1]
    if n >= length:
        return wave[..., :length]
    return F.pad(wave, (0, length - n))


def _db(x: float) -> float:
    return 20.0 * math.log10(max(x, 1e-10))


def normalize_gain(wave: torch.Tensor, sr: int, target_db: float = NORMALIZE_TARGET_DB) -> float:
    """Gain (linear) that brings the gated RMS of ``wave`` (C, N) to ``target_db`` dBFS.

    RMS is measured over 100 ms blocks of the mono mix louder than -50 dBFS (pauses do not
    count); the gain is capped so that the peak ends at or below -1 dBFS.
    """
    mono = wave.mean(dim=0).float().cpu().double()
    block = max(int(sr * 0.1), 1)
    n = mono.shape[0] // block * block
    if n == 0:
        blocks = mono[None]
    else:
        blocks = mono[:n].reshape(-1, block)
    ms = (blocks**2).mean(dim=1)
    keep = ms > 10.0 ** (NORMALIZE_GATE_DB / 10.0)
    level = float(ms[keep].mean()) if bool(keep.any()) else float(ms.mean())
    if level <= 0:
        return 1.0
    gain = 10.0 ** ((target_db - 10.0 * math.log10(level)) / 20.0)
    peak = float(wave.abs().max())
    if peak > 0:
        gain = min(gain, 10.0 ** (-1.0 / 20.0) / peak)
    return gain


def check_fps(fps, who: str) -> float:
    """``fps`` as a float in :data:`FPS_MIN`..:data:`FPS_MAX`, else InputError naming ``who`` and the bounds."""
    try:
        fps = float(fps)
    except (TypeError, ValueError):
        raise InputError(f"{who}: fps must be a number, got {fps!r}.") from None
    if not (math.isfinite(fps) and FPS_MIN <= fps <= FPS_MAX):
        raise InputError(f"{who}: fps must be between {FPS_MIN:g} and {FPS_MAX:g} frames per second, got {fps:g}. "
                         "Use the video's frame rate (e.g. 25, 29.97 or 60), or connect its VIDEO.")
    return fps


def make_driver(audio: dict, fps: float, num_frames: int | None = None, start: float = 0.0,
                duration: float | None = None, normalize: bool = False, device=None,
                name: str = "audio", who: str = "LoadAudioDriver", time_origin: float = 0.0) -> AudioDriver:
    """Prepare ``audio`` (ComfyUI AUDIO) to drive ``num_frames`` video frames at ``fps``.

    The part from ``start`` (s) lasting ``duration`` (s, None = to the end) is taken, mixed to
    mono and resampled to 16 kHz; it is then cut or padded with silence to exactly
    ``num_frames / fps`` seconds (``num_frames`` None: enough frames to cover the part).
    ``normalize`` applies :func:`normalize_gain` to both outputs. The full-quality AUDIO (all
    channels, original rate, cut and padded the same way) is kept in ``driver.audio`` on the
    input's device; the driver's tensors go to ``device`` (None: the input's device).

    Raises SilentAudioError when the chosen part peaks below -70 dBFS, MediaError when it is
    empty, InputError on bad arguments. ``time_origin`` (s) is added to times in messages, for
    audio that was itself cut from a longer source.
    """
    wave, sr = _unpack_audio(audio, who, name)
    fps = check_fps(fps, who)
    if wave.shape[-1] == 0:
        raise MediaError(f"{who}: {name} is empty (0 samples). Choose a file or an AUDIO output with sound in it.")
    if start is None or start < 0 or not math.isfinite(start):
        raise InputError(f"{who}: start_offset must be >= 0 s, got {start}.")
    if duration is not None and (duration <= 0 or not math.isfinite(duration)):
        raise InputError(f"{who}: duration must be positive (or 0 / None for 'to the end'), got {duration}.")
    if num_frames is not None and int(num_frames) < 1:
        raise InputError(f"{who}: frame count must be at least 1, got {num_frames}.")
    total_s = wave.shape[-1] / sr
    first = int(round(start * sr))
    if first >= wave.shape[-1]:
        raise MediaError(f"{who}: start_offset {time_origin + start:.2f} s is past the end of {name} "
                         f"({time_origin + total_s:.2f} s long). Lower start_offset.")
    last = wave.shape[-1] if duration is None else min(wave.shape[-1], first + int(round(duration * sr)))
    part = wave[:, first:last]
    peak = float(part.abs().max()) if part.numel() else 0.0
    if _db(peak) < SILENCE_DBFS:
        t0 = time_origin + start
        where = "" if (t0 == 0 and duration is None) else f" between {t0:.2f} s and {time_origin + last / sr:.2f} s"
        level = f"peak {_db(peak):.1f} dBFS, below {SILENCE_DBFS:.0f} dBFS" if peak > 0 else "every sample is zero"
        raise SilentAudioError(f"{who}: {name} is silent{where} ({level}). Choose the file with the spoken "
                               "line, or change start_offset/duration.")
    if num_frames is None:
        covered = (duration if duration is not None else part.shape[-1] / sr)
        num_frames = max(1, int(math.ceil(covered * fps - 1e-6)))
    num_frames = int(num_frames)
    target_s = num_frames / fps
    full = _fit(part, int(frame_samples(fps, num_frames, sr)[-1]))  # frame k at round(k * sr / fps)
    gain = normalize_gain(part, sr) if normalize else 1.0
    if gain != 1.0:
        full = full * gain
    dev = torch.device(device) if device is not None else wave.device
    mono = full.float().mean(dim=0, keepdim=True).to(dev)  # mix first: only one channel travels
    mono_peak = float(mono.abs().max())
    if _db(mono_peak) < SILENCE_DBFS:
        raise SilentAudioError(f"{who}: the {full.shape[0]} channels of {name} cancel out when mixed to mono "
                               f"(mono peak {_db(mono_peak):.1f} dBFS, channel peak {_db(peak):.1f} dBFS): one "
                               "channel is phase-inverted. Fix the file, or pass a single channel.")
    wave16 = _fit(resample(mono, sr, ANALYSIS_RATE)[0], int(frame_samples(fps, num_frames, ANALYSIS_RATE)[-1]))
    mel = mel_windows(log_mel(wave16), fps, num_frames)
    loud = frame_loudness(wave16, fps, num_frames)
    voiced = frame_voicing(wave16, fps, num_frames)
    out_audio = {"waveform": full[None].contiguous(), "sample_rate": sr}
    log.info("%s: %s -> %d frames at %g fps (%.2f s, gain %.2f)", who, name, num_frames, fps, target_s, gain)
    return AudioDriver(waveform=wave16.contiguous(), fps=fps, num_frames=num_frames, mel=mel, loudness=loud,
                       voicing=voiced, audio=out_audio, name=name)
