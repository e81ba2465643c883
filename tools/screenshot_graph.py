"""Redraw docs/graph.png: a shipped workflow as the real ComfyUI frontend shows it.

    .venv/bin/python tools/screenshot_graph.py [workflows/01_lipsync_clip.json] [docs/graph.png]

Needs what ``make test`` installs: the frontend wheel (served by tests/comfy_stub.py with our
node definitions), Debian's Chromium and playwright-core (tests/web). Run it after changing a
node's inputs and tools/make_workflows.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from lipsync_runner.pack import load_pack  # noqa: E402

load_pack()
import comfy_stub  # noqa: E402
import workflow_schema as ws  # noqa: E402


def main(argv: list[str]) -> int:
    workflow = Path(argv[0]) if argv else ROOT / "workflows" / "01_lipsync_clip.json"
    out = Path(argv[1]) if len(argv) > 1 else ROOT / "docs" / "graph.png"
    with comfy_stub.Stub(ws.all_definitions()) as stub:
        r = subprocess.run(["node", str(ROOT / "tests" / "web" / "graph_shot.mjs"), stub.url,
                            str(workflow.resolve()), str(out.resolve())], cwd=ROOT / "tests" / "web", timeout=150)
    print(f"wrote {out}" if r.returncode == 0 else f"failed ({r.returncode})")
    return r.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
