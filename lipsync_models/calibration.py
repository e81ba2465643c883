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
The offset is ``round(curve peak - lead)``; "manual" tracks use the haar values (the same lip finder).

Fitted on: the 7 GRID clips of ``tests/data/grid`` as recorded (audio and picture from one file),
with the images (optical flow) and the tracker of the column. How: the mean of the 7 clips' curve
peaks (``SyncResult.raw_peak``). Refitted with the current code (``bench/bench_sync.py``) the means
are within 0.013 frame of these values (haar 0.350, 0.496, -0.271, 0.183; mesh 0.117, 0.414,
-0.381, -0.009). Per-clip peaks spread 0.74 frame (haar envelope: 0.54, -0.05, 0.11, 0.69, 0.35,
0.17, 0.64) to 1.62 (mesh phonemes); lbax4n is the low outlier in most columns. "phonemes" depends
on MapVisemes' default anticipation (0 ms).

Held out (leave-one-clip-out, ``bench/bench_sync.py``: for each clip the lead is the mean peak of
the other six and that clip is scored again with it; exact = the injected shift recovered):

=========================  ===========  =====================  ==========  ===================
detector, signals          shifts       exact held out         within +-1  worst |err| (frames)
=========================  ===========  =====================  ==========  ===================
haar, envelope (default)   -8..+8       112/112 (100 %)        100 %       0.47
haar, closures             -5..+5       70/70 (100 %)          100 %       0.49
haar, phonemes             -5..+5       50/70 (71.4 %)         100 %       1.00
haar, phonemes+closures    -5..+5       60/70 (85.7 %)         100 %       0.76
mesh, envelope             -8..+8       80/112 (71.4 %)        100 %       0.68
mesh, closures             -5..+5       60/70 (85.7 %)         100 %       0.90
mesh, phonemes             -5..+5       41/70 (58.6 %)         100 %       1.23
mesh, phonemes+closures    -5..+5       60/70 (85.7 %)         100 %       0.62
=========================  ===========  =====================  ==========  ===================

In-sample (these constants) the same except haar phonemes 57/70 (81.4 %). The in-sync confidence
is read at offset 0 of the lead-corrected curve, so it rests on the lead too: haar envelope, AUC
synced vs shifted by 5-8 frames held out 0.992 (in-sample 0.990), synced vs another clip's audio
held out 0.918 (0.918); 1.000 and 0.959-0.980 in the other columns (-5..+5). The recorded clips
(shift 0) held out: offset 0 on 7/7 (haar envelope, closures), 6/7 or 5/7 elsewhere, within one
frame on 7/7 everywhere. "worst |err|" is the largest |peak - lead - shift| before rounding:
exact needs < 0.5, within one frame < 1.5; haar envelope's 0.47 (brbk7n) sits at the rounding edge,
so other speakers will not all be exact: on GRID clips of other speakers, never seen by the pack,
an earlier check found 10 of 20 shifts exact, all within one frame. Seven 3-second clips are all
the footage this has seen. A per-clip estimate of the lead was tried and not adopted: the lag of
the track's lip measures behind the optical flow does not follow the per-clip peaks (lbbc2a's flow
alone peaks at +0.7 like its combined curve), so the spread is the speakers' own audio-to-lips
timing, which a clip cannot show apart from an unknown shift."""

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
looking at the 7 GRID clips; not refitted per fold. How much rides on it (``bench_sync.py
--activity-weights 0.25,1``, haar envelope, -8..+8, held out): the offsets are the same at 0.25,
0.5 and 1 (112/112 exact, worst error 0.47, 0.47, 0.46 frame); the confidence AUC synced vs shifted
0.997, 0.992, 0.990 and vs another clip's audio 0.939, 0.918, 0.918."""

ACTIVITY_SIGMA_S = 0.12
"""Gaussian smoothing (seconds) of SyncScore's speech-activity signals. Chosen with
:data:`ACTIVITY_WEIGHT` on the same 7 GRID clips; not refitted per fold."""
