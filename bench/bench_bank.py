"""The clip's own mouths (lipsync_models/mouth_bank.py) against issue 14's bars, beside the warp
generator (drawn lips) on the same inputs.

    .venv/bin/python bench/bench_bank.py [--part grid|speed|memory|all] [--out bench/out]

Part ``grid``: every GRID clip driven by the next clip's line (typed transcript, as bench_e2e), the
chain called like ComfyUI (LoadAudioDriver -> ExtractPhonemes -> MapVisemes, MaskLowerFace ->
LipSyncInference -> Composite -> SyncScore wired with the track). Per clip and generator:
- r(output, true speaker): Pearson r of the output's face-mesh lip gap (mediapipe, an instrument
  the generator does not use) with the mesh gap of the clip the line came from, beside r(untouched
  face, true speaker) (GRID lines share a template, so the untouched mouth already correlates);
  the bar is mean >= 0.65 and every pair >= 0.15 above the untouched face.
- realness: for each output frame, the distance of its lower face (cut in a window fixed by the
  input's face box, 48x32 px, each channel normalised) to the nearest input frame's lower face,
  over the nearest-neighbour distance between input frames 5 or more frames apart; median <= 1.0.
- stability: mean frame-to-frame change of the output's lower face over the input's (<= 1.5).
- SyncScore's offset (wired), within +-1.
Nothing in the bank generator was fitted on these clips (its costs were set before measuring them),
so these are held-out figures; the MapVisemes and SyncScore constants upstream are as their own
benches report (leave-one-clip-out there).
Contact sheets (input above output, every 5th frame) go to ``--out``, and per clip a comparison
(input, own mouths, warp; docs/own_mouths.png is lbbc2a's).

Part ``speed``: 250 frames of 512x512 (a GRID clip scaled up and looped back and forth) with a 10 s
line: selection + alignment (mouth_bank.plan), the full-size chosen crops and Composite, in frames/s
(2 threads); the tracking and phoneme steps are not counted (the other benches time them).

Part ``memory``: peak resident memory of LipSyncInference (clip's own mouths) on 250 frames of
1920x1080 beyond its inputs and output (VmHWM over VmRSS before the call).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from lipsync_runner.pack import load_pack  # noqa: E402

PACK = load_pack()
from comfyui_lipsync.lipsync_models import backends, composite, media, mouth_bank  # noqa: E402
from comfyui_lipsync.lipsync_models import face as facelib  # noqa: E402
from comfyui_lipsync.lipsync_runner.cli import call_node  # noqa: E402

from _common import GRID, GRID_CLIPS, GRID_TEXT, filmed_opening, reset_peak, status_mb  # noqa: E402
from helpers import lower_faces, realness, stability  # noqa: E402

NODES = PACK.NODE_CLASS_MAPPINGS
GENERATORS = {"own mouths": backends.BANK, "warp (drawn)": backends.WARP}


def pearson(a, b) -> float:
    a = np.asarray(a, np.float64) - np.mean(a)
    b = np.asarray(b, np.float64) - np.mean(b)
    d = math.sqrt(float((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / d) if d > 0 else float("nan")


def read_clip(stem: str):
    frames, fps, _ = media.read_video(str(GRID / f"{stem}.mpg"), "bench_bank")
    wave, sr = media.read_audio(str(GRID / f"{stem}.mpg"), "bench_bank")
    return frames.float().div_(255.0), float(fps), wave, sr


def mesh_gap(images: torch.Tensor) -> np.ndarray:
    return filmed_opening(facelib.track_faces(images, detector="mediapipe"))


def contact_sheet(inp: torch.Tensor, out: torch.Tensor, boxes: np.ndarray, fps: float, path: Path,
                  every: int = 5, cols: int = 5) -> None:
    """PNG: for each second, a row of input lower faces above the same frames' output."""
    import cv2
    from PIL import Image

    def cut(img, box):
        x0, y0, x1, _ = box
        fw = x1 - x0
        h, w = img.shape[:2]
        xa, xb = int(max(x0 + 0.1 * fw, 0)), int(min(x0 + 0.9 * fw, w))
        ya, yb = int(max(y0 + 0.45 * fw, 0)), int(min(y0 + 1.1 * fw, h))
        return cv2.resize(np.ascontiguousarray(img[ya:yb, xa:xb]), (128, 104), interpolation=cv2.INTER_AREA)

    per_row = max(int(round(fps / every)), 1) if cols is None else cols
    idx = list(range(0, len(inp), every))
    rows = []
    for k in range(0, len(idx), per_row):
        sel = idx[k:k + per_row]
        top = np.concatenate([cut(inp[i, ..., :3].numpy(), boxes[i]) for i in sel], 1)
        bot = np.concatenate([cut(out[i, ..., :3].numpy(), boxes[i]) for i in sel], 1)
        pad = np.ones((104, 128 * per_row - top.shape[1], 3), np.float32)
        rows += [np.concatenate([top, pad], 1), np.concatenate([bot, pad], 1), np.ones((6, 128 * per_row, 3), np.float32)]
    Image.fromarray((np.concatenate(rows) * 255).clip(0, 255).astype(np.uint8)).save(path)


# --- part grid ---------------------------------------------------------------------------------

def chain(images, fps, wave, sr, text, model):
    audio = {"waveform": wave[None], "sample_rate": int(sr)}
    driver = call_node(NODES["LipSyncLoadAudioDriver"], audio_file="", audio=audio, images=images, fps=fps)[0]["driver"]
    ph = call_node(NODES["LipSyncExtractPhonemes"], driver=driver, transcript=text)[0]["phonemes"]
    vis = call_node(NODES["LipSyncMapVisemes"], phonemes=ph, driver=driver, fps=fps)[0]["visemes"]
    track = call_node(NODES["LipSyncMaskLowerFace"], images=images)[0]["face_track"]
    r = call_node(NODES["LipSyncInference"], images=images, face_track=track, visemes=vis, driver=driver, model=model)[0]
    out = call_node(NODES["LipSyncComposite"], images=images, crops=r["crops"], face_track=r["face_track"])[0]["images"]
    s = call_node(NODES["LipSyncSyncScore"], images=out, driver=driver, face_track=r["face_track"], fps=fps)[0]
    return out, track, r["face_track"].report.splitlines()[-1], s["offset_frames"]


def comparison(images: torch.Tensor, outs: dict, boxes: np.ndarray, path: Path, frames=range(16, 64, 6)) -> None:
    """PNG for the README: the input's lower faces, then each generator's, one row each."""
    import cv2
    from PIL import Image

    def cut(img, box):
        x0, y0, x1, _ = box
        fw = x1 - x0
        xa, xb, ya, yb = int(x0 + 0.15 * fw), int(x0 + 0.85 * fw), int(y0 + 0.5 * fw), int(y0 + 1.1 * fw)
        return cv2.resize(np.ascontiguousarray(img[ya:yb, xa:xb, :3]), (140, 120), interpolation=cv2.INTER_AREA)

    rows = [np.concatenate([cut(x[i].numpy(), boxes[i]) for i in frames], 1) for x in [images, *outs.values()]]
    gap = np.ones((4, rows[0].shape[1], 3), np.float32)
    sheet = np.concatenate([r for row in rows for r in (row, gap)][:-1])
    Image.fromarray((sheet * 255).clip(0, 255).astype(np.uint8)).save(path)


def part_grid(out_dir: Path) -> None:
    data = {c: read_clip(c) for c in GRID_CLIPS}
    mesh = {c: mesh_gap(d[0]) for c, d in data.items()}
    res = {g: [] for g in GENERATORS}
    for i, clip in enumerate(GRID_CLIPS):
        src = GRID_CLIPS[(i + 1) % len(GRID_CLIPS)]
        images, fps, _, _ = data[clip]
        _, _, wave, sr = data[src]
        base = pearson(mesh[clip], mesh[src])
        outs = {}
        for g, model in GENERATORS.items():
            out, track, note, offset = chain(images, fps, wave, sr, GRID_TEXT[src], model)
            boxes = track.boxes.double().numpy()
            lf_in, lf_out = lower_faces(images, boxes), lower_faces(out, boxes)
            row = {"r": pearson(mesh_gap(out), mesh[src]), "base": base, "real": realness(lf_in, lf_out),
                   "stab": stability(lf_in, lf_out), "offset": offset}
            res[g].append(row)
            print(f"{g:<13} {clip} <- {src}  r(out, true) {row['r']:+.2f} (untouched {base:+.2f}, margin "
                  f"{row['r'] - base:+.2f})  realness {row['real']:.2f}  stability {row['stab']:.2f}  "
                  f"SyncScore {offset:+d}  | {note}", flush=True)
            contact_sheet(images, out, boxes, fps, out_dir / f"bank_{g.split()[0]}_{clip}.png")
            outs[g] = out
        comparison(images, outs, boxes, out_dir / f"bank_compare_{clip}.png")
    for g, rows in res.items():
        r = np.array([x["r"] for x in rows])
        m = np.array([x["r"] - x["base"] for x in rows])
        print(f"{g:<13} mean r(out, true) {r.mean():.3f} (bar 0.65), margin over untouched min {m.min():+.2f} "
              f"(bar +0.15, met on {int((m >= 0.15).sum())}/{len(m)}), realness median of clips "
              f"{np.median([x['real'] for x in rows]):.2f} (max {max(x['real'] for x in rows):.2f}, bar 1.0), "
              f"stability max {max(x['stab'] for x in rows):.2f} (bar 1.5), SyncScore |offset|<=1 on "
              f"{sum(abs(x['offset']) <= 1 for x in rows)}/{len(rows)}")


# --- part speed / memory -----------------------------------------------------------------------

def looped(clip: str, n: int, size: tuple[int, int]) -> tuple[torch.Tensor, float]:
    """``n`` frames of a GRID clip played forward and back, scaled to fill (H, W) and centre-cut."""
    import cv2

    frames, fps, _, _ = read_clip(clip)
    order = np.concatenate([np.arange(len(frames)), np.arange(len(frames) - 2, 0, -1)])
    idx = order[np.arange(n) % len(order)]
    h, w = size
    fh, fw = frames.shape[1:3]
    k = max(h / fh, w / fw)
    nh, nw = int(round(fh * k)), int(round(fw * k))
    out = torch.empty((n, h, w, 3), dtype=torch.float32)
    cache = {}
    for t, j in enumerate(idx):
        if j not in cache:
            big = cv2.resize(frames[j].numpy(), (nw, nh), interpolation=cv2.INTER_LINEAR)
            y0, x0 = (nh - h) // 2, (nw - w) // 2
            cache[j] = torch.from_numpy(big[y0:y0 + h, x0:x0 + w].copy())
        out[t] = cache[j]
    return out, fps


def line(seconds: float) -> tuple[torch.Tensor, int]:
    waves = []
    for c in GRID_CLIPS:
        w, sr = media.read_audio(str(GRID / f"{c}.mpg"), "bench_bank")
        waves.append(w)
    wave = torch.cat(waves, 1)
    return wave[:, :int(seconds * sr)], sr


def chain_inputs(n: int, size: tuple[int, int]):
    """``n`` looped frames of lbax4n at ``size`` with a line of GRID speech (recognised, no transcript):
    (images, driver, visemes, face track), made by the nodes."""
    images, fps = looped("lbax4n", n, size)
    wave, sr = line(n / fps)
    driver = call_node(NODES["LipSyncLoadAudioDriver"], audio_file="", audio={"waveform": wave[None], "sample_rate": sr},
                       images=images, fps=fps)[0]["driver"]
    ph = call_node(NODES["LipSyncExtractPhonemes"], driver=driver, transcript="")[0]["phonemes"]
    vis = call_node(NODES["LipSyncMapVisemes"], phonemes=ph, driver=driver, fps=fps)[0]["visemes"]
    track = call_node(NODES["LipSyncMaskLowerFace"], images=images)[0]["face_track"]
    return images, driver, vis, track


def part_speed(n: int = 250, side: int = 512, batch: int = 16) -> None:
    torch.set_num_threads(2)
    images, _, vis, track = chain_inputs(n, (side, side))
    t0 = time.perf_counter()
    plan = mouth_bank.plan(images, track, vis.params)
    t1 = time.perf_counter()
    crops = []
    for s in range(0, n, batch):
        idx = list(range(s, min(s + batch, n)))
        own = composite.crop_faces(images[s:s + batch], track.frames(idx))[..., :3].permute(0, 3, 1, 2)
        crops.append(mouth_bank.chosen_crops(plan, s, s + len(idx), own))
    crops = torch.cat(crops)
    t2 = time.perf_counter()
    composite.composite(images, crops.permute(0, 2, 3, 1), track)
    t3 = time.perf_counter()
    print(f"speed, {n} frames of {side}x{side}, 2 threads, load {os.getloadavg()[0]:.1f}: selection + alignment "
          f"{t1 - t0:.2f} s, own and chosen crops {t2 - t1:.2f} s, Composite {t3 - t2:.2f} s: "
          f"{n / (t3 - t0):.1f} frames/s (bar 25) | {plan.selection.note}")


def part_memory(n: int = 250) -> None:
    images, driver, vis, track = chain_inputs(n, (1080, 1920))
    ok = reset_peak()
    before = status_mb("VmRSS")
    r = call_node(NODES["LipSyncInference"], images=images, face_track=track, visemes=vis, driver=driver,
                  model=backends.BANK)[0]
    peak = status_mb("VmHWM")
    out_mb = r["crops"].numel() * 4 / 2 ** 20
    print(f"memory, {n} frames of 1920x1080 (input {images.numel() * 4 / 2 ** 30:.2f} GB): LipSyncInference peak "
          f"{peak - before:.0f} MB above what was resident before it"
          + ("" if ok else " (peak mark not resettable: lifetime peak)")
          + f", of which its output crops {out_mb:.0f} MB; beyond inputs and output: {peak - before - out_mb:.0f} MB "
          f"(bar 1024) | {r['face_track'].report.splitlines()[-1]}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--part", default="all", choices=("grid", "speed", "memory", "all"))
    p.add_argument("--out", default=str(ROOT / "bench" / "out"))
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.part in ("grid", "all"):
        part_grid(out)
    if a.part in ("speed", "all"):
        part_speed()
    if a.part in ("memory", "all"):
        part_memory()


if __name__ == "__main__":
    main()
