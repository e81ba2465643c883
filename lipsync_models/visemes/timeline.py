"""The timeline rules of MapVisemes, on segments in seconds (a few thousand per 10 minutes: plain
Python): phonemes -> shapes with look-ahead for the consonants the lips do not make, diphthong
glides, bridged short pauses, anticipation (closures held to their release) and minimum holds
that never make the track lag."""

from __future__ import annotations

import math

import numpy as np

from ..errors import InputError
from ..types import PhonemeTrack
from .tables import VisemeSet, normalize_label

GLIDE_SPLIT = 0.6
"""A diphthong shows its first shape for this fraction of its length, then the glide target."""


def _phoneme_segments(track: PhonemeTrack, vs: VisemeSet, end_time: float, who: str,
                      bridge_s: float = 0.0):
    """Phonemes -> contiguous segments [(start, end, viseme index or -1 for pause)] covering
    [0, end_time]; gaps between phonemes are pauses. Consonants with alternative shapes
    (``vs.alternatives``) take the shape of what follows when it is one of them (see
    :data:`RHUBARB_ALTERNATIVES`); a pause of ``bridge_s`` or more breaks that look-ahead."""
    unknown = set()
    items = []  # (start, end, label) clipped, in time order, no overlaps
    t = 0.0
    for p in sorted(track.phonemes, key=lambda p: (float(p.start), float(p.end))):
        s, e = float(p.start), float(p.end)
        if not (math.isfinite(s) and math.isfinite(e)):
            raise InputError(f"{who}: phoneme {p.label!r} has a non-finite time ({p.start}, {p.end}).")
        if e < s:
            raise InputError(f"{who}: phoneme {p.label!r} ends before it starts ({s:.3f} > {e:.3f} s).")
        lab = normalize_label(p.label)
        if lab != "SIL" and lab not in vs.table:
            unknown.add(str(p.label))
            continue
        s, e = max(s, t), min(e, end_time)
        if e <= s:
            continue
        items.append((s, e, lab))
        t = e
    if unknown:
        raise InputError(f"{who}: unknown phoneme labels {sorted(unknown)[:10]}. Labels must be ARPAbet "
                         f"(e.g. AA, P, SH; stress digits allowed) or SIL.")
    # first shape of each phone, chosen right to left so clusters follow the sound after them
    first: list[int] = [-1] * len(items)
    follow, follow_at = -1, math.inf  # shape of the next sound and where it starts
    for i in range(len(items) - 1, -1, -1):
        s, e, lab = items[i]
        if lab == "SIL":  # pauses do not move follow_at: the gap below spans all of them
            continue
        v = vs.index(vs.table[lab])
        alts = vs.alternatives.get(lab)
        if alts and follow >= 0 and vs.names[follow] in alts and follow_at - e < bridge_s:
            v = follow
        first[i] = v
        follow, follow_at = v, s
    segs: list[list] = []
    t = 0.0
    for (s, e, lab), v in zip(items, first):
        if s > t:
            segs.append([t, s, -1])
        glide = vs.glides.get(lab) if v >= 0 else None
        if glide is not None:
            mid = s + GLIDE_SPLIT * (e - s)
            segs.append([s, mid, v])
            segs.append([mid, e, vs.index(glide)])
        else:
            segs.append([s, e, v])
        t = e
    if t < end_time:
        segs.append([t, end_time, -1])
    return segs


def _merge(segs):
    out = []
    for s in segs:
        if out and out[-1][2] == s[2]:
            out[-1][1] = s[1]
        elif s[1] > s[0] or not out:
            out.append(list(s))
    return out


def _bridge_pauses(segs, bridge_s: float):
    """Pauses shorter than ``bridge_s`` between two spoken segments vanish: the shape before
    holds to the middle of the pause, the shape after starts there."""
    out = []
    for i, s in enumerate(segs):
        is_inner = 0 < i < len(segs) - 1
        if (s[2] == -1 and is_inner and (s[1] - s[0]) < bridge_s
                and segs[i - 1][2] != -1 and segs[i + 1][2] != -1):
            mid = 0.5 * (s[0] + s[1])
            out[-1][1] = mid
            segs[i + 1] = [mid, segs[i + 1][1], segs[i + 1][2]]
            continue
        out.append(list(s))
    return out


def _anticipate(bounds: np.ndarray, vis: np.ndarray, closed: int, lead_s: float) -> np.ndarray:
    """Each shape starts ``lead_s`` before its sound, except that a bilabial closure is held
    until its release (the acoustic end of P/B/M). bounds: (n+1,) -> new (n+1,)."""
    b = bounds.copy()
    if lead_s > 0 and len(b) > 2:
        inner = b[1:-1] - lead_s
        keep = vis[:-1] == closed  # boundary after a closure stays at the release
        b[1:-1] = np.where(keep, b[1:-1], inner)
        b[1:-1] = np.clip(b[1:-1], b[0], b[-1])
        # a closure held to its release wins over the early start of the shapes after it
        b = np.maximum.accumulate(b)
    return b


def _enforce_hold(bounds: np.ndarray, holds: np.ndarray, max_delay: float,
                  closure: np.ndarray | None = None) -> np.ndarray:
    """Stretch segments shorter than their hold without letting the track drift late.

    A short segment first takes time from the slack of the segment before it (moving its
    start earlier: more anticipation, never a lag), at most half its need while the segment
    after has slack too; then it pushes its end later, but no boundary ever moves more than
    ``max_delay`` after where the sound put it, so a run of short phones cannot delay the
    track; what is still missing is taken from the previous segment's remaining slack.
    Closures (``closure[k]`` True) take from the previous segment first and may push as far
    as needed: the lips must show closed in at least one frame. bounds (n+1,), holds (n,).
    """
    b = bounds.astype(np.float64).copy()
    orig = b.copy()
    n = len(holds)
    closure = np.zeros(n, dtype=bool) if closure is None else closure
    eps = 1e-12
    for k in range(n):
        need = holds[k] - (b[k + 1] - b[k])
        if need <= eps:
            continue
        prev_slack = max(0.0, (b[k] - b[k - 1]) - holds[k - 1]) if k > 0 else 0.0
        next_slack = max(0.0, (b[k + 2] - b[k + 1]) - holds[k + 1]) if k + 1 < n else 0.0
        first_share = need if (closure[k] or next_slack <= 0 or k + 1 >= n) else 0.5 * need
        take = min(prev_slack, first_share)
        b[k] -= take
        need -= take
        prev_slack -= take
        if need > eps and k + 1 < n:
            cap = b[n] if closure[k] else max(b[k + 1], min(orig[k + 1] + max_delay, b[n]))
            new = min(b[k + 1] + need, cap)
            need -= new - b[k + 1]
            b[k + 1] = new
            j = k + 2
            while j < n and b[j] < b[k + 1]:
                b[j] = b[k + 1]
                j += 1
        if need > eps and k > 0:  # still short: whatever slack the previous segment has left
            take = min(prev_slack, need)
            if closure[k]:  # a closure may eat into its neighbour's hold, not past its start
                take = min(need, b[k] - b[k - 1])
            b[k] -= take
    return b


def _timeline(track, vs, fps, num_frames, anticipation_ms, min_hold_ms, bridge_pause_ms, who):
    """Final segment bounds (n+1,) float64 and viseme index per segment (n,) (rest = real index)."""
    end_time = num_frames / fps
    segs = _phoneme_segments(track, vs, end_time, who, bridge_pause_ms / 1000.0)
    segs = _merge(segs)
    segs = _bridge_pauses(segs, bridge_pause_ms / 1000.0)
    rest = vs.index(vs.rest)
    for s in segs:
        if s[2] == -1:
            s[2] = rest
    segs = _merge(segs)
    bounds = np.array([s[0] for s in segs] + [segs[-1][1]], dtype=np.float64)
    bounds[0], bounds[-1] = 0.0, end_time
    vis = np.array([s[2] for s in segs], dtype=np.int64)
    closed = vs.index(vs.closed)
    bounds = _anticipate(bounds, vis, closed, anticipation_ms / 1000.0)
    hold = min_hold_ms / 1000.0
    holds = np.full(len(vis), hold)
    is_closure = vis == closed
    holds[is_closure] = max(hold, 1.0 / fps)  # a closure shows in >= 1 frame
    for edge in (0, len(vis) - 1):  # rest cut by the clip's start or end needs no hold
        if vis[edge] == rest:
            holds[edge] = 0.0
    bounds = _enforce_hold(bounds, holds, max_delay=0.5 * hold, closure=is_closure)
    keep = np.diff(bounds) > 1e-9
    if not keep.all():  # zero-length leftovers (a phone swallowed by a closure)
        vis = vis[keep]
        bounds = np.concatenate([bounds[:-1][keep], bounds[-1:]])
    return bounds, vis
