"""SyncScore on real talking footage beside GRID: each clip's own audio shifted by -4, -2, 0, +2, +4 frames.

Run:  .venv/bin/python bench/bench_sync_real.py --clips DIR [--segment-s 5] [--max-side 640]
      [--shifts -4,-2,0,2,4] [--grid on] [--threads 2]

DIR holds talking-face videos WITH their own audio track (e.g. the ``assets/demo*_video.mp4`` of
bytedance/LatentSync, the development set; the ``examples/face/*.mp4`` of OpenTalker/video-retalking,
the five clips issue 18 was measured on, held out; MuseTalk's ``data/video`` clips have no audio
track and are skipped, said so).
Keep them outside the repository. Each video is decoded with its longest side scaled to
``--max-side`` px (memory: a 1080x1920 float frame is 25 MB); with ``--face-window on`` (default)
the face is found there and the video decoded again at its own resolution in a window around the
face (the face as the node sees it in the full frames: 220-340 px wide in LatentSync's 1080x1920
demos, 74-115 px at 640), else the scaled frames are scored. Then it is cut into ``--segment-s`` pieces;
a piece is scored at the clip's OWN frame rate with its audio shifted by each k of ``--shifts``
frames (positive = audio late; ``helpers.shift_audio`` at the clip's rate; expected offset k), the
face tracked once per piece with the haar tracker as the node does when no track is given.

Printed: a table per piece, then within one frame %, exact % and uncertain % over the (piece,
shift) pairs (an "uncertain" answer counts against neither, per issue 18), the badge bars (in-sync
pairs read 0 +- 1, pairs shifted 4 frames never read in sync), and per source clip.
Nothing here is fitted on these clips: the natural lead comes from GRID
(``calibration.NATURAL_LEAD_FRAMES``), so every real-clip figure is held out by construction; the
per-piece figures of one video are not independent (one speaker).

``--grid on`` (default) prints the same measures on the 7 GRID clips at the same shifts, the lead
held out (leave-one-clip-out, as ``bench_sync.py``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lipsync_runner.pack import load_pack  # noqa: E402

load_pack()

from comfyui_lipsync.lipsync_models import face, media, sync  # noqa: E402
from comfyui_lipsync.lipsync_models.phonemes import to_analysis_rate  # noqa: E402

from _common import GRID_CLIPS  # noqa: E402
from helpers import grid_recorded, held_out_leads, shift_audio  # noqa: E402

R = 15


def decode(path: Path, max_side: int) -> tuple[np.ndarray, float, torch.Tensor] | None:
    """(frames (T, H, W, 3) uint8 scaled to ``max_side``, fps, 16 kHz mono covering the frames), or
    None when the file has no audio track."""
    import av

    with av.open(str(path)) as c:
        if not c.streams.audio:
            return None
        vs = c.streams.video[0]
        fps = float(vs.average_rate)
        s = min(1.0, max_side / max(vs.width, vs.height))
        w, h = int(round(vs.width * s / 2)) * 2, int(round(vs.height * s / 2)) * 2
        frames = np.stack([f.reformat(width=w, height=h, format="rgb24").to_ndarray() for f in c.decode(vs)])
    wav, sr = media.read_audio(str(path))
    w16 = to_analysis_rate(wav.mean(0), sr)
    n16 = int(round(frames.shape[0] / fps * 16000))
    w16 = torch.nn.functional.pad(w16, (0, max(n16 - w16.shape[0], 0)))[:n16]
    return frames, fps, w16


def face_window_frames(path: Path, frames: np.ndarray) -> np.ndarray:
    """The video at its own resolution in a window holding the face in every frame (found by the
    Haar tracker on every 5th of the scaled ``frames``, padded by most of a face width), uint8."""
    import av

    tr = face.track_faces(torch.from_numpy(frames[::5]).float() / 255.0, detector="haar")
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        s = frames.shape[1] / vs.height
        b = tr.boxes.double().numpy() / s
        fw = float(np.median(b[:, 2] - b[:, 0]))
        x0, y0 = int(max(b[:, 0].min() - 0.6 * fw, 0)), int(max(b[:, 1].min() - 0.6 * fw, 0))
        x1, y1 = int(min(b[:, 2].max() + 0.6 * fw, vs.width)), int(min(b[:, 3].max() + 0.8 * fw, vs.height))
        return np.stack([f.to_ndarray(format="rgb24")[y0:y1, x0:x1] for f in c.decode(vs)])


def pieces(frames: np.ndarray, fps: float, w16: torch.Tensor, seg_s: float):
    """(start frame, images float 0..1, 16 kHz audio) per ``seg_s`` piece (a short tail joins the last)."""
    n = frames.shape[0]
    step = n if seg_s <= 0 else max(int(round(seg_s * fps)), 1)
    starts = list(range(0, max(n - step // 2, 1), step))
    for i, s in enumerate(starts):
        e = n if i == len(starts) - 1 else s + step
        a, b = int(round(s / fps * 16000)), int(round(e / fps * 16000))
        yield s, torch.from_numpy(frames[s:e]).float() / 255.0, w16[a:b]


def uncertain(res) -> bool:
    """The result says it cannot tell (``SyncResult.uncertain``; before it existed: not judgeable)."""
    return bool(getattr(res, "uncertain", not res.judgeable))


def tally(rows: list[tuple[str, int, object]]) -> str:
    """'within1 a/n = x %, exact b/n = y %, uncertain u/N = z %' over (name, shift, result) rows;
    uncertain pairs count against neither rate (their denominator leaves them out)."""
    sure = [(k, r) for _, k, r in rows if not uncertain(r)]
    n, un = len(sure), len(rows) - len(sure)
    w1 = sum(abs(r.offset_frames - k) <= 1 for k, r in sure)
    ex = sum(r.offset_frames == k for k, r in sure)
    pct = (lambda a, b: f"{a}/{b} = {100.0 * a / b:.0f} %" if b else f"{a}/0")
    return f"within one frame {pct(w1, n)}, exact {pct(ex, n)}, uncertain {pct(un, len(rows))}"


def badges(rows: list[tuple[str, int, object]]) -> str:
    """Issue 18's badge bars: in-sync pairs (shift 0) that read 0 +- 1 and are not uncertain (the
    badge's green or amber), and pairs shifted 4 frames that read in sync, 0 +- 1 and sure (they must
    never; an uncertain answer there is counted apart: its badge is grey and says "uncertain")."""
    zero = [r for _, k, r in rows if k == 0]
    ok = sum(abs(r.offset_frames) <= 1 and not uncertain(r) for r in zero)
    four = [r for _, k, r in rows if abs(k) == 4 and abs(r.offset_frames) <= 1]
    bad = sum(not uncertain(r) for r in four)
    return (f"in sync (shift 0) read 0 +- 1 and sure: {ok}/{len(zero)}; shifted 4 frames read in sync: "
            f"{bad}/{sum(abs(k) == 4 for _, k, _ in rows)} (and {len(four) - bad} more read 0 +- 1 as uncertain)")


def score(track, images, wave, fps, lead=None):
    return sync.score_articulation(track, wave, fps, search_range=R, window_s=2.0, images=images, natural_lead=lead)


def run_real(clip_dir: Path, seg_s: float, max_side: int, shifts, face_win: bool = True) -> list:
    rows, t_score, n_score = [], 0.0, 0
    for path in sorted(clip_dir.glob("*")):
        if path.suffix.lower() not in (".mp4", ".mov", ".mkv", ".webm", ".avi"):
            continue
        got = decode(path, max_side)
        if got is None:
            print(f"{path.name}: no audio track, skipped")
            continue
        frames, fps, w16 = got
        if face_win:
            frames = face_window_frames(path, frames)
        print(f"{path.name}: {frames.shape[0]} frames {frames.shape[2]}x{frames.shape[1]}{' (face window, own resolution)' if face_win else ' (scaled)'} at {fps:g} fps")
        for s, img, wave in pieces(frames, fps, w16, seg_s):
            name = f"{path.stem}@{s / fps:.0f}s"
            try:
                track = face.track_faces(img, detector="haar")
            except Exception as e:  # noqa: BLE001  (a bench: say which piece and go on)
                print(f"  {name}: no track ({e})")
                continue
            fw = float(np.median((track.boxes[:, 2] - track.boxes[:, 0]).numpy()))
            line = []
            for k in shifts:
                t = time.perf_counter()
                r = score(track, img, shift_audio(wave, k, fps), fps)
                t_score += time.perf_counter() - t
                n_score += img.shape[0]
                rows.append((path.stem, k, r))
                line.append(f"{k:+d}->{r.offset_frames:+d}{'?' if uncertain(r) else ''}"
                            f"({r.peak_confidence:.2f})")
            print(f"  {name:28s} face {fw:4.0f}px  " + "  ".join(line))
    print(f"REAL clips ({len({r[0] for r in rows})} videos, {len(rows)} pairs): {tally(rows)}")
    print(f"  {badges(rows)}")
    for stem in sorted({r[0] for r in rows}):
        print(f"  {stem}: {tally([r for r in rows if r[0] == stem])}")
    if n_score:
        print(f"scoring speed given a track: {n_score / t_score:.0f} frames/s (load avg {os.getloadavg()[0]:.1f})")
    return rows


def run_grid(shifts) -> list:
    data = {c: grid_recorded(c, "haar") for c in GRID_CLIPS}
    peaks = {c: score(data[c][0], data[c][3], data[c][1], data[c][2]).raw_peak for c in GRID_CLIPS}
    leads = held_out_leads(peaks)
    rows = []
    for c in GRID_CLIPS:
        track, w16, fps, img = data[c]
        got = [(k, score(track, img, shift_audio(w16, k, fps), fps, leads[c])) for k in shifts]
        rows += [(c, k, r) for k, r in got]
        print(f"  {c}  lead {leads[c]:+.2f}  " + "  ".join(f"{k:+d}->{r.offset_frames:+d}{'?' if uncertain(r) else ''}"
                                                          for k, r in got))
    print(f"GRID (lead held out, {len(rows)} pairs): {tally(rows)}")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=Path, required=True)
    ap.add_argument("--segment-s", type=float, default=5.0)
    ap.add_argument("--max-side", type=int, default=640)
    ap.add_argument("--shifts", default="-4,-2,0,2,4")
    ap.add_argument("--grid", default="on")
    ap.add_argument("--face-window", default="on")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    shifts = tuple(int(v) for v in args.shifts.split(","))
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; shifts {shifts}")
    run_real(args.clips, args.segment_s, args.max_side, shifts, args.face_window == "on")
    if args.grid == "on":
        run_grid(shifts)


if __name__ == "__main__":
    main()
