"""Convert a ``.pth`` checkpoint to ``.safetensors``.

Usage (from the pack folder, e.g. ``ComfyUI/custom_nodes/ComfyUI-LipSync``)::

    python -m lipsync_models.convert in.pth out.safetensors

The input is read with ``torch.load(weights_only=True)``: a pickle that holds anything but
tensors is refused. ``--trust-pickle`` unpickles it in full instead, which runs any code the file
names: only for a file whose source you trust, best in a throw-away environment. The output holds
the plain state dict (``module.`` prefixes removed), which the nodes load without running anything.
"""

from __future__ import annotations

import argparse
import sys

from .weights import convert_to_safetensors
from .errors import LipSyncError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lipsync_models.convert", description=__doc__.splitlines()[0])
    ap.add_argument("src", help="input checkpoint (.pth / .pt)")
    ap.add_argument("dst", help="output file (.safetensors)")
    ap.add_argument("--trust-pickle", action="store_true",
                    help="unpickle the input in full (RUNS ANY CODE IT HOLDS): only for files you trust")
    args = ap.parse_args(argv)
    try:
        n = convert_to_safetensors(args.src, args.dst, trust_pickle=args.trust_pickle)
    except LipSyncError as e:
        sys.stderr.write(f"error: {e}\n")
        return 1
    sys.stdout.write(f"wrote {n} tensors to {args.dst}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
