"""LoadAudioDriver: the spoken line, cut or padded to the clip's frames, with per-frame features."""

from __future__ import annotations

import hashlib
import logging

from ..lipsync_models import audio as A
from ..lipsync_models.errors import InputError, LipSyncError
from ..lipsync_models.types import DRIVER
from . import _comfy

log = logging.getLogger("comfyui_lipsync")

WHO = "LoadAudioDriver"
NO_FILE = "(no audio file in input folder)"
"""Combo entry shown when the input folder holds no audio or video file yet."""


def _file_choices() -> list[str]:
    try:
        files = _comfy.input_files(A.MEDIA_EXTENSIONS)
    except OSError as e:  # an unreadable input folder must not break the node list
        log.warning("%s: cannot list the input folder: %s", WHO, e)
        files = []
    return files or [NO_FILE]


def _no_file(name) -> bool:
    return not isinstance(name, str) or not name.strip() or name == NO_FILE


class LoadAudioDriver:
    DESCRIPTION = ("Loads the spoken line (a file from ComfyUI's input folder, or any AUDIO socket) and "
                   "prepares it to drive the mouth: mono, 16 kHz, cut or padded with silence to exactly "
                   "the clip's frame count, with Wav2Lip-framed log-mel windows, loudness and voicing per "
                   "frame. Also outputs the full-quality audio, cut the same way, for the final video. Holds "
                   "only the line (about 5 MB for 10 s); of 'images' it reads just the frame count.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "audio_file": (_file_choices(), {
                    "audio_upload": True,
                    "tooltip": "Audio or video file in ComfyUI's input folder (wav, mp3, flac, ogg, m4a/aac, or "
                               "the sound of mp4/mov/mkv/webm/mpg). Upload with the button. Ignored when the "
                               "audio input is connected."}),
                "fps": ("FLOAT", {"default": 25.0, "min": 1.0, "max": 240.0, "step": 0.001,
                                  "tooltip": "Frame rate of the video the audio will drive (frames per second)."}),
                "frame_count": ("INT", {"default": 0, "min": 0, "max": 1_000_000,
                                        "tooltip": "Frames to drive. 0 = the number of connected images, or "
                                                   "else as many frames as the audio lasts. The audio is "
                                                   "padded with silence or cut to exactly frame_count / fps."}),
                "start_offset": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 86400.0, "step": 0.01,
                                           "tooltip": "Seconds to skip at the start of the audio."}),
                "duration": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 86400.0, "step": 0.01,
                                       "tooltip": "Seconds of audio to use after start_offset; 0 = to the end "
                                                  "(files longer than 10 minutes need a duration or frame count)."}),
                "normalize": ("BOOLEAN", {"default": False,
                                          "tooltip": "Bring the speech to about -23 dBFS (gated RMS, peaks "
                                                     "kept below -1 dBFS); applies to both outputs."}),
            },
            "optional": {
                "audio": ("AUDIO", {"tooltip": "Audio from another node (LoadAudio, TTS, GetVideoComponents). "
                                               "When connected it is used instead of audio_file."}),
                "images": ("IMAGE", {"tooltip": "The clip's frames: when frame_count is 0 the driver gets "
                                                "exactly one step per image."}),
                "video": ("VIDEO", {"tooltip": "The clip as ComfyUI's VIDEO (LoadVideo, CreateVideo): its frame "
                                               "rate replaces fps, its frame count is used when frame_count is 0, "
                                               "and its sound is the line when neither the audio input nor a file "
                                               "is given. Only its length, rate and sound are read, from its file "
                                               "where it has one (LoadVideo's: no frames decoded)."}),
            },
        }

    RETURN_TYPES = ("AUDIO", DRIVER)
    RETURN_NAMES = ("audio", "driver")
    OUTPUT_TOOLTIPS = (
        "The chosen part of the audio at full quality (original rate and channels), cut or padded to the "
        "clip's length: connect it to CreateVideo.",
        "Audio driver for ExtractPhonemes, LipSyncInference and SyncScore: 16 kHz waveform, per-frame "
        "log-mel windows, loudness and voicing.",
    )
    FUNCTION = "load"
    CATEGORY = "lipsync/audio"

    @classmethod
    def IS_CHANGED(cls, audio_file, **kwargs):
        if _no_file(audio_file):
            return ""
        try:
            path = A.resolve_input_file(audio_file, _comfy.input_directory(), WHO)
        except LipSyncError:
            return ""
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()

    @classmethod
    def VALIDATE_INPUTS(cls, audio_file, input_types=None):
        # Naming audio_file here makes ComfyUI skip its own combo check for it, so an empty input
        # folder (placeholder entry) or a file missing on this machine is fine while the audio
        # socket is connected (it wins). Asking for input_types makes ComfyUI pass the types of
        # the linked inputs, and skip its link type check: that check is done here instead.
        linked = input_types or {}
        spec = cls.INPUT_TYPES()
        declared = {**spec["required"], **spec["optional"]}
        for name, got in linked.items():
            want = declared.get(name, ("*",))[0]
            if isinstance(want, list) or want == "*" or got == "*":
                continue
            if got != want and want not in str(got).split(","):
                return f"{WHO}: the {name} input takes {want}, but an output of type {got} is connected to it."
        if "audio" in linked or _no_file(audio_file):
            return True  # load() explains when neither a file nor the socket gives audio
        try:
            A.resolve_input_file(audio_file, _comfy.input_directory(), WHO)
        except LipSyncError as e:
            return str(e)
        return True

    def load(self, audio_file, fps=25.0, frame_count=0, start_offset=0.0, duration=0.0, normalize=False,
             audio=None, images=None, video=None):
        audio_name = "the audio input"
        clip_frames = None if images is None else int(images.shape[0])
        if video is not None:
            if images is not None:
                log.warning("%s: both images and video are connected; using the video's frames and rate.", WHO)
            if audio is None and _no_file(audio_file):  # the video's own sound drives: decode it
                video_audio, clip_frames, fps = _comfy.video_sound(video, WHO)
                if video_audio is None:
                    raise InputError(f"{WHO}: the video input has no sound and no audio is given. Connect an "
                                     "AUDIO output, or upload the line with the audio_file upload button.")
                audio, audio_name = video_audio, "the video's sound"
            else:  # another line drives: only the length and rate are needed, not the frames
                clip_frames, fps = _comfy.video_length_and_rate(video, WHO)
        fps = A.check_fps(fps, WHO)
        frames = int(frame_count) if frame_count else 0
        if frames < 0:
            raise InputError(f"{WHO}: frame_count must be 0 (automatic) or more, got {frame_count}.")
        if frames == 0 and clip_frames is not None:
            frames = clip_frames
            if frames == 0:
                raise InputError(f"{WHO}: images is an empty batch (0 frames); connect the clip's frames "
                                 "or set frame_count.")
        elif frames and clip_frames is not None and clip_frames != frames:
            log.warning("%s: frame_count %d differs from the %d frames of the clip; using frame_count.",
                        WHO, frames, clip_frames)
        num_frames = frames or None
        start = float(start_offset or 0.0)
        dur = float(duration) if duration and duration > 0 else None
        device = _comfy.compute_device()
        if audio is not None:
            driver = A.make_driver(audio, fps, num_frames, start=start, duration=dur, normalize=normalize,
                                   device=device, name=audio_name, who=WHO)
        else:
            if _no_file(audio_file):
                raise InputError(f"{WHO}: no audio given: the input folder has no audio or video file and the "
                                 "audio input is not connected. Upload a file with the audio_file upload "
                                 "button, or connect an AUDIO output (LoadAudio, a TTS node).")
            path = A.resolve_input_file(audio_file, _comfy.input_directory(), WHO)
            need = dur
            if num_frames is not None:  # only the clip's length is ever used: decode no more
                need = num_frames / fps if need is None else min(need, num_frames / fps)
            decoded = A.load_audio_file(path, start=start, duration=need, who=WHO)
            driver = A.make_driver(decoded, fps, num_frames, start=0.0, duration=need, normalize=normalize,
                                   device=device, name=audio_file, who=WHO, time_origin=start)
        out_audio = {"waveform": driver.audio["waveform"].to(_comfy.intermediate_device()),
                     "sample_rate": driver.audio["sample_rate"]}
        return {"ui": {"text": [summary(driver)]}, "result": (out_audio, driver)}


def summary(driver) -> str:
    """One-paragraph text preview of a driver: source, length, frames, loudness, voicing."""
    loud = driver.loudness
    active = loud[loud > -60.0]
    level = float(active.mean()) if active.numel() else float(loud.max())
    voiced = float((driver.voicing > 0.5).float().mean()) * 100.0
    ch = driver.audio["waveform"].shape[1]
    return (f"{driver.name}: {driver.duration:.2f} s, {driver.num_frames} frames at {driver.fps:g} fps; "
            f"{driver.audio['sample_rate']} Hz x {ch} ch; speech level {level:.1f} dBFS "
            f"(peak frame {float(loud.max()):.1f}); voiced {voiced:.0f}% of frames")


NODE_CLASS_MAPPINGS = {"LipSyncLoadAudioDriver": LoadAudioDriver}
NODE_DISPLAY_NAME_MAPPINGS = {"LipSyncLoadAudioDriver": "LoadAudioDriver"}
