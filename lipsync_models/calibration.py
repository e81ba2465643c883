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

NATURAL_LEAD_FRAMES = {
    "haar": {"envelope": 0.35, "closures": 0.49, "phonemes": -0.28, "phonemes+closures": 0.17},
    "mediapipe": {"envelope": 0.12, "closures": 0.42, "phonemes": -0.39, "phonemes+closures": -0.02},
}
"""Where SyncScore's articulation curve peaks on recorded, in-sync speech, in frames (25 fps), per
face detector (the lip measurements differ) and audio signal set: "envelope" (the default scorer),
"closures" (+ lip-closure anchors from aligned phonemes), "phonemes" (the phoneme-predicted mouth),
"phonemes+closures" (both). Positive: the audio signals peak slightly after the lips they explain.
The offset is ``round(curve peak - lead)``.

Fitted on: the 7 GRID clips of ``tests/data/grid``, as recorded (audio and picture from the same
file). How: the mean of the 7 clips' curve peaks (``SyncResult.raw_peak``) at offset 0, per
detector and signal set; "manual" tracks use the haar values (the same lip finder). Per-clip
peaks spread over 0.76 frame with haar (0.52, -0.06, 0.11, 0.70, 0.35, 0.19, 0.64), 1.17 with
the mesh. "phonemes" depends on MapVisemes' default anticipation (0 ms).

Held out (``bench/bench_sync.py``: for each clip the lead is the mean peak of the other six,
and that clip's shifts are scored with it), haar, "envelope", with the images: shifts
-8,-5,-3..-1,1..3,5,8 exact on 70/70, offset 0 on 7/7 (as in-sample). Seven 3-second clips are all the footage this has seen; on GRID clips of
other speakers the spread is wider (an earlier check on unseen clips: 10 of 20 shifts exact, all
within one frame)."""

STATIC_FLOW = 0.15
"""With the images, SyncScore counts the lips as static (not judgeable) when the optical-flow
opening (``sync.flow_opening``, crop pixels; 1 px = 1/32 of the mouth width) varies less than this.
Fitted on: the spread of that signal on speaking GRID lips against a still frame seen through a
jittering face track (0.01-0.05, the astronaut portrait of ``make demo``); set by hand between the
two groups. Not refitted per fold (a threshold between two groups, not a mean). Check
(``bench/bench_sync.py``, haar tracks): each recorded clip's spread is >= 0.76 over the clip and
>= 0.37 in its quietest 1-s window (brbk7n, hop 0.5 s), 2.5x above the threshold."""

TRACK_MATCH_R = 0.9
"""Smallest correlation between a face track's lip signal and the same signal measured on the
scored frames for SyncScore to use the track's lip measurements (else it measures the lips on the
frames). Fitted on: the track of a generator's INPUT frames gives 0.1-0.75 on the chain's output
(GRID cross-driven outputs and the astronaut demo) against 0.99-1.00 for a track made on the same
frames; set by hand between the two. Not refitted per fold (a threshold between two groups). Check
(``bench/bench_sync.py``): each recorded GRID clip's own haar track gives r >= 0.999."""

ACTIVITY_WEIGHT = 0.5
"""Weight of SyncScore's slow speech-activity curve added to the mean of the fine correlation
curves (it stops the syllable rhythm aliasing the peak by +-5 frames). Chosen by hand while
looking at the 7 GRID clips; not refitted per fold."""

ACTIVITY_SIGMA_S = 0.12
"""Gaussian smoothing (seconds) of SyncScore's speech-activity signals. Chosen with
:data:`ACTIVITY_WEIGHT` on the same 7 GRID clips; not refitted per fold."""
