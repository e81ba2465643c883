"""Rhubarb Lip Sync's export formats (JSON and TSV) of a viseme track's cues."""

from __future__ import annotations

import json

from ..types import VisemeTrack
from .frames import _cues
from .tables import VISEME_SETS

def _decimals(times) -> int:
    """Rhubarb writes times with 2 decimals; use 3 where 2 would merge distinct boundaries."""
    r2 = [round(x, 2) for x in times]
    return 2 if all(b > a for a, b in zip(r2, r2[1:])) else 3


def _rest_name(track: VisemeTrack) -> str:
    vs = VISEME_SETS.get(track.viseme_set)
    return vs.rest if vs is not None and vs.rest in track.names else track.names[0]


def _cue_values(track: VisemeTrack):
    """The track's cues, or (when it carries none) the dominant shape per run of frames."""
    cues = list(track.cues)
    if not cues:
        cues = list(_cues(track.weights.detach().double().cpu(), track.names, track.fps)) if track.num_frames \
            else [(0.0, 0.0, _rest_name(track))]
    return cues, track.num_frames / track.fps


def to_rhubarb_json(track: VisemeTrack, sound_file: str = "") -> str:
    """Rhubarb Lip Sync's JSON export: ``{"metadata": {"soundFile", "duration"},
    "mouthCues": [{"start", "end", "value"}, ...]}`` laid out as Rhubarb does (one cue per
    line). Values are the set's own viseme names (A-H/X for Rhubarb)."""
    cues, duration = _cue_values(track)
    d = _decimals([c[0] for c in cues] + [duration])
    lines = ["{", '  "metadata": {', f'    "soundFile": {json.dumps(str(sound_file))},',
             f'    "duration": {duration:.{d}f}', "  },", '  "mouthCues": [']
    body = [f'    {{ "start": {s:.{d}f}, "end": {e:.{d}f}, "value": {json.dumps(v)} }}' for s, e, v in cues]
    lines.append(",\n".join(body))
    lines += ["  ]", "}"]
    return "\n".join(lines) + "\n"


def to_tsv(track: VisemeTrack) -> str:
    """Rhubarb Lip Sync's TSV export: one ``start<TAB>value`` line per cue, then the end time
    with the rest shape (X for Rhubarb)."""
    cues, duration = _cue_values(track)
    rest = _rest_name(track)
    d = _decimals([c[0] for c in cues] + [duration])
    rows = [f"{s:.{d}f}\t{v}" for s, _, v in cues] + [f"{duration:.{d}f}\t{rest}"]
    return "\n".join(rows) + "\n"
