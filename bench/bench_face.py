"""MaskLowerFace figures: tracking speed at 512x512 (and 1080p), mask speed, how well the
mouth-opening measure (and the contrast, SyncScore's lip signal) follows each GRID clip's own
audio (300-3000 Hz log envelope), and how well both follow the face-mesh inner-lip gap, the
reference for a filmed mouth (when mediapipe is installed).

Run: .venv/bin/python bench/bench_face.py   (prints a table; mediapipe rows when it is installed)
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
from comfyui_lipsync.lipsync_models import face, media  # noqa: E402

from _common import GRID  # noqa: E402


def band_envelope(audio: torch.Tensor, sr: int, fps: float, n: int) -> np.ndarray:
    from scipy import signal

    x = audio.numpy().mean(axis=0).astype(np.float64)
    y = signal.sosfiltfilt(signal.butter(4, [300, 3000], btype="band", fs=sr, output="sos"), x)
    hop = sr / fps
    return np.array([np.log(np.mean(y[int(i * hop):int((i + 1) * hop)] ** 2) + 1e-10) for i in range(n)])


def best_lag(a: np.ndarray, b: np.ndarray, max_lag: int = 3) -> tuple[float, int]:
    a = (a - a.mean()) / (a.std() + 1e-12)
    b = (b - b.mean()) / (b.std() + 1e-12)
    n = len(a)
    rs = {lag: float(np.corrcoef(a[max(0, lag):n + min(0, lag)], b[max(0, -lag):n - max(0, lag)])[0, 1])
          for lag in range(-max_lag, max_lag + 1)}
    lag = max(rs, key=rs.get)
    return rs[lag], lag


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
    clips = sorted(p.stem for p in GRID.glob("*.mpg"))
    data = {}
    for c in clips:
        frames, fps, (audio, sr) = media.read_video(str(GRID / f"{c}.mpg"))
        data[c] = (frames.float() / 255, band_envelope(audio, sr, fps, frames.shape[0]))
    detectors = ["haar"] + (["mediapipe"] if face.mediapipe_available() else [])
    if len(detectors) == 1:
        print("mediapipe not installed: haar only (see requirements-mediapipe.txt)")

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
    tracks = {(c, det): face.track_faces(data[c][0], detector=det) for c in clips for det in detectors}

    print("\n== opening vs audio 300-3000 Hz log envelope (Pearson r at the best lag, |lag| <= 3) ==")
    names = [f"{d} {m}" for d in detectors for m in ("opening", "contrast")]
    header = f"{'clip':8s}" + "".join(f"  {n + ' r':>18s} {'lag':>3s}" for n in names)
    if "mediapipe" in detectors:
        header += f"  {'mesh gap r':>11s} {'lag':>3s}"
    print(header)
    agg = {n: [] for n in names + ["mesh"]}
    for c in clips:
        frames, env = data[c]
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

    if "mediapipe" not in detectors:
        return
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


if __name__ == "__main__":
    main()
