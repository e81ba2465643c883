"""LipSyncInference benchmark: speed and memory of both generators, and the built-in
generator's verification figures on real footage.

Prints:
* built-in generator: frames/s on 256-px aligned crops of a GRID clip (batch 16), with 2 and
  1 torch threads; peak extra memory;
* Wav2Lip-compatible generator (random weights; speed does not depend on them): frames/s at
  batch 16 on 96-px faces, as loaded (BN fused into the convs, channels-last) and as a plain
  unfused, channels-first module (how the original code runs); peak extra memory;
* Pearson r between face.mouth_opening of the output crops and the requested jaw_open on all
  GRID clips (a synthetic varied track, and the jaw track MapVisemes makes from ANOTHER clip's
  speech with its transcript), and on the still astronaut clip; lips drawn in one flat colour
  (no reference frame) are measured with face.mouth_contrast (see ``verify``).

Run: .venv/bin/python bench/bench_generator.py [--quick] [--device cuda]
Targets (issue 4): built-in >= 50 frames/s at 256 px, Wav2Lip >= 15 frames/s at batch 16 on CPU.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

from dataclasses import replace

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402

from lipsync_runner.pack import load_pack  # noqa: E402

load_pack()

from comfyui_lipsync.lipsync_models import composite, face, generator, media  # noqa: E402
from comfyui_lipsync.lipsync_models import audio as audio_mod  # noqa: E402
from comfyui_lipsync.lipsync_models.backends import wav2lip  # noqa: E402

from _common import GRID as _GRID  # noqa: E402
GRID = str(_GRID)
CLIPS = ["bbaf2n", "brbk7n", "lbax4n", "lbbc2a", "lrwp9a", "lwbsza", "swwp2s"]
TEXT = {
    "bbaf2n": "bin blue at f two now", "brbk7n": "bin red by k seven now", "lbax4n": "lay blue at x four now",
    "lbbc2a": "lay blue by c two again", "lrwp9a": "lay red with p nine again",
    "lwbsza": "lay white by s zero again", "swwp2s": "set white with p two soon",
}


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def load_clip(name: str):
    frames, fps, aud = media.read_video(os.path.join(GRID, f"{name}.mpg"))
    return frames.float() / 255, fps, aud


def mouth_in_crop(track):
    m = track.transform.float()
    return track.mouth.float() @ m[:, :, :2].transpose(1, 2) + m[:, None, :, 2]


def timed(fn, reps: int, sync=lambda: None) -> float:
    fn()
    sync()
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    sync()
    return (time.perf_counter() - t) / reps


def bench_builtin(device: torch.device, reps: int) -> None:
    frames, _, _ = load_clip("lbax4n")
    track = face.track_faces(frames, crop_size=256)
    crops = composite.crop_faces(frames, track).permute(0, 3, 1, 2).contiguous().to(device)
    mouth = mouth_in_crop(track)
    rest = clip_rest(crops, mouth.to(device), track, "borrowed")  # as LipSyncInference renders
    crops, mouth = crops[:16].contiguous(), mouth[:16].to(device)
    params = torch.zeros(16, 5, device=device)
    params[:, 0] = torch.linspace(0, 1, 16)
    params[:, 1] = torch.linspace(0, 0.5, 16)
    sync = (lambda: torch.cuda.synchronize()) if device.type == "cuda" else (lambda: None)
    threads = [torch.get_num_threads()] if device.type == "cuda" else [2, 1]
    for n in threads:
        torch.set_num_threads(n)
        dt = timed(lambda: generator.generate(crops, mouth, params, rest=rest), reps, sync)
        print(f"built-in generator, {device.type}, {n} thread(s): {16 / dt:6.1f} frames/s at 256 px "
              f"(batch 16, {dt * 1000:.0f} ms/batch); process peak RSS {rss_mb():.0f} MB")
    torch.set_num_threads(2)


def bench_wav2lip(device: torch.device, reps: int) -> None:
    torch.manual_seed(0)
    plain = wav2lip.Wav2LipGenerator().eval()
    fused = wav2lip.build_from_state(plain.state_dict()).to(device)
    crops = torch.rand(16, 3, 96, 96, device=device)
    mel = torch.randn(16, 80, 16, device=device)
    sync = (lambda: torch.cuda.synchronize()) if device.type == "cuda" else (lambda: None)
    for n in ([torch.get_num_threads()] if device.type == "cuda" else [2, 1]):
        torch.set_num_threads(n)
        dt = timed(lambda: wav2lip.run_wav2lip(fused, crops, mel), reps, sync)
        print(f"Wav2Lip generator, {device.type}, {n} thread(s), fused + channels-last: "
              f"{16 / dt:6.1f} frames/s (batch 16, {dt * 1000:.0f} ms/batch); process peak RSS {rss_mb():.0f} MB")
    torch.set_num_threads(2)
    if device.type == "cuda":
        print(f"  CUDA peak allocated {torch.cuda.max_memory_allocated() / 2**20:.0f} MB")
    plain = plain.to(device)
    faces = wav2lip.face_input(crops)

    def run_plain():
        with torch.inference_mode():
            plain(mel[:, None], faces)

    dt = timed(run_plain, max(1, reps // 2), sync)
    print(f"Wav2Lip generator, {device.type}, {torch.get_num_threads()} threads, plain module (unfused, channels-first, like the original code): "
          f"{16 / dt:6.1f} frames/s")


def jaw_from_speech(name: str, fps: float, n: int) -> torch.Tensor:
    """The jaw_open track MapVisemes makes from a clip's own speech and transcript."""
    from comfyui_lipsync.lipsync_models import phonemes, visemes

    _, _, (wav, sr) = load_clip(name)
    driver = audio_mod.make_driver({"waveform": wav[None], "sample_rate": sr}, fps, n)
    track = phonemes.align(driver.waveform, TEXT[name])
    return visemes.map_phonemes(track, fps, n).param("jaw_open").float()


def random_jaw(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    j = torch.rand(n, generator=g)
    j = torch.nn.functional.avg_pool1d(j[None, None], 3, 1, 1, count_include_pad=False)[0, 0]
    return (j - j.min()) / (j.max() - j.min())


def pearson(a, b) -> float:
    return float(np.corrcoef(np.asarray(a, np.float64), np.asarray(b, np.float64))[0, 1])


def partial_r(x, y, z) -> float:
    """r(x, y) with z held fixed: how much of the footage's own opening y shows in the output x
    beyond what the requested jaw track z explains (GRID openings correlate by themselves)."""
    rxy, rxz, ryz = pearson(x, y), pearson(x, z), pearson(y, z)
    return (rxy - rxz * ryz) / float(np.sqrt((1 - rxz ** 2) * (1 - ryz ** 2)))


def clip_rest(crops, mouth, track, lips: str):
    """The rest mouth as LipSyncInference builds it ("borrowed": lip texture from the clip's
    closed frame) or without the borrowed lips ("drawn": one flat lip colour)."""
    rest = generator.mouth_rest(mouth)
    if lips == "drawn":
        return rest
    ref = generator.reference_frame(mouth, track.found)
    return replace(rest, ref_crop=crops[ref], ref_mouth=mouth[ref])


def verify(clips: list[str], lips: str = "borrowed") -> None:
    # drawn lips are one flat colour, duller than some speakers' skin, which face.mouth_opening
    # counts as inner mouth: they are measured with the inner-mouth contrast instead
    measure = face.mouth_opening if lips == "borrowed" else face.mouth_contrast
    print(f"\nlips {lips} ({'as LipSyncInference renders them' if lips == 'borrowed' else 'one flat colour'}): "
          f"opening of the output crops (face.{measure.__name__}) vs requested jaw_open, Pearson r;")
    print("show-through = partial r(output, footage's opening | speech jaw track), target < 0.35:")
    print(f"{'clip':8} {'random track':>12} {'speech track (from)':>22} {'show-through':>12} "
          f"{'footage at rest: std before/after':>36}")
    rs, rv, rp = [], [], []
    for i, name in enumerate(clips):
        frames, fps, _ = load_clip(name)
        n = len(frames)
        track = face.track_faces(frames, crop_size=256)
        crops = composite.crop_faces(frames, track).permute(0, 3, 1, 2)
        mouth = mouth_in_crop(track)
        rest = clip_rest(crops, mouth, track, lips)

        def opening(jaw):
            p = torch.zeros(n, 5)
            p[:, 0] = jaw
            out = generator.generate(crops, mouth, p, rest=rest)
            return measure(out.permute(0, 2, 3, 1))

        r1 = pearson(opening(random_jaw(n, i)), random_jaw(n, i))
        other = clips[(i + 1) % len(clips)]
        try:
            jaw = jaw_from_speech(other, fps, n)
            got = opening(jaw)
            r2 = pearson(got, jaw) if float(jaw.std()) > 0 else float("nan")
            own = track.opening if lips == "borrowed" else track.extras["contrast"]
            show = partial_r(got, own, jaw) if float(jaw.std()) > 0 else float("nan")
        except Exception as e:  # the audio half may be missing on a partial checkout
            print(f"  (speech track unavailable: {e})")
            r2 = show = float("nan")
        before = measure(crops.permute(0, 2, 3, 1))
        after = opening(torch.zeros(n))
        rs.append(r1)
        rv.append(r2)
        rp.append(show)
        print(f"{name:8} {r1:12.3f} {r2:14.3f} ({other}) {show:+12.3f} {float(before.std()):17.3f} / {float(after.std()):.3f}")
    print(f"{'mean':8} {np.mean(rs):12.3f} {np.nanmean(rv):14.3f}   min {min(rs):.3f} / {np.nanmin(rv):.3f}"
          f"   show-through mean {np.nanmean(rp):+.3f}, max {np.nanmax(rp):+.3f}")

    from skimage import data

    frames = (torch.from_numpy(data.astronaut()).float() / 255)[None].repeat(75, 1, 1, 1)
    track = face.track_faces(frames, crop_size=256)
    crops = composite.crop_faces(frames, track).permute(0, 3, 1, 2)
    mouth = mouth_in_crop(track)
    jaw = random_jaw(75, 99)
    p = torch.zeros(75, 5)
    p[:, 0] = jaw
    rest = clip_rest(crops, mouth, track, lips)
    out = generator.generate(crops, mouth, p, rest=rest)
    r = pearson(measure(out.permute(0, 2, 3, 1)), jaw)
    rest_err = (generator.generate(crops, mouth, torch.zeros(75, 5), rest=rest) - crops).abs().max()
    print(f"astronaut (still, 75 frames): r {r:.3f}; max |output - input| at rest {float(rest_err):.1e}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="speed only, fewer repetitions")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(2)
    device = torch.device(args.device)
    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} CPUs, load average {load:.1f} at start; torch {torch.__version__}")
    reps = 3 if args.quick else 8
    with torch.inference_mode():
        bench_builtin(device, reps)
    bench_wav2lip(device, reps)
    if not args.quick:
        with torch.inference_mode():
            verify(CLIPS, "borrowed")
            verify(CLIPS, "drawn")
    print(f"load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
