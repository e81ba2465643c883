"""MaskLowerFace figures: tracking speed at 512x512 (and 1080p), mask speed, how well the
mouth-opening measure (and the contrast, SyncScore's lip signal) follows each GRID clip's own
audio (300-3000 Hz log envelope), and how well both follow the face-mesh inner-lip gap, the
reference for a filmed mouth (when mediapipe is installed).

Calibration checks: HEIGHT_GAIN (least squares on pooled GRID frames) and MOUTH_IN_BOX (GRID mean) are
refitted leave-one-clip-out (fit on six clips, measure on the seventh, each clip in turn); the held-out
figures are printed beside the in-sample ones, labelled (lipsync_models/calibration.py quotes them).

Run: .venv/bin/python bench/bench_face.py   (prints tables; mediapipe rows when it is installed)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from lipsync_runner.pack import load_pack  # noqa: E402

load_pack()
from comfyui_lipsync.lipsync_models import calibration, face, media  # noqa: E402

from _common import GRID_CLIPS  # noqa: E402
from testdata import grid_clip  # noqa: E402
from helpers import band_envelope, best_lag  # noqa: E402  (tests/helpers.py, faces section)


def resize(frames: torch.Tensor, h: int, w: int) -> torch.Tensor:
    x = torch.nn.functional.interpolate(frames.permute(0, 3, 1, 2), size=(h, w), mode="bilinear", align_corners=False)
    return x.permute(0, 2, 3, 1).contiguous().clamp(0, 1)


def timed(fn, repeat: int = 2) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    torch.set_num_threads(2)
    clips = list(GRID_CLIPS)  # fixed list: a missing clip fails here, naming the file
    data = {}
    for c in clips:
        frames, fps, (audio, sr) = media.read_video(str(grid_clip(c)))
        data[c] = (frames.float() / 255, band_envelope(audio, sr, fps, frames.shape[0]))
    detectors = ["haar"] + (["mediapipe"] if face.mediapipe_available() else [])
    if len(detectors) == 1:
        print("mediapipe not installed: haar only (see requirements-mediapipe.txt)")
    if "--no-speed" not in sys.argv:
        speed(data, clips, detectors)
    tracks = {(c, det): face.track_faces(data[c][0], detector=det) for c in clips for det in detectors}
    audio_table(data, clips, detectors, tracks)
    if "mediapipe" in detectors:
        mesh_table(clips, detectors, tracks)
    height_gain_loco(clips, tracks)
    mouth_in_box_loco(clips, tracks)


def speed(data, clips, detectors) -> None:
    print("\n== tracking speed (2 threads; machine shared with other jobs, figures are noisy) ==")
    clip512 = torch.cat([resize(data[c][0], 512, 512) for c in clips[:2]])  # 150 real frames
    hd = resize(data[clips[0]][0], 1080, 1350)
    hd = torch.nn.functional.pad(hd.permute(0, 3, 1, 2), (285, 285, 0, 0)).permute(0, 2, 3, 1).contiguous()
    for det in detectors:
        face.track_faces(clip512[:8], detector=det)  # warm-up
        t = timed(lambda: face.track_faces(clip512, detector=det))
        print(f"{det:10s} 512x512   {clip512.shape[0] / t:7.1f} frames/s  ({clip512.shape[0]} frames, {t:.2f} s)")
        t = timed(lambda: face.track_faces(hd, detector=det), 1)
        print(f"{det:10s} 1920x1080 {hd.shape[0] / t:7.1f} frames/s  ({hd.shape[0]} frames, {t:.2f} s)")
    tr = face.track_faces(clip512)
    t = timed(lambda: face.lower_face_mask(tr))
    print(f"mask       512x512   {clip512.shape[0] / t:7.1f} frames/s")
    tr_hd = face.track_faces(hd)
    t = timed(lambda: face.lower_face_mask(tr_hd), 1)
    print(f"mask       1920x1080 {hd.shape[0] / t:7.1f} frames/s")
    crops = face.mouth_crops(clip512, tr, 256)
    t = timed(lambda: face.mouth_opening(crops))
    print(f"mouth_opening on 256px crops {crops.shape[0] / t:7.1f} crops/s")
    ycc_vs_kornia()


def ycc_vs_kornia(repeat: int = 40) -> None:
    """The colour conversion of the mouth measures: face.measure._ycc (numpy) against kornia's
    rgb_to_ycbcr on the same uint8 crops, interleaved, medians (the machine is shared). kornia is not
    one of the pack's requirements: ``pip install kornia`` to run it."""
    try:
        import kornia
    except ImportError:
        print("_ycc vs kornia: skipped (kornia is not installed; the pack does not need it)")
        return

    from comfyui_lipsync.lipsync_models.face.measure import _ycc

    def with_kornia(u8):
        ycc = kornia.color.rgb_to_ycbcr(torch.from_numpy(u8).permute(0, 3, 1, 2).float().div_(255.0))
        return ycc[:, 0].numpy(), (ycc[:, 2] - ycc[:, 1]).numpy()

    u8 = np.random.default_rng(0).integers(0, 256, (64, face.ANALYSIS_SIZE, face.ANALYSIS_SIZE, 3), dtype=np.uint8)
    a, b = _ycc(u8), with_kornia(u8)
    print(f"_ycc vs kornia: max difference {max(np.abs(a[0] - b[0]).max(), np.abs(a[1] - b[1]).max()):.1e}")
    threads = torch.get_num_threads()
    for n in sorted({1, threads}):
        torch.set_num_threads(n)
        ts = {"numpy": [], "kornia": []}
        for _ in range(repeat):
            for name, fn in (("numpy", _ycc), ("kornia", with_kornia)):
                t = time.perf_counter()
                fn(u8)
                ts[name].append(time.perf_counter() - t)
        print(f"_ycc vs kornia, 64 crops of {face.ANALYSIS_SIZE} px, {n} thread(s): median numpy "
              f"{1e3 * np.median(ts['numpy']):.2f} ms, kornia {1e3 * np.median(ts['kornia']):.2f} ms")
    torch.set_num_threads(threads)


def audio_table(data, clips, detectors, tracks) -> None:
    print("\n== opening vs audio 300-3000 Hz log envelope (Pearson r at the best lag, |lag| <= 3) ==")
    names = [f"{d} {m}" for d in detectors for m in ("opening", "contrast")]
    header = f"{'clip':8s}" + "".join(f"  {n + ' r':>18s} {'lag':>3s}" for n in names)
    if "mediapipe" in detectors:
        header += f"  {'mesh gap r':>11s} {'lag':>3s}"
    print(header)
    agg = {n: [] for n in names + ["mesh"]}
    for c in clips:
        env = data[c][1]
        line = f"{c:8s}"
        for det in detectors:
            tr = tracks[c, det]
            for m, sig in (("opening", tr.opening), ("contrast", tr.extras["contrast"])):
                r, lag = best_lag(sig.numpy().astype(np.float64), env)
                agg[f"{det} {m}"].append((r, lag, bool(tr.found.all())))
                line += f"  {r:18.3f} {lag:3d}"
            if det == "mediapipe":
                r, lag = best_lag(tr.extras["mesh_gap"].numpy().astype(np.float64), env)
                agg["mesh"].append((r, lag, True))
                line += f"  {r:11.3f} {lag:3d}"
        print(line)
    for name, rows in agg.items():
        if rows:
            r = np.array([x[0] for x in rows])
            ok = sum(abs(x[1]) <= 2 for x in rows)
            found = sum(x[2] for x in rows)
            label = {"mesh": "mediapipe mesh inner-lip gap (reference)"}.get(name, f"{name} measure")
            print(f"{label:42s} mean r {r.mean():.3f}  (min {r.min():.3f})  best lag within +-2: {ok}/{len(rows)}"
                  f"  face in every frame: {found}/{len(rows)}")
    print("targets: mean r >= 0.5, lag within +-2 on >= 6 of 7, tracking >= 50 frames/s at 512x512")


def mesh_table(clips, detectors, tracks) -> None:
    names = [f"{d} {m}" for d in detectors for m in ("opening", "contrast")]
    print("\n== opening measures vs the face-mesh inner-lip gap (Pearson r, same frames; the gap is FACTS.md's "
          "reference for a filmed mouth) ==")
    print(f"{'clip':8s}" + "".join(f"  {n:>18s}" for n in names))
    rows = []
    for c in clips:
        mesh = tracks[c, "mediapipe"].extras["mesh_gap"].numpy().astype(np.float64)
        rs = [np.corrcoef(sig.numpy().astype(np.float64), mesh)[0, 1] for det in detectors
              for sig in (tracks[c, det].opening, tracks[c, det].extras["contrast"])]
        rows.append(rs)
        print(f"{c:8s}" + "".join(f"  {r:18.3f}" for r in rs))
    rows = np.array(rows)
    print(f"{'mean':8s}" + "".join(f"  {r:18.3f}" for r in rows.mean(0)))
    print(f"{'min':8s}" + "".join(f"  {r:18.3f}" for r in rows.min(0)))


def height_gain_loco(clips, tracks) -> None:
    """HEIGHT_GAIN refitted leave-one-clip-out: least squares through the origin of the face-mesh gap on
    the Haar track's inner-mouth mean height (its opening / HEIGHT_GAIN), pooled frames of six clips;
    measured on the seventh as the mean |opening - mesh gap| per frame and |mean opening - mean gap|."""
    if ("mediapipe" not in {d for _, d in tracks}):
        print("\nHEIGHT_GAIN leave-one-clip-out needs the face mesh (mediapipe): skipped")
        return
    g0 = calibration.HEIGHT_GAIN
    h = {c: tracks[c, "haar"].opening.double().numpy() / g0 for c in clips}
    m = {c: tracks[c, "mediapipe"].extras["mesh_gap"].double().numpy() for c in clips}

    def fit(cs):
        return sum(float(h[c] @ m[c]) for c in cs) / sum(float(h[c] @ h[c]) for c in cs)

    g_all = fit(clips)
    print(f"\n== HEIGHT_GAIN (in use {g0}) refitted: in-sample on all 7 clips {g_all:.3f}; leave-one-clip-out below ==")
    print(f"{'clip':8s}  {'gain fit on 6':>13s}  {'MAE in-sample':>13s}  {'MAE held-out':>12s}  "
          f"{'|mean diff| in-sample':>21s}  {'held-out':>8s}")
    rows = []
    for c in clips:
        g = fit([o for o in clips if o != c])
        mae_in, mae_out = np.abs(g_all * h[c] - m[c]).mean(), np.abs(g * h[c] - m[c]).mean()
        md_in, md_out = abs(g_all * h[c].mean() - m[c].mean()), abs(g * h[c].mean() - m[c].mean())
        rows.append((g, mae_in, mae_out, md_in, md_out))
        print(f"{c:8s}  {g:13.3f}  {mae_in:13.4f}  {mae_out:12.4f}  {md_in:21.4f}  {md_out:8.4f}")
    r = np.array(rows)
    print(f"{'mean':8s}  {r[:, 0].mean():13.3f}  {r[:, 1].mean():13.4f}  {r[:, 2].mean():12.4f}  "
          f"{r[:, 3].mean():21.4f}  {r[:, 4].mean():8.4f}")
    print(f"{'max':8s}  {r[:, 0].max():13.3f}  {r[:, 1].max():13.4f}  {r[:, 2].max():12.4f}  "
          f"{r[:, 3].max():21.4f}  {r[:, 4].max():8.4f}")


def mouth_in_box_loco(clips, tracks) -> None:
    """MOUTH_IN_BOX refitted leave-one-clip-out: each clip's mean mouth centre inside its smoothed Haar box
    (box widths from the top-left corner; the centre is the mesh's corner midpoint when mediapipe is there,
    else the Haar track's own), averaged over six clips; the held-out error is the distance from that
    prior to the seventh clip's mean centre, in face widths (the refinement reaches REFINE_MAX)."""
    def place(c):
        haar = tracks[c, "haar"]
        ref = tracks.get((c, "mediapipe"), haar)
        b, mo = haar.boxes.double(), ref.mouth.double()
        mc = 0.5 * (mo[:, 0] + mo[:, 1])
        return ((mc - b[:, :2]) / (b[:, 2:3] - b[:, 0:1])).mean(0).numpy()

    src = "face-mesh corners" if (clips[0], "mediapipe") in tracks else "Haar track's corners"
    p = {c: place(c) for c in clips}
    p_all = np.mean([p[c] for c in clips], axis=0)
    print(f"\n== MOUTH_IN_BOX (in use {calibration.MOUTH_IN_BOX}), mouth centre from the {src}: in-sample "
          f"mean of 7 clips ({p_all[0]:.3f}, {p_all[1]:.3f}); leave-one-clip-out below "
          f"(errors in face widths; REFINE_MAX {calibration.REFINE_MAX}) ==")
    print(f"{'clip':8s}  {'clip mean':>15s}  {'fit on 6':>15s}  {'error in-sample':>15s}  {'held-out':>8s}")
    errs = []
    for c in clips:
        fit = np.mean([p[o] for o in clips if o != c], axis=0)
        e_in, e_out = float(np.linalg.norm(p_all - p[c])), float(np.linalg.norm(fit - p[c]))
        errs.append((e_in, e_out))
        print(f"{c:8s}  ({p[c][0]:.3f}, {p[c][1]:.3f})  ({fit[0]:.3f}, {fit[1]:.3f})  {e_in:15.4f}  {e_out:8.4f}")
    e = np.array(errs)
    print(f"{'mean':8s}  {'':15s}  {'':15s}  {e[:, 0].mean():15.4f}  {e[:, 1].mean():8.4f}")
    print(f"{'max':8s}  {'':15s}  {'':15s}  {e[:, 0].max():15.4f}  {e[:, 1].max():8.4f}")


if __name__ == "__main__":
    main()
