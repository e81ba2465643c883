"""``python -m lipsync_runner``: the headless runner (see :mod:`lipsync_runner.cli`).

The pack is loaded first as the package ``comfyui_lipsync`` (as ComfyUI and the tests load it), and
the runner runs inside it, so the node classes, the library and the error types are one copy.
"""

import importlib
import sys

from lipsync_runner.pack import load_pack

if __name__ == "__main__":
    pack = load_pack()
    cli = importlib.import_module(f"{pack.__name__}.lipsync_runner.cli")
    sys.exit(cli.main())
