"""The data carried on the pack's own sockets.

Every type is a frozen dataclass; tensors live on the compute device and are never modified
in place by a consumer (make a new object with :func:`dataclasses.replace`). Times are in
seconds, frame indices are video frames at ``fps``.

Socket names used in ComfyUI:

===================== =================== ==========================================
socket                class               made by
===================== =================== ==========================================
``LIPSYNC_DRIVER``    :class:`AudioDriver`  LoadAudioDriver
``LIPSYNC_PHONEMES``  :class:`PhonemeTrack` ExtractPhonemes
``LIPSYNC_VISEMES``   :class:`VisemeTrack`  MapVisemes
``LIPSYNC_FACE_TRACK`` :class:`FaceTrack`   MaskLowerFace (LipSyncInference passes it on)
===================== =================== ==========================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch

from .checks import check_shape
from .errors import InputError

DRIVER = "LIPSYNC_DRIVER"
PHONEMES = "LIPSYNC_PHONEMES"
VISEMES = "LIPSYNC_VISEMES"
FACE_TRACK = "LIPSYNC_FACE_TRACK"

ANALYSIS_RATE = 16000
"""Sample rate of the analysis waveform (Hz), as Wav2Lip and SyncNet expect."""

MEL_BINS = 80
MEL_STEPS = 16
"""Wav2Lip framing: 80 mel bins, 16 mel steps (0.2 s at 80 mel frames/s) per video frame."""


@dataclass(frozen=True)
class AudioDriver:
    """Audio prepared to drive ``num_frames`` video frames at ``fps``.

    waveform: (N,) float32 mono at 16 kHz, exactly ``num_frames / fps`` seconds long
              (N = round(num_frames * 16000 / fps)); frame k's audio starts at sample
              round(k * sr / fps) at any rate sr (``audio.frame_samples``), computed from k
              alone with the rate as given (29.97 or 30000/1001, never rounded).
    mel:      (T, 80, 16) log-mel window per video frame, framed like Wav2Lip
              (n_fft 800, hop 200, win 800, fmin 55, fmax 7600; window i starts at mel
              frame int(i * 80 / fps)), T = num_frames.
    loudness: (T,) loudness per frame in dBFS (about -100 for digital silence).
    voicing:  (T,) voicing probability per frame in [0, 1].
    audio:    ComfyUI AUDIO dict at full quality, cut or padded like ``waveform``; used for
              the final video.
    """

    waveform: torch.Tensor
    fps: float
    num_frames: int
    mel: torch.Tensor
    loudness: torch.Tensor
    voicing: torch.Tensor
    audio: dict
    name: str = "audio"
    sample_rate: int = ANALYSIS_RATE

    def __post_init__(self) -> None:
        who = "AudioDriver"
        check_shape(self.waveform, "N", who, "waveform")
        check_shape(self.mel, "T 80 16", who, "mel", T=self.num_frames)
        check_shape(self.loudness, "T", who, "loudness", T=self.num_frames)
        check_shape(self.voicing, "T", who, "voicing", T=self.num_frames)
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise InputError(f"{who}: fps must be positive, got {self.fps}.")

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps


@dataclass(frozen=True)
class Phoneme:
    """One timed phoneme. label: ARPAbet without stress digits (``"AA"``, ``"P"``), or
    ``"SIL"`` for silence, ``"BREATH"`` for an audible in-breath before speech; start/end in
    seconds; confidence in [0, 1]."""

    label: str
    start: float
    end: float
    confidence: float = 1.0


@dataclass(frozen=True)
class PhonemeTrack:
    """Phonemes in time order covering ``[0, duration]``.

    backend: which method made them ("recognize", "align", "acoustic").
    words:   (word, start, end) triples when the backend knows them (alignment), else empty.
    """

    phonemes: tuple[Phoneme, ...]
    duration: float
    backend: str
    words: tuple[tuple[str, float, float], ...] = ()

    def text(self) -> str:
        """Readable listing for the node's text preview."""
        lines = [f"{len(self.phonemes)} phonemes, {self.duration:.2f} s, backend {self.backend}"]
        for p in self.phonemes:
            lines.append(f"{p.start:7.3f} {p.end:7.3f}  {p.label:<4} {p.confidence:.2f}")
        return "\n".join(lines)


MOUTH_PARAMS = ("jaw_open", "lip_spread", "lip_round", "lip_close", "teeth_on_lip")
"""Continuous mouth parameters, each in [0, 1], in this column order of VisemeTrack.params."""


@dataclass(frozen=True)
class VisemeTrack:
    """A per-frame mouth track at the video fps.

    weights: (T, V) weights over ``names`` (rows sum to 1 before ``strength`` is applied).
    params:  (T, 5) mouth parameters in the order of :data:`MOUTH_PARAMS`, in [0, 1].
    cues:    (start, end, viseme name) segments, the dominant shape, for export.
    """

    weights: torch.Tensor
    params: torch.Tensor
    names: tuple[str, ...]
    viseme_set: str
    fps: float
    cues: tuple[tuple[float, float, str], ...] = ()

    def __post_init__(self) -> None:
        who = "VisemeTrack"
        check_shape(self.weights, "T V", who, "weights", V=len(self.names))
        check_shape(self.params, "T P", who, "params", T=self.weights.shape[0], P=len(MOUTH_PARAMS))

    @property
    def num_frames(self) -> int:
        return int(self.weights.shape[0])

    def param(self, name: str) -> torch.Tensor:
        """(T,) column of one mouth parameter by name."""
        return self.params[:, MOUTH_PARAMS.index(name)]


MOUTH_POINTS = (
    "corner_left", "corner_right", "upper_outer", "lower_outer",
    "upper_inner", "lower_inner", "nose", "chin",
)
"""Mouth landmark order in FaceTrack.mouth. Left/right as seen in the image (x grows right)."""


CUT = "cut"
"""FaceTrack ``extras`` key: (B,) float32, 1 at the first frame of each new shot (the clip cuts to another
face there, found by the Haar and manual-box tracks); the clip's own mouths are chosen within each shot."""

TEMPLATE_MOVED = "template_moved"
"""FaceTrack ``extras`` key: (B,) float32, 1 where the clip's own mouth template placed the mouth (a head
tilted out of the dark-line search's reach; Haar and manual-box tracks)."""

OWN_PIXELS = "own_pixels"
"""FaceTrack ``extras`` key: (B,) bool, the frames whose crop is another frame's lower face of the clip,
already brought to this frame's light by its generator (the clip's own mouths; not the frames that
keep their own mouth, nor the warped ones). There Composite matches only the mean colour, not the
contrast (a smile's shadows in the ring are another expression, not another light), and renews the
mouth region whatever its difference (no detail of the frame's own mouth is kept under it)."""


def without_own_pixels(track: "FaceTrack") -> "FaceTrack":
    """``track`` without the :data:`OWN_PIXELS` mark (a generator's input: its crops are its own)."""
    if OWN_PIXELS not in track.extras:
        return track
    return replace(track, extras={k: v for k, v in track.extras.items() if k != OWN_PIXELS})


@dataclass(frozen=True)
class FaceTrack:
    """One face followed through a clip of ``B`` frames of size ``frame_size`` = (H, W).

    boxes:     (B, 4) face box x0, y0, x1, y1 in frame pixels (smoothed).
    mouth:     (B, 8, 2) mouth landmarks (x, y) in frame pixels, order :data:`MOUTH_POINTS`.
    opening:   (B,) mouth-opening measure: inner-lip gap divided by mouth width (0 = closed),
               from the height of the inner mouth (``face.mouth_opening``).
    transform: (B, 2, 3) similarity mapping frame pixels to crop pixels of an aligned,
               mouth-centred ``crop_size`` x ``crop_size`` crop (kornia ``warp_affine`` layout).
    found:     (B,) bool, True where the face was detected, False where interpolated.
    report:    human-readable notes (lost frames, detector used).
    extras:    what MaskLowerFace adds per frame: ``contrast`` (B,) the inner-mouth contrast
               (``face.mouth_contrast``, SyncScore's lip signal), ``angle`` (the crops' roll, radians),
               ``face_width``, ``mesh_gap`` (face mesh only) and the ``detector`` name; the Haar and
               manual-box tracks add ``cut`` (:data:`CUT`) and ``template_moved`` (:data:`TEMPLATE_MOVED`).
               LipSyncInference's track of the clip's own mouths adds ``own_pixels``
               (:data:`OWN_PIXELS`).
    """

    boxes: torch.Tensor
    mouth: torch.Tensor
    opening: torch.Tensor
    transform: torch.Tensor
    crop_size: int
    frame_size: tuple[int, int]
    found: torch.Tensor
    report: str = ""
    extras: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        who = "FaceTrack"
        b = self.boxes.shape[0] if isinstance(self.boxes, torch.Tensor) else -1
        check_shape(self.boxes, "B 4", who, "boxes")
        check_shape(self.mouth, "B 8 2", who, "mouth", B=b)
        check_shape(self.opening, "B", who, "opening", B=b)
        check_shape(self.transform, "B 2 3", who, "transform", B=b)
        check_shape(self.found, "B", who, "found", B=b)

    @property
    def num_frames(self) -> int:
        return int(self.boxes.shape[0])

    def frames(self, index) -> "FaceTrack":
        """The track of some of its frames: ``index`` a slice, or a sequence / tensor of frame numbers.
        Per-frame tensors are indexed, the per-frame ``extras`` (contrast, angle, face width, ...)
        included, so a measure read from the part is that of its own frames; ``report`` is kept."""
        if not isinstance(index, slice):
            index = torch.as_tensor(index, dtype=torch.long)
        pick = lambda t: t[index if isinstance(index, slice) else index.to(t.device)]  # noqa: E731
        b = self.num_frames
        extras = {k: (pick(v) if isinstance(v, torch.Tensor) and v.ndim >= 1 and v.shape[0] == b else v)
                  for k, v in self.extras.items()}
        return replace(self, boxes=pick(self.boxes), mouth=pick(self.mouth), opening=pick(self.opening),
                       transform=pick(self.transform), found=pick(self.found), extras=extras)
