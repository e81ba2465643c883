"""Peak memory of the seven-node chain on a long full-HD IMAGE batch (issue 15, item 2).

    .venv/bin/python bench/bench_chain_memory.py [--frames 250] [--height 1080] [--width 1920]

The input is a GRID clip scaled up to fill 1920x1080 and played forward and back to 250 frames
(bench_bank's ``looped``; 6.2 GB as float32), with 10 s of GRID speech. The nodes are called like
ComfyUI calls them (``call_node``): LoadAudioDriver -> ExtractPhonemes -> MapVisemes, MaskLowerFace ->
LipSyncInference -> Composite -> SyncScore, each output held until the end as ComfyUI's cache does.

Per node: the peak resident memory during the call (VmHWM, the mark reset just before it) beyond
what was resident before it (its inputs and everything upstream) and beyond the tensors it returns;
and what stays resident after it beyond those tensors (a cache or a leak). For the chain: the peak
beyond the input batch and Composite's output batch, i.e. everything the chain adds to what ComfyUI
must hold anyway, the MASK output of MaskLowerFace included (shown on its own too). Bar: < 1.5 GB.
MaskLowerFace gets ``mask_read`` as ComfyUI's on-prompt hook sets it for the shipped default graphs
(False: nothing reads its MASK); ``--mask-read`` measures a graph that feeds the MASK to Composite.
SyncScore is also reported apart: the chain's peak before it, what is held when it starts, and its
own peak beyond that. Check ``free -g`` first: the input alone is 6.2 GB and the outputs another 6 GB.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from bench_bank import NODES, call_node, line, looped  # noqa: E402
from _common import reset_peak, status_mb  # noqa: E402

BAR_MB = 1536.0
MB = 2.0 ** 20


def tensor_bytes(obj, seen=None) -> int:
    """Bytes of the distinct tensors reachable in a node's outputs (tuples, dicts, dataclasses)."""
    seen = set() if seen is None else seen
    if isinstance(obj, torch.Tensor):
        key = (obj.untyped_storage().data_ptr(), obj.device.type)
        if key in seen or obj.device.type != "cpu":
            return 0
        seen.add(key)
        return obj.untyped_storage().nbytes()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v, seen) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v, seen) for v in obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return sum(tensor_bytes(getattr(obj, f.name), seen) for f in dataclasses.fields(obj))
    return 0


def measured(name: str, rows: list, fn, *args, **kwargs):
    """Run one node, record (name, peak beyond before and outputs, retained beyond outputs, output MB, s)."""
    gc.collect()
    before = status_mb("VmRSS")
    reset_peak()
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    dt = time.perf_counter() - t0
    peak = status_mb("VmHWM")
    gc.collect()
    after = status_mb("VmRSS")
    out_mb = tensor_bytes(out) / MB
    rows.append((name, peak - before - out_mb, after - before - out_mb, out_mb, dt, peak))
    return out


def run_chain(images: torch.Tensor, fps: float, wave: torch.Tensor, sr: int, rows: list,
              mask_read: bool = False) -> dict:
    audio = {"waveform": wave[None], "sample_rate": int(sr)}
    node = lambda key, **kw: call_node(NODES[key], **kw)[0]  # noqa: E731
    drv = measured("LoadAudioDriver", rows, node, "LipSyncLoadAudioDriver", audio_file="", audio=audio,
                   images=images, fps=fps)
    ph = measured("ExtractPhonemes", rows, node, "LipSyncExtractPhonemes", driver=drv["driver"], transcript="")
    vis = measured("MapVisemes", rows, node, "LipSyncMapVisemes", phonemes=ph["phonemes"], driver=drv["driver"],
                   fps=fps)
    mask = measured("MaskLowerFace", rows, node, "LipSyncMaskLowerFace", images=images, mask_read=mask_read)
    gen = measured("LipSyncInference", rows, node, "LipSyncInference", images=images, face_track=mask["face_track"],
                   visemes=vis["visemes"], driver=drv["driver"])
    comp = measured("Composite", rows, node, "LipSyncComposite", images=images, crops=gen["crops"],
                    face_track=gen["face_track"], mask=mask["mask"] if mask_read else None)
    score = measured("SyncScore", rows, node, "LipSyncSyncScore", images=comp["images"], driver=drv["driver"],
                     face_track=gen["face_track"], fps=fps)
    return {"drv": drv, "ph": ph, "vis": vis, "mask": mask, "gen": gen, "comp": comp, "score": score}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=250)
    p.add_argument("--height", type=int, default=1080)
    p.add_argument("--width", type=int, default=1920)
    p.add_argument("--mask-read", action="store_true", help="MaskLowerFace's MASK feeds Composite")
    a = p.parse_args()
    torch.set_num_threads(2)
    images, fps = looped("lbax4n", a.frames, (a.height, a.width))
    wave, sr = line(a.frames / fps)
    in_mb = images.numel() * 4 / MB
    gc.collect()
    start = status_mb("VmRSS")
    rows: list = []
    t0 = time.perf_counter()
    outs = run_chain(images, fps, wave, sr, rows, mask_read=a.mask_read)
    total_s = time.perf_counter() - t0
    out_mb = outs["comp"]["images"].numel() * 4 / MB
    mask_mb = tensor_bytes(outs["mask"]["mask"]) / MB
    chain_peak = max(r[5] for r in rows)
    beyond = chain_peak - start - out_mb
    print(f"chain memory, {a.frames} frames of {a.width}x{a.height} (input {in_mb / 1024:.2f} GB float32), "
          f"2 threads, load {os.getloadavg()[0]:.1f}, {total_s:.0f} s:")
    print(f"  {'node':<18}{'peak beyond in+out':>20}{'kept beyond out':>17}{'output':>10}{'time':>8}")
    for name, extra, kept, o_mb, dt, _ in rows:
        flag = "  OVER" if extra > BAR_MB else ""
        print(f"  {name:<18}{extra:>17.0f} MB{kept:>14.0f} MB{o_mb:>7.0f} MB{dt:>7.1f}s{flag}")
    print(f"  chain: peak {chain_peak:.0f} MB resident, {beyond:.0f} MB beyond the input and Composite's output "
          f"(bar {BAR_MB:.0f}): {'PASS' if beyond < BAR_MB else 'FAIL'}; of it MaskLowerFace's MASK output "
          f"{mask_mb:.0f} MB (read by Composite: {a.mask_read}), without it {beyond - mask_mb:.0f} MB")
    before_sync = max(r[5] for r in rows if r[0] != "SyncScore") - start - out_mb
    sync = rows[-1]
    held = sync[5] - sync[1] - sync[3] - start - out_mb  # resident when SyncScore starts, beyond in+out
    print(f"  without SyncScore: peak {before_sync:.0f} MB beyond in+out; held when SyncScore starts "
          f"{held:.0f} MB, SyncScore's own peak beyond that {sync[1]:.0f} MB (chain = max(before, held + own))")
    print(f"  SyncScore: offset {outs['score']['offset_frames']} frames | "
          f"{outs['gen']['face_track'].report.splitlines()[-1]}")


if __name__ == "__main__":
    main()
