"""MapVisemes speed on long clips (target: a 10-minute clip maps in well under a second of
work per minute of video; the preview stays interactive).

    .venv/bin/python bench/bench_visemes.py [--minutes 10] [--threads 2]

A synthetic phoneme track (random ARPAbet phones of 40-200 ms, pauses of 50-600 ms every
~1.5 s) of the given length is mapped at 25 and 60 fps for every viseme set; prints the
median time of map_phonemes, of the Rhubarb JSON + TSV export and of the preview, with the
frame and phoneme counts. Timings depend on load: the load average is printed beside them.

With --grid it also checks the mouth against real footage: for each GRID clip (transcript
aligned with phonemes.align) the jaw_open track is correlated with the mouth opening that
face.track_faces measures in the video (with --detector mediapipe: the face-mesh inner-lip
gap), and with the 300-3000 Hz log band envelope of the audio (sync.band_envelope), for several
anticipation values and video lags, and with and without the audible in-breaths marked; prints
the mean r per setting (in-sample). Then, for the constants fitted by sweeping on these clips
(ANTICIPATION_MS, BREATH_OPEN, BREATH_ABOVE_FLOOR_DB), the leave-one-clip-out figure: for each
clip the candidate best on the other six, measured on the held-out clip, beside the in-sample one.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def synthetic_track(minutes: float, seed: int = 0):
    import numpy as np

    from comfyui_lipsync.lipsync_models import visemes as V
    from comfyui_lipsync.lipsync_models.types import Phoneme, PhonemeTrack

    rng = np.random.default_rng(seed)
    total = minutes * 60.0
    t, out, next_pause = 0.0, [], 1.5
    while t < total:
        if t > next_pause:
            d = float(rng.uniform(0.05, 0.6))
            out.append(Phoneme("SIL", t, min(t + d, total)))
            next_pause = t + float(rng.uniform(0.8, 3.0))
        else:
            d = float(rng.uniform(0.04, 0.2))
            out.append(Phoneme(V.ARPABET[int(rng.integers(len(V.ARPABET)))], t, min(t + d, total)))
        t += d
    return PhonemeTrack(tuple(out), total, "bench")


def timed(fn, repeat=3):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--grid", action="store_true", help="also correlate with GRID footage (about a minute)")
    ap.add_argument("--detector", default="haar", help="face.track_faces detector for --grid: haar or mediapipe")
    args = ap.parse_args()

    import torch

    from lipsync_runner.pack import load_pack

    load_pack()
    from comfyui_lipsync.lipsync_models import visemes as V

    torch.set_num_threads(args.threads)
    print(f"load average {os.getloadavg()}, torch threads {args.threads}")
    if args.minutes > 0:  # --minutes 0: only the GRID check
        track = synthetic_track(args.minutes)
        print(f"{args.minutes:g} min synthetic track, {len(track.phonemes)} phonemes")
        for fps in (25.0, 60.0):
            frames = int(round(track.duration * fps))
            for key in V.VISEME_SETS:
                t_map, vt = timed(lambda: V.map_phonemes(track, fps, frames, viseme_set=key))
                t_exp, _ = timed(lambda: (V.to_rhubarb_json(vt), V.to_tsv(vt)))
                print(f"  {fps:4.0f} fps {key:9s} {frames:6d} frames: map {t_map * 1000:7.1f} ms "
                      f"({t_map / args.minutes * 1000:6.1f} ms per minute), export {t_exp * 1000:6.1f} ms, "
                      f"{len(vt.cues)} cues")
            t_prev, img = timed(lambda: V.preview(vt, torch.randn(int(track.duration * 16000)) * 0.1, track), repeat=1)
            print(f"  {fps:4.0f} fps preview {tuple(img.shape)}: {t_prev * 1000:.0f} ms (with waveform and phonemes)")
    if args.grid:
        grid_check(args.detector)


ANTICIPATIONS_MS = (0.0, 20.0, 40.0, 80.0)
BREATH_OPENS = (0.0, 0.15, 0.25, 0.35, 0.5, 0.7, 1.0)
BREATH_FLOORS_DB = (6.0, 8.0, 10.0, 12.0, 15.0, 20.0)
"""Candidate grids of the constants fitted on GRID (lipsync_models/calibration.py) that --grid checks
leave-one-clip-out."""


def _clip_data(clip: str, detector: str) -> dict:
    """One GRID clip: its 16 kHz audio, aligned transcript, fps, frame count, filmed mouth opening
    and speech envelope at the frames."""
    from comfyui_lipsync.lipsync_models import audio as A
    from comfyui_lipsync.lipsync_models import face as F
    from comfyui_lipsync.lipsync_models import media
    from comfyui_lipsync.lipsync_models import phonemes as P

    from _common import GRID, GRID_TEXT, filmed_opening
    from helpers import frame_envelope

    frames, fps, (wav, sr) = media.read_video(str(GRID / f"{clip}.mpg"))
    wave = A.resample(wav.mean(0, keepdim=True), sr, 16000)[0]
    n = min(int(frames.shape[0]), int(len(wave) / 16000 * fps))
    opening = filmed_opening(F.track_faces(frames.float() / 255, detector=detector))[:n]
    return {"wave": wave, "track": P.align(wave, GRID_TEXT[clip]), "fps": fps, "n": n, "opening": opening,
            "env": frame_envelope(wave, fps, n)}


def _r(a, b) -> float:
    import numpy as np

    return float(np.corrcoef(a, b)[0, 1])


def _jaw(track, d: dict, **kw):
    from comfyui_lipsync.lipsync_models import visemes as V

    return V.map_phonemes(track, d["fps"], d["n"], **kw).param("jaw_open").double().numpy()


def _breaths_at(d: dict, above_floor_db: float):
    """mark_breaths with BREATH_ABOVE_FLOOR_DB set to ``above_floor_db`` (restored after)."""
    from comfyui_lipsync.lipsync_models import phonemes as P

    old = P.breaths.BREATH_ABOVE_FLOOR_DB
    P.breaths.BREATH_ABOVE_FLOOR_DB = above_floor_db
    try:
        return P.mark_breaths(d["track"], d["wave"])
    finally:
        P.breaths.BREATH_ABOVE_FLOOR_DB = old


def grid_check(detector: str = "haar"):
    import numpy as np

    from comfyui_lipsync.lipsync_models import phonemes as P
    from comfyui_lipsync.lipsync_models import visemes as V

    from _common import GRID_CLIPS

    data = [_clip_data(c, detector) for c in GRID_CLIPS]
    print(f"GRID, {len(GRID_CLIPS)} clips, transcript alignment, rhubarb set, default blending/smoothing, "
          f"mouth opening from the {detector} face track (in-sample: every figure here is on the clips "
          "the constants were fitted on, except the leave-one-clip-out lines):")
    for a in ANTICIPATIONS_MS:
        face = [_r(_jaw(d["track"], d, anticipation_ms=a), d["opening"]) for d in data]
        env = [_r(_jaw(d["track"], d, anticipation_ms=a), d["env"]) for d in data]
        print(f"  anticipation {a:4.0f} ms, no breaths: r(jaw, filmed mouth opening) {np.mean(face):.3f}   "
              f"r(jaw, audio band envelope) {np.mean(env):.3f}")
    lag_r = {lag: [] for lag in range(-2, 3)}
    for d in data:  # lag > 0: the filmed mouth comes lag frames after the phoneme timeline
        jaw0, op, n = _jaw(d["track"], d, anticipation_ms=0), d["opening"], d["n"]
        for lag in lag_r:
            x, y = (jaw0[:n - lag], op[lag:]) if lag >= 0 else (jaw0[-lag:], op[:n + lag])
            lag_r[lag].append(_r(x, y))
    print("  filmed opening vs the anticipation-0 jaw track, by video lag (frames): " +
          ", ".join(f"{lag:+d}: {np.mean(v):.3f}" for lag, v in lag_r.items()))
    breathed = [P.mark_breaths(d["track"], d["wave"]) for d in data]
    with_b = [_r(_jaw(b, d, anticipation_ms=0), d["opening"]) for b, d in zip(breathed, data)]
    without = [_r(_jaw(d["track"], d, anticipation_ms=0), d["opening"]) for d in data]
    print(f"  audible in-breaths marked (phonemes.mark_breaths, breath_open {V.BREATH_OPEN}) vs not, anticipation 0: "
          f"r {np.mean(with_b):.3f} vs {np.mean(without):.3f} (per clip: "
          + ", ".join(f"{w:+.2f}/{o:+.2f}" for w, o in zip(with_b, without)) + ")")
    leave_one_out_report(data, breathed)


def leave_one_out_report(data: list[dict], breathed: list) -> None:
    """For each constant fitted by sweeping on GRID: r(jaw, filmed opening) per clip for each
    candidate (breaths marked, as ExtractPhonemes does), then leave-one-clip-out: for each clip the
    candidate best on the other six, measured on it."""
    import numpy as np

    from comfyui_lipsync.lipsync_models import calibration as C

    from helpers import leave_one_out

    sweeps = {
        "ANTICIPATION_MS": (C.ANTICIPATION_MS, {a: [_r(_jaw(b, d, anticipation_ms=a), d["opening"])
                                                   for b, d in zip(breathed, data)] for a in ANTICIPATIONS_MS}),
        "BREATH_OPEN": (C.BREATH_OPEN, {v: [_r(_jaw(b, d, breath_open=v), d["opening"])
                                            for b, d in zip(breathed, data)] for v in BREATH_OPENS}),
        "BREATH_ABOVE_FLOOR_DB": (C.BREATH_ABOVE_FLOOR_DB, {db: [_r(_jaw(_breaths_at(d, db), d), d["opening"])
                                                                for d in data] for db in BREATH_FLOORS_DB}),
    }
    print("  leave-one-clip-out (breaths marked; r(jaw, filmed mouth opening), mean over the 7 held-out clips):")
    for name, (default, per_clip) in sweeps.items():
        held, picks = leave_one_out(per_clip)
        best = max(per_clip, key=lambda v: np.mean(per_clip[v]))
        print(f"    {name:<22} held-out r {held:.3f} (picked per clip: {', '.join(f'{p:g}' for p in picks)}); "
              f"in-sample r {np.mean(per_clip[default]):.3f} at the default {default:g}, best in-sample "
              f"{np.mean(per_clip[best]):.3f} at {best:g}; grid " +
              ", ".join(f"{v:g}: {np.mean(r):.3f}" for v, r in per_clip.items()))


if __name__ == "__main__":
    main()
