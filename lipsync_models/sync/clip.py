"""SyncScore on a clip as the node receives it: the waveform from AUDIO or a driver, a face
track (tracked here when none is given), the inputs checked against each other, and the scorer
picked by name."""

from __future__ import annotations

from typing import Callable

import torch

from ..audio.driver import check_fps
from ..checks import check_images
from ..errors import InputError, NoFaceError
from ..types import AudioDriver, FaceTrack, PhonemeTrack
from .articulation import score_articulation
from .common import WHO
from .result import SyncResult
from .syncnet_scorer import score_syncnet

ProgressFn = Callable[[int, int], None]
STEPS = 10
"""Progress steps of :func:`score_clip`: 4 for tracking the face, 6 for scoring."""


def clip_waveform(num_frames: int, fps: float, audio: dict | None = None,
                  driver: AudioDriver | None = None) -> tuple[torch.Tensor, list[str]]:
    """The clip's 16 kHz mono waveform covering ``num_frames`` frames, from a LoadAudioDriver
    ``driver`` or ComfyUI ``audio`` {"waveform": [B,C,T], "sample_rate"} (cut or padded to the
    frames), and notes for the report. InputError naming the input when neither fits."""
    n = num_frames
    if driver is not None:
        if not isinstance(driver, AudioDriver):
            raise InputError(f"{WHO}: driver must come from LoadAudioDriver, got {type(driver).__name__}.")
        if abs(driver.fps - fps) > 1e-3:
            raise InputError(f"{WHO}: the driver was made for {driver.fps:g} fps but fps is {fps:g}. "
                             "Set the same fps on both nodes.")
        if driver.num_frames != n:
            raise InputError(f"{WHO}: the driver covers {driver.num_frames} frames but there are {n} images. "
                             "Give LoadAudioDriver the clip's frame count, or score the matching frames.")
        return driver.waveform, []
    if audio is None:
        raise InputError(f"{WHO}: connect either 'audio' (AUDIO) or 'driver' (LIPSYNC_DRIVER); both are empty.")
    from .. import audio as audiolib

    if not isinstance(audio, dict) or "waveform" not in audio or "sample_rate" not in audio:
        raise InputError(f"{WHO}: audio must be ComfyUI AUDIO {{'waveform': [B,C,T], 'sample_rate'}}, "
                         f"got {type(audio).__name__}.")
    notes = []
    length_s = audio["waveform"].shape[-1] / float(audio["sample_rate"])
    if abs(length_s - n / fps) > 1.0 / fps:
        notes.append(f"audio is {length_s:.2f} s, the frames {n / fps:.2f} s: scored the first {n / fps:.2f} s "
                     "(cut or padded with silence)")
    return audiolib.make_driver(audio, fps, num_frames=n, name="the audio input", who=WHO).waveform, notes


def track_for_scoring(images: torch.Tensor, on_progress: ProgressFn | None = None) -> tuple[FaceTrack, str]:
    """A face track of ``images`` for scoring, and which detector made it: Haar first, not the
    face mesh, because its lip measurements put recorded GRID clips' offsets on one calibration
    (``bench/bench_sync.py`` prints both); the mesh only for faces Haar does not find (stylised or
    turned faces). NoFaceError when neither finds one (or the mesh is not installed)."""
    from .. import face as facelib

    try:
        return facelib.track_faces(images, detector="haar", on_progress=on_progress), "haar"
    except NoFaceError:
        if not facelib.mediapipe_available():
            raise NoFaceError(_no_face(images.shape[0], "the Haar detector; the face mesh needs mediapipe "
                                                        "(pip install mediapipe)")) from None
    try:
        return facelib.track_faces(images, detector="mediapipe", on_progress=on_progress), "mediapipe"
    except NoFaceError:
        raise NoFaceError(_no_face(images.shape[0], "the Haar detector and the mediapipe face mesh")) from None


def _no_face(n: int, tried: str) -> str:
    return (f"{WHO}: no face found in any of the {n} frames (tried {tried}). Connect MaskLowerFace's "
            "face_track for these frames to 'face_track' (MaskLowerFace takes a manual face box), or score "
            "frames where the face is frontal and at least 30 px wide.")


def check_clip(num_frames: int, fps: float, face_track, phonemes) -> None:
    """InputError naming the input when the face track or phonemes are not of this clip."""
    n = num_frames
    if not isinstance(face_track, FaceTrack):
        raise InputError(f"{WHO}: face_track must come from MaskLowerFace, got {type(face_track).__name__}.")
    if face_track.num_frames != n:
        raise InputError(f"{WHO}: the face track has {face_track.num_frames} frames but there are {n} images. "
                         "Track the same frames you score.")
    if phonemes is not None:
        if not isinstance(phonemes, PhonemeTrack):
            raise InputError(f"{WHO}: phonemes must come from ExtractPhonemes, got {type(phonemes).__name__}.")
        if abs(phonemes.duration - n / fps) > 0.5:
            raise InputError(f"{WHO}: the phonemes cover {phonemes.duration:.2f} s but the frames {n / fps:.2f} s. "
                             "Connect ExtractPhonemes' output for this clip's audio.")


def score_clip(images: torch.Tensor, fps: float, audio: dict | None = None, driver: AudioDriver | None = None,
               face_track: FaceTrack | None = None, phonemes: PhonemeTrack | None = None,
               search_range: int = 15, window_s: float = 2.0, use_phonemes: bool = False,
               syncnet_path: str | None = None, device: torch.device | str = "cpu",
               on_progress: ProgressFn | None = None,
               stablesyncnet_path: str | None = None) -> tuple[SyncResult, list[str]]:
    """Score a clip as the SyncScore node does; returns the result and notes for the report.

    images: (B, H, W, C) 0..1; fps: 1..240, any rate in between (the offset is in its frames); audio or driver: the clip's sound (see
    :func:`clip_waveform`); face_track: None = tracked here (:func:`track_for_scoring`);
    phonemes: optional timed phonemes (closure anchors); use_phonemes: add the phoneme-predicted
    mouth; syncnet_path: a syncnet_v2 checkpoint to score with instead of the articulation scorer;
    device: where tracking and SyncNet run. on_progress(done, :data:`STEPS`).
    stablesyncnet_path: LatentSync's stable_syncnet.pt: its offset and confidence are added to the
    notes beside the main scorer's (:func:`stablesync_scorer.score_stablesyncnet`).
    """
    check_images(images, WHO)
    fps = check_fps(fps, WHO)  # 1..240, the node's bounds, also for a rate linked from another node
    n = images.shape[0]
    wave, notes = clip_waveform(n, fps, audio, driver)
    progress = on_progress or (lambda d, t: None)
    if face_track is None:
        face_track, detector = track_for_scoring(images.to(device),
                                                 lambda d, t: progress(int(4 * d / max(t, 1)), STEPS))
        notes.append(f"face tracked here with the {detector} detector")
    check_clip(n, fps, face_track, phonemes)
    later = lambda d, t: progress(4 + int(6 * d / max(t, 1)), STEPS)  # noqa: E731
    if syncnet_path is None:
        result = score_articulation(face_track, wave, fps, search_range=int(search_range), window_s=float(window_s),
                                    use_phonemes=use_phonemes, images=images, phonemes=phonemes, on_progress=later,
                                    check=False)  # checked above
    else:
        from ..backends import syncnet

        net = syncnet.load_syncnet_cached(syncnet_path, device=device, who=WHO)
        result = score_syncnet(net, images.to(device), face_track, wave.to(device), fps,
                               search_range=int(search_range), window_s=float(window_s), on_progress=later)
    if stablesyncnet_path is not None:
        from ..backends import stablesyncnet
        from .stablesync_scorer import score_stablesyncnet, summary

        net = stablesyncnet.load_stablesyncnet_cached(stablesyncnet_path, device=device, who=WHO)
        notes.append(summary(score_stablesyncnet(net, images.to(device), face_track, wave.to(device), fps,
                                                 search_range=int(search_range))))
    progress(STEPS, STEPS)
    return result, notes
