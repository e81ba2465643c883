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


# --- sync: SyncScore's signals, lead and confidence (lipsync_models/sync) -----------------------
