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
# Fitted on the 7 GRID clips (tests/data/grid) by reading the 10 ms levels around the recogniser's
# noise islands and the speakers' in-breaths; none of them was swept on a figure except where the
# docstring gives one. Held-out figures: bench/bench_phonemes.py (NOISE_ISLAND_BELOW_DB) and
# bench/bench_visemes.py --grid (BREATH_ABOVE_FLOOR_DB), leave-one-clip-out over the candidate grid.

NOISE_ISLAND_BELOW_DB = 20.0
"""A recognised run between pauses with no vowel or sonorant is noise when its loudest 10 ms
stays this far below the speech (98th percentile of the 10 ms levels). Fitted on GRID: the
breaths and clicks the recogniser hears as "T K", "K", "TH" peak 25-36 dB below; words peak at or
above it; set between the two (commit cac2ab8: recognise PER 56.4% -> 53.6% on the 7 clips,
in-sample)."""

# The breath rules (phonemes/breaths.py, mark_breaths): fitted on GRID's in-breaths (10-25 dB above
# the room, 35-55 dB below the speech, the face-mesh lip gap about half its vowel value) by reading
# the high-passed 10 ms level tracks before each line; set by hand, not swept (commit 65666b5).
BREATH_ABOVE_FLOOR_DB = 10.0
"""A silent stretch counts as breath where its high-passed 10 ms level is at least this far
above the recording's noise floor (10th percentile of all 10 ms levels)."""
BREATH_MIN_SNR_DB = 30.0
"""Breaths are looked for only when speech (98th percentile level) stands at least this far
above the noise floor: on noisy recordings room noise would pass for breath."""
BREATH_FLOOR_MAX_DB = 60.0
"""Over digital silence the floor is taken no lower than this far below the speech, so faint
synthetic tails do not turn into breath. A real room's noise is the floor however far below the
speech it lies (GRID swwp2s: 65 dB; its breath, 10-15 dB above the room, was lost to this cap
when it applied to every recording)."""
BREATH_BEFORE_S = 1.0
"""Only sound in the last this-many seconds of a pause before speech is an in-breath; noise
after speech or early in a long pause is left as silence."""
BREATH_AFTER_SPEECH_S = 0.1
"""In a pause between two phrases, the first this-many seconds are the previous sound's tail
(decay, room reverberation), not breath."""
BREATH_MIN_S = 0.06
"""Shortest audible breath (loud frames in one burst)."""
BREATH_JOIN_S = 0.1
"""Loud frames this close together belong to one burst of breath."""
BREATH_HOLD_S = 0.5
"""A breath ending this close to the speech onset holds until it (the lips stay parted)."""


# --- visemes: the jaw and the timeline rules (lipsync_models/visemes) ---------------------------
# Fitted on the 7 GRID clips by correlating MapVisemes' jaw_open with the filmed face-mesh lip gap
# (bench/bench_visemes.py --grid --detector mediapipe) and by SyncScore on generated clips
# (bench/bench_e2e.py). bench_visemes prints the leave-one-clip-out figure of each next to the
# in-sample one. The shape tables (visemes/tables.py) come from published charts and stay there.

ANTICIPATION_MS = 0.0
"""Default lead of the shapes over the sound. Measured on the 7 GRID clips (bench_visemes.py
--grid --detector mediapipe; transcript alignment, no breaths marked; jaw_open against the
filmed face-mesh inner-lip gap): r = 0.639 at 0 ms, 0.620 at 20 ms, 0.579 at 40 ms (with the
breaths marked, 0.711 at 0 ms; recognised phonemes with breaths: 0.676 / 0.645 / 0.602); the
filmed mouth one frame later than the track follows it almost as well (0.623) and one frame
earlier clearly worse (0.558): filmed lips do not lead the aligned phoneme timeline (if
anything they trail it), so a lead puts the mouth early. Frames sample the timeline at their
centre, half a frame after their timestamp. The judge agrees: GRID clips driven by another
clip's audio (bench_e2e.py) score offset 0 in SyncScore on 7/7 with the transcript at 0 ms,
5/7 at 20 ms, 3/7 at 30 ms (the generated mouth reads early).
Earlier sessions used 20 ms ("a mouth slightly early is accepted better than late"); the
animators' one-frame lead (40 ms) stays one widget change away."""

BREATH_OPEN = 0.35
"""Default share of the set's open shape mixed into the rest pose during an audible in-breath
(ExtractPhonemes' BREATH label): jaw_open 0.19 with the Rhubarb set (C is 0.55). Filmed GRID
speakers part their lips to about half their vowel opening as they breathe in before the line
(face-mesh lip gap 0.05-0.09 against 0.13-0.15 on the vowels, closed 0.02); the value is kept
lower than that because a breath mistaken from room noise should not read as speech.
bench_e2e.py (GRID, each clip driven by the next one's audio) gives the figures."""


# --- generator and composite (lipsync_models/generator.py, composite.py) -----------------------


# --- sync: SyncScore's signals, lead and confidence (lipsync_models/sync) -----------------------
