"""Parity of our StableSyncNet (lipsync_models/backends/stablesyncnet.py) with LatentSync's own module.

Run:  .venv/bin/python bench/parity_stablesyncnet.py --reference DIR [--config tiny|full] [--seed 0]

DIR is a checkout of bytedance/LatentSync kept OUTSIDE this repository (its ``latentsync/models/
stable_syncnet.py`` needs diffusers and einops). The reference module is built with random
weights, its state dict is loaded strictly into ours, both embed the same random frames
(B, 48, 128, 256) and mel windows (B, 1, 80, 52), and the largest absolute difference of the
embeddings is printed as the last line, ``max abs diff: X``; the exit status is 1 above
:data:`BAR`. ``--config tiny`` (default) is the 1.6 layout at 1/32 to 1/16 of the widths (runs in
seconds on a CPU), ``full`` the shipped configuration (about 1 GB of float32 weights).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lipsync_runner.pack import load_pack  # noqa: E402

load_pack()

from comfyui_lipsync.lipsync_models.backends import stablesyncnet as ours  # noqa: E402

BAR = 1e-4

TINY = {
    "audio_encoder": {"in_channels": 1, "block_out_channels": [32, 32, 32, 32, 32, 64, 64],
                      "downsample_factors": [[2, 1], 2, 2, 1, 2, 2, [2, 3]], "attn_blocks": [0, 0, 0, 1, 1, 0, 0],
                      "dropout": 0.0},
    "visual_encoder": {"in_channels": 48, "block_out_channels": [32, 32, 32, 32, 32, 32, 64, 64],
                       "downsample_factors": [[1, 2], 2, 2, 2, 2, 2, 2, 2], "attn_blocks": [0, 0, 0, 0, 1, 1, 0, 0],
                       "dropout": 0.0},
}


def full_config() -> dict:
    cfg = {k: dict(v, dropout=0.0) for k, v in ours.CONFIG_16_PIXEL_ATTN.items()}
    return cfg


def compare(reference: torch.nn.Module, config: dict, seed: int = 0, batch: int = 2) -> float:
    """Largest |difference| of the unit embeddings of ``reference`` (random weights) and of our
    module loaded strictly with its state dict, on the same random inputs."""
    torch.manual_seed(seed)
    for p in reference.parameters():  # random, not the init's zeros/ones (GroupNorm affine)
        p.data.normal_(0.0, 0.05)
    mine = ours.build_stablesyncnet(reference.state_dict(), "reference", "parity", config)
    frames = torch.randn(batch, 48, 128, 256)
    mel = torch.randn(batch, 1, 80, ours.MEL_FRAMES)
    reference.eval()
    with torch.no_grad():
        rv, ra = reference(frames, mel)
        mv, ma = mine(frames, mel)
    return float(max((rv - mv).abs().max(), (ra - ma).abs().max()))


def load_reference(ref_dir: Path):
    """The reference ``StableSyncNet`` class from a LatentSync checkout."""
    sys.path.insert(0, str(ref_dir))
    return importlib.import_module("latentsync.models.stable_syncnet").StableSyncNet


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reference", type=Path, required=True, help="a bytedance/LatentSync checkout")
    ap.add_argument("--config", choices=("tiny", "full"), default="tiny")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    config = TINY if args.config == "tiny" else full_config()
    ref = load_reference(args.reference)(config)
    diff = compare(ref, config, args.seed)
    print(f"config {args.config}, seed {args.seed}, bar {BAR:g}")
    print(f"max abs diff: {diff:.3e}")
    return 0 if diff <= BAR else 1


if __name__ == "__main__":
    sys.exit(main())
