"""The clip's own mouths (lipsync_models/mouth_bank.py) against issue 14's bars, beside the warp
generator (drawn lips) on the same inputs.

    .venv/bin/python bench/bench_bank.py [--part grid|fit|take|speed|memory|all] [--out bench/out]
                                         [--take-video V --take-audio A]

Part ``grid``: every GRID clip driven by the next clip's line (typed transcript, as bench_e2e), the
chain called like ComfyUI (LoadAudioDriver -> ExtractPhonemes -> MapVisemes, MaskLowerFace ->
LipSyncInference -> Composite -> SyncScore wired with the track). Per clip and generator:
- r(output, true speaker): Pearson r of the output's face-mesh lip gap (mediapipe, an instrument
  the generator does not use) with the mesh gap of the clip the line came from, beside r(untouched
  face, true speaker) (GRID lines share a template, so the untouched mouth already correlates);
  the bar is mean >= 0.65 and every pair >= 0.15 above the untouched face.
- realness: for each output frame, the distance of its mouth (cut in a window fixed by the
  input's face box, helpers.MOUTH: 1.5 mouth widths across, 48x32 px, each channel normalised) to
  the nearest input frame's mouth, over the nearest-neighbour distance between input frames 5 or
  more frames apart; median <= 1.0. Beside it the same on the whole lower face (helpers.LOWER_FACE,
  cheeks and chin too), where an output frame is nearest to its own input frame whatever its mouth
  shows, so drawn mouths can pass there. Takes also print it "in colour" (the mouth cuts not
  normalised): the normalised measure cannot see a mouth whose colour or contrast was changed (as
  Composite's colour match did on LatentSync's demo 1: deep red lips).
- stability: mean frame-to-frame change of the output's lower face over the input's (<= 1.5).
- SyncScore's offset (wired), within +-1.
Nothing in the bank generator was fitted on these clips (its costs were set before measuring them),
so these are held-out figures; the MapVisemes and SyncScore constants upstream are as their own
benches report (leave-one-clip-out there).
Contact sheets (input above output, every 5th frame) go to ``--out``, and per clip a comparison
(input, own mouths, warp; docs/own_mouths.png is lbbc2a's).

Part ``fit``: the shape descriptors' weights. Per pair, the selection alone (no rendering): the
face-mesh gap of the chosen frames against the true speaker, minus the untouched face's r (the grid
part's margin, read off the frames the output wears), and how well the chosen mouths follow each
target descriptor; for ``calibration.BANK_WEIGHTS`` (set by reasoning), opening and width alone, and
a leave-one-clip-out fit of the lips and teeth weights; Haar tracks and face-mesh tracks. Also, per
pair, r(target opening, true speaker) beside the untouched face's r: what the line's own target
allows.

Part ``take``: longer takes. A GRID clip (lbax4n, brbk7n) played forward and back for 18 s, driven
by the six other clips' lines; realness there counts input neighbours 5 or more CLIP frames apart (a
replayed frame is the same mouth). With ``--take-video/--take-audio`` (repeatable pairs) also real
videos (kept outside the repository, scaled to ``--take-side``) driven by other lines; ``--part
real`` runs only those. Both generators; contact sheets to ``--out``.

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
from helpers import MOUTH, lower_faces, realness, stability  # noqa: E402

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
            m_in, m_out = lower_faces(images, boxes, window=MOUTH), lower_faces(out, boxes, window=MOUTH)
            row = {"r": pearson(mesh_gap(out), mesh[src]), "base": base, "real": realness(m_in, m_out),
                   "real95": realness(m_in, m_out, q=95), "real_lf": realness(lf_in, lf_out),
                   "stab": stability(lf_in, lf_out), "offset": offset}
            res[g].append(row)
            print(f"{g:<13} {clip} <- {src}  r(out, true) {row['r']:+.2f} (untouched {base:+.2f}, margin "
                  f"{row['r'] - base:+.2f})  realness {row['real']:.2f} (95th percentile {row['real95']:.2f}; lower face "
                  f"{row['real_lf']:.2f})  "
                  f"stability {row['stab']:.2f}  SyncScore {offset:+d}  | {note}", flush=True)
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


# --- part fit: the descriptor weights, held out ---------------------------------------------------

FIT_LIPS = (0.0, 0.15, 0.3, 0.6)
FIT_TEETH = (0.0, 0.15, 0.3, 0.6, 1.0)


def pair_inputs(data: dict, detector: str) -> list:
    """Per GRID clip driven by the next clip's line: its face track (``detector``) and the line's
    viseme params (the chain of :func:`chain`, up to MaskLowerFace)."""
    pairs = []
    for i, clip in enumerate(GRID_CLIPS):
        src = GRID_CLIPS[(i + 1) % len(GRID_CLIPS)]
        images, fps, _, _ = data[clip]
        _, _, wave, sr = data[src]
        driver = call_node(NODES["LipSyncLoadAudioDriver"], audio_file="", audio={"waveform": wave[None], "sample_rate": int(sr)},
                           images=images, fps=fps)[0]["driver"]
        ph = call_node(NODES["LipSyncExtractPhonemes"], driver=driver, transcript=GRID_TEXT[src])[0]["phonemes"]
        vis = call_node(NODES["LipSyncMapVisemes"], phonemes=ph, driver=driver, fps=fps)[0]["visemes"]
        track = call_node(NODES["LipSyncMaskLowerFace"], images=images, detector=detector)[0]["face_track"]
        pairs.append({"clip": clip, "src": src, "track": track, "params": vis.params, "fps": fps})
    return pairs


def chosen_margins(pairs: list, mesh: dict, weights: tuple) -> np.ndarray:
    """Per pair: r(face-mesh gap of the frames the selection chose, the line's true speaker's) minus
    r(untouched face, true speaker): the margin of the grid part, read off the chosen frames (the
    output wears their lower faces) without rendering; and r(chosen descriptor, its target) per
    descriptor (how well the chosen mouths follow each target), (P, 1 + K)."""
    keep = mouth_bank.BANK_WEIGHTS
    mouth_bank.BANK_WEIGHTS = tuple(weights)
    try:
        rows = []
        for p in pairs:
            sel = mouth_bank.select_mouths(p["track"], p["params"], 1.0, p["fps"]).source
            ok = sel >= 0
            true = mesh[p["src"]]
            margin = pearson(mesh[p["clip"]][sel][ok], true[ok]) - pearson(mesh[p["clip"]], true)
            bank = mouth_bank.build_bank(p["track"])
            want = mouth_bank.targets(p["params"], bank)[ok]
            got = mouth_bank._shape(p["track"])[sel[ok]]
            rows.append([margin] + [pearson(got[:, k], want[:, k]) for k in range(want.shape[1])])
        return np.array(rows)
    finally:
        mouth_bank.BANK_WEIGHTS = keep


def part_fit() -> None:
    """The lips and teeth weights: the calibrated ones (set by reasoning) beside a leave-one-clip-out
    fit (for each clip, the grid point with the best mean margin on the other six)."""
    data = {c: read_clip(c) for c in GRID_CLIPS}
    mesh = {c: mesh_gap(d[0]) for c, d in data.items()}
    set_w = tuple(mouth_bank.BANK_WEIGHTS)
    for detector in ("haar", "mediapipe"):
        pairs = pair_inputs(data, detector)
        grid = [(lw, tw) for lw in (FIT_LIPS if detector == "mediapipe" else (0.0,)) for tw in FIT_TEETH]
        table = {g: chosen_margins(pairs, mesh, (set_w[0], set_w[1]) + g) for g in grid}
        note = " (the selection reads the face mesh's gap, the judge's own instrument: not independent)" \
            if detector == "mediapipe" else ""
        print(f"{detector} tracks{note}:")
        for label, w in (("opening and width only", (set_w[0], set_w[1], 0.0, 0.0)), ("calibration.BANK_WEIGHTS", set_w)):
            t = chosen_margins(pairs, mesh, w)
            print(f"  {label:<25} {w}: margins " + " ".join(f"{p['clip']} {m:+.2f}" for p, m in zip(pairs, t[:, 0]))
                  + f" | min {t[:, 0].min():+.2f} mean {t[:, 0].mean():+.2f} | r(chosen, target) opening, width, lips, "
                  f"teeth {' '.join(f'{v:+.2f}' for v in np.nanmean(t[:, 1:], 0))}")
        if detector == "haar":  # what the line's own target allows (issue 14's margin bar)
            for p in pairs:
                want = mouth_bank.targets(p["params"], mouth_bank.build_bank(p["track"]))[:, 0]
                true, own = mesh[p["src"]], mesh[p["clip"]]
                print(f"  {p['clip']} <- {p['src']}: r(target opening, true speaker) {pearson(want, true):+.2f}, "
                      f"r(untouched, true speaker) {pearson(own, true):+.2f}: a mouth opening exactly as the target "
                      f"would gain {pearson(want, true) - pearson(own, true):+.2f}")
        held = []
        for i, p in enumerate(pairs):
            best = max(grid, key=lambda g: float(np.delete(table[g][:, 0], i).mean()))
            held.append(table[best][i, 0])
            print(f"  leave out {p['clip']}: fitted lips, teeth {best} -> held-out margin {held[-1]:+.2f}")
        print(f"  leave-one-clip-out: min {min(held):+.2f} mean {np.mean(held):+.2f} (bar +0.15 on every pair)")


# --- part take: realness on a longer take ---------------------------------------------------------

def take_realness(inp: np.ndarray, out: np.ndarray, src: np.ndarray, q: float = 50.0) -> float:
    """helpers.realness for a take whose frame t shows clip frame ``src[t]`` (a clip played forward
    and back): input neighbours must be 5 or more CLIP frames apart."""
    return realness(inp, out, q=q, frames=src)


def part_take(out_dir: Path, clips=("lbax4n", "brbk7n")) -> None:
    """A longer take: a GRID clip played forward and back for as long as the six other clips' lines
    (18 s), driven by them (typed transcripts); realness, stability and SyncScore per generator."""
    for clip in clips:
        frames, fps, _, _ = read_clip(clip)
        others = [c for c in GRID_CLIPS if c != clip]
        waves = [read_clip(c)[2:] for c in others]
        sr = waves[0][1]
        wave = torch.cat([w for w, _ in waves], 1)
        n = int(wave.shape[1] / sr * fps)
        order = np.concatenate([np.arange(len(frames)), np.arange(len(frames) - 2, 0, -1)])
        src = order[np.arange(n) % len(order)]
        images = frames[torch.as_tensor(src)]
        take_figures(images, fps, wave, sr, " ".join(GRID_TEXT[c] for c in others), src,
                     f"take {clip} ({n} frames, {n / fps:.1f} s, forward and back)", out_dir / f"bank_take_{clip}.png")


def take_figures(images, fps, wave, sr, text: str, src: np.ndarray, label: str, sheet: Path) -> None:
    """Both generators on a take: realness (input neighbours ``min_gap`` clip frames ``src`` apart),
    stability, SyncScore; the own mouths' contact sheet (first 10 s) to ``sheet``."""
    for g, model in GENERATORS.items():
        out, track, note, offset = chain(images, fps, wave, sr, text, model)
        boxes = track.boxes.double().numpy()
        lf_in, lf_out = lower_faces(images, boxes), lower_faces(out, boxes)
        m_in, m_out = lower_faces(images, boxes, window=MOUTH), lower_faces(out, boxes, window=MOUTH)
        c_in, c_out = (lower_faces(x, boxes, window=MOUTH, normalise=False) for x in (images, out))
        print(f"{label} {g:<13} realness {take_realness(m_in, m_out, src):.2f} (bar 1.0; 95th percentile "
              f"{take_realness(m_in, m_out, src, q=95):.2f}; lower face "
              f"{take_realness(lf_in, lf_out, src):.2f}; in colour {take_realness(c_in, c_out, src):.2f}, 95th "
              f"percentile {take_realness(c_in, c_out, src, q=95):.2f})  stability {stability(lf_in, lf_out):.2f}  "
              f"SyncScore {offset:+d} | {note}", flush=True)
        if g == "own mouths":
            k = int(10 * fps)
            contact_sheet(images[:k], out[:k], boxes[:k], fps, sheet)


def read_take(video: str, max_side: int = 960) -> tuple[torch.Tensor, float]:
    """A video's frames (float 0..1), scaled so the longer side is at most ``max_side``."""
    import cv2

    cap = cv2.VideoCapture(video)
    fps, frames = float(cap.get(cv2.CAP_PROP_FPS)), []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        k = max_side / max(img.shape[:2])
        if k < 1:
            img = cv2.resize(img, (int(round(img.shape[1] * k)), int(round(img.shape[0] * k))), interpolation=cv2.INTER_AREA)
        frames.append(torch.from_numpy(img[..., ::-1].copy()))
    cap.release()
    return torch.stack(frames).float().div_(255.0), fps


def part_real_take(out_dir: Path, video: str, audio: str, side: int = 960) -> None:
    """Real footage kept outside the repository (e.g. LatentSync's demo videos in /work/realclips):
    ``video`` driven by ``audio`` (another speaker's line, recognised; cut to the video's length)."""
    images, fps = read_take(video, side)
    wave, sr = media.read_audio(audio, "bench_bank")
    n = min(len(images), int(wave.shape[1] / sr * fps))
    images, wave = images[:n], wave[:, :int(n / fps * sr)]
    take_figures(images, fps, wave, sr, "", np.arange(n),
                 f"real take {Path(video).name} <- {Path(audio).name} ({n} frames, {images.shape[2]}x{images.shape[1]})",
                 out_dir / f"bank_real_{Path(video).stem}.png")


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
    p.add_argument("--part", default="all", choices=("grid", "fit", "take", "real", "speed", "memory", "all"))
    p.add_argument("--out", default=str(ROOT / "bench" / "out"))
    p.add_argument("--take-video", action="append", default=[],
                   help="parts take/real: also this real video (kept outside the repository); repeatable")
    p.add_argument("--take-audio", action="append", default=[],
                   help="the line that drives each --take-video (another speaker's), in the same order")
    p.add_argument("--take-side", type=int, default=960, help="real takes are scaled to this longer side")
    a = p.parse_args()
    if len(a.take_video) != len(a.take_audio):
        p.error("give one --take-audio per --take-video")
    if a.part == "real" and not a.take_video:
        p.error("--part real needs --take-video V --take-audio A (real videos kept outside the repository)")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.part in ("grid", "all"):
        part_grid(out)
    if a.part in ("fit", "all"):
        part_fit()
    if a.part in ("take", "all"):
        part_take(out)
    if a.part in ("take", "real", "all"):
        for video, audio in zip(a.take_video, a.take_audio):
            part_real_take(out, video, audio, a.take_side)
    if a.part in ("speed", "all"):
        part_speed()
    if a.part in ("memory", "all"):
        part_memory()


if __name__ == "__main__":
    main()
