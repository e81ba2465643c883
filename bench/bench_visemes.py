"""MapVisemes speed on long clips (target: a 10-minute clip maps in well under a second of
work per minute of video; the preview stays interactive).

    .venv/bin/python bench/bench_visemes.py [--minutes 10] [--threads 2]

A synthetic phoneme track (random ARPAbet phones of 40-200 ms, pauses of 50-600 ms every
~1.5 s) of the given length is mapped at 25 and 60 fps for every viseme set; prints the
median time of map_phonemes, of the Rhubarb JSON + TSV export and of the preview, with the
frame and phoneme counts. Timings depend on load: the load average is printed beside them.
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
    args = ap.parse_args()

    import torch

    from lipsync_models.pack import load_pack

    load_pack()
    from comfyui_lipsync.lipsync_models import visemes as V

    torch.set_num_threads(args.threads)
    print(f"load average {os.getloadavg()}, torch threads {args.threads}")
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


if __name__ == "__main__":
    main()
