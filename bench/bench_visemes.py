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
gap), and with the 300-3000 Hz log band envelope of the audio, for several anticipation values
and video lags, and with and without the audible in-breaths marked; prints the mean r per
setting.
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


def grid_check(detector: str = "haar"):
    import numpy as np
    import torch

    from comfyui_lipsync.lipsync_models import audio as A
    from comfyui_lipsync.lipsync_models import face as F
    from comfyui_lipsync.lipsync_models import media
    from comfyui_lipsync.lipsync_models import phonemes as P
    from comfyui_lipsync.lipsync_models import visemes as V

    from _common import GRID, GRID_CLIPS, GRID_TEXT, filmed_opening

    def band_envelope(wave, fps, n):
        hop = int(round(16000 / fps))
        spec = torch.stft(wave, n_fft=2048, hop_length=hop, win_length=2 * hop,
                          window=torch.hann_window(2 * hop), return_complex=True).abs() ** 2
        f = torch.fft.rfftfreq(2048, 1 / 16000)
        return torch.log(spec[(f >= 300) & (f <= 3000)].sum(0) + 1e-8)[:n].double().numpy()

    antics = (0.0, 20.0, 40.0, 80.0)
    face_r = {a: [] for a in antics}
    env_r = {a: [] for a in antics}
    lag_r = {lag: [] for lag in range(-2, 3)}
    breath_r = {"without": [], "with": []}
    for clip in GRID_CLIPS:
        frames, fps, (wav, sr) = media.read_video(str(GRID / f"{clip}.mpg"))
        wave = A.resample(wav.mean(0, keepdim=True), sr, 16000)[0]
        track = P.align(wave, GRID_TEXT[clip])
        n = min(int(frames.shape[0]), int(len(wave) / 16000 * fps))
        opening = filmed_opening(F.track_faces(frames.float() / 255, detector=detector))[:n]
        env = band_envelope(wave, fps, n)
        for a in antics:
            jaw = V.map_phonemes(track, fps, n, anticipation_ms=a).param("jaw_open").double().numpy()
            face_r[a].append(np.corrcoef(jaw, opening)[0, 1])
            env_r[a].append(np.corrcoef(jaw, env)[0, 1])
        jaw0 = V.map_phonemes(track, fps, n, anticipation_ms=0).param("jaw_open").double().numpy()
        jawb = V.map_phonemes(P.mark_breaths(track, wave), fps, n, anticipation_ms=0).param("jaw_open").double().numpy()
        breath_r["without"].append(np.corrcoef(jaw0, opening)[0, 1])
        breath_r["with"].append(np.corrcoef(jawb, opening)[0, 1])
        for lag in lag_r:  # lag > 0: the filmed mouth comes lag frames after the phoneme timeline
            x, y = (jaw0[:n - lag], opening[lag:]) if lag >= 0 else (jaw0[-lag:], opening[:n + lag])
            lag_r[lag].append(np.corrcoef(x, y)[0, 1])
    print(f"GRID, {len(GRID_CLIPS)} clips, transcript alignment, rhubarb set, default blending/smoothing, "
          f"mouth opening from the {detector} face track:")
    for a in antics:
        print(f"  anticipation {a:4.0f} ms: r(jaw, filmed mouth opening) {np.mean(face_r[a]):.3f}   "
              f"r(jaw, audio band envelope) {np.mean(env_r[a]):.3f}")
    print("  filmed opening vs the anticipation-0 jaw track, by video lag (frames): " +
          ", ".join(f"{lag:+d}: {np.mean(v):.3f}" for lag, v in lag_r.items()))
    print(f"  audible in-breaths marked (phonemes.mark_breaths, breath_open {V.BREATH_OPEN}) vs not, anticipation 0: "
          f"r {np.mean(breath_r['with']):.3f} vs {np.mean(breath_r['without']):.3f} (per clip: "
          + ", ".join(f"{w:+.2f}/{o:+.2f}" for w, o in zip(breath_r["with"], breath_r["without"])) + ")")


if __name__ == "__main__":
    main()
