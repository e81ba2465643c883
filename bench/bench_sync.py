"""SyncScore on real footage: offsets of recorded and shifted GRID clips, leave-one-clip-out.

Run:  .venv/bin/python bench/bench_sync.py [--detector haar,mediapipe] [--phonemes off,on]
      [--closures off,on] [--shifts -8..8] [--activity-weights 0.5] [--threads 2]

For each GRID clip in tests/data/grid (3 s, 25 fps, audio recorded with the picture):

1. the face is tracked once per detector (not timed: the targets are "given a face track");
2. the clip's audio (16 kHz mono) is scored as recorded (expected offset 0) and shifted by k in
   --shifts (default every k in -8..+8 but 0) frames by cutting/padding the waveform (k * 640
   samples; positive k = audio delayed = late; expected offset k);
3. the clip is scored with the audio of the next clip (cyclic), which belongs to someone else.

The natural audio-to-lips lead (calibration.NATURAL_LEAD_FRAMES) is fitted on these same 7 clips:
the mean of their curve peaks (SyncResult.raw_peak) as recorded. So every figure is printed twice:

* HELD OUT (leave-one-clip-out): for each clip, the lead is fitted on the other six (the mean of
  their recorded peaks) and that clip's recorded, shifted and other-audio scorings are run again
  with it (``natural_lead=``). This is the figure to quote.
* in-sample: the calibrated lead (fitted on all seven), as the node runs.

The curve's peak does not depend on the lead (the lag grid is fixed), so the fit is the same
whether the peaks come from an in-sample or a held-out run.

Printed per mode: the held-out offset table, exact / within-1 rates (held out, in-sample beside),
the worst held-out error before rounding (|peak - lead - k|; exact needs < 0.5, within-1 < 1.5),
the refitted lead beside the calibrated constant, the in-sync confidence AUCs (synced vs shifted
by >= 5 frames, synced vs another clip's audio; held out and in-sample: the confidence is read at
offset 0 of the lead-corrected curve, so it moves with the lead), and the speed given a track.

--activity-weights 0.25,0.5,1: the held-out figures at other weights of the speech-activity
curve (calibration.ACTIVITY_WEIGHT, chosen by hand on these clips and not refitted per fold), to
show how much rides on it.

--closures on: the transcript (tests/testdata.py GRID_TEXT) is force-aligned to the audio AS
SCORED (shifted or foreign; pocketsphinx, as ExtractPhonemes does with a transcript) and its P/B/M
closures are added as anchors (sync.closure_signal). This mode was picked among seven signal
variants tried on these same 7 clips, so its figures are optimistic even held out.

Tuning disclosure beyond the lead: the method (signals, activity weight and smoothing) was chosen
while looking at these clips; the haar tracker's slow lip-colour recentring
(face.LIP_COLOUR_FRAMES) too, after a per-frame version moved one clip's peak across a rounding line.
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

from comfyui_lipsync.lipsync_models import calibration, face, sync  # noqa: E402
from comfyui_lipsync.lipsync_models import phonemes as phonemelib  # noqa: E402

from _common import GRID_CLIPS, GRID_TEXT  # noqa: E402
from helpers import grid_recorded, held_out_leads, shift_audio  # noqa: E402

R = 15


def auc(pos, neg) -> float:
    """P(score of a positive > score of a negative), ties count half (Mann-Whitney)."""
    pos, neg = np.asarray(pos, float), np.asarray(neg, float)
    if not len(pos) or not len(neg):
        return float("nan")
    gt = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(gt / (len(pos) * len(neg)))


def load_clips(detector: str) -> dict:
    """clip -> (face track, 16 kHz mono covering the frames, fps, images)."""
    return {c: grid_recorded(c, detector) for c in GRID_CLIPS}


_ALIGNED: dict = {}


def aligned(wave: torch.Tensor, text: str):
    """The transcript force-aligned to ``wave``, once per waveform (the held-out pass scores the same
    waveforms again; alignment is the slow part of the closures mode)."""
    key = (text, wave.shape[0], hash(wave.numpy().tobytes()))
    if key not in _ALIGNED:
        _ALIGNED[key] = phonemelib.align(wave, text)
    return _ALIGNED[key]


def _cache_predicted_mouth() -> None:
    """Run phoneme recognition once per waveform: the held-out pass scores the same waveforms
    again, and recognition is the slow part of the phonemes mode (same results, a cache)."""
    from comfyui_lipsync.lipsync_models.sync import articulation

    real, done = articulation.predicted_mouth, {}

    def cached(wave, fps, n):
        key = (fps, n, hash(wave.detach().cpu().numpy().tobytes()))
        if key not in done:
            done[key] = real(wave, fps, n)
        return done[key]
    articulation.predicted_mouth = cached


def score_all(data: dict, shifts, use_phonemes: bool, closures: bool, leads: dict | None,
              weight: float, timing: dict | None = None) -> tuple[dict, dict]:
    """Score every clip at shift 0 and ``shifts`` and with the next clip's audio; ``leads``: clip ->
    natural lead (None: the calibrated one). Returns ({(clip, k): SyncResult}, {clip: other-audio})."""
    res, other = {}, {}
    for i, c in enumerate(GRID_CLIPS):
        track, w16, fps, img = data[c]
        lead = None if leads is None else leads[c]

        def score(wave, text):
            ph = aligned(wave, text) if closures else None
            return sync.score_articulation(track, wave, fps, search_range=R, window_s=2.0, use_phonemes=use_phonemes,
                                           images=img, phonemes=ph, natural_lead=lead, activity_weight=weight)
        for k in (0,) + tuple(shifts):
            t, tc = time.perf_counter(), time.process_time()
            res[(c, k)] = score(shift_audio(w16, k, fps), GRID_TEXT[c])
            if timing is not None:
                timing["wall"] = timing.get("wall", 0.0) + time.perf_counter() - t
                timing["cpu"] = timing.get("cpu", 0.0) + time.process_time() - tc
                timing["frames"] = timing.get("frames", 0) + track.num_frames
        o = GRID_CLIPS[(i + 1) % len(GRID_CLIPS)]
        other[c] = score(data[o][1], GRID_TEXT[o])
    return res, other


def rates(res: dict, shifts) -> tuple[int, int, int, int]:
    """(shifted exact, shifted within 1, recorded exact, recorded within 1) counts."""
    pairs = [(c, k) for c in GRID_CLIPS for k in shifts]
    return (sum(res[p].offset_frames == p[1] for p in pairs), sum(abs(res[p].offset_frames - p[1]) <= 1 for p in pairs),
            sum(res[(c, 0)].offset_frames == 0 for c in GRID_CLIPS),
            sum(abs(res[(c, 0)].offset_frames) <= 1 for c in GRID_CLIPS))


def aucs(res: dict, other: dict, shifts) -> tuple[float, float]:
    synced = [res[(c, 0)].confidence for c in GRID_CLIPS]
    far = [res[(c, k)].confidence for c in GRID_CLIPS for k in shifts if abs(k) >= 5]
    return auc(synced, far), auc(synced, [other[c].confidence for c in GRID_CLIPS])


def print_table(res: dict, other: dict, shifts, leads: dict) -> None:
    print(f"{'clip':8s} {'lead':>5s} {'k=0':>4s} " + " ".join(f"{k:>+3d}" for k in shifts)
          + "  peak(k=0)  worst|err|  conf(k=0)  other-audio conf")
    for c in GRID_CLIPS:
        err = max(abs(res[(c, k)].raw_peak - leads[c] - k) for k in (0,) + tuple(shifts))
        row = " ".join(f"{res[(c, k)].offset_frames:>+3d}" for k in shifts)
        print(f"{c:8s} {leads[c]:+5.2f} {res[(c, 0)].offset_frames:>+4d} {row}  {res[(c, 0)].raw_peak:+8.2f}  "
              f"{err:9.2f}  {res[(c, 0)].confidence:9.3f}  {other[c].confidence:7.3f} (offset {other[c].offset_frames:+d})")


def run(data: dict, detector: str, use_phonemes: bool, closures: bool, shifts, weight: float) -> dict:
    timing: dict = {}
    res_in, other_in = score_all(data, shifts, use_phonemes, closures, None, weight, timing)
    peaks = {c: res_in[(c, 0)].raw_peak for c in GRID_CLIPS}
    leads = held_out_leads(peaks)
    res, other = score_all(data, shifts, use_phonemes, closures, leads, weight)
    const = res_in[(GRID_CLIPS[0], 0)].natural_lead
    n = len(GRID_CLIPS) * len(shifts)
    print(f"\n=== detector {detector}, phonemes {'on' if use_phonemes else 'off'}, closures {'on' if closures else 'off'}"
          f", activity weight {weight:g}: calibrated lead {const:+.2f}, refitted on all 7 now {np.mean(list(peaks.values())):+.3f}"
          f" (per-clip peaks spread {max(peaks.values()) - min(peaks.values()):.2f}) ===")
    print("HELD OUT offsets (lead = mean recorded peak of the other six clips):")
    print_table(res, other, shifts, leads)
    ho, hi = rates(res, shifts), rates(res_in, shifts)
    worst = max(abs(res[(c, k)].raw_peak - leads[c] - k) for c in GRID_CLIPS for k in (0,) + tuple(shifts))
    print(f"shifted pairs ({len(shifts)} shifts x 7 clips = {n}): HELD OUT exact {ho[0]}/{n} = {ho[0] / n:.1%}, "
          f"within +-1 {ho[1]}/{n} = {ho[1] / n:.1%}   | in-sample exact {hi[0]}/{n} = {hi[0] / n:.1%}, "
          f"within +-1 {hi[1]}/{n} = {hi[1] / n:.1%}")
    print(f"recorded clips: HELD OUT offset 0 on {ho[2]}/7, within +-1 on {ho[3]}/7   | in-sample {hi[2]}/7, {hi[3]}/7")
    print(f"worst HELD OUT error before rounding |peak - lead - k|: {worst:.2f} frames (exact needs < 0.5, +-1 < 1.5)")
    a_ho, a_in = aucs(res, other, shifts), aucs(res_in, other_in, shifts)
    print(f"in-sync confidence AUC synced vs shifted>=5: HELD OUT {a_ho[0]:.3f} | in-sample {a_in[0]:.3f};  "
          f"synced vs other-audio: HELD OUT {a_ho[1]:.3f} | in-sample {a_in[1]:.3f}")
    pk = [res_in[(c, k)].peak_confidence for c in GRID_CLIPS for k in shifts if abs(k) >= 5]
    print(f"offset certainty (best - median, report only) AUC synced vs shifted>=5 (in-sample): "
          f"{auc([res_in[(c, 0)].peak_confidence for c in GRID_CLIPS], pk):.3f}")
    print(f"speed given a face track ({'with' if use_phonemes else 'without'} phoneme recognition, optical flow and "
          f"2-s windows included): wall {timing['frames'] / timing['wall']:.0f} frames/s (load avg "
          f"{os.getloadavg()[0]:.1f}); CPU {timing['frames'] / timing['cpu']:.0f} frames per CPU-second")
    return {"held_out": ho, "in_sample": hi, "worst": worst, "auc_held_out": a_ho, "auc_in_sample": a_in}


def threshold_check(data: dict, detector: str) -> None:
    """The two thresholds set between groups (calibration.STATIC_FLOW, TRACK_MATCH_R), against each
    recorded clip: its optical-flow spread (whole clip and lowest 1-s window; under STATIC_FLOW =
    judged static) and the correlation of its own track's lip signal with the same signal measured
    on its frames (under TRACK_MATCH_R = the track would be taken for another clip's)."""
    flows, wins, rs = {}, {}, {}
    for c in GRID_CLIPS:
        track, _, fps, img = data[c]
        f = sync.flow_opening(img, track, fps)
        w = int(round(fps))
        flows[c] = float(np.std(f))
        wins[c] = min(float(np.std(f[s:s + w])) for s in range(0, len(f) - w + 1, w // 2))
        rs[c] = sync.track_matches(track, sync.frame_lip_signal(img, track, measure=sync.track_lip_measure(track)))[1]
    low = min(wins, key=wins.get)
    print(f"[{detector}] flow spread on speaking clips: whole clip min {min(flows.values()):.2f}, lowest 1-s window "
          f"{wins[low]:.2f} ({low}) vs STATIC_FLOW {calibration.STATIC_FLOW}; own-track lip-signal r min "
          f"{min(rs.values()):.3f} ({min(rs, key=rs.get)}) vs TRACK_MATCH_R {calibration.TRACK_MATCH_R}")


def parse_shifts(text: str) -> tuple[int, ...]:
    if ".." in text:
        a, b = (int(v) for v in text.split(".."))
        return tuple(k for k in range(a, b + 1) if k != 0)
    return tuple(int(v) for v in text.split(",") if int(v) != 0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--detector", default="haar,mediapipe")
    ap.add_argument("--phonemes", default="off,on", help="off: the default scorer; on: + phonemes")
    ap.add_argument("--closures", default="off", help="on: + P/B/M anchors from the force-aligned transcript")
    ap.add_argument("--shifts", default="-8..8", help="injected shifts: a range a..b or a list (0 is always scored)")
    ap.add_argument("--activity-weights", default=str(calibration.ACTIVITY_WEIGHT))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    _cache_predicted_mouth()
    shifts = parse_shifts(args.shifts)
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; torch threads {args.threads}; "
          f"shifts {shifts}")
    for det in args.detector.split(","):
        if det == "mediapipe" and not face.mediapipe_available():
            print("mediapipe not installed: skipped")
            continue
        data = load_clips(det)
        threshold_check(data, det)
        for ph in args.phonemes.split(","):
            for cl in args.closures.split(","):
                for w in args.activity_weights.split(","):
                    run(data, det, ph == "on", cl == "on", shifts, float(w))
    from comfyui_lipsync.nodes import _comfy

    nets = _comfy.model_files("syncnet")
    print(f"\nSyncNet checkpoints in models/syncnet: {nets or 'none (SyncNet scorer not benchmarked)'}")


if __name__ == "__main__":
    main()
