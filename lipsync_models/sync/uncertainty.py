"""SyncScore's honest "uncertain": whether a clip's own evidence agrees on its offset, and what
would help when it does not.

The whole-clip offset is cross-checked against the per-window offsets (the same scorer on
overlapping ``window_s`` pieces, :func:`common.windows`): on speech whose lips the signals follow,
the windows read the same offset as the whole clip (GRID, shifts -4..+4: both windows within one
frame of it on 5 of the 7 clips, one of the two on lbax4n and swwp2s); where the signals follow
something else (a small face, a beard, a smile, head motion) each window finds its own peak and
they scatter. The rule is a vote, not a fitted threshold: the offset stands when at least half of
the windows that hold speech and lip movement read it within one frame; otherwise, or when fewer
than two windows can vote, or the clip is not judgeable at all, the answer is "uncertain".

A second check reads the whole clip's curve itself: its peak is a weighted sum of one curve per
visual x audio pair, and where those curves disagree the sum can peak where none of them does (a
compromise between signals that point at different offsets). When no pair's own curve peaks within
one frame of the combined curve's peak (the offset before the lead is subtracted and it is rounded;
``SyncResult.agreement`` 0: none of the signals' reliability supports it),
the answer is "uncertain" too. Also a rule, not a fitted threshold. Seen on the pack's own output:
GRID clips re-voiced with their own line, the line's phonemes recognised (no transcript), read -4,
-6 and -5 frames with agreement 0 (0.19-1.00 on the clips read right), while over the whole clip the
face mesh's lip gap of the output follows the speaker's own at lag 0 or -1. Neither reading is the
whole truth: the clip's own mouths replay runs of the clip's frames, and a run may sit several frames
off (lbax4n: output frames 9-23 wear input frames 3-14, six to nine frames late), so parts of such a clip are
off and the rest is not; "uncertain" is the honest answer there.

Known weakness: a 3-s clip has two 2-s windows, and the whole clip's peak usually matches one of
them, so on GRID clips given ANOTHER clip's audio the vote passes 7 of 7 (the in-sync confidence,
not this, tells those apart: ``bench/bench_sync.py``). It bites on longer clips (more windows).
"""

from __future__ import annotations

import numpy as np

from ..types import FaceTrack

MIN_VOTES = 2
"""Fewer judgeable windows than this cannot cross-check the offset: uncertain."""
SMALL_FACE_PX = 128
"""Advice only (changes no result): faces narrower than this (track box width, frame pixels) are
told that a larger face would help; the lips span a few pixels there. Not fitted."""
SHORT_CLIP_S = 10.0
"""Advice only: clips shorter than this are told that a longer clip would help. Not fitted."""


def window_votes(offset: int, windows: tuple[dict, ...] | list[dict]) -> tuple[int, int]:
    """(windows reading ``offset`` within one frame, judgeable windows) among per-window dicts
    {offset_frames, judgeable}."""
    ok = [w for w in windows if w.get("judgeable", True)]
    return sum(abs(int(w["offset_frames"]) - int(offset)) <= 1 for w in ok), len(ok)


def no_signal_agrees(agreement: float | None) -> bool:
    """The second check of the module docstring: no signal's own curve peaks within one frame of the
    combined curve's peak (``agreement`` 0, or NaN). None (a scorer without signal pairs): False."""
    return agreement is not None and not agreement > 0.0


def is_uncertain(offset: int, windows, judgeable: bool, cross_check: bool = True,
                 agreement: float | None = None) -> bool:
    """The vote of the module docstring: True unless the clip is judgeable and at least half of
    (and at least :data:`MIN_VOTES`) judgeable windows read ``offset`` within one frame, and some of
    the signals' reliability peaks within one frame of the combined curve's peak (``agreement`` > 0;
    None: not checked; NaN: uncertain). Each window's own agreement is not asked (a window votes with
    its offset alone).
    ``cross_check=False`` (no per-window track asked for, ``window_s=0``): only a clip that
    cannot be judged, or whose offset no signal reads, is uncertain."""
    if not judgeable:
        return True
    if no_signal_agrees(agreement):
        return True
    if not cross_check:
        return False
    agree, votes = window_votes(offset, windows)
    return votes < MIN_VOTES or 2 * agree < votes


def advice(track: FaceTrack, num_frames: int, fps: float, have_phonemes: bool) -> tuple[str, ...]:
    """What would help an uncertain clip, from what it lacks: a longer clip, a larger face, the
    transcript (ExtractPhonemes with it, wired to SyncScore's phonemes)."""
    out = []
    seconds = num_frames / float(fps)
    if seconds < SHORT_CLIP_S:
        out.append(f"a longer clip (this one is {seconds:.1f} s; {SHORT_CLIP_S:g} s or more of speech)")
    found = track.found.detach().cpu().numpy().astype(bool)
    widths = (track.boxes[:, 2] - track.boxes[:, 0]).detach().double().cpu().numpy()
    if found.any():
        widths = widths[found]
    face_px = float(np.median(widths)) if widths.size else 0.0
    if face_px < SMALL_FACE_PX:
        out.append(f"a larger face (about {face_px:.0f} px wide here; crop or film closer, {SMALL_FACE_PX} px or more)")
    if not have_phonemes:
        out.append("the transcript (ExtractPhonemes with the transcript, wired to 'phonemes': lip-closure anchors)")
    return tuple(out)
