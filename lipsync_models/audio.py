"""Audio for lip sync: safe file lookup, decoding, resampling, Wav2Lip-style log-mels and
per-frame loudness and voicing, packed into an :class:`~.types.AudioDriver`.

Everything is torch on the input's device; nothing here imports ComfyUI, writes temp files or
shells out. The analysis rate is 16 kHz (:data:`~.types.ANALYSIS_RATE`).

Wav2Lip's audio front end (constants read from its ``hparams.py``/``audio.py``; this is our own
implementation): preemphasis 0.97; STFT with n_fft 800, hop 200, Hann window 800, centred with
reflection padding (librosa 0.7, which Wav2Lip pins); magnitude through an 80-band Slaney mel
filterbank from 55 to 7600 Hz (area-normalised); ``20*log10(max(1e-5, x)) - 20`` dB; then mapped
linearly from [-100, 0] dB to [-4, 4] and clipped. That gives 80 mel frames per second, and
video frame ``i`` at ``fps`` reads the 16 mel frames starting at ``int(i * 80 / fps)``.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F

from .errors import InputError, MediaError, PathError, SilentAudioError
from .types import ANALYSIS_RATE, MEL_BINS, MEL_STEPS, AudioDriver

log = logging.getLogger("comfyui_lipsync")

# --- Wav2Lip audio constants -----------------------------------------------------------------
N_FFT = 800
HOP = 200
WIN = 800
FMIN = 55.0
FMAX = 7600.0
PREEMPHASIS = 0.97
REF_LEVEL_DB = 20.0
MIN_LEVEL_DB = -100.0
MAX_ABS_VALUE = 4.0
MEL_FPS = ANALYSIS_RATE / HOP  # 80 mel frames per second
MEL_SILENCE = -MAX_ABS_VALUE
"""Normalised mel value of digital silence (the floor of the [-4, 4] range)."""

SILENCE_DBFS = -70.0
"""Audio whose peak stays below this level (dBFS) counts as silent."""
LOUDNESS_FLOOR_DB = -100.0
NORMALIZE_TARGET_DB = -23.0
"""Loudness target of ``normalize``: gated RMS of -23 dBFS (EBU R128's -23 LUFS level, without
the K-weighting filter), with the gain capped so that the peak stays at or below -1 dBFS."""
NORMALIZE_GATE_DB = -50.0
MAX_READ_SECONDS = 600.0
"""Longest stretch :func:`load_audio_file` decodes at once (10 min; ~0.5 GB of stereo 48 kHz
float audio plus 45 MB of mel windows per minute at 25 fps). Longer files need a duration."""

AUDIO_EXTENSIONS = (".wav", ".mp3", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".aac")
VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".m4v", ".avi")
MEDIA_EXTENSIONS = AUDIO_EXTENSIONS + VIDEO_EXTENSIONS

_ASSETS = Path(__file__).resolve().parent / "assets"


def demo_audio_path() -> str:
    """The built-in speech sample: espeak-ng (en-us) saying the line in ``demo_line.txt``,
    16 kHz mono 16-bit wav, about 3.1 s with 0.2 s of silence at both ends."""
    return str(_ASSETS / "demo_line.wav")


def demo_text() -> str:
    """The line spoken in :func:`demo_audio_path`."""
    return (_ASSETS / "demo_line.txt").read_text(encoding="utf-8").strip()


# --- input folder ----------------------------------------------------------------------------

def resolve_input_file(name: str, root: str, who: str) -> str:
    """Full path of the file ``name`` inside the folder ``root``.

    Refuses names that are absolute, contain ``..``, or resolve (through symlinks) outside
    ``root``; refuses missing files. Raises :class:`PathError` with the name and the fix.
    A ComfyUI annotation suffix (``"clip.wav [input]"``) is dropped.
    """
    if not isinstance(name, str) or not name.strip():
        raise PathError(f"{who}: no file chosen. Pick or upload a file into ComfyUI's input folder.")
    clean = name.strip()
    if clean.endswith(" [input]"):
        clean = clean[: -len(" [input]")]
    shown = repr(clean)
    if os.path.isabs(clean) or clean.startswith(("/", "\\")) or (len(clean) > 1 and clean[1] == ":"):
        raise PathError(f"{who}: {shown} is an absolute path; only files inside the input folder can be "
                        f"read. Put the file in {root} and choose it by name.")
    parts = clean.replace("\\", "/").split("/")
    if ".." in parts:
        raise PathError(f"{who}: {shown} leaves the input folder ('..' is not allowed). Put the file in "
                        f"{root} and choose it by name.")
    real_root = os.path.realpath(root)
    real = os.path.realpath(os.path.join(real_root, *parts))
    if os.path.commonpath([real_root, real]) != real_root:
        raise PathError(f"{who}: {shown} is a link that points outside the input folder; refusing to "
                        f"read it. Copy the file itself into {root}.")
    if not os.path.isfile(real):
        raise PathError(f"{who}: file not found: {shown} in the input folder {root}. Upload it again or "
                        f"pick another file.")
    return real


# --- resampling ------------------------------------------------------------------------------

@functools.lru_cache(maxsize=16)
def _sinc_kernel(up: int, down: int, zeros: int, rolloff: float, beta: float) -> tuple[torch.Tensor, int]:
    """Polyphase Kaiser-windowed sinc filter: (up, 1, L) float64 and the left padding ``W``.

    Phase j computes output samples at input position ``q*down + j*down/up``; tap k of that
    phase weighs input sample ``q*down + k - W``.
    """
    fc = min(1.0, up / down) * rolloff  # cut-off as a fraction of the input Nyquist rate
    width = int(math.ceil(zeros / fc))  # half-width in input samples
    extra = down  # phase j sits j*down/up (< down) input samples after the block start
    taps = torch.arange(2 * width + extra + 1, dtype=torch.float64)
    shift = torch.arange(up, dtype=torch.float64)[:, None] * down / up
    t = taps[None, :] - width - shift  # (up, L) distance to the output instant, input samples
    inside = t.abs() <= width
    ratio = (t / width).clamp(-1, 1)
    window = torch.special.i0(beta * torch.sqrt(1 - ratio**2)) / torch.special.i0(torch.tensor(beta, dtype=torch.float64))
    h = fc * torch.sinc(fc * t) * window * inside
    return h[:, None, :], width


def resample(wave: torch.Tensor, sr_in: int, sr_out: int, chunk: int = 1 << 20) -> torch.Tensor:
    """Band-limited resampling of ``wave`` (C, N) from ``sr_in`` to ``sr_out`` Hz.

    Polyphase Kaiser-windowed sinc (16 zero crossings, cut-off at 0.95 of the lower Nyquist
    rate, beta 8.6: stop band below about -80 dB), so content above the new Nyquist rate is
    removed, not aliased. Returns (C, ceil(N * sr_out / sr_in)) with the input's device and
    floating dtype; long inputs are processed in chunks of about ``chunk`` output samples.
    """
    if not isinstance(wave, torch.Tensor) or wave.ndim != 2:
        raise InputError(f"resample: wave must be a (C, N) tensor, got "
                         f"{tuple(wave.shape) if isinstance(wave, torch.Tensor) else type(wave).__name__}.")
    sr_in, sr_out = int(sr_in), int(sr_out)
    if sr_in <= 0 or sr_out <= 0:
        raise InputError(f"resample: sample rates must be positive, got {sr_in} -> {sr_out}.")
    dtype = wave.dtype if wave.is_floating_point() else torch.float32
    if sr_in == sr_out:
        return wave.to(dtype)
    g = math.gcd(sr_in, sr_out)
    up, down = sr_out // g, sr_in // g
    h, width = _sinc_kernel(up, down, 16, 0.95, 8.6)
    work = torch.float64 if dtype == torch.float64 else torch.float32
    h = h.to(work).to(wave.device)  # cast on the CPU first: MPS has no float64
    c, n = wave.shape
    m = -(-n * up // down)  # output length
    if n == 0:
        return wave.new_zeros((c, 0), dtype=dtype)
    q_total = -(-m // up)  # output positions per phase
    length = h.shape[-1]
    x = wave.to(work).reshape(c, 1, n)
    pad_right = max((q_total - 1) * down + length - width - n, 0)
    x = F.pad(x, (width, pad_right))
    q_chunk = max(chunk // up, 1)
    outs = []
    for q0 in range(0, q_total, q_chunk):
        q1 = min(q0 + q_chunk, q_total)
        seg = x[:, :, q0 * down:(q1 - 1) * down + length]
        y = F.conv1d(seg, h, stride=down)  # (C, up, q1 - q0)
        outs.append(y.transpose(1, 2).reshape(c, -1))
    return torch.cat(outs, dim=1)[:, :m].to(dtype)


# --- Wav2Lip log-mel -------------------------------------------------------------------------

def hz_to_mel(f: torch.Tensor) -> torch.Tensor:
    """Slaney mel scale: linear 3 mels per 200 Hz below 1 kHz, logarithmic above (27 mels per
    factor 6.4), so 1000 Hz = 15 mel."""
    f = torch.as_tensor(f, dtype=torch.float64)
    lin = f * 3.0 / 200.0
    log_part = 15.0 + torch.log(f.clamp_min(1e-10) / 1000.0) / (math.log(6.4) / 27.0)
    return torch.where(f >= 1000.0, log_part, lin)


def mel_to_hz(m: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`hz_to_mel`."""
    m = torch.as_tensor(m, dtype=torch.float64)
    lin = m * 200.0 / 3.0
    log_part = 1000.0 * torch.exp((m - 15.0) * (math.log(6.4) / 27.0))
    return torch.where(m >= 15.0, log_part, lin)


@functools.lru_cache(maxsize=4)
def mel_filterbank(sr: int = ANALYSIS_RATE, n_fft: int = N_FFT, n_mels: int = MEL_BINS,
                   fmin: float = FMIN, fmax: float = FMAX) -> torch.Tensor:
    """(n_mels, n_fft//2 + 1) float64 triangular Slaney filterbank, area-normalised.

    Band k rises from ``edges[k]`` to a peak at ``edges[k+1]`` and falls to ``edges[k+2]``,
    where ``edges`` are n_mels + 2 frequencies equally spaced on the Slaney mel scale between
    fmin and fmax; each triangle is scaled by ``2 / (edges[k+2] - edges[k])``.
    """
    freqs = torch.linspace(0, sr / 2, n_fft // 2 + 1, dtype=torch.float64)
    edges = mel_to_hz(torch.linspace(float(hz_to_mel(torch.tensor(fmin))), float(hz_to_mel(torch.tensor(fmax))),
                                     n_mels + 2, dtype=torch.float64))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rise = (freqs[None] - lo) / (mid - lo)
    fall = (hi - freqs[None]) / (hi - mid)
    tri = torch.minimum(rise, fall).clamp_min(0)
    return tri * (2.0 / (hi - lo))


def mel_edges(sr: int = ANALYSIS_RATE, n_mels: int = MEL_BINS, fmin: float = FMIN, fmax: float = FMAX) -> torch.Tensor:
    """(n_mels + 2,) band edge frequencies in Hz of :func:`mel_filterbank`."""
    return mel_to_hz(torch.linspace(float(hz_to_mel(torch.tensor(fmin))), float(hz_to_mel(torch.tensor(fmax))),
                                    n_mels + 2, dtype=torch.float64))


def preemphasis(wave: torch.Tensor, k: float = PREEMPHASIS) -> torch.Tensor:
    """y[n] = x[n] - k x[n-1] along the last axis (x[-1] = 0)."""
    prev = F.pad(wave[..., :-1], (1, 0))
    return wave - k * prev


def num_mel_frames(n_samples: int) -> int:
    """Mel frames :func:`log_mel` makes from ``n_samples`` (centred STFT: 1 + N // 200)."""
    return 1 + int(n_samples) // HOP


def log_mel(wave16k: torch.Tensor, chunk_frames: int = 4096) -> torch.Tensor:
    """Wav2Lip log-mel spectrogram of a 16 kHz mono waveform.

    wave16k: (N,) float, roughly in [-1, 1]. Returns (80, 1 + N // 200) float32 on the same
    device, values in [-4, 4] (-4 = silence). Long inputs are processed in chunks of
    ``chunk_frames`` mel frames; the result is the same as in one piece.
    """
    if not isinstance(wave16k, torch.Tensor) or wave16k.ndim != 1:
        raise InputError(f"log_mel: wave16k must be a (N,) tensor, got "
                         f"{tuple(wave16k.shape) if isinstance(wave16k, torch.Tensor) else type(wave16k).__name__}.")
    dev = wave16k.device
    x = preemphasis(wave16k.to(torch.float32))
    n = x.shape[0]
    pad = N_FFT // 2
    if n > pad:
        xp = F.pad(x[None, None], (pad, pad), mode="reflect")[0, 0]
    else:  # too short to reflect: zero padding
        xp = F.pad(x, (pad, pad))
    frames = num_mel_frames(n)
    window = torch.hann_window(WIN, periodic=True, dtype=torch.float32, device=dev)
    basis = mel_filterbank().to(torch.float32).to(dev)
    min_level = 10.0 ** (MIN_LEVEL_DB / 20.0)
    out = []
    for f0 in range(0, frames, chunk_frames):
        f1 = min(f0 + chunk_frames, frames)
        seg = xp[f0 * HOP:(f1 - 1) * HOP + N_FFT]
        spec = torch.stft(seg, n_fft=N_FFT, hop_length=HOP, win_length=WIN, window=window,
                          center=False, return_complex=True).abs()
        db = 20.0 * torch.log10(torch.clamp(basis @ spec, min=min_level)) - REF_LEVEL_DB
        out.append(db)
    s = torch.cat(out, dim=1)
    span = -MIN_LEVEL_DB
    return torch.clamp(2 * MAX_ABS_VALUE * (s - MIN_LEVEL_DB) / span - MAX_ABS_VALUE, -MAX_ABS_VALUE, MAX_ABS_VALUE)


def mel_starts(fps: float, num_frames: int) -> torch.Tensor:
    """(T,) int64 first mel frame of each video frame: floor(i * 80 / fps), computed so that
    exact multiples are not lost to rounding (25 fps: 0, 3, 6, 9, 12, 16, ...)."""
    i = torch.arange(int(num_frames), dtype=torch.float64)
    return torch.floor(i * MEL_FPS / float(fps) + 1e-9).to(torch.int64)


def mel_windows(mel: torch.Tensor, fps: float, num_frames: int, pad_value: float = MEL_SILENCE) -> torch.Tensor:
    """Per-video-frame mel windows. mel: (80, M) from :func:`log_mel` -> (T, 80, 16).

    Window ``i`` holds mel frames ``int(i * 80 / fps)`` .. ``+15``; frames past the end of
    ``mel`` are filled with ``pad_value`` (silence), so every window has 16 steps.
    """
    if not isinstance(mel, torch.Tensor) or mel.ndim != 2:
        raise InputError(f"mel_windows: mel must be a (80, M) tensor, got "
                         f"{tuple(mel.shape) if isinstance(mel, torch.Tensor) else type(mel).__name__}.")
    if fps <= 0 or num_frames < 0:
        raise InputError(f"mel_windows: fps must be positive and num_frames >= 0, got fps {fps}, num_frames {num_frames}.")
    starts = mel_starts(fps, num_frames).to(mel.device)
    idx = starts[:, None] + torch.arange(MEL_STEPS, device=mel.device)[None]  # (T, 16)
    need = int(idx.max()) + 1 if num_frames > 0 else 0
    if need > mel.shape[1]:
        mel = F.pad(mel, (0, need - mel.shape[1]), value=pad_value)
    return mel[:, idx].permute(1, 0, 2).contiguous()


# --- per-frame loudness and voicing ----------------------------------------------------------

def _frame_bounds(fps: float, num_frames: int, sr: int) -> torch.Tensor:
    """(T + 1,) sample index where each video frame begins (and the last one ends)."""
    i = torch.arange(int(num_frames) + 1, dtype=torch.float64)
    return torch.round(i * sr / float(fps)).to(torch.int64)


def frame_loudness(wave16k: torch.Tensor, fps: float, num_frames: int, sr: int = ANALYSIS_RATE) -> torch.Tensor:
    """(T,) RMS level of each video frame's samples in dBFS (full-scale square wave = 0 dB,
    full-scale sine = -3.01 dB), floored at -100 dB. Samples past the end count as silence."""
    dev = wave16k.device
    # float64 running sums (exact over an hour of audio); MPS has no float64, so it works on the CPU
    work = dev if dev.type != "mps" else torch.device("cpu")
    bounds = _frame_bounds(fps, num_frames, sr).to(work)
    x = wave16k.to(work).to(torch.float64)
    total = int(bounds[-1])
    if x.shape[0] < total:
        x = F.pad(x, (0, total - x.shape[0]))
    csum = F.pad(torch.cumsum(x**2, 0), (1, 0))
    energy = csum[bounds[1:]] - csum[bounds[:-1]]
    count = (bounds[1:] - bounds[:-1]).clamp_min(1).to(torch.float64)
    ms = (energy / count).clamp_min(0)
    db = 10.0 * torch.log10(ms.clamp_min(10.0 ** (LOUDNESS_FLOOR_DB / 10.0)))
    return db.to(torch.float32).to(dev)


VOICING_WINDOW = 800  # 50 ms: three periods of the lowest pitch searched (60 Hz)
VOICING_FMIN = 60.0
VOICING_FMAX = 400.0


def _voicing_strength(frames: torch.Tensor, sr: int) -> torch.Tensor:
    """Peak normalised autocorrelation in the 60-400 Hz lag range, corrected for the Hann
    window (Boersma 1993). frames: (T, L) -> (T,) roughly in [0, 1]."""
    length = frames.shape[1]
    nfft = 1 << (2 * length - 1).bit_length()
    win = torch.hann_window(length, periodic=False, dtype=frames.dtype, device=frames.device)
    x = (frames - frames.mean(dim=1, keepdim=True)) * win
    r = torch.fft.irfft(torch.fft.rfft(x, nfft).abs() ** 2, nfft)[:, :length]
    rw = torch.fft.irfft(torch.fft.rfft(win, nfft).abs() ** 2, nfft)[:length]
    lo, hi = int(sr / VOICING_FMAX), min(int(sr / VOICING_FMIN), length // 2)
    r0 = r[:, :1].clamp_min(1e-12)
    norm = (r[:, lo:hi + 1] / r0) / (rw[lo:hi + 1] / rw[0]).clamp_min(1e-6)
    return norm.max(dim=1).values.clamp(0, 1)


def frame_voicing(wave16k: torch.Tensor, fps: float, num_frames: int, sr: int = ANALYSIS_RATE,
                  chunk: int = 2048) -> torch.Tensor:
    """(T,) voicing of each video frame in [0, 1].

    Pitch strength from the autocorrelation of a 50 ms window centred on the frame (peak
    normalised autocorrelation at lags of 60-400 Hz; 0.35 -> 0, 0.85 -> 1), multiplied by an
    energy gate rising from 0 at :func:`voicing_gate` to 1 ten dB higher (frame RMS), so noise,
    hum and silence read 0 and a sustained vowel reads near 1.
    """
    dev = wave16k.device
    x = wave16k.to(torch.float32)
    bounds = _frame_bounds(fps, num_frames, sr)
    centres = ((bounds[:-1] + bounds[1:]) // 2).to(dev)
    half = VOICING_WINDOW // 2
    total = int(bounds[-1]) + VOICING_WINDOW
    xp = F.pad(x, (half, max(total - x.shape[0], 0) + half))
    offs = torch.arange(VOICING_WINDOW, device=dev)
    out = []
    for t0 in range(0, int(num_frames), chunk):
        idx = centres[t0:t0 + chunk, None] + offs[None]  # window starts at centre - half in x
        out.append(_voicing_strength(xp[idx], sr))
    strength = torch.cat(out) if out else x.new_zeros(0)
    pitch = ((strength - 0.35) / 0.5).clamp(0, 1)
    loud = frame_loudness(x, fps, num_frames, sr).to(dev)
    lo = voicing_gate(loud)
    gate = ((loud - lo) / 10.0).clamp(0, 1)
    return (pitch * gate).to(torch.float32)


def voicing_gate(loudness: torch.Tensor) -> float:
    """Frame level (dBFS) below which :func:`frame_voicing` reads 0; it reaches full weight 10 dB
    higher. 6 dB above the noise floor (10th percentile of the frame levels, but at least 35 dB
    under the 95th percentile, so speech without pauses is not taken for noise), never below
    -60 dBFS. Background hum (GRID's floor sits near -47 dBFS) is periodic too; this gate keeps
    it from reading as voice."""
    if loudness.numel() == 0:
        return -60.0
    q = torch.quantile(loudness.detach().float().cpu(), torch.tensor([0.10, 0.95]))
    floor = min(float(q[0]), float(q[1]) - 35.0)
    return max(floor + 6.0, -60.0)


# --- AUDIO dicts -----------------------------------------------------------------------------

def _unpack_audio(audio, who: str) -> tuple[torch.Tensor, int]:
    """ComfyUI AUDIO dict -> (waveform (C, N) float, sample rate)."""
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
    wave, sr = _unpack_audio(audio, who)
    try:
        fps = float(fps)
    except (TypeError, ValueError):
        raise InputError(f"{who}: fps must be a number, got {fps!r}.") from None
    if not math.isfinite(fps) or fps <= 0:
        raise InputError(f"{who}: fps must be positive, got {fps}. Use the video's frame rate (e.g. 25).")
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
    full = _fit(part, int(round(target_s * sr)))
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
    wave16 = _fit(resample(mono, sr, ANALYSIS_RATE)[0], int(round(target_s * ANALYSIS_RATE)))
    mel = mel_windows(log_mel(wave16), fps, num_frames)
    loud = frame_loudness(wave16, fps, num_frames)
    voiced = frame_voicing(wave16, fps, num_frames)
    out_audio = {"waveform": full[None].contiguous(), "sample_rate": sr}
    log.info("%s: %s -> %d frames at %g fps (%.2f s, gain %.2f)", who, name, num_frames, fps, target_s, gain)
    return AudioDriver(waveform=wave16.contiguous(), fps=fps, num_frames=num_frames, mel=mel, loudness=loud,
                       voicing=voiced, audio=out_audio, name=name)


# --- files -----------------------------------------------------------------------------------

def _probe_seconds(path: str) -> float | None:
    """Length of the first audio stream in seconds from the container header, or None."""
    try:
        import av

        with av.open(path) as c:
            if not c.streams.audio:
                return None
            s = c.streams.audio[0]
            if s.duration is not None and s.time_base is not None:
                return float(s.duration * s.time_base)
            if c.duration is not None:
                return c.duration / 1_000_000
    except Exception:  # probing is best effort; read_audio reports real problems
        return None
    return None


def load_audio_file(path: str, start: float = 0.0, duration: float | None = None,
                    who: str = "LoadAudioDriver", max_seconds: float = MAX_READ_SECONDS) -> dict:
    """Decode the audio track of ``path`` (any container PyAV reads) into a ComfyUI AUDIO dict.

    Only ``start`` .. ``start + duration`` is decoded and kept. Without a duration at most
    ``max_seconds`` are read; a longer remainder raises InputError asking for a duration, so an
    hour-long file never fills memory. Empty, corrupt, audio-less files raise MediaError naming
    the file.
    """
    name = os.path.basename(path)
    if start < 0:
        raise InputError(f"{who}: start_offset must be >= 0 s, got {start}.")
    if duration is None:
        length = _probe_seconds(path)
        if length is not None and length - start > max_seconds + 0.5:
            raise InputError(f"{who}: {name} is {length / 60:.1f} min long; reading more than "
                             f"{max_seconds / 60:.0f} min at once is refused to protect memory. Set duration "
                             "(or a frame count) and start_offset to pick the part you need.")
        read_for = max_seconds + 1.0
    else:
        read_for = duration
    wave, sr = _read(path, who, start, read_for)
    if duration is None and wave.shape[-1] > max_seconds * sr:
        raise InputError(f"{who}: {name} has more than {max_seconds / 60:.0f} min of audio after "
                         f"start_offset {start:.1f} s; set duration (or a frame count) to pick the part you need.")
    if wave.shape[-1] == 0:
        raise MediaError(f"{who}: {name} holds no audio samples after {start:.2f} s.")
    return {"waveform": wave[None], "sample_rate": sr}


def _read(path: str, who: str, start: float, duration: float) -> tuple[torch.Tensor, int]:
    from . import media

    return media.read_audio(path, who=who, start=start, duration=duration)
