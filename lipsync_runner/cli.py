"""Headless runner: the pack's node chain on files, without ComfyUI.

    python -m lipsync_runner --video in.mp4 --audio line.wav -o out.mp4 [--transcript "..."] [--model NAME]
    python -m lipsync_runner --video clips/ --audio lines/ -o out/       # same stems pair up
    python -m lipsync_runner demo -o out/demo.mp4                       # built-in demo, nothing to download
    python -m lipsync_runner --video in.mp4 --audio line.wav -o out.mp4 --musetalk models/lipsync/musetalk

It runs the pack's chain (LoadAudioDriver -> ExtractPhonemes -> MapVisemes, MaskLowerFace ->
LipSyncInference -> Composite -> SyncScore) on a clip of any length with bounded memory: the audio
chain runs as the node classes, called the way ComfyUI calls them (INPUT_TYPES defaults plus the
inputs given); the frame steps are streamed through the library in three passes over the clip with
the nodes' defaults (:mod:`.stream`). Every argument and the output path are checked before anything
is decoded; the output is never one of the inputs. The mp4 keeps the input's frame count and exact
rate, carries the driver audio and says it was lip-synced with ComfyUI-LipSync. A tqdm progress bar
per stage is drawn on the terminal; the SyncScore report (on the last 10 s) is printed at the end.

This module is imported as ``comfyui_lipsync.lipsync_runner.cli`` (see ``__main__``), so the
library it reaches through ``..lipsync_models`` is the copy the node classes use.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import math
import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..lipsync_models.errors import InputError, LipSyncError, MediaError
from ..lipsync_models.types import Phoneme, PhonemeTrack
from . import neural
from .progress import STAGES, Bar  # noqa: F401 (public here too, as before)

log = logging.getLogger("comfyui_lipsync")

PROG = "python -m lipsync_runner"
AUDIO_EXTS = (".wav", ".mp3", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".aac")
VIDEO_EXTS = (".mp4", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".m4v", ".avi")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
"""A still picture as --video becomes a clip as long as the audio (at --fps)."""
BUILTIN_MODEL = "built-in (no weights)"


# --- calling nodes like ComfyUI does -------------------------------------------------------------

def widget_defaults(cls) -> dict:
    """Default values of a node's widget inputs, as ComfyUI's frontend would fill them."""
    out = {}
    for section in ("required", "optional"):
        for name, spec in cls.INPUT_TYPES().get(section, {}).items():
            opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            if isinstance(spec[0], (list, tuple)):
                out[name] = opts.get("default", spec[0][0] if spec[0] else None)
            elif spec[0] in ("INT", "FLOAT", "STRING", "BOOLEAN") and "default" in opts:
                out[name] = opts["default"]
    return out


def call_node(cls, **inputs):
    """Run one node: returns (outputs by RETURN_NAMES, ui dict)."""
    kwargs = {**widget_defaults(cls), **{k: v for k, v in inputs.items() if v is not None}}
    result = getattr(cls(), cls.FUNCTION)(**kwargs)
    ui = {}
    if isinstance(result, dict):
        ui = result.get("ui", {}) or {}
        result = result.get("result", ())
    names = getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)
    return dict(zip(names, result)), ui


# --- the chain -----------------------------------------------------------------------------

@dataclass
class Job:
    video: Path | None
    audio: Path
    out: Path
    transcript: str = ""
    frames: torch.Tensor | None = None  # uint8 (B, H, W, 3) given directly (demo)
    fps: float | None = None
    name: str = ""


@dataclass
class Options:
    model: str = BUILTIN_MODEL
    backend: str = "auto"
    viseme_set: str = "rhubarb"
    strength: float = 1.0
    lip_frame: int = -1
    breath_open: float | None = None  # None: MapVisemes' default
    score: bool = True
    threads: int = 0  # pass 3's threads (0: half the CPUs; the passes before it use --threads or every CPU)
    extra: dict = field(default_factory=dict)


def _pick_model(nodes, name: str) -> str:
    """The LipSyncInference model choice for ``--model``: a listed name, or a checkpoint path."""
    cls = nodes["LipSyncInference"]
    spec = cls.INPUT_TYPES()["required"]["model"]
    choices = list(spec[0]) if isinstance(spec[0], (list, tuple)) else []
    neural = [c for c in choices if c.startswith(("MuseTalk", "LatentSync"))]
    if name in neural:
        hint = "use --musetalk DIR (MuseTalk's folder)" if name.startswith("MuseTalk") else (
            "use --latentsync DIR (the folder of latentsync_unet.pt and whisper/tiny.pt; 1.5's folder "
            "is named 1.5)")
        raise InputError(f"--model {name!r}: {hint}.")
    choices = [c for c in choices if c not in neural]
    if not name or name in choices:
        return name or (choices[0] if choices else BUILTIN_MODEL)
    path = Path(name)
    if path.is_file():
        if path.parent.name == "lipsync":  # <models>/lipsync/<file>: point the models folder there
            os.environ["LIPSYNC_MODELS_DIR"] = str(path.parent.parent.resolve())
            return path.name
        raise InputError(f"--model {name}: put the checkpoint in a folder named 'lipsync' (e.g. models/lipsync/"
                         f"{path.name}) and pass that path, or set LIPSYNC_MODELS_DIR to the folder holding lipsync/.")
    raise InputError(f"--model {name!r} is neither a listed model ({', '.join(choices)}) nor a checkpoint file.")


def run_job(job: Job, opts: Options, nodes, bar: Bar) -> dict:
    """Run the chain on one clip, streamed (:mod:`.stream`), and write ``job.out``. Returns a summary."""
    from ..lipsync_models import media, stream_generate
    from ..lipsync_models.video_out import exact_rate
    from . import stream
    from .pack import ALIAS

    comfy = importlib.import_module(f"{ALIAS}.nodes._comfy")
    reads = _reads_visemes(opts.model, nodes)
    bar.plan(s for s in STAGES if (s != "ExtractPhonemes" or reads) and (s != "SyncScore" or opts.score))
    bar.start("decode")
    wave, sr = media.read_audio(str(job.audio), "--audio")
    if job.frames is not None:
        src = stream.TensorFrames(job.frames, exact_rate(job.fps or 25.0))
    elif job.video.suffix.lower() in IMAGE_EXTS:
        still, fps = _still(job.video, wave.shape[1] / sr, float(job.fps or 25.0))
        src = stream.TensorFrames(still, exact_rate(fps))
    else:
        src = stream.FileFrames(job.video)
    fps = float(src.rate)
    bar(1, 1)

    bar.start("MaskLowerFace")
    # the audio chain runs beside the tracking pass (whose decoder leaves a core part idle) for the
    # frame count the file states; a clip whose count differs runs it again for its own
    ahead = _AudioAhead(job, opts, nodes, wave, sr, fps, src.stated, reads) if src.stated > 0 else None
    track, small, size, kept = stream.track_pass(src, widget_defaults(nodes["LipSyncMaskLowerFace"]), bar)
    b = track.num_frames
    got = ahead.result(b) if ahead is not None else None
    if got is None:
        got = _audio_chain(job, opts, nodes, bar, wave, sr, fps, b, phonemes=reads)
    else:  # done beside tracking: its stages, as planned above, end at once
        for stage in ("LoadAudioDriver", "ExtractPhonemes", "MapVisemes"):
            if stage in bar.stages:
                bar.start(stage)
    driver, audio, track_v = got

    bar.start("LipSyncInference")
    model = opts.model
    if isinstance(model, str) and model not in _builtin_models(nodes):  # not a MuseTalk folder (--musetalk)
        model = comfy.model_path("lipsync", model) or model
    gen = stream_generate.prepare(track, small, track_v, driver, model=model, strength=opts.strength,
                                         lip_frame=opts.lip_frame, device=comfy.compute_device())
    stream.collect_pass(src, gen, size, bar, kept)

    bar.start("Composite")
    score_from = stream.score_start(b, src.rate) if opts.score else b
    writer, tmp = stream.open_writer(job.out, src, b, audio)
    try:
        try:
            with stream.render_threads(opts.threads):
                tail, tsize = stream.render_pass(src, gen, writer, stream.blend_options(nodes, widget_defaults),
                                                 bar, score_from)
        finally:
            writer.close()
        report, score = "", {}
        if opts.score:
            bar.start("SyncScore")
            score, report = stream.score_tail(nodes, call_node, gen, tail, tsize, audio, src.rate, score_from)
        bar.start("encode")
        os.replace(tmp, job.out)
    finally:
        if tmp.exists():
            tmp.unlink()
    bar.finish()
    return {"out": str(job.out), "frames": b, "fps": fps, "rate": str(src.rate), "report": report,
            "offset_frames": score.get("offset_frames"), "offset_ms": score.get("offset_ms"),
            "confidence": score.get("confidence")}


def _builtin_models(nodes) -> tuple:
    spec = nodes["LipSyncInference"].INPUT_TYPES()["required"]["model"]
    return tuple(c for c in spec[0] if str(c).startswith("built-in")) if isinstance(spec[0], (list, tuple)) else ()


def _reads_visemes(model, nodes) -> bool:
    """Whether the generator ``model`` reads MapVisemes' track: the built-in ones do; Wav2Lip, MuseTalk
    and LatentSync read the sound themselves."""
    return isinstance(model, str) and (model == BUILTIN_MODEL or model in _builtin_models(nodes))


class _AudioAhead:
    """:func:`_audio_chain` for ``b`` frames in a thread of its own, started at once. Its progress is
    not drawn (the runner's bar shows the tracking pass; :func:`main_thread_only`)."""

    def __init__(self, job: Job, opts: Options, nodes, wave, sr: int, fps: float, b: int, phonemes: bool):
        self.b, self.out, self.error = int(b), None, None
        self.thread = threading.Thread(target=self._run, args=(job, opts, nodes, wave, sr, fps, phonemes),
                                       name="lipsync-audio", daemon=True)
        self.thread.start()

    def _run(self, job: Job, opts: Options, nodes, wave, sr: int, fps: float, phonemes: bool) -> None:
        try:
            self.out = _audio_chain(job, opts, nodes, _NoBar(), wave, sr, fps, self.b, phonemes=phonemes)
        except BaseException as e:  # handed to the caller, in its thread
            self.error = e

    def result(self, b: int):
        """The chain's outputs when the clip has the ``b`` frames it was run for, else None (the
        caller runs it again, for the frames the clip has: a line cut to a count stated too low may
        fail where the true count does not). An error it met for the right count is raised here, as
        the chain run in turn raises it."""
        self.thread.join()
        if self.b != int(b):
            return None
        if self.error is not None:
            raise self.error
        return self.out


class _NoBar:
    def start(self, stage: str) -> None:
        pass

    def __call__(self, done: int, total: int) -> None:
        pass


def main_thread_only(hook):
    """``hook(done, total)`` for the calls made in the main thread only (the chain's own progress;
    the audio chain run beside the tracking pass updates nothing)."""
    main = threading.main_thread()
    return lambda done, total: hook(done, total) if threading.current_thread() is main else None


def _audio_chain(job: Job, opts: Options, nodes, bar: Bar, wave, sr: int, fps: float, b: int,
                 phonemes: bool = True):
    """LoadAudioDriver -> ExtractPhonemes -> MapVisemes on the whole line for ``b`` frames.
    ``phonemes`` False (a generator that reads the sound itself): no phonemes are extracted (about
    30 s per 10 minutes of speech) and MapVisemes is given one silence covering the line, a track of
    the right length that nothing reads."""
    bar.start("LoadAudioDriver")
    out, _ = call_node(nodes["LipSyncLoadAudioDriver"], audio_file="", fps=fps, frame_count=b,
                       audio={"waveform": wave[None], "sample_rate": sr})
    driver, audio = out["driver"], out["audio"]

    if phonemes:
        bar.start("ExtractPhonemes")
        out, _ = call_node(nodes["LipSyncExtractPhonemes"], backend=opts.backend, transcript=job.transcript,
                           driver=driver)
        phonemes = out["phonemes"]
    else:
        phonemes = PhonemeTrack((Phoneme("SIL", 0.0, b / fps),), b / fps, "none")

    bar.start("MapVisemes")
    breath = {} if opts.breath_open is None else {"breath_open": float(opts.breath_open)}
    out, _ = call_node(nodes["LipSyncMapVisemes"], phonemes=phonemes, viseme_set=opts.viseme_set, fps=fps,
                       driver=driver, preview=False, **breath)  # a picture nobody would see
    return driver, audio, out["visemes"]


def _still(path: Path, seconds: float, fps: float) -> tuple[torch.Tensor, float]:
    """A picture as a still clip covering ``seconds`` at ``fps``: (B, H, W, 3) uint8 (a view, no copies)."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError) as e:
        raise MediaError(f"--video {path.name}: cannot read the picture ({e}).") from e
    n = max(1, int(math.ceil(seconds * fps)))
    return torch.from_numpy(arr.copy())[None].expand(n, -1, -1, -1), fps


# --- jobs from the command line ------------------------------------------------------------------

def _pairs(video_dir: Path, audio_dir: Path, out_dir: Path) -> list[Job]:
    videos = {p.stem: p for p in sorted(video_dir.iterdir()) if p.suffix.lower() in VIDEO_EXTS}
    audios = {}
    for p in sorted(audio_dir.iterdir()):
        if p.suffix.lower() in AUDIO_EXTS + VIDEO_EXTS and p.stem in videos and (p != videos[p.stem]):
            audios.setdefault(p.stem, p)
    if not videos:
        raise InputError(f"--video {video_dir}: no video files ({', '.join(VIDEO_EXTS)}) in this folder.")
    missing = sorted(set(videos) - set(audios))
    if missing:
        raise InputError(f"--audio {audio_dir}: no audio file with the same name as {', '.join(missing[:5])}"
                         f"{' ...' if len(missing) > 5 else ''}. Each clip needs <name>.wav (or .mp3, .m4a ...) beside it.")
    return [Job(videos[s], audios[s], out_dir / f"{s}.mp4", name=s) for s in sorted(videos)]


def _transcript(value: str | None) -> str:
    if not value:
        return ""
    p = Path(value)
    if len(value) < 256 and p.suffix.lower() == ".txt" and p.is_file():
        return p.read_text(encoding="utf-8").strip()
    return value


def demo_job(out: Path, min_frames: int = 75, fps: float = 25.0) -> Job:
    """The built-in demo: scikit-image's astronaut portrait (public domain) as a still clip,
    speaking the bundled line; at least ``min_frames`` frames at ``fps``."""
    from skimage import data

    from ..lipsync_models import audio as A
    from ..lipsync_models import media

    wave, sr = media.read_audio(A.demo_audio_path(), "demo")
    n = max(min_frames, int(math.ceil(wave.shape[1] / sr * fps)) + int(0.3 * fps))
    still = torch.from_numpy(data.astronaut().copy())
    return Job(None, Path(A.demo_audio_path()), out, transcript=A.demo_text(),
               frames=still[None].expand(n, -1, -1, -1), fps=fps, name="demo")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Lip-sync a clip to a spoken line with the ComfyUI-LipSync nodes, without ComfyUI. "
                    "`demo -o out/demo.mp4` runs the built-in demo.")
    p.add_argument("command", nargs="?", choices=["run", "demo"], default="run",
                   help="run (default) or demo: a still portrait speaking the built-in line")
    p.add_argument("--video", help="input clip (or a still picture: png, jpg, webp), or a folder of clips")
    p.add_argument("--fps", type=float, default=25.0, help="frame rate of the clip made from a still picture")
    p.add_argument("--audio", help="spoken line (wav, mp3, flac, m4a, or a video's sound), or a folder with one "
                                   "file per clip, same name as the clip")
    p.add_argument("-o", "--output", required=True, help="output .mp4 (a folder when --video is a folder)")
    p.add_argument("--transcript", help="the words spoken (or a .txt file): aligned for the most accurate timing "
                        "(the built-in generators; Wav2Lip, MuseTalk and LatentSync read the sound itself)")
    p.add_argument("--model", default=BUILTIN_MODEL,
                   help=f"generator: '{BUILTIN_MODEL}' (default), or a checkpoint in models/lipsync/")
    p.add_argument("--musetalk", metavar="DIR",
                   help="generator: MuseTalk 1.5 from DIR, laid out as MuseTalk's download script makes it "
                        "(musetalkV15/unet.pth + musetalk.json, sd-vae/, whisper/)")
    p.add_argument("--vae", metavar="FILE", help="with --musetalk or --latentsync and no DIR/sd-vae/: the "
                                                 "sd-vae-ft-mse weights as one file (e.g. "
                                                 "vae-ft-mse-840000-ema-pruned.safetensors)")
    p.add_argument("--latentsync", metavar="DIR",
                   help="generator: LatentSync from DIR (latentsync_unet.pt and whisper/tiny.pt as its download "
                        "lays them out; the VAE sd-vae-ft-mse as DIR/sd-vae/, in models/vae, or --vae FILE); "
                        "slow without a GPU")
    p.add_argument("--latentsync-version", default=None, choices=["1.6", "1.5"],
                   help="with --latentsync: 1.6 (512 px) or 1.5 (256 px); default: 1.5 for a folder named 1.5, "
                        "else 1.6")
    p.add_argument("--steps", type=int, default=20, help="with --latentsync: denoising steps per 16-frame chunk")
    p.add_argument("--seed", type=int, default=1247, help="with --latentsync: the seed of the starting noise")
    p.add_argument("--feature-reuse", type=int, default=0,
                   help="with --latentsync: reuse the deep features between every N-th step (DeepCache; the "
                        "reference's --enable_deepcache is 3); 0 = off")
    p.add_argument("--backend", default="auto", choices=["auto", "recognize", "align", "acoustic"],
                   help="phoneme backend (auto: align when a transcript is given, else recognize; the built-in "
                        "generators only)")
    p.add_argument("--visemes", default="rhubarb", help="viseme set: rhubarb, oculus15 or azure22")
    p.add_argument("--strength", type=float, default=1.0, help="how far the mouth moves (0..1.5)")
    p.add_argument("--lip-frame", type=int, default=-1,
                   help="built-in generator: the frame (0 = first) whose lips the new mouth wears (MuseTalk: whose "
                        "face it draws from); -1 = automatic")
    p.add_argument("--breath-open", type=float, default=None,
                   help="how far the lips part on an audible in-breath before a line (0..1; 0 = stay at rest; "
                        "default: MapVisemes' breath_open)")
    p.add_argument("--no-score", action="store_true", help="skip SyncScore")
    p.add_argument("--threads", type=int, default=0,
                   help="threads for the frame work (0 = automatic: every CPU, and half of them, at least 1, "
                        "in the last pass, whose decoding and encoding run in threads of their own beside it)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return p


def _jobs(args) -> list[Job]:
    """The clips the command line asks for: the demo, one clip, or same-named pairs of two folders."""
    out = Path(args.output)
    if args.command == "demo":
        return [demo_job(out if out.suffix else out / "demo.mp4")]
    if not args.video or not args.audio:
        raise InputError("lipsync: give --video and --audio (files, or folders of same-named files), "
                         f"or run `{PROG} demo -o out/demo.mp4`.")
    video, audio = Path(args.video), Path(args.audio)
    if video.is_dir():
        if not audio.is_dir():
            raise InputError(f"--video {video} is a folder, so --audio must be a folder too (got {audio}).")
        jobs = _pairs(video, audio, out)
    else:
        for p, what in ((video, "--video"), (audio, "--audio")):
            if not p.is_file():
                raise MediaError(f"{what} {p}: file not found.")
        jobs = [Job(video, audio, out if out.suffix else out / f"{video.stem}.mp4", name=video.stem,
                    fps=args.fps if video.suffix.lower() in IMAGE_EXTS else None)]
    for j in jobs:
        j.transcript = j.transcript or _transcript(args.transcript)
    return jobs


def _bounds(cls, name: str) -> tuple[float, float]:
    """(min, max) of a node's numeric widget."""
    for section in ("required", "optional"):
        spec = cls.INPUT_TYPES().get(section, {}).get(name)
        if spec is not None and len(spec) > 1 and isinstance(spec[1], dict):
            return float(spec[1].get("min", -math.inf)), float(spec[1].get("max", math.inf))
    return -math.inf, math.inf


def _choices(cls, name: str) -> list:
    spec = cls.INPUT_TYPES()["required"].get(name) or cls.INPUT_TYPES().get("optional", {}).get(name)
    return list(spec[0]) if spec and isinstance(spec[0], (list, tuple)) else []


def check_args(args, nodes) -> None:
    """Every numeric and named option against the bounds of the node it feeds, before any decoding.
    Raises InputError naming the option, the value and what it may be."""
    checks = [("--fps", args.fps, nodes["LipSyncLoadAudioDriver"], "fps", "the frame rate of a clip made "
               "from a still picture"),
              ("--strength", args.strength, nodes["LipSyncInference"], "strength", "how far the mouth moves"),
              ("--lip-frame", args.lip_frame, nodes["LipSyncInference"], "lip_frame", "-1 = automatic")]
    if args.breath_open is not None:
        checks.append(("--breath-open", args.breath_open, nodes["LipSyncMapVisemes"], "breath_open",
                       "0 = stay at rest"))
    if not 0 <= args.threads <= 1024:
        raise InputError(f"--threads {args.threads}: must be between 0 and 1024 (0 = automatic).")
    for flag, value, cls, name, what in checks:
        lo, hi = _bounds(cls, name)
        if not math.isfinite(float(value)) or not lo <= float(value) <= hi:
            raise InputError(f"{flag} {value:g}: must be between {lo:g} and {hi:g} ({what}).")
    neural.check_latentsync_args(args, nodes, _bounds)
    sets = _choices(nodes["LipSyncMapVisemes"], "viseme_set")
    if sets and args.visemes not in sets:
        raise InputError(f"--visemes {args.visemes!r}: choose one of {', '.join(sets)}.")


def _same_file(a: Path, b: Path) -> bool:
    """True when ``a`` and ``b`` name one file (same path once resolved, or the same inode: links)."""
    try:
        if a.resolve() == b.resolve():
            return True
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_outputs(jobs: list[Job]) -> None:
    """Before any work: no output is one of the inputs (by any path or link), and every output's
    folder exists or can be made and written to. Raises InputError naming -o."""
    for j in jobs:
        for given, flag in ((j.video, "--video"), (j.audio, "--audio")):
            if given is not None and _same_file(j.out, given):
                raise InputError(f"-o {j.out}: this is the {flag} file itself; the input is never overwritten. "
                                 "Choose another output file.")
        if j.out.is_dir():
            raise InputError(f"-o {j.out}: is a folder; give a file name ending in .mp4.")
        folder = j.out.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InputError(f"-o {j.out}: cannot create the output folder {folder} ({e.strerror or e}). "
                             "Choose a folder you can write to.") from None
        if not os.access(folder, os.W_OK | os.X_OK):
            raise InputError(f"-o {j.out}: the output folder {folder} is not writable. "
                             "Choose a folder you can write to.")


def _check_nodes(nodes, score: bool) -> None:
    needed = ["LipSyncLoadAudioDriver", "LipSyncExtractPhonemes", "LipSyncMapVisemes", "LipSyncMaskLowerFace",
              "LipSyncInference", "LipSyncComposite"] + (["LipSyncSyncScore"] if score else [])
    missing = [n for n in needed if n not in nodes]
    if missing:
        raise InputError(f"lipsync: node classes failed to load: {', '.join(missing)} (see the log above)"
                         f"{'; --no-score runs without SyncScore' if missing == ['LipSyncSyncScore'] else ''}.")


def _run_all(jobs: list[Job], opts: Options, nodes, bar: Bar) -> int:
    """Run every job; with several, a failed clip is reported and the rest still run. Exit code."""
    failed = 0
    for i, job in enumerate(jobs, 1):
        if len(jobs) > 1:
            sys.stderr.write(f"--- {i}/{len(jobs)} {job.name}\n")
        try:
            res = run_job(job, opts, nodes, bar)
        except LipSyncError as e:
            if len(jobs) == 1:
                raise
            failed += 1
            sys.stderr.write(f"\nerror: {e}\n")
            continue
        print(f"wrote {res['out']}: {res['frames']} frames at {res['fps']:g} fps")
        if res["report"]:
            print(res["report"])
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    from .pack import load_pack

    pack = load_pack()
    nodes = pack.NODE_CLASS_MAPPINGS
    comfy = importlib.import_module(f"{pack.__name__}.nodes._comfy")
    bar = Bar(stream=open(os.devnull, "w") if args.quiet else sys.stderr)
    from . import stream

    threads = None
    try:
        _check_nodes(nodes, score=not args.no_score)
        check_args(args, nodes)
        model = None if args.musetalk or args.vae or args.latentsync else _pick_model(nodes, args.model)
        jobs = _jobs(args)
        check_outputs(jobs)
        model = model or (neural.latentsync(args, comfy, BUILTIN_MODEL) if args.latentsync
                          else neural.musetalk(args, comfy, BUILTIN_MODEL))
        opts = Options(model=model, backend=args.backend, viseme_set=args.visemes,
                       strength=args.strength, lip_frame=args.lip_frame, breath_open=args.breath_open,
                       score=not args.no_score, threads=args.threads)
        if not _reads_visemes(model, nodes) and (args.transcript or args.backend != "auto"):
            sys.stderr.write("note: --transcript and --backend are not used: this generator reads the sound "
                             "itself (they serve the built-in generators)\n")
        threads = stream.set_threads(args.threads or stream.usable_cpus())
        comfy.Progress.hook = main_thread_only(bar)
        return _run_all(jobs, opts, nodes, bar)
    except LipSyncError as e:
        sys.stderr.write(f"\nerror: {e}\n")
        return 2
    finally:
        comfy.Progress.hook = None
        if threads is not None:  # as they were (main is also called in-process)
            stream.set_threads(*threads[1:])
