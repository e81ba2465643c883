"""``python -m lipsync_runner``: the headless runner (see :mod:`lipsync_runner.cli`).

The pack is loaded first as the package ``comfyui_lipsync`` (as ComfyUI and the tests load it), and
the runner runs inside it, so the node classes, the library and the error types are one copy.
"""

import importlib
import logging
import os
import sys

from lipsync_runner.pack import load_pack

if __name__ == "__main__":
    pack = load_pack()
    cli = importlib.import_module(f"{pack.__name__}.lipsync_runner.cli")
    code = cli.main()
    # Everything is written and closed by now (the output file renamed into place, the partial one
    # removed): leave as a C program does, without tearing down torch, OpenCV and the codecs object by
    # object, which takes 0.5 s of a 14-s run. An error that escapes main() still exits the usual way.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else 1)
