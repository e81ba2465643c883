"""Every constant of the library that was fitted on footage, in one place, each with what it was
fitted on, how, and its held-out figure.

"Fitted" means chosen by looking at how the pack did on recorded clips (all of them, so far, the seven
3-second GRID clips in ``tests/data/grid``). Constants that follow from a definition or a standard
(sample rates, the Wav2Lip mel framing, table values taken from a published chart) stay beside their
code. Figures are leave-one-clip-out (fit on six clips, measure on the seventh, each clip in turn)
where the bench that prints them says so; in-sample figures are labelled as such.

Sections by concern; the modules import their constants from here.
"""

from __future__ import annotations

# --- face: tracking and the mouth measures (lipsync_models/face) ------------------------------

# Where the Haar path looks for the mouth (face/lips.py, face/track.py, face/mesh.py). The "face width" is the
# width of OpenCV's Haar face box; crops are one face width on a side.

MOUTH_IN_BOX = (0.51, 0.80)
"""Mouth centre inside a Haar face box, in box widths from its top-left corner.

Fitted on: the 7 GRID clips (7 speakers, frontal, 288x360). How: the mean over the clips of the mouth
centre's place in the smoothed Haar box; it is only the prior that the dark-line refinement moves by up to
:data:`REFINE_MAX`. bench/bench_face.py refits it with the face mesh's mouth corners as the centre:
in-sample (0.509, 0.798), each clip 0.007-0.035 face widths from it (mean 0.018); leave-one-clip-out
(fit on six clips, measured on the seventh) the held-out clip is 0.009-0.041 face widths from the prior
(mean 0.021), well inside :data:`REFINE_MAX` (0.08), so the refinement reaches the mouth on an unseen
speaker."""

MOUTH_WIDTH = 0.27
"""Mouth width (outer corners) in face widths. Fitted on: GRID, by eye on the Haar crops (the corner-to-corner
width of closed mouths); it scales the measures' windows and is the unit of the opening (gap / mouth width)."""

NOSE_ABOVE = 0.14
"""Bottom of the nose above the mouth centre, in face widths (GRID and the astronaut photograph, by eye);
the top of the lower-face mask."""

CHIN_BELOW = 0.24
"""Chin below the mouth centre, in face widths (GRID and the astronaut photograph, by eye); the bottom of
the lower-face mask."""

MESH_TO_BOX = 0.75
"""Face-mesh cheek-to-cheek width (points 234-454) divided by the Haar box width: the ratio of the two
trackers' widths on the GRID clips, so the mesh path's crops have the Haar path's scale."""

ANGLE_TRUST = 0.0
"""Share of the measured mouth-line slope used as the crop's rotation on the Haar path. On GRID (upright,
closed lips) the slope is within 3 degrees of the face mesh's corner line, but on a smiling still face (the
astronaut) it flipped by 7 degrees between noisy copies of the same frame, which makes the crop wobble; so
the Haar path rolls its crops with the eye line instead (face/haar.py ``_eye_roll``, upright when the eyes
are not found steadily) and only the face mesh (reliable corners) rotates the crop by the mouth line."""

REFINE_MAX = 0.08
"""Largest vertical shift (face widths) the mouth-line refinement may apply to the box prior (chosen on
GRID and the astronaut: larger lets the nostrils or the chin capture the dark line)."""

REFINE_MAX_X = 0.04
"""Largest sideways shift (face widths) measured; half of it is applied. Haar boxes are well centred (GRID:
within 0.036), while a smile's dark corner can pull the darkness centroid sideways (astronaut: 0.1)."""

LIP_LINE_BIAS = 0.007
"""The darkest row sits this far (face widths) above the mouth-corner line on GRID (mean over the clips,
against the face mesh's corners); added back."""

LIP_BOX_X = 0.30
"""Half-width (face widths) of the window searched for the mouth's horizontal edges (GRID, astronaut)."""

LIP_BOX_UP, LIP_BOX_DOWN = 0.13, 0.18
"""Rows searched above / below the crop centre (face widths): room for a lower lip below a smile's dark
upper line (astronaut: the dark line is 0.07 above the lips' middle)."""

RECENTRE_MAX = 0.08
"""Largest shift (face widths) the lip-extent recentring may apply to the mouth-line centre (GRID and the
astronaut, where the shift is 0.02-0.05)."""

LIP_COLOUR_FRAMES = 51
"""Frames (about 2 s at 25 fps) of the running median that applies the lip-colour lower edge's shift of
the mouth centre. Chosen on GRID's SyncScore: applied per frame the shift follows the jaw and costs the
Haar path one recorded clip at offset 0 (6/7 -> 5/7); a 2 s median keeps a smile and drops the speech."""

# The weight-free mouth measures (face/measure.py): thresholds on the inner-mouth score, read on aligned
# 96-px crops against the skin just above and below the mouth.

OPEN_ZERO = 0.45
"""Inner-mouth score of a closed mouth (GRID, closed frames: 0.40-0.65); the contrast rises from 0 above it."""

OPEN_GAIN = 0.22
"""Inner-lip gap / mouth width per unit of inner-mouth score (least squares against the face-mesh gap,
pooled GRID frames, r 0.80); it only sets the contrast's scale."""

OPEN_SOFT = 0.1
"""Softness of the contrast's floor at 0 (score units), chosen with :data:`OPEN_ZERO` on GRID."""

INNER_RED = 0.25
"""A window pixel is inner mouth (teeth, cavity) when 4 x (skin lip map - its lip map) exceeds this
(chosen on GRID against the face-mesh gap)."""

INNER_CAVITY = 0.6
"""... or when its darkness + 4 x non-redness (the contrast score) exceeds this (a cavity that keeps some
red; the only cue on greyscale video). 0.8 follows GRID a little better (min r 0.77) but loses even more
of greyscale video."""

INNER_MIN_SPAN = 0.6
"""The inner mouth's height is its area over the columns it spans, at least this share of the mouth width
(a few stray pixels do not make a tall opening); chosen on GRID."""

HEIGHT_GAIN = 0.90
"""Inner-lip gap per unit of inner-mouth mean height, both over the mouth width.

Fitted on: the 7 GRID clips, Haar track's opening against the face-mesh inner-lip gap, same frames. How:
least squares through the origin on the pooled frames; it only sets the scale (no Pearson r depends on it).
bench/bench_face.py refits it: in-sample 0.900; leave-one-clip-out (fit on six clips, measured on the
seventh) the gains are 0.77-0.96, and the held-out clip's mean |opening - mesh gap| per frame is 0.017-0.067
(mean 0.035; in-sample 0.017-0.053, mean 0.031), its |mean opening - mean gap| 0.000-0.063 (mean 0.028;
in-sample 0.001-0.046, mean 0.023)."""

# The lower-face mask (face/mask.py).

MASK_HALF_WIDTH = 0.38
"""Half the mask's width in face widths (the face mesh's cheek-to-cheek width is 0.75): a wide smile
(astronaut: 0.44 face widths) stays inside with its feather."""


# --- phonemes: recognition clean-up and breaths (lipsync_models/phonemes) ---------------------


# --- visemes: the jaw and the timeline rules (lipsync_models/visemes) ---------------------------


# --- generator and composite (lipsync_models/generator.py, composite.py) -----------------------


# --- sync: SyncScore's signals, lead and confidence (lipsync_models/sync) -----------------------
