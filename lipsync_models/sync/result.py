"""SyncScore's result type, shared by both scorers, and its readable report."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SyncResult:
    """What a scorer found.

    offset_frames: best offset, positive = audio late; offset_ms: the same in ms.
    confidence:    score at offset 0 minus the median score: whether the clip is in sync as it
                   stands (0 when the clip cannot be judged).
    peak_confidence: best score minus the median score: how sure the offset is (SyncNet: LSE-C).
    lags:   (L,) int offsets -R..R; scores: (L,) score per offset (higher = better match).
    visual, audio: (T,) the main per-frame signals, audio at offset 0, each scaled to 0..1.
    windows: per-window offset track, dicts {start, end, offset_frames, confidence} (s).
    judgeable: False when the clip is too short, too static or silent to judge; notes say why.
    raw_peak:     articulation: where the score curve peaks, in frames, before the natural lead
                  is subtracted (offset = round(raw_peak - natural_lead)); None for SyncNet.
    natural_lead: articulation: the audio-to-lips lead subtracted (frames); None for SyncNet.
    lse_d, lse_c: SyncNet: LSE-D and LSE-C as syncnet_python computes them; None otherwise.
    agreement:    articulation: the share of the signals' reliability whose own curve peaks within
                  one frame of the combined peak (``lags.reliability``); None for SyncNet. At 0
                  (none does) the result is ``uncertain``.
    uncertain:    the clip's own evidence does not agree on the offset (``uncertainty``): the
                  offset is shown but not to be acted on; advice: what would help.
    """

    offset_frames: int
    offset_ms: float
    confidence: float
    peak_confidence: float
    lags: torch.Tensor
    scores: torch.Tensor
    visual: torch.Tensor
    audio: torch.Tensor
    fps: float
    method: str
    windows: tuple[dict, ...] = ()
    judgeable: bool = True
    notes: tuple[str, ...] = ()
    raw_peak: float | None = None
    natural_lead: float | None = None
    lse_d: float | None = None
    lse_c: float | None = None
    agreement: float | None = None
    uncertain: bool = False
    advice: tuple[str, ...] = ()

    def report(self) -> str:
        """Readable summary for the node's text output."""
        sign = "audio late" if self.offset_frames > 0 else ("audio early" if self.offset_frames < 0 else "in sync")
        if self.uncertain:
            sign = "UNCERTAIN"
        lines = [
            f"SyncScore ({self.method}): offset {self.offset_frames:+d} frames = {self.offset_ms:+.0f} ms "
            f"({sign}; positive = audio late), in-sync confidence {self.confidence:.3f}",
            f"offset certainty (best score minus median): {self.peak_confidence:.3f}; frames {self.visual.shape[0]} "
            f"at {self.fps:g} fps; searched offsets {int(self.lags[0])}..{int(self.lags[-1])}",
        ]
        for label, v in (("curve peak before the natural-lead correction (frames)", self.raw_peak),
                         ("natural lead subtracted (frames)", self.natural_lead),
                         ("LSE-D", self.lse_d), ("LSE-C", self.lse_c),
                         ("share of the signals' reliability peaking within one frame of the curve's peak", self.agreement)):
            if v is not None:
                lines.append(f"{label}: {v:.3f}")
        if self.uncertain:
            lines.append(self.uncertain_line())
        if not self.judgeable:
            lines.append("NOT JUDGEABLE: " + "; ".join(self.notes))
        elif self.notes:
            lines.extend("note: " + n for n in self.notes)
        if self.windows:
            lines.extend(_window_lines(self.windows))
        return "\n".join(lines)

    def uncertain_line(self) -> str:
        """The report's UNCERTAIN line: the votes of the per-window offsets, the offset
        certainty, and what would help."""
        from .uncertainty import no_signal_agrees, window_votes

        agree, votes = window_votes(self.offset_frames, self.windows)
        why = (f"{agree} of {votes} judgeable windows read this offset within one frame" if votes
               else "no window held enough speech and lip movement to cross-check it")
        if no_signal_agrees(self.agreement):
            why = ("no lip signal's own curve peaks within one frame of the combined curve's peak: the signals "
                   "point at different offsets and their sum peaks between them; " + why)
        helps = "; ".join(self.advice) if self.advice else "a longer clip with more speech"
        return (f"UNCERTAIN: the offset is not reliable ({why}; offset certainty {self.peak_confidence:.3f}). "
                f"What would help: {helps}.")


def _window_lines(windows: tuple[dict, ...]) -> list[str]:
    """The per-window offset table of the report, and the drift line when the offset moves >= 2."""
    lines = ["per-window offsets (start-end s: offset frames, offset certainty):"]
    for w in windows:
        tag = "" if w.get("judgeable", True) else "  (too quiet/static)"
        lines.append(f"  {w['start']:6.2f}-{w['end']:6.2f}: {w['offset_frames']:+3d}  {w['confidence']:.3f}{tag}")
    offs = [w["offset_frames"] for w in windows if w.get("judgeable", True)]
    if offs and max(offs) - min(offs) >= 2:
        lines.append(f"drift: the offset changes by {max(offs) - min(offs)} frames; it first moves at "
                     f"{_drift_start(windows):.2f} s")
    return lines


def _drift_start(windows) -> float:
    """Start of the first judgeable window at which the offsets read so far span two frames or more
    (one exists when the report prints a drift line)."""
    lo = hi = None
    for w in windows:
        if not w.get("judgeable", True):
            continue
        o = int(w["offset_frames"])
        lo, hi = (o, o) if lo is None else (min(lo, o), max(hi, o))
        if hi - lo >= 2:
            return float(w["start"])
    raise ValueError("no drift of two frames in these windows")
