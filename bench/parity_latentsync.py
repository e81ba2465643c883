"""Parity of the LatentSync backend with the reference code (bytedance/LatentSync, outside this repository).

    python bench/parity_latentsync.py --reference /path/to/LatentSync [--ref-python /venv/bin/python]
        [--size full|tiny] [--vae full|tiny] [--frames 16] [--steps 2] [--deepcache 3]

Writes random weights in LatentSync's public layout (``latentsync_unet.pt`` = ``{"state_dict": ...}`` of
the 1.6 architecture, or the tiny test configuration; ``whisper/tiny.pt`` in OpenAI's format with
Whisper-tiny's shapes, encoder and decoder; ``sd-vae/`` a diffusers AutoencoderKL), then, in a second
process (``--ref-python``: an environment with the reference's pinned diffusers 0.32.2 / transformers
4.48.0; default this interpreter), runs the reference's own code:

* ``UNet3DConditionModel`` built from ``configs/unet/stage2_512.yaml`` (shapes overridden for ``tiny``) loads
  the file; the script fails unless it reports no missing and no unexpected key. One forward pass on a
  random 13-channel input, a timestep and random audio embeddings.
* ``LipsyncPipeline.__call__`` with ``Audio2Feature`` (the reference's Whisper code on ``tiny.pt``), its
  ``ImageProcessor`` with ``mask.png``, DDIMScheduler from ``configs/``, guidance 1.5, ``--steps`` steps,
  a seeded generator, 25 fps, on the same aligned crops and the same 16 kHz line. Stubbed because the
  comparison starts from aligned crops: the face detection / affine warp (the crops are given), the
  restore-into-frame and the file writing (the chunks' outputs are captured before them), ffmpeg, and the
  audio file reading (the line is handed over). ``torchvision.transforms`` Resize (identity at the crop
  size) and Normalize are small stand-ins. The VAE's latent sampling is patched to return the mean (the
  backend uses the mean). Whisper chunks are cut to the number of frames (no video looping).

``--deepcache N`` turns on the reference's DeepCache helper (``DeepCacheSDHelper``, cache branch 0, as its
``--enable_deepcache``; the DeepCache package, 0.1.1 in the reference's requirements, must be in the
reference's environment) and this backend's feature reuse every N steps.

This backend (:mod:`lipsync_models.backends.latentsync`) then runs on the same inputs, loading the same files
with its own strict loaders, and is given the reference's resized mask image (the backend draws the mask
shape itself: its IoU with the reference's is printed, and a different mask edge would move the output by
whole pixel values). The last line is ``max abs diff: X`` over the UNet output and the pipeline's output
(-1..1 pixels); the bar is X <= 1e-3 (float32, CPU).

Without ``--reference`` the backend is compared with itself with one operation changed (``--perturb``:
"pe" the motion modules' frame encoding, "mask" the mask one latent row lower, "window" the audio windows
one Whisper step later); each must then give > 1e-2 (tests/test_latentsync.py checks it on the tiny
configuration).

Measured (2026-12-07, reference at commit a229c39 in its own venv: torch 2.13 CPU, diffusers 0.32.2,
transformers 4.48.0; this side diffusers 0.42.1; 2 cores under a load of 14-30): ``--size full``: the
reference loads the written 1.6 file with no missing or unexpected key (1246 tensors); with 16 frames of
512 px its pipeline was killed for memory (the reference holding 10 GB on the shared 23-GB machine).
``--size full --vae full --res 512 --frames 4 --steps 2`` (load 5-11): UNet forward 1.17e-05, pipeline
1.11e-04; mask IoU at 512 px 0.9911. ``--size full --unet-only --res 256 --frames 8``: 1.45e-05.
``--size tiny --res 256 --frames 4 --steps 2``: UNet forward 3.46e-06, pipeline 1.63e-04 (max abs diff
1.63e-04 <= 1e-3); the drawn mask's IoU with mask.png at 256 px 0.9925. ``--size tiny --res 256 --frames 4
--steps 4 --deepcache 3`` (the reference with the DeepCache package 0.1.1): 1.97e-04. Perturbed (tiny,
64 px, 3 frames): each of pe, mask, window > 1e-2 (tests/test_latentsync.py).
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import types

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FPS = 25.0
BAR = 1e-3
SEED = 1247
GAIN = 1.0
SD_VAE = {"in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 2, "sample_size": 256,
          "block_out_channels": [128, 256, 512, 512], "norm_num_groups": 32, "act_fn": "silu",
          "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
          "scaling_factor": 0.18215}
VAE_TINY = dict(SD_VAE, block_out_channels=[8, 8, 16, 16], layers_per_block=1, norm_num_groups=4)
WHISPER_TINY_DIMS = {"n_mels": 80, "n_vocab": 51865, "n_audio_ctx": 1500, "n_audio_state": 384, "n_audio_head": 6,
                     "n_audio_layer": 4, "n_text_ctx": 448, "n_text_state": 384, "n_text_head": 6, "n_text_layer": 4}
TINY_UNET_YAML = {"block_out_channels": [32, 64], "layers_per_block": 1, "norm_num_groups": 8, "attention_head_dim": 2,
                  "down_block_types": ["CrossAttnDownBlock3D", "DownBlock3D"],
                  "up_block_types": ["UpBlock3D", "CrossAttnUpBlock3D"]}
"""The reference config's overrides that give this pack's ``latentsync_unet.TINY`` (motion heads 4)."""


# --- the layout (this side) ------------------------------------------------------------------------

def _pack():
    sys.path.insert(0, ROOT)
    from lipsync_runner.pack import load_pack

    load_pack()
    import comfyui_lipsync.lipsync_models.backends.latentsync as L

    return L


def _randomise(state: dict, gen: torch.Generator) -> dict:
    """Random values: weights N(0, GAIN^2 / fan-in), norm weights 1 +- 0.1, other vectors +- 0.1; fixed
    buffers (frame encodings, Whisper's positional embedding) kept."""
    out = {}
    for k, v in state.items():
        if k.endswith(("pos_encoder.pe", "positional_embedding")) and "decoder" not in k:
            out[k] = v.clone()
        elif v.ndim >= 2:
            out[k] = torch.randn(v.shape, generator=gen) * (GAIN / math.sqrt(v[0].numel()))
        else:
            base = 1.0 if ("norm" in k or "_ln" in k or k.endswith("ln.weight")) and k.endswith("weight") else 0.0
            out[k] = torch.randn(v.shape, generator=gen) * 0.1 + base
    return out


def whisper_sinusoids(length: int, channels: int) -> torch.Tensor:
    """OpenAI Whisper's encoder positional embedding (as stored in its checkpoints)."""
    inc = math.log(10000) / (channels // 2 - 1)
    inv = torch.exp(-inc * torch.arange(channels // 2))
    t = torch.arange(length)[:, None] * inv[None]
    return torch.cat([torch.sin(t), torch.cos(t)], 1)


def _whisper_state(dims: dict, gen: torch.Generator) -> dict:
    """A random OpenAI-format Whisper state dict (encoder and decoder) of ``dims``."""
    L = _pack()
    enc = L.LF.WhisperAudioEncoder.from_dims(dims).state_dict()
    enc["positional_embedding"] = whisper_sinusoids(dims["n_audio_ctx"], dims["n_audio_state"])
    state = {f"encoder.{k}": v for k, v in enc.items()}
    d, n = dims["n_text_state"], dims["n_text_ctx"]
    dec = {"token_embedding.weight": torch.zeros(dims["n_vocab"], d), "positional_embedding": torch.zeros(n, d),
           "ln.weight": torch.ones(d), "ln.bias": torch.zeros(d)}
    for i in range(dims["n_text_layer"]):
        for att in ("attn", "cross_attn"):
            for p in ("query", "value", "out"):
                dec[f"blocks.{i}.{att}.{p}.weight"], dec[f"blocks.{i}.{att}.{p}.bias"] = torch.zeros(d, d), torch.zeros(d)
            dec[f"blocks.{i}.{att}.key.weight"] = torch.zeros(d, d)
            dec[f"blocks.{i}.{att}_ln.weight"], dec[f"blocks.{i}.{att}_ln.bias"] = torch.ones(d), torch.zeros(d)
        dec[f"blocks.{i}.mlp.0.weight"], dec[f"blocks.{i}.mlp.0.bias"] = torch.zeros(4 * d, d), torch.zeros(4 * d)
        dec[f"blocks.{i}.mlp.2.weight"], dec[f"blocks.{i}.mlp.2.bias"] = torch.zeros(d, 4 * d), torch.zeros(d)
        dec[f"blocks.{i}.mlp_ln.weight"], dec[f"blocks.{i}.mlp_ln.bias"] = torch.ones(d), torch.zeros(d)
    state.update({f"decoder.{k}": v for k, v in dec.items()})
    return _randomise(state, gen)


def write_layout(root: str, size: str = "tiny", vae: str = "tiny", seed: int = 0) -> str:
    """Random LatentSync weights in the public layout under ``root``; returns ``root``."""
    from diffusers import AutoencoderKL

    _pack()
    from comfyui_lipsync.lipsync_models.backends import latentsync_unet as U

    gen = torch.Generator().manual_seed(seed)
    cfg = U.FULL if size == "full" else U.TINY
    with torch.device("meta"):
        shapes = U.LatentSyncUNet(cfg).state_dict()
    state = {k: (_frame_pe(v.shape) if k.endswith("pos_encoder.pe") else v) for k, v in shapes.items()}
    state = _randomise(state, gen)
    os.makedirs(os.path.join(root, "whisper"), exist_ok=True)
    torch.save({"state_dict": state, "global_step": 0}, os.path.join(root, "latentsync_unet.pt"))
    del state
    torch.save({"dims": WHISPER_TINY_DIMS, "model_state_dict": _whisper_state(WHISPER_TINY_DIMS, gen)},
               os.path.join(root, "whisper", "tiny.pt"))
    model = AutoencoderKL(**(SD_VAE if vae == "full" else VAE_TINY))
    model.load_state_dict(_randomise(model.state_dict(), gen))
    model.save_pretrained(os.path.join(root, "sd-vae"))
    return root


def _frame_pe(shape) -> torch.Tensor:
    from comfyui_lipsync.lipsync_models.backends.latentsync_layers import frame_encoding

    return frame_encoding(shape[1], shape[2])


def inputs(frames: int, size: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(frames, size, size, 3) uint8 smooth random crops and a 16 kHz float32 line of frames / 25 s + 0.3 s."""
    rng = np.random.default_rng(seed)
    low = torch.from_numpy(rng.random((frames, 3, 8, 8)).astype(np.float32))
    crops = torch.nn.functional.interpolate(low, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
    crops = (crops.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    n = int(round((frames / FPS + 0.3) * 16000))
    t = np.arange(n) / 16000
    env = np.interp(t, np.linspace(0, t[-1], 12), rng.random(12))
    line = env * (0.3 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 1330 * t)) + 0.01 * rng.standard_normal(n)
    line = (np.clip(line, -1, 1) * 32767).round().astype(np.int16).astype(np.float32) / 32768.0
    return crops, line


def unet_inputs(frames: int, size: int, seed: int = 2) -> dict:
    g = torch.Generator().manual_seed(seed)
    h = size // 8
    return {"sample": torch.randn(2, 13, frames, h, h, generator=g).numpy(),
            "audio": torch.randn(2, frames, 50, 384, generator=g).numpy(), "t": np.array(981)}


# --- the reference (second process) ----------------------------------------------------------------

def _stub_modules(ref: str, line: np.ndarray, frames_u8: np.ndarray) -> None:
    """Stand-ins for the reference's modules this comparison does not run (see the module docstring)."""
    util = types.ModuleType("latentsync.utils.util")
    util.zero_rank_log = lambda *a, **k: None
    util.read_video = lambda path, use_decord=False: frames_u8
    util.read_audio = lambda path: torch.from_numpy(line.copy())
    util.write_video = lambda *a, **k: None
    util.check_ffmpeg_installed = lambda: None
    sys.modules["latentsync.utils.util"] = util
    fd = types.ModuleType("latentsync.utils.face_detector")
    fd.FaceDetector = object
    sys.modules["latentsync.utils.face_detector"] = fd
    sys.modules["soundfile"] = types.SimpleNamespace(write=lambda *a, **k: None)
    sys.modules["ffmpeg"] = types.ModuleType("ffmpeg")  # whisper.audio.load_audio: replaced below

    class Resize:
        def __init__(self, size, interpolation=None, antialias=True):
            self.size = tuple(size)

        def __call__(self, x):
            if tuple(x.shape[-2:]) != self.size:
                raise RuntimeError("the parity crops must already be at the model's size")
            return x

    class Normalize:
        def __init__(self, mean, std, inplace=False):
            self.mean, self.std = mean[0], std[0]

        def __call__(self, x):
            return (x - self.mean) / self.std

    tvt = types.SimpleNamespace(Resize=Resize, Normalize=Normalize,
                                InterpolationMode=types.SimpleNamespace(BICUBIC="bicubic"))
    tv = types.ModuleType("torchvision")
    tv.transforms = tvt
    sys.modules["torchvision"], sys.modules["torchvision.transforms"] = tv, tvt
    sys.path.insert(0, ref)


def _ref_unet(ref: str, root: str, size: str):
    import yaml

    from latentsync.models.unet import UNet3DConditionModel

    with open(os.path.join(ref, "configs", "unet", "stage2_512.yaml")) as f:
        cfg = yaml.safe_load(f)["model"]
    cfg["norm_eps"] = float(cfg["norm_eps"])  # YAML 1.1 reads 1e-5 as a string (OmegaConf does not)
    if size == "tiny":
        cfg.update(TINY_UNET_YAML)
        cfg["motion_module_kwargs"] = dict(cfg["motion_module_kwargs"], num_attention_heads=4)
    unet = UNet3DConditionModel.from_config(cfg)
    # mmap: the file's pages, not a second 5-GB copy in memory (the values are the same)
    ckpt = torch.load(os.path.join(root, "latentsync_unet.pt"), map_location="cpu", weights_only=True, mmap=True)
    report = unet.load_state_dict(ckpt["state_dict"], strict=False)  # as the reference's from_pretrained
    if report.missing_keys or report.unexpected_keys:
        raise SystemExit(f"reference UNet: missing {report.missing_keys[:5]}, unexpected {report.unexpected_keys[:5]}")
    print(f"reference UNet3DConditionModel: {len(ckpt['state_dict'])} tensors, no missing or unexpected key")
    return unet.eval()


def _ref_name(deepcache: int) -> str:
    return f"reference_deepcache{deepcache}.npz" if deepcache > 1 else "reference.npz"


def reference_side(ref: str, work: str, size: str, steps: int, unet_only: bool = False, deepcache: int = 0) -> None:
    data = np.load(os.path.join(work, "inputs.npz"))
    crops, line = data["crops"], data["line"]
    from diffusers import AutoencoderKL, DDIMScheduler
    from diffusers.models.autoencoders import vae as dvae
    from diffusers.pipelines import DiffusionPipeline  # noqa: F401  (imported before the stubs)

    _stub_modules(ref, line, crops)

    import latentsync.pipelines.lipsync_pipeline as P
    from latentsync.utils import image_processor as IP
    from latentsync.whisper import audio2feature as A2F
    from latentsync.whisper.whisper import audio as WA

    root, f, res = work, len(crops), crops.shape[1]
    unet = _ref_unet(ref, root, size)
    with torch.no_grad():
        u_out = unet(torch.from_numpy(data["sample"]), torch.tensor(int(data["t"])),
                     encoder_hidden_states=torch.from_numpy(data["audio"])).sample.numpy()
    if unet_only:
        np.savez(os.path.join(work, _ref_name(deepcache)), unet=u_out)
        return
    dvae.DiagonalGaussianDistribution.sample = lambda self, generator=None: self.mean  # the backend's mean
    WA.load_audio = lambda path, sr=16000: line.copy()
    chunks = A2F.Audio2Feature.feature2chunks
    A2F.Audio2Feature.feature2chunks = lambda self, feature_array, fps: chunks(self, feature_array, fps)[:f]
    P.ImageProcessor = lambda resolution, device="cpu", mask_image=None: IP.ImageProcessor(resolution, "cpu", mask_image)
    P.subprocess = types.SimpleNamespace(run=lambda *a, **k: None)
    P.LipsyncPipeline.affine_transform_video = lambda self, v: (
        torch.from_numpy(np.ascontiguousarray(v)).permute(0, 3, 1, 2), [None] * len(v), [None] * len(v))
    captured = {}

    def restore(self, faces, video_frames, boxes, affine_matrices):
        captured["faces"] = faces.float().numpy()
        return np.zeros((len(faces), 2, 2, 3), np.uint8)

    P.LipsyncPipeline.restore_video = restore
    vae = AutoencoderKL.from_pretrained(os.path.join(root, "sd-vae"))
    vae.config.scaling_factor, vae.config.shift_factor = 0.18215, 0
    audio = A2F.Audio2Feature(model_path=os.path.join(root, "whisper", "tiny.pt"), device="cpu", num_frames=16)
    pipe = P.LipsyncPipeline(vae=vae, audio_encoder=audio, unet=unet,
                             scheduler=DDIMScheduler.from_pretrained(os.path.join(ref, "configs")))
    if deepcache > 1:  # as the reference's scripts/inference.py --enable_deepcache (interval 3, branch 0)
        from DeepCache import DeepCacheSDHelper

        helper = DeepCacheSDHelper(pipe=pipe)
        helper.set_params(cache_interval=deepcache, cache_branch_id=0)
        helper.enable()
    mask_path = os.path.join(ref, "latentsync", "utils", "mask.png")
    with tempfile.TemporaryDirectory() as tmp:
        pipe(video_path="in.mp4", audio_path="in.wav", video_out_path=os.path.join(tmp, "out.mp4"), num_frames=16,
             video_fps=int(FPS), height=res, width=res, num_inference_steps=steps, guidance_scale=1.5,
             weight_dtype=torch.float32, mask_image_path=mask_path, temp_dir=os.path.join(tmp, "t"),
             generator=torch.Generator().manual_seed(SEED))
    mask = IP.load_fixed_mask(res, mask_path)[0:1].float().numpy()
    np.savez(os.path.join(work, _ref_name(deepcache)), unet=u_out, faces=captured["faces"], mask=mask)


# --- this backend -------------------------------------------------------------------------------------

def backend_side(work: str, size: str, steps: int, keep: torch.Tensor | None, perturb: str | None = None,
                 unet_only: bool = False, deepcache: int = 0) -> dict:
    """This backend on the saved inputs: {"unet": UNet output, "faces": (F, 3, S, S) pixels in -1..1}.
    ``keep``: the mask image to use (the reference's); None = the backend's own drawing."""
    L = _pack()
    from comfyui_lipsync.lipsync_models.backends import latentsync_audio as A
    from comfyui_lipsync.lipsync_models.backends import latentsync_layers as Ly

    data = np.load(os.path.join(work, "inputs.npz"))
    crops, line = data["crops"], data["line"]
    f, res = len(crops), crops.shape[1]
    files = L.LF.find_files(work)
    from comfyui_lipsync.lipsync_models.backends import latentsync_unet as U

    models = L.load_models(files, "cpu", torch.float32, cfg=U.FULL if size == "full" else U.TINY)
    saved = (A.LEFT, A.RIGHT)
    try:
        if perturb == "pe":
            for m in models.unet.modules():
                if isinstance(m, Ly.TemporalAttention):
                    m.pos_encoder.pe = m.pos_encoder.pe * 0.5
        elif perturb == "window":
            A.LEFT, A.RIGHT = A.LEFT - 1, A.RIGHT + 1
        with torch.no_grad():
            u = models.unet(torch.from_numpy(data["sample"]), torch.tensor(int(data["t"])),
                            torch.from_numpy(data["audio"])).numpy()
        feats = A.whisper_features(models.encoder, models.filters, torch.from_numpy(line))
        tokens = A.audio_windows(feats, f, FPS)
    finally:
        A.LEFT, A.RIGHT = saved
    if unet_only:
        return {"unet": u}
    keep = L.template_mask(res) if keep is None else keep
    if perturb == "mask":
        keep = torch.roll(keep, 8, dims=-2)
    faces = torch.from_numpy(crops).float().div(255).permute(0, 3, 1, 2) * 2 - 1
    noise = L.initial_noise(res, SEED)
    out = [L.denoise_chunk(models, faces[i:i + L.CHUNK], tokens[i:i + L.CHUNK], noise,
                           keep if keep.ndim == 2 else keep.expand(len(faces[i:i + L.CHUNK]), *keep.shape[-3:]),
                           steps, 1.5, reuse=deepcache) for i in range(0, f, L.CHUNK)]
    return {"unet": u, "faces": torch.cat(out).numpy()}


def mask_iou(ours: torch.Tensor, theirs: np.ndarray) -> float:
    a, b = ours.numpy() < 0.5, np.asarray(theirs).reshape(ours.shape) < 0.5
    return float((a & b).sum() / max((a | b).sum(), 1))


def largest_gap(ours: dict, theirs: dict, key: str) -> float:
    """max |ours[key] - theirs[key]| in float64 (a shape mismatch stops the script)."""
    x, y = np.asarray(ours[key], np.float64), np.asarray(theirs[key], np.float64)
    if x.shape != y.shape:
        raise SystemExit(f"{key}: shape {x.shape} here, {y.shape} in the reference")
    return float(np.max(np.abs(x - y)))


def main(argv=None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", help="a checkout of bytedance/LatentSync; without it, the backend is compared "
                                        "with itself perturbed (--perturb)")
    ap.add_argument("--ref-python", default=sys.executable, help="the interpreter that runs the reference")
    ap.add_argument("--size", choices=["full", "tiny"], default="full")
    ap.add_argument("--vae", choices=["full", "tiny"], default="tiny")
    ap.add_argument("--res", type=int, default=512, help="crop side (1.6: 512, 1.5: 256)")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--perturb", choices=["pe", "mask", "window"])
    ap.add_argument("--workdir", help="where to write weights and inputs (default: a temporary folder)")
    ap.add_argument("--reuse", action="store_true", help="keep the weights, inputs and reference outputs already "
                                                          "in --workdir (re-run this side only)")
    ap.add_argument("--deepcache", type=int, default=0,
                    help="both sides reuse deep features between every N-th step: the reference through the DeepCache "
                         "package as its --enable_deepcache (N = 3), this backend through its own reuse")
    ap.add_argument("--unet-only", action="store_true", help="compare the UNet forward pass only (no pipeline)")
    ap.add_argument("--_reference-side", dest="ref_side", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.ref_side:
        reference_side(args.reference, args.workdir, args.size, args.steps, args.unet_only, args.deepcache)
        return 0.0
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or tmp
        reuse = args.reuse and os.path.isfile(os.path.join(work, "inputs.npz"))
        if not reuse:
            write_layout(work, args.size, args.vae)
            crops, line = inputs(args.frames, args.res)
            np.savez(os.path.join(work, "inputs.npz"), crops=crops, line=line, **unet_inputs(args.frames, args.res))
        ref_file = os.path.join(work, _ref_name(args.deepcache))
        if args.reference and not (reuse and os.path.isfile(ref_file)):
            cmd = [args.ref_python, os.path.abspath(__file__), "--_reference-side", "--reference", args.reference,
                   "--workdir", work, "--size", args.size, "--steps", str(args.steps),
                   "--deepcache", str(args.deepcache)] + (
                      ["--unet-only"] if args.unet_only else [])
            subprocess.run(cmd, check=True)
        if args.reference:
            theirs = dict(np.load(ref_file))
            keep = torch.from_numpy(theirs["mask"][0]) if "mask" in theirs else None
            if keep is not None:
                iou = mask_iou(_pack().template_mask(args.res), theirs["mask"])
                print(f"mask: IoU of the backend's drawn mask with the reference's mask image at {args.res} px: {iou:.4f}")
            ours = backend_side(work, args.size, args.steps, keep, unet_only=args.unet_only, deepcache=args.deepcache)
        else:
            ours = backend_side(work, args.size, args.steps, None)
            theirs = backend_side(work, args.size, args.steps, None, perturb=args.perturb)
        du = largest_gap(ours, theirs, "unet")
        dp = 0.0 if args.unet_only else largest_gap(ours, theirs, "faces")
        print(f"{args.size} UNet, {args.vae} VAE, {args.frames} frames of {args.res} px at {FPS:g} fps, "
              f"{args.steps} DDIM steps{f', deep features reused every {args.deepcache}' if args.deepcache > 1 else ''}, "
              f"float32 CPU; bar {BAR:g}")
        print(f"UNet forward: max abs diff {du:.3g}; pipeline (pixels -1..1): max abs diff {dp:.3g}")
        diff = max(du, dp)
        print(f"max abs diff: {diff:.3g}")
    return diff


if __name__ == "__main__":
    d = main()
    sys.exit(0 if d <= BAR or "--_reference-side" in sys.argv else 1)
