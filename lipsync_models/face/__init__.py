"""Face tracking, mouth landmarks, the mouth-opening measure and the lower-face mask.

Everything here is weight-free by default: faces come from OpenCV's bundled Haar cascade
(``opencv-python-headless`` < 5), detected on a downscaled frame every few frames and searched
near the last box in between; the mouth is first placed by the dark line between the lips,
then centred on the lips' extent (horizontal edges of luma and lip chroma: corners, top and
bottom of the lips), and its opening by the height of the non-red inner mouth (teeth, cavity)
inside an aligned crop; beside it, the inner-mouth contrast, SyncScore's lip signal.
mediapipe's legacy face mesh is an optional, more precise tracker (``detector="mediapipe"``);
both trackers read the same two measures, so SyncScore compares like with like.

Geometry, in one place:

* face box: square-ish Haar-style box (x0, y0, x1, y1) in frame pixels, width ``w``;
  the mouth centre sits near (x0 + 0.51 w, y0 + 0.80 w), the mouth is about 0.27 w wide
  (``MOUTH_IN_BOX``, ``MOUTH_WIDTH`` in :mod:`lipsync_models.calibration`).
* aligned crop: a similarity transform (kornia ``warp_affine`` layout, frame px -> crop px)
  that puts the mouth centre at the crop centre, levels the face (eye line on the Haar path,
  mouth-corner line with the face mesh) and makes the crop side ``1.0 * w``. The same crop,
  resized to :data:`ANALYSIS_SIZE`, is what :func:`mouth_opening` reads.

Modules, one concern each: ``track`` (:func:`track_faces`: the strategies' raw tracks smoothed,
measured and assembled), ``choose`` (which face, and the same face from frame to frame), ``speaking``
(:func:`track_speaking`: the face whose lips move with the audio), ``pixels`` (grey frames, NaN/Inf), ``haar`` and ``mesh`` (one strategy per detector), ``lips`` (the mouth
placed from the pixels on the Haar path), ``measure`` (:func:`mouth_opening`, :func:`mouth_contrast`),
``geometry`` (crop transforms, :func:`mouth_crops`), ``mask`` (:func:`lower_face_mask`), ``preview``
(:func:`preview`), ``_base`` (dependencies, conversions, filters). Fitted constants live in
:mod:`lipsync_models.calibration` (face section).
"""

from __future__ import annotations

from ..calibration import LIP_COLOUR_FRAMES
from ._base import ANALYSIS_SIZE, CROP_SCALE, DETECTORS, MEDIAPIPE_INSTALL, mediapipe_available
from .geometry import mouth_crops
from .mask import lower_face_mask
from .measure import mouth_contrast, mouth_opening
from .preview import PREVIEW_SIDE, preview, preview_indices
from .choose import CHOICES, FaceChoice
from .speaking import speaking_steps, track_speaking
from .track import progress_steps, track_faces

__all__ = [
    "ANALYSIS_SIZE", "CHOICES", "CROP_SCALE", "DETECTORS", "FaceChoice", "LIP_COLOUR_FRAMES", "MEDIAPIPE_INSTALL",
    "PREVIEW_SIDE",
    "lower_face_mask", "mediapipe_available", "mouth_contrast", "mouth_crops", "mouth_opening", "preview",
    "preview_indices", "progress_steps", "speaking_steps", "track_faces", "track_speaking",
]
