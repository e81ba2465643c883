"""SyncScore's time and memory on 10 s of 1080p given a face track (issues 15 and 18).

Run:  .venv/bin/python bench/bench_sync_1080.py --video CLIP.mp4 [--frames 250] [--threads 2]

CLIP: a 1080p talking clip with its own audio, e.g. bytedance/LatentSync's ``assets/demo1_video.mp4``
(1080x1920, 25 fps, 250 frames = 10 s; keep it outside the repository). The frames are decoded
straight into one float32 (T, H, W, 3) IMAGE tensor, as ComfyUI holds it (250 x 1080p = 6.2 GB).

The face track is made first and not timed (the bar is "given a face track"): the pack's Haar
tracker runs at the clip's own resolution on a window around the face (found on a 640-px copy)
and the track is moved into full-frame coordinates. Then ``sync.score_clip`` (the node's path)
scores the full frames with the clip's audio, timed (wall and the process's CPU time: on a
loaded machine the wall time says little, the CPU time bounds what idle cores would take); its peak memory beyond the input is the
process's peak resident size (VmHWM, reset just before) minus its resident size just before
(the input tensor and the loaded libraries). Printed: seconds, frames/s, that peak, the offset,
and the load average (2 cores shared: the time moves with the load).
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
from comfyui_lipsync.lipsync_models.types import FaceTrack  # noqa: E402

from _common import reset_peak, status_mb  # noqa: E402


def decode_float(path: Path, frames: int) -> tuple[torch.Tensor, float]:
    """The first ``frames`` frames as one float32 (T, H, W, 3) 0..1 tensor, filled frame by frame."""
    import av

    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        fps = float(vs.average_rate)
        out = torch.empty((frames, vs.height, vs.width, 3), dtype=torch.float32)
        n = 0
        for f in c.decode(vs):
            if n == frames:
                break
            out[n] = torch.from_numpy(f.to_ndarray(format="rgb24")).float().div_(255.0)
            n += 1
    return out[:n], fps


def face_window(images: torch.Tensor) -> tuple[int, int, int, int]:
    """x0, y0, x1, y1 of a window holding the face in every frame (Haar on a 640-px copy of every
    5th frame, padded by most of a face width)."""
    h, w = images.shape[1:3]
    s = 640.0 / max(h, w)
    small = torch.nn.functional.interpolate(images[::5].permute(0, 3, 1, 2), scale_factor=s, mode="area")
    tr = face.track_faces(small.permute(0, 2, 3, 1).contiguous(), detector="haar")
    b = tr.boxes.double().numpy() / s
    fw = float(np.median(b[:, 2] - b[:, 0]))
    x0, y0 = int(max(b[:, 0].min() - 0.6 * fw, 0)), int(max(b[:, 1].min() - 0.6 * fw, 0))
    x1, y1 = int(min(b[:, 2].max() + 0.6 * fw, w)), int(min(b[:, 3].max() + 0.8 * fw, h))
    return x0, y0, x1, y1


def moved(track: FaceTrack, x0: int, y0: int, frame_size: tuple[int, int]) -> FaceTrack:
    """``track`` of a window whose corner is (x0, y0), in the full frame's coordinates."""
    o = torch.tensor([x0, y0], dtype=track.mouth.dtype)
    t = track.transform.clone()
    t[:, :, 2] -= t[:, :, :2] @ o
    return FaceTrack(boxes=track.boxes + torch.cat([o, o]), mouth=track.mouth + o, opening=track.opening,
                     transform=t, crop_size=track.crop_size, frame_size=frame_size, found=track.found,
                     report=track.report, extras=track.extras)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--video", type=Path, required=True)
    ap.add_argument("--frames", type=int, default=250)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    images, fps = decode_float(args.video, args.frames)
    n, h, w = images.shape[:3]
    wav, sr = media.read_audio(str(args.video))
    audio = {"waveform": wav[None], "sample_rate": sr}
    x0, y0, x1, y1 = face_window(images)
    track = moved(face.track_faces(images[:, y0:y1, x0:x1].contiguous(), detector="haar"), x0, y0, (h, w))
    print(f"{args.video.name}: {n} frames {w}x{h} at {fps:g} fps ({n / fps:.1f} s), input "
          f"{images.numel() * 4 / 1e9:.2f} GB float32; face {float(track.boxes[:, 2].sub(track.boxes[:, 0]).median()):.0f} px")
    before = status_mb("VmRSS")
    peak_reset = reset_peak()
    t, cpu = time.perf_counter(), time.process_time()
    res, _ = sync.score_clip(images, fps, audio=audio, face_track=track)
    dt, cpu = time.perf_counter() - t, time.process_time() - cpu
    peak = status_mb("VmHWM")
    beyond = (f"{peak - before:.0f} MB" if peak_reset and peak is not None and before is not None
              else "n/a (no /proc/self/clear_refs)")
    print(f"SyncScore given the track: {dt:.2f} s wall ({n / dt:.0f} frames/s), {cpu:.2f} s of CPU time "
          f"(all threads: the wall time on {args.threads} idle cores lies between {cpu / args.threads:.2f} and "
          f"{cpu:.2f} s), peak beyond the input {beyond}; "
          f"offset {res.offset_frames:+d}{' (uncertain)' if res.uncertain else ''}, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
