"""The streaming runner on long and large clips (issue 15's runner bars).

    python bench/bench_runner.py long [--minutes 3]   # 10 (or 3) minutes of 1920x1080 at 25 fps
    python bench/bench_runner.py portrait   # 10 s of 1080x1920 at 25 fps, this runner and the base commit's

The clips are synthesised from the GRID clips (all seven in a row, looped, scaled up and centred on a
black canvas), with their own sound concatenated as the line, so the output's true offset is 0. The
runner runs as a user runs it (``python -m lipsync_runner`` in a child process); its wall time and
peak resident memory (the child's ru_maxrss) and CPU time (user + system, all its threads) are printed with the output's frame count and rate
against the input's and the SyncScore the runner reports on the output's last 10 s. ``long`` then
checks the sync of those last 10 s directly too (:func:`motion_lags`: the output's lower-face motion
against the input's, whose line drives it; ``--check-only`` does only that, on an output made before).
``portrait`` also runs the runner of ``--base`` (default d8ff467, the code issue 15 measured: the last
commit before any work on issues 14 and 15, whose runner holds the whole clip, 14.8 GB here against
the issue's 15.5 GB; c83d0b0 is the streamed runner before its speed work), checked out with
``git archive`` into a temporary folder, on the same files, base and this
runner in turns (``--rounds``), and prints the speed ratios (wall and CPU time) and how far the two
outputs' frames differ from each other and from the input's (a runner that hands the encoder the input's
own bytes outside the mouth stays closer to the input). On a shared, loaded machine wall times swing with the load (printed): the
CPU-time ratio is the steadier figure.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import wave as wavmod
from fractions import Fraction
from pathlib import Path

import numpy as np

from _common import GRID, GRID_CLIPS, ROOT

sys.path.insert(0, str(ROOT))
from lipsync_runner.pack import load_pack  # noqa: E402

load_pack()
from comfyui_lipsync.lipsync_models import media, video_out  # noqa: E402

OUT = ROOT / "bench" / "out"


def grid_loop() -> tuple[list[np.ndarray], np.ndarray, int]:
    """The seven GRID clips' frames in a row (uint8, 360x288) and their sound, mono float32, same order."""
    frames, sound, sr = [], [], 16000
    for stem in GRID_CLIPS:
        imgs, fps, _ = media.read_video(str(GRID / f"{stem}.mpg"))
        wave, sr = media.read_audio(str(GRID / f"{stem}.mpg"))
        n = imgs.shape[0]
        frames.extend(imgs.numpy())
        w = wave.mean(0).numpy()[: int(round(n / fps * sr))]
        sound.append(np.pad(w, (0, int(round(n / fps * sr)) - len(w))))
    return frames, np.concatenate(sound), sr


def synth(path: Path, line: Path, size: tuple[int, int], seconds: float, fps: int = 25) -> int:
    """Write a clip of ``seconds`` at ``size`` (w, h) made of the GRID frames scaled to fill the
    canvas's width or height, and the matching line (wav). Returns the frame count."""
    import av

    frames, sound, sr = grid_loop()
    w, h = size
    f = min(w / 360, h / 288)
    sw, sh = int(round(360 * f / 2)) * 2, int(round(288 * f / 2)) * 2
    x0, y0 = (w - sw) // 2, (h - sh) // 2
    n = int(round(seconds * fps))
    canvas = np.zeros((h, w, 3), np.uint8)
    writer = video_out.VideoWriter(str(path), size, Fraction(fps), crf=23, preset="ultrafast")
    try:
        for k in range(n):
            vf = av.VideoFrame.from_ndarray(frames[k % len(frames)], format="rgb24")
            canvas[y0:y0 + sh, x0:x0 + sw] = vf.reformat(width=sw, height=sh).to_ndarray(format="rgb24")
            writer.write(canvas[None])
    finally:
        writer.close()
    per = int(round(sr / fps))
    reps = -(-n * per // len(sound))
    pcm = (np.tile(sound, reps)[: n * per].clip(-1, 1) * 32767).astype(np.int16)
    with wavmod.open(str(line), "wb") as wf:
        wf.setnchannels(1)
        wf.setsampwidth(2)
        wf.setframerate(sr)
        wf.writeframes(pcm.tobytes())
    return n


def _status_kb(pid: int) -> dict:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    return {ln.split(":")[0]: int(ln.split()[1]) for ln in lines if ln.startswith(("VmRSS", "VmHWM"))}


def run_runner(root: Path, video: Path, line: Path, out: Path, log: Path, every: float = 15.0) -> dict:
    """``python -m lipsync_runner`` from ``root`` in a child process: wall s, CPU s and peak RSS GB of
    that child (its rusage from ``os.wait4``, which also counts processes it ran and waited for; not
    the earlier children's), stdout. Every ``every`` s the child's
    resident and peak memory go to ``log``.rss."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    t0 = time.monotonic()
    with open(log, "w") as err, open(str(log) + ".rss", "w") as rss, open(str(log) + ".out", "w+") as so:
        p = subprocess.Popen([sys.executable, "-m", "lipsync_runner", "--video", str(video), "--audio", str(line),
                              "-o", str(out)], cwd=root, env=env, stdout=so, stderr=err, text=True)
        last = -every
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - last >= every:
                last = time.monotonic()
                st = _status_kb(p.pid)
                rss.write(f"{last - t0:8.0f} s  RSS {st.get('VmRSS', 0) / 2 ** 20:6.2f} GB  "
                          f"peak {st.get('VmHWM', 0) / 2 ** 20:6.2f} GB\n")
                rss.flush()
            time.sleep(0.05)
        p.returncode = os.waitstatus_to_exitcode(status)
        so.seek(0)
        stdout = so.read()
    wall = time.monotonic() - t0
    return {"rc": p.returncode, "wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "peak_gb": ru.ru_maxrss / 1024 ** 2,
            "stdout": stdout, "load": os.getloadavg()[0]}


def check_output(video: Path, out: Path, res: dict) -> None:
    vin, vout = media.probe_video(str(video)), media.probe_video(str(out))
    n_out = sum(f.shape[0] for _, f, _ in media.iter_video(str(out), chunk=64, size=(64, 36)))
    m = re.search(r"offset ([+-]\d+) frames", res["stdout"])
    print(f"  rc {res['rc']}, wall {res['wall_s']:.1f} s, CPU {res['cpu_s']:.1f} s, peak RSS {res['peak_gb']:.2f} GB "
          f"(load average at the end {res['load']:.1f} on {os.cpu_count()} CPUs)")
    print(f"  input {vin.frames} frames at {vin.rate} fps; output {n_out} frames decoded "
          f"({vout.frames} stated) at {vout.rate} fps")
    print(f"  SyncScore on the output's last 10 s: offset {m.group(1) if m else 'n/a'} frames (true offset 0)")


def long_run(minutes: float, root: Path, synth_only: bool, check_only: bool = False) -> None:
    OUT.mkdir(exist_ok=True)
    video, line, out = (OUT / f"long_{minutes:g}min_1080p.mp4", OUT / f"long_{minutes:g}min_line.wav",
                        OUT / f"long_{minutes:g}min_out.mp4")
    t0 = time.monotonic()
    if not video.exists():
        n = synth(video, line, (1920, 1080), minutes * 60)
        print(f"synthesised {n} frames of 1920x1080 in {time.monotonic() - t0:.0f} s", flush=True)
    if synth_only:
        return
    if not (synth_only or check_only):
        res = run_runner(root, video, line, out, OUT / "long_runner.log")
        print(f"{minutes:g}-minute 1920x1080 clip:")
        check_output(video, out, res)
        print(res["stdout"][-1500:])
    n = media.probe_video(str(video)).frames
    for cuts_out in (False, True):
        lags = motion_lags(video, out, max(n - 250, 0), 250, cuts_out=cuts_out)
        best = max(lags, key=lags.get)
        what = ("with the cuts left out (the mouths' own motion)" if cuts_out else
                "(in sync by construction; the cuts between speakers weigh most)")
        print(f"the last 10 s: the output's lower-face motion against the input's {what}: "
              f"best lag {best:+d} frames, r {lags[best]:.3f}; " + ", ".join(f"{k:+d}: {v:.2f}" for k, v in lags.items()))


def motion_lags(video: Path, out: Path, start: int, n: int, span: int = 5, cuts_out: bool = False) -> dict:
    """Correlation, at lags -span..span (positive: the output's motion comes later), of the frame-to-frame
    change in the lower-face region of the input and of the output, over frames start..start+n-1: the
    output is driven by the input's own line, so its mouth moves with the input's at lag 0 when in sync.
    The region is where :func:`synth` puts the GRID faces' mouths on its 1920x1080 canvas. The cuts
    between GRID speakers change the whole region in one frame, in input and output alike, and carry
    the correlation at lag 0 alone; ``cuts_out`` leaves out the changes within a frame of a cut (the
    input's changes over 20 median absolute deviations above its median), so the mouths' own motion
    is compared."""
    def motion(path):
        frames = []
        for first, chunk, _ in media.iter_video(str(path), chunk=50):
            if first + chunk.shape[0] <= start:
                continue
            for k, f in enumerate(chunk):
                if start <= first + k < start + n:
                    frames.append(f[600:950, 760:1160].float().mean(-1).numpy())
        d = np.abs(np.diff(np.stack(frames), axis=0)).mean(axis=(1, 2))
        return (d - d.mean()) / (d.std() + 1e-9)

    a, b = motion(video), motion(out)
    keep = np.ones(len(a), bool)
    if cuts_out:
        med = np.median(a)
        for c in np.flatnonzero(a - med > 20 * (np.median(np.abs(a - med)) + 1e-9)):
            keep[max(c - 1, 0):c + 2] = False
    lags = {}
    for lag in range(-span, span + 1):
        x, y, m = ((a[:len(a) - lag], b[lag:], keep[:len(a) - lag] & keep[lag:]) if lag >= 0 else
                   (a[-lag:], b[:lag], keep[-lag:] & keep[:lag]))
        lags[lag] = float(np.corrcoef(x[m], y[m])[0, 1])
    return lags


def frame_diff(a: Path, b: Path) -> tuple[int, float, int]:
    """(max, mean) absolute difference of two videos' decoded frames (0..255) and the frame count."""
    ia, ib = media.iter_video(str(a), chunk=25), media.iter_video(str(b), chunk=25)
    worst, total, n = 0, 0.0, 0
    for (_, fa, _), (_, fb, _) in zip(ia, ib):
        d = (fa.int() - fb.int()).abs()
        worst, total, n = max(worst, int(d.max())), total + float(d.float().mean()) * len(fa), n + len(fa)
    return worst, total / max(n, 1), n


def portrait_run(seconds: float, base: str | None, root: Path, rounds: int) -> None:
    OUT.mkdir(exist_ok=True)
    video, line = OUT / f"portrait_{seconds:g}s_1080x1920.mp4", OUT / f"portrait_{seconds:g}s_line.wav"
    if not video.exists():
        synth(video, line, (1080, 1920), seconds)
    new_out, old_out = OUT / "portrait_out.mp4", OUT / "portrait_base_out.mp4"
    with tempfile.TemporaryDirectory() as tmp:
        if base:
            arch = subprocess.run(["git", "-C", str(ROOT), "archive", base], capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", tmp], input=arch, check=True)
        news, olds = [], []
        for r in range(rounds):
            if base:
                olds.append(run_runner(Path(tmp), video, line, old_out, OUT / "portrait_base.log"))
                print(f"round {r + 1}: base {base}: wall {olds[-1]['wall_s']:.1f} s, CPU {olds[-1]['cpu_s']:.1f} s, "
                      f"load {olds[-1]['load']:.1f}", flush=True)
            news.append(run_runner(root, video, line, new_out, OUT / "portrait_runner.log"))
            print(f"round {r + 1}: this runner: wall {news[-1]['wall_s']:.1f} s, CPU {news[-1]['cpu_s']:.1f} s, "
                  f"load {news[-1]['load']:.1f}", flush=True)
    print(f"{seconds:g} s of 1080x1920 at 25 fps, this runner (last round):")
    check_output(video, new_out, news[-1])
    if not base:
        return
    old = olds[-1]
    print(f"the base commit {base}'s runner: rc {old['rc']}, peak RSS {old['peak_gb']:.2f} GB")
    for what in ("wall_s", "cpu_s"):
        o, n = sum(x[what] for x in olds), sum(x[what] for x in news)
        print(f"speed ratio, {what[:-2]} time summed over {rounds} round(s) (base / this): {o:.1f} / {n:.1f} s "
              f"= {o / n:.2f}x")
    worst, mean, n = frame_diff(old_out, new_out)
    print(f"output frames, this runner against the base's: max abs diff {worst}, mean {mean:.3f} (0..255) over "
          f"{n} frames")
    for name, out in (("the base's", old_out), ("this runner's", new_out)):
        worst, mean, n = frame_diff(video, out)
        print(f"{name} output against the input: max abs diff {worst} (the new mouth), mean {mean:.3f} over {n} frames")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["long", "portrait"])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--base", default="d8ff467", help="portrait: the commit to compare with ('' = none)")
    ap.add_argument("--rounds", type=int, default=1, help="portrait: base and this runner, in turns, this many times")
    ap.add_argument("--root", type=Path, default=ROOT, help="the pack folder whose runner runs (e.g. a snapshot)")
    ap.add_argument("--synth-only", action="store_true", help="long: only make the clip and its line")
    ap.add_argument("--check-only", action="store_true", help="long: only check the sync of an output made before")
    a = ap.parse_args()
    long_run(a.minutes, a.root, a.synth_only, a.check_only) if a.what == "long" else portrait_run(a.seconds, a.base, a.root,
                                                                                         a.rounds)
