"""Audio for lip sync: safe file lookup, decoding, resampling, Wav2Lip-style log-mels and
per-frame loudness and voicing, packed into an :class:`~.types.AudioDriver`.

Everything is torch on the input's device; nothing here imports ComfyUI, writes temp files or
shells out. The analysis rate is 16 kHz (:data:`~.types.ANALYSIS_RATE`).

One concern per module: :mod:`.resampling`, :mod:`.mel` (Wav2Lip's log-mel), :mod:`.frames`
(per-frame loudness and voicing), :mod:`.driver` (AUDIO dicts, the AudioDriver), :mod:`.files`
(demo line, input folder, decoding). This package re-exports their names.

Wav2Lip's audio front end (constants read from its ``hparams.py``/``audio.py``; this is our own
implementation): preemphasis 0.97; STFT with n_fft 800, hop 200, Hann window 800, centred with
reflection padding (librosa 0.7, which Wav2Lip pins); magnitude through an 80-band Slaney mel
filterbank from 55 to 7600 Hz (area-normalised); ``20*log10(max(1e-5, x)) - 20`` dB; then mapped
linearly from [-100, 0] dB to [-4, 4] and clipped. That gives 80 mel frames per second, and
video frame ``i`` at ``fps`` reads the 16 mel frames starting at ``int(i * 80 / fps)``.
"""

from .driver import (FPS_MAX, FPS_MIN, NORMALIZE_GATE_DB, NORMALIZE_TARGET_DB, SILENCE_DBFS, _unpack_audio,
                     audio_to_16k, check_fps, make_driver, normalize_gain, to_analysis_rate)
from .files import (AUDIO_EXTENSIONS, MAX_READ_SECONDS, MEDIA_EXTENSIONS, VIDEO_EXTENSIONS, demo_audio_path, demo_text,
                    load_audio_file, resolve_input_file)
from .frames import (LOUDNESS_FLOOR_DB, VOICING_FMAX, VOICING_FMIN, VOICING_WINDOW, frame_loudness, frame_samples,
                     frame_voicing, voicing_gate)
from .mel import (FMAX, FMIN, HOP, MAX_ABS_VALUE, MEL_FPS, MEL_SILENCE, MIN_LEVEL_DB, N_FFT, PREEMPHASIS,
                  REF_LEVEL_DB, WIN, hz_to_mel, log_mel, mel_edges, mel_filterbank, mel_starts, mel_to_hz,
                  mel_windows, num_mel_frames, preemphasis)
from .resampling import resample

__all__ = [
    "AUDIO_EXTENSIONS", "FPS_MAX", "FPS_MIN", "FMAX", "FMIN", "HOP", "LOUDNESS_FLOOR_DB", "MAX_ABS_VALUE",
    "MAX_READ_SECONDS", "MEDIA_EXTENSIONS", "MEL_FPS", "MEL_SILENCE", "MIN_LEVEL_DB", "NORMALIZE_GATE_DB",
    "NORMALIZE_TARGET_DB", "N_FFT", "PREEMPHASIS", "REF_LEVEL_DB", "SILENCE_DBFS", "VIDEO_EXTENSIONS", "VOICING_FMAX",
    "VOICING_FMIN", "VOICING_WINDOW", "WIN", "_unpack_audio", "audio_to_16k", "check_fps", "demo_audio_path",
    "demo_text", "frame_loudness", "frame_samples", "frame_voicing", "hz_to_mel", "load_audio_file", "log_mel",
    "make_driver", "mel_edges", "mel_filterbank", "mel_starts", "mel_to_hz", "mel_windows", "normalize_gain",
    "num_mel_frames", "preemphasis", "resample", "resolve_input_file", "to_analysis_rate", "voicing_gate",
]
