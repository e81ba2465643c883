"""MapVisemes' front door: timed phonemes -> a per-frame mouth track (viseme weights and mouth
parameters), the rules applied in order (see :func:`map_phonemes`)."""

from __future__ import annotations

import math

import numpy as np
import torch

from ..calibration import ANTICIPATION_MS, BREATH_OPEN
from ..errors import InputError
from ..types import PhonemeTrack, VisemeTrack
from .frames import SMOOTHING_MAX_MS, _box_weights, _breath_share, _cues, _gauss_smooth
from .tables import VisemeSet, get_set
from .timeline import _timeline


def _check_args(track, fps, num_frames, anticipation_ms, min_hold_ms, blend_ms, strength,
                smoothing, bridge_pause_ms, who, breath_open):
    if not isinstance(track, PhonemeTrack):
        raise InputError(f"{who}: phonemes must be a PhonemeTrack (from ExtractPhonemes), got {type(track).__name__}.")
    if len(track.phonemes) == 0:
        raise InputError(f"{who}: the phoneme track is empty (0 phonemes, {track.duration:.2f} s). "
                         "Check ExtractPhonemes' preview; the audio may be silent or the transcript missing.")
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and 0 < fps <= 1000):
        raise InputError(f"{who}: fps must be a positive frame rate up to 1000, got {fps}. "
                         "Set the video's fps (e.g. 25), or connect a driver.")
    if not (isinstance(num_frames, (int, np.integer)) and num_frames >= 1):
        raise InputError(f"{who}: frame count must be a whole number >= 1, got {num_frames}. "
                         "Set frame_count, or 0 to use the driver's or the phonemes' length.")
    for name, val, lo, hi in (("anticipation_ms", anticipation_ms, 0, 500), ("min_hold_ms", min_hold_ms, 0, 1000),
                              ("blend_ms", blend_ms, 0, 1000), ("strength", strength, 0, 1),
                              ("smoothing", smoothing, 0, 1), ("bridge_pause_ms", bridge_pause_ms, 0, 5000),
                              ("breath_open", breath_open, 0, 1)):
        if not (isinstance(val, (int, float)) and math.isfinite(val) and lo <= val <= hi):
            raise InputError(f"{who}: {name} must be between {lo} and {hi}, got {val}.")


def map_phonemes(track: PhonemeTrack, fps: float, num_frames: int | None = None,
                 viseme_set: "str | VisemeSet" = "rhubarb", anticipation_ms: float = ANTICIPATION_MS,
                 min_hold_ms: float = 60.0, blend_ms: float = 60.0, strength: float = 1.0,
                 smoothing: float = 0.5, bridge_pause_ms: float = 150.0, breath_open: float = BREATH_OPEN,
                 device: torch.device | str | None = None, dtype: torch.dtype = torch.float32,
                 who: str = "MapVisemes") -> VisemeTrack:
    """Timed phonemes -> a per-frame mouth track at ``fps``.

    Frame ``i`` shows time ``(i + 0.5) / fps`` (its centre). The rules, in order:

    1. each phoneme becomes its viseme; diphthongs glide to a second viseme over their last
       40%; silence, fillers and gaps become the rest shape;
    2. pauses shorter than ``bridge_pause_ms`` between speech are bridged (no return to rest);
    3. anticipation: every shape starts ``anticipation_ms`` before its sound, but a P/B/M
       closure is held until its release, so the lips open when the sound does;
    4. minimum hold: shapes shorter than ``min_hold_ms`` are stretched into their neighbours,
       preferably earlier; no boundary moves more than ``min_hold_ms / 2`` later than its
       sound, so a run of fast phones cannot make the track lag; a closure always lasts at
       least one frame;
    5. blending: each frame's weights are the share of each shape in a ``blend_ms`` window
       around it (linear cross-fades instead of cuts), then a zero-phase Gaussian of sigma
       ``smoothing * 60 ms``; rows sum to 1;
    6. breaths: where a pause is an audible in-breath (label BREATH, see
       :func:`.phonemes.mark_breaths`), ``breath_open`` of the rest weight moves to the set's
       open shape (``VisemeSet.breath``), cross-faded like the shapes: the lips part a little
       before the line. The rest shape stays the dominant one (cues are unchanged);
    7. frames whose centre lies in a closure are fully closed (lip_close 1, jaw 0);
    8. params = weights @ shapes; ``strength`` s mixes toward rest:
       ``w = s * w + (1 - s) * rest`` (so params move linearly toward the rest pose).

    track: PhonemeTrack; num_frames: T (default ``round(track.duration * fps)``).
    Returns VisemeTrack with weights (T, V) and params (T, 5) in [0, 1] on ``device``
    (default CPU), ``dtype``; cues are the dominant shape per run of frames BEFORE strength.
    Deterministic; identical on every device (computed in float64 on the CPU, then moved).
    """
    vs = get_set(viseme_set, who)
    if isinstance(track, PhonemeTrack) and num_frames is None:
        num_frames = max(1, int(round(float(track.duration) * float(fps)))) if fps and fps > 0 else 0
    _check_args(track, fps, num_frames, anticipation_ms, min_hold_ms, blend_ms, strength,
                smoothing, bridge_pause_ms, who, breath_open)
    fps = float(fps)
    num_frames = int(num_frames)
    V = len(vs.names)
    bounds_np, vis_np = _timeline(track, vs, fps, num_frames, anticipation_ms, min_hold_ms,
                                  bridge_pause_ms, who)
    bounds = torch.from_numpy(bounds_np)
    vis = torch.from_numpy(vis_np)
    t = (torch.arange(num_frames, dtype=torch.float64) + 0.5) / fps
    w = _box_weights(bounds, vis, V, t, blend_ms / 1000.0)
    w = _gauss_smooth(w, smoothing * SMOOTHING_MAX_MS / 1000.0 * fps)
    if breath_open > 0 and vs.breath:
        _open_on_breaths(w, vs, breath_open, _breath_share(track, fps, num_frames, blend_ms, smoothing))
    # closures: hard, whatever the blending did around them
    seg = torch.searchsorted(bounds[1:-1].contiguous(), t, right=True).clamp_(0, len(vis_np) - 1)
    closed = vs.index(vs.closed)
    w[vis[seg] == closed] = torch.nn.functional.one_hot(torch.tensor(closed), V).to(w)
    w = w / w.sum(1, keepdim=True)
    cues = _cues(w, vs.names, fps)
    rest = torch.nn.functional.one_hot(torch.tensor(vs.index(vs.rest)), V).to(w)
    w = strength * w + (1.0 - strength) * rest
    params = (w @ vs.shape_matrix(dtype=torch.float64)).clamp_(0.0, 1.0)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    return VisemeTrack(weights=w.to(device=dev, dtype=dtype), params=params.to(device=dev, dtype=dtype),
                       names=vs.names, viseme_set=vs.key, fps=fps, cues=cues)


def _open_on_breaths(w: torch.Tensor, vs: VisemeSet, breath_open: float, share: torch.Tensor | None) -> None:
    """Move ``breath_open * share`` of each frame's rest weight to the set's open shape, in place.
    w: (T, V) float64; share: (T,) from :func:`.frames._breath_share`, or None (no breath)."""
    if share is None:
        return
    rest_i, open_i = vs.index(vs.rest), vs.index(vs.breath)
    moved = w[:, rest_i] * (float(breath_open) * share)
    w[:, rest_i] -= moved
    w[:, open_i] += moved
