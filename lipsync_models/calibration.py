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


# --- phonemes: recognition clean-up and breaths (lipsync_models/phonemes) ---------------------


# --- visemes: the jaw and the timeline rules (lipsync_models/visemes) ---------------------------


# --- generator and composite (lipsync_models/generator.py, composite.py) -----------------------
#
# The built-in generator's mouth shapes and tones, and composite's blend region, were chosen by
# eye: looking at the generated crops of the seven GRID clips (tests/data/grid) and of the
# astronaut portrait (the demo) side by side with the filmed mouths, and changing a value until
# the mouth read as real. None was fitted by minimising an error on those clips, so no
# leave-one-clip-out figure exists for them. The figures quoted beside them are in-sample (the
# same seven clips; bench/bench_generator.py prints them) and labelled so. Units: fractions of the
# clip's rest mouth width (corner to corner) unless said otherwise.

JAW_MAX = 0.35
"""Inner-lip gap at jaw_open = 1 (a wide 'ah'). Chosen from the filmed GRID speakers, whose widest
face-mesh inner-lip gap is 0.15-0.48 of the width (0.25 typical) over the seven clips; 0.55 (the
first value) looked like shouting next to them. In-sample only: the figure it was set against is
the range of those seven clips' gaps."""
LOWER_SHARE = 0.85
"""Share of the opening carried by the lower lip (the jaw); the upper lip lifts the rest. By eye."""
CHIN_SHARE = 0.8
"""How far the chin drops per unit of opening. By eye."""
CORNER_DROP = 0.2
"""How far the mouth corners drop per unit of opening. By eye."""
SPREAD = 0.18
ROUND = 0.28
OPEN_NARROW = 0.08
"""Relative mouth-width change at lip_spread = 1, lip_round = 1 and jaw_open = 1. By eye."""
ROUND_THICKEN = 0.04
PRESS_THIN = 0.035
TEETH_LIFT = 0.045
TEETH_LIP_DROP = 0.015
"""Lip-thickness changes (rounding thickens, pressing thins) and the F/V offsets (upper lip lifted
off the teeth, lower lip dropped under them). By eye."""
TEETH_MAX = 0.10
"""Height of the visible upper-teeth band in a wide-open mouth. By eye."""
TRACK_TOLERANCE = 0.04
"""Tracked lip thickness and mouth width within this of the clip's rest values count as at rest
(tracker noise is not turned into mouth motion); beyond twice it they are corrected in full.
Chosen by eye as the tracker's noise on the GRID tracks; no figure was recorded for it."""
GAP_TOLERANCE = 0.004
"""The same dead zone for the inner-lip gap, much narrower: GRID speakers' whole mouth motion is
2-10 % of the width. Lowered from 0.04 together with the re-rendered mouth (one commit, 82e0a23),
which took the footage's show-through (partial r of the output's opening with the footage's, the
requested jaw held fixed) from a mean of 0.58 to 0.15 over the seven clips (in-sample;
bench_generator); the share due to this constant alone was not measured."""
LIP_REPAINT = 0.9
LIP_FADE = 0.2
CORNER_SHARP = 4.0
"""How far (share of each lip's thickness, from its inner edge) the lip colour is painted over the
warped footage, over which share before that it fades out, and how sharply it fades towards the
corners (over 1 / CORNER_SHARP of the half-width). By eye: the tracked inner lips often lie on
the footage's teeth, which must be painted over."""
INNER_LIP = (0.62, 0.30, 0.30)
"""Typical inner-lip colour (RGB, 0..1) under a face brightness of 0.6, used where the sampled lips
are not red. Read off the GRID speakers' and the astronaut's lips by eye."""
CAVITY_SHALLOW = 0.85
CAVITY_DEEP = 0.18
CAVITY_CURVE = 1.0
CAVITY_MID = 0.35
"""Cavity colour as a fraction of the lip colour for a barely open and a wide-open mouth; the
darkening follows the opening (fraction of JAW_MAX) to the power CAVITY_CURVE; the middle of the
cavity is up to CAVITY_MID darker still. By eye (dark red; near-black read as a hole)."""
TEETH_TONE = (0.93, 0.90, 0.84)
TEETH_TINT = 0.15
"""Teeth: an off-white (RGB) in the face's light, with TEETH_TINT of the skin's colour mixed in
(pure white read as drawn). By eye."""
TONGUE_TONE = (0.62, 0.42, 0.42)
"""The tongue's colour as a fraction of the lip colour per channel (plus 0.02). By eye."""

DETAIL_TOLERANCE = 0.06
"""Composite: change (0..1) of a pixel at which the frame's own fine detail is mostly dropped
under a generated crop (keep_detail). By eye on the astronaut and GRID composites: low enough that
no ghost of the old mouth shows through the new one."""
MASK_HALF_WIDTH = 1.3
MASK_MAX_HALF_WIDTH = 0.38
MASK_BELOW_CHIN = 0.15
"""Composite's lower-face ellipse: horizontal semi-axis in mouth widths (cheek to cheek), capped
at this fraction of the crop side (the crop is one face width wide, so a wide smile cannot push
the blend past the cheeks); it reaches this share of the nose-chin distance below the chin (room
for an opening jaw). By eye on the astronaut and GRID crops."""
MASK_FALLBACK = (0.58, 0.42, 0.36)
"""The ellipse for frames whose mouth landmarks are unusable: horizontally centred in the crop,
centre height and semi-axes x, y as fractions of the crop side (the lower face of a mouth-centred
crop). By eye."""


# --- sync: SyncScore's signals, lead and confidence (lipsync_models/sync) -----------------------
