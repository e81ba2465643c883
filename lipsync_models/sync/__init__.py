"""Audio-to-lips offset and confidence of a clip (the SyncScore node's library).

Two scorers share one result type, :class:`SyncResult` (``result``):

* :func:`score_articulation` (weight-free default, ``articulation``). Visual articulation signals
  per frame come from the face track (``signals``): the inner-lip gap and the outer-lip height
  (both divided by the mouth width's 2-s trend) and the track's lip signal (its inner-mouth
  contrast, :func:`face.mouth_contrast`, which rises the moment the lips part; its ``opening``
  when it has none) and, when the images are given (``frames``), the lips' parting speed from
  dense optical flow in a mouth crop (:func:`flow_opening`). With the images, the track's lip
  measurements are used only when they describe those images (:func:`track_matches` against
  :func:`frame_lip_signal`); otherwise, e.g. the generator's input track wired to its output,
  the lips are measured on the frames and the track gives only where the mouth is. Named in
  ``visual_names``, "pixels" adds the inner mouth's pixel components in the track's aligned crop
  (``mouth_pixels``: their multiple correlation with the audio). The measures on the frames read
  only a window around the mouth (a 1080p clip costs little more than a small one). Audio
  signals: the 300-3000 Hz log energy of the 16 kHz waveform (100 Hz, floored 40 dB under the
  clip's peak); optionally (``use_phonemes``) the mouth predicted from recognised phonemes by
  the MapVisemes chain; and, when timed phonemes are given, their P/B/M closures as sharp
  anchors (:func:`closure_signal`). The lag correlation (``lags``) gives the curve and its peak:
  each visual x audio pair's curve weighted by its reliability on this clip (:func:`reliability`:
  how far its own peak stands above the rest of its curve); the natural audio-to-lips lead
  (``calibration.NATURAL_LEAD_FRAMES``) is subtracted. The whole-clip offset is cross-checked by
  the per-window offsets (``uncertainty``): when they do not agree, or no signal's own curve peaks
  within one frame of the combined curve's peak, the result is ``uncertain``
  and the report says what would help.
* :func:`score_syncnet` (``syncnet_scorer``): the SyncNet ``syncnet_v2`` network
  (``backends.syncnet``): LSE-D and LSE-C over +-search_range offsets, as syncnet_python does.

:func:`score_clip` (``clip``) is the node's whole job: waveform from AUDIO or a driver, a face
track when none is given, the scorer by name. :func:`plot` (``figure``) draws a result.

Sign convention everywhere: a positive offset means the audio is LATE (delayed against the
lips): the sound of frame ``i`` is heard at frame ``i + offset``.

Confidence answers the artist's question "is this clip in sync as it stands?": the score at
offset 0 minus the median score over the searched lags, i.e. SyncNet's comparison of a point
of the curve with the rest of it, taken at offset 0 (for SyncNet: median distance minus the
distance at offset 0). It is high for in-sync clips and near or below 0 when the audio is
shifted or belongs to someone else. The curve's own peak minus the median (SyncNet's LSE-C
for SyncNet) says how sure the OFFSET is; it is ``peak_confidence`` and in the report. It
cannot tell a shifted clip from a synced one (a shift moves the peak, it does not lower it: GRID
AUC 0.35-0.46 synced vs shifted by 5-8 frames, bench_sync), which is why it is not the confidence
output.
"""

from ..calibration import ACTIVITY_WEIGHT, NATURAL_LEAD_FRAMES, STATIC_FLOW, TRACK_MATCH_R
from .articulation import (LEAD_FPS, MESH_NOTE, MIN_ACTIVE_FRAMES, MIN_ACTIVE_SECONDS, MIN_FRAMES, MIN_SECONDS,
                           VISUAL_SIGNALS, VISUAL_SIGNALS_WITH_IMAGES, natural_lead_for, score_articulation)
from .clip import STEPS, check_clip, clip_waveform, score_clip, track_for_scoring
from .figure import plot
from .frames import FLOW_CROP, flow_opening, frame_lip_signal, track_matches
from .lags import LAG_STEP, LagScore, corr_rows, lag_curves, reliability, score_lags
from .mouth_pixels import mouth_components, mouth_patches, subspace_curves
from .result import SyncResult
from .signals import (BAND_HZ, CLOSURES, ENVELOPE_RATE, FLOOR_DB, STATIC_STD, activity_signals, band_envelope,
                      closure_signal, predicted_mouth, track_lip_measure, track_lip_signal, visual_signals)
from .syncnet_scorer import score_syncnet
from .uncertainty import advice, is_uncertain, window_votes

__all__ = [
    "ACTIVITY_WEIGHT", "advice", "is_uncertain", "reliability", "window_votes", "BAND_HZ", "CLOSURES",
    "ENVELOPE_RATE", "FLOOR_DB", "FLOW_CROP", "LAG_STEP", "LagScore", "LEAD_FPS", "MESH_NOTE", "MIN_ACTIVE_FRAMES",
    "MIN_ACTIVE_SECONDS", "MIN_FRAMES", "MIN_SECONDS", "NATURAL_LEAD_FRAMES", "STATIC_FLOW", "STATIC_STD",
    "STEPS", "SyncResult", "TRACK_MATCH_R", "VISUAL_SIGNALS", "VISUAL_SIGNALS_WITH_IMAGES", "activity_signals",
    "band_envelope", "check_clip", "clip_waveform", "closure_signal", "corr_rows", "flow_opening",
    "frame_lip_signal", "lag_curves", "mouth_components", "mouth_patches", "natural_lead_for", "plot",
    "predicted_mouth", "score_articulation", "score_clip", "score_lags", "score_syncnet", "subspace_curves",
    "track_for_scoring", "track_lip_measure", "track_lip_signal",
    "track_matches", "visual_signals",
]
