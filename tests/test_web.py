"""web/lipsync.js in a real browser: headless Chromium, the real ComfyUI frontend, our nodes.

The frontend comes from the ``comfyui-frontend-package`` wheel (requirements-dev.txt), served by
a small stub of ComfyUI's server (tests/comfy_stub.py) with the recorded core node definitions
plus ours built from NODE_CLASS_MAPPINGS, or by a real ComfyUI when ``COMFYUI_URL`` is set (with
this pack in its custom_nodes). playwright-core (tests/web/package.json) drives Debian's
/usr/bin/chromium (``make sysdeps`` installs it; ``CHROMIUM`` overrides the path).

After the ``executed`` event with the ui that our nodes really return, screenshots of each node
must show the drawing in the preview area (pixel checks against the colours lipsync.js uses,
compared with the same area before the event), and the page state must agree: the preview
widget exists, was drawn, and is not saved into widgets_values. Every shipped workflow loads in
the frontend and re-serialises to the same widget values and links.
"""

import json
import math
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import comfy_stub
import workflow_schema as ws
from comfyui_lipsync.lipsync_models import ui_payload
from comfyui_lipsync.lipsync_models.types import Phoneme, PhonemeTrack

ROOT = Path(__file__).resolve().parents[1]
WEB_TESTS = ROOT / "tests" / "web"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
COMFYUI_URL = os.environ.get("COMFYUI_URL", "").rstrip("/")

# colours web/lipsync.js draws with (RGB)
WAVE = (163, 190, 140)      # waveform peaks #a3be8c
CUE_A = (191, 97, 106)      # Rhubarb A (closed: P/B/M) #bf616a
CUE_D = (163, 190, 140)     # Rhubarb D (wide open: AA) #a3be8c
CUE_X = (59, 66, 82)        # Rhubarb X (rest) #3b4252
JAW = (235, 203, 139)       # jaw-open curve #ebcb8b
CURVE = (136, 192, 208)     # sync curve #88c0d0
GREEN = (46, 158, 91)       # badge, offset 0 #2e9e5b
RED = (192, 57, 43)         # badge, |offset| >= 2 #c0392b
TEXT = (236, 239, 244)      # phoneme labels #eceff4


def _tools():
    problems = []
    if not Path(CHROMIUM).is_file():
        problems.append(f"Chromium not found at {CHROMIUM}: run `make sysdeps` (Debian packages chromium, chromium-driver)")
    if shutil.which("node") is None or shutil.which("npm") is None:
        problems.append("node/npm not found: the browser test drives Chromium with playwright-core from npm")
    if problems:
        pytest.fail("; ".join(problems))
    if not (WEB_TESTS / "node_modules" / "playwright-core").is_dir():
        r = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=WEB_TESTS, capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            pytest.fail(f"npm ci in tests/web failed: {r.stderr[-2000:]}")


def _count(img: np.ndarray, rgb, tol=18) -> int:
    """Pixels within ``tol`` (per channel) of ``rgb``."""
    return int((np.abs(img[..., :3].astype(int) - np.array(rgb)).max(axis=-1) <= tol).sum())


# --- payloads: what our nodes really send ------------------------------------------------------

def _phoneme_ui():
    """ExtractPhonemes' ui on a hand-made track and a 1.2 s waveform with two bursts."""
    sr = 16000
    t = torch.arange(int(1.2 * sr)) / sr
    wave = 0.6 * torch.sin(2 * math.pi * 180 * t) * (((t > 0.25) & (t < 0.55)) | ((t > 0.7) & (t < 1.0))).float()
    track = PhonemeTrack((Phoneme("SIL", 0.0, 0.05), Phoneme("BREATH", 0.05, 0.25), Phoneme("B", 0.25, 0.32), Phoneme("AA", 0.32, 0.55),
                          Phoneme("SIL", 0.55, 0.7), Phoneme("M", 0.7, 0.78), Phoneme("IY", 0.78, 1.0),
                          Phoneme("SIL", 1.0, 1.2)), 1.2, "align")
    return track, {"text": ["listing"], **ui_payload.phonemes_ui(track, wave, sr)}


def _viseme_ui(track):
    """The real MapVisemes node's ui for that track."""
    from comfyui_lipsync.nodes.map_visemes import MapVisemes

    out = MapVisemes().map(track, "rhubarb", 25.0)
    return out["ui"]


def _sync_ui(offset):
    lags = list(range(-15, 16))
    curve = [math.exp(-((k - offset) ** 2) / 8.0) for k in lags]
    return ui_payload.sync_ui(offset, offset * 40.0, 5.5 if offset == 0 else 1.2, lags, curve, 25.0)


# --- the browser run (once per module) -------------------------------------------------------

@pytest.fixture(scope="module")
def browser_run(tmp_path_factory):
    _tools()
    out_dir = tmp_path_factory.mktemp("web")
    defs = ws.all_definitions()
    needed = ["LipSyncLoadAudioDriver", "LipSyncExtractPhonemes", "LipSyncMapVisemes", "LipSyncSyncScore"]
    missing = [n for n in needed if n not in defs]
    if missing:
        pytest.fail(f"node classes not registered, the web test needs them: {missing}")

    g = ws.Graph(defs)
    drv = g.add("LipSyncLoadAudioDriver", (0, 0), audio_file="line.wav")
    ph = g.add("LipSyncExtractPhonemes", (0, 600))
    vis = g.add("LipSyncMapVisemes", (0, 1200))
    s0 = g.add("LipSyncSyncScore", (0, 1900))
    s3 = g.add("LipSyncSyncScore", (0, 2600))
    g.link(drv, "driver", ph, "driver")
    g.link(ph, "phonemes", vis, "phonemes")
    scene = g.to_json()
    track, ph_ui = _phoneme_ui()
    executed = [{"node": ph, "output": ph_ui}, {"node": vis, "output": _viseme_ui(track)},
                {"node": s0, "output": _sync_ui(0)}, {"node": s3, "output": _sync_ui(3)}]
    json.loads(json.dumps(executed))  # the ui must be plain JSON, as ComfyUI sends it

    roundtrip = [{"name": p.stem, "workflow": json.loads(p.read_text())} for p in sorted((ROOT / "workflows").glob("*.json"))]
    take = out_dir / "take_7.wav"
    take.write_bytes(b"RIFF....WAVEfmt ")  # content does not matter to the upload route
    wait = sorted({n["type"] for w in roundtrip for n in w["workflow"]["nodes"]} | set(needed))
    spec = {"outdir": str(out_dir), "chromium": CHROMIUM, "roundtrip": roundtrip, "waitTypes": wait,
            "scenes": [{"name": "previews", "workflow": scene, "executed": executed, "focus": [drv, ph, vis, s0, s3],
                        "upload": {"node": drv, "file": str(take)}}]}

    def run(base):
        spec["base"] = base
        (out_dir / "spec.json").write_text(json.dumps(spec))
        t0 = time.monotonic()
        r = subprocess.run(["node", str(WEB_TESTS / "render.mjs"), str(out_dir / "spec.json")],
                           capture_output=True, text=True, timeout=150)
        if r.returncode != 0:
            pytest.fail(f"browser run failed ({r.returncode}): {r.stderr[-3000:]}")
        res = json.loads(r.stdout)
        res["seconds"] = time.monotonic() - t0
        return res

    if COMFYUI_URL:
        res = run(COMFYUI_URL)
        res["missing"], res["uploads"] = [], {"take_7.wav": take.read_bytes()}
    else:
        with comfy_stub.Stub(defs) as stub:
            res = run(stub.url)
            res["missing"], res["uploads"] = list(stub.missing), dict(stub.uploads)
    res["ids"] = {"driver": drv, "phonemes": ph, "visemes": vis, "sync0": s0, "sync3": s3}
    res["scene"] = scene
    return res


def _node(res, key):
    return res["scenes"]["previews"]["nodes"][str(res["ids"][key])]


def _preview_area(node, which):
    """The preview rectangle (node-local rect from the page) cut out of a screenshot, and the same
    area of the other screenshot."""
    img = np.asarray(Image.open(node[which]).convert("RGB"))
    x, y, w, h = node["rect"]
    ox, oy = 10, 10 + node["title"]  # the clip starts 10 px left of and above the node's title bar
    return img[int(oy + y): int(oy + y + h), int(ox + x): int(ox + x + w)]


def test_frontend_boots_with_our_extension(browser_run):
    assert "ComfyUI-LipSync.previews" in browser_run["extensions"]
    assert "LipSyncSyncScore" in browser_run["registered"] and "SaveVideo" in browser_run["registered"]
    assert not [e for e in browser_run["pageErrors"] if "lipsync" in e.lower()], browser_run["pageErrors"]
    assert browser_run["blocked"] == [] or all("127.0.0.1" not in u for u in browser_run["blocked"])
    assert browser_run["seconds"] < 120


def test_phoneme_waveform_drawn(browser_run):
    node = _node(browser_run, "phonemes")
    assert "lipsync_preview" in node["widgets"] and node["drawn"] > 0
    after, before = _preview_area(node, "after"), _preview_area(node, "before")
    area = after.shape[0] * after.shape[1]
    assert area > 300 * 100
    # waveform: two bursts over ~50% of the width, mirrored peaks fill a good part of the height
    assert _count(after, WAVE) > 0.08 * area
    assert _count(before, WAVE) < 0.005 * area
    # silence at the start: the first 15% of the width has no waveform
    assert _count(after[:, : int(0.15 * after.shape[1])], WAVE) < 0.01 * area
    # the in-breath before the line: its own warm band (speech bands are blue, silence nearly
    # the panel's grey-blue), labelled in light text
    w = after.shape[1]
    silence, breath = after[:, int(0.005 * w): int(0.035 * w)], after[:, int(0.08 * w): int(0.18 * w)]
    sr_, sg_, sb_ = silence.reshape(-1, 3).mean(0)
    br_, bg_, bb_ = breath.reshape(-1, 3).mean(0)
    assert br_ > bb_ + 3 and br_ > sr_ + 10 and sb_ > sr_
    assert _count(breath, TEXT, tol=40) > 5 and _count(silence, TEXT, tol=40) == 0
    # the saved widget values do not include the preview
    assert node["serialized"] == ["auto", "", 2.0]


def test_viseme_timeline_drawn(browser_run):
    node = _node(browser_run, "visemes")
    assert node["drawn"] > 0
    after, before = _preview_area(node, "after"), _preview_area(node, "before")
    area = after.shape[0] * after.shape[1]
    # the track B AA (pause) M IY: closures (A) for B and M, wide open (D) for AA, rest (X) around
    assert _count(after, CUE_A, tol=10) > 300
    assert _count(after, CUE_D, tol=10) > 300
    assert _count(after, CUE_X, tol=6) > 300
    assert _count(after, JAW, tol=20) > 100            # jaw-open curve
    assert _count(before, CUE_A, tol=10) < 0.001 * area
    assert len(node["serialized"]) == 10  # MapVisemes' widgets, breath_open last


def test_sync_badge_and_plot(browser_run):
    s0, s3 = _node(browser_run, "sync0"), _node(browser_run, "sync3")
    a0, a3 = _preview_area(s0, "after"), _preview_area(s3, "after")
    assert _count(a0, GREEN, tol=8) > 400 and _count(a0, RED, tol=8) < 50
    assert _count(a3, RED, tol=8) > 400 and _count(a3, GREEN, tol=8) < 50
    assert _count(a0, CURVE, tol=12) > 150 and _count(_preview_area(s0, "before"), CURVE, tol=12) < 20
    # the best-lag marker sits at the peak: offset 3 is right of offset 0 by 3/30 of the plot width
    def marker_x(a, rgb):
        cols = (np.abs(a[40:, :, :3].astype(int) - np.array(rgb)).max(-1) <= 8).sum(0)
        return float(np.argmax(cols))
    w = a0.shape[1] - 12
    assert abs((marker_x(a3, RED) - marker_x(a0, GREEN)) - 3 / 30 * w) < 4


def test_audio_upload_button(browser_run):
    node = _node(browser_run, "driver")
    assert "upload_audio" in node["widgets"]
    # the picked file went to ComfyUI's upload route and became the node's choice
    assert browser_run["uploads"].get("take_7.wav") == b"RIFF....WAVEfmt "
    up = browser_run["scenes"]["previews"]["upload"]
    assert up["value"] == "take_7.wav" and "take_7.wav" in up["values"]
    assert node["serialized"][0] == "take_7.wav" and len(node["serialized"]) == 6  # the button is not saved


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "workflows").glob("*.json")))
def test_workflow_round_trips_through_the_frontend(browser_run, name):
    wf = json.loads((ROOT / "workflows" / f"{name}.json").read_text())
    got = browser_run["roundtrip"][name]
    assert all(k["registered"] for k in got["known"]), got["known"]
    mine = {n["id"]: n for n in wf["nodes"]}
    for n in got["nodes"]:
        assert n["type"] == mine[n["id"]]["type"]
        assert n["widgets_values"] == mine[n["id"]]["widgets_values"], (n["type"], n["widgets_values"])
        assert [o["type"] for o in n["outputs"]] == [o["type"] for o in mine[n["id"]]["outputs"]]
        strip = lambda inputs: [(i["name"], i["type"], i.get("link"), (i.get("widget") or {}).get("name")) for i in inputs]
        assert strip(n["inputs"]) == strip(mine[n["id"]]["inputs"]), n["type"]
    assert sorted(map(tuple, got["links"])) == sorted(map(tuple, wf["links"]))


# --- a real run in a real ComfyUI (COMFYUI_URL only) ---------------------------------------------

@pytest.mark.skipif(not COMFYUI_URL, reason="COMFYUI_URL not set: needs a real ComfyUI server to queue the "
                    "workflow (see docs/COMFYUI.md); the stub runs above cover the drawing")
def test_live_run_draws_previews(tmp_path, grid_dir):
    """Queue workflow 01 from the frontend on the real server: the previews are drawn from the
    server's own `executed` messages."""
    _tools()
    from test_comfyui_server import _upload, _wav_bytes
    from comfyui_lipsync.lipsync_models import media, video_out

    frames, fps, (wave, sr) = media.read_video(str(grid_dir / "bbaf2n.mpg"), max_frames=50)
    _upload("lipsync_input.mp4", video_out.encode_video(frames, fps, {"waveform": wave[None], "sample_rate": sr}))
    line, lsr = media.read_audio(str(grid_dir / "lbbc2a.mpg"), duration=2.0)
    _upload("line.wav", _wav_bytes(line, lsr))
    wf = json.loads((ROOT / "workflows" / "01_lipsync_clip.json").read_text())
    ids = {n["type"]: n["id"] for n in wf["nodes"]}
    focus = [ids["LipSyncExtractPhonemes"], ids["LipSyncMapVisemes"], ids["LipSyncSyncScore"]]
    spec = {"base": COMFYUI_URL, "outdir": str(tmp_path), "chromium": CHROMIUM,
            "waitTypes": sorted({n["type"] for n in wf["nodes"]}),
            "scenes": [{"name": "live", "workflow": wf, "focus": focus,
                        "queue": {"waitFor": focus, "timeoutMs": 400000}}]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    r = subprocess.run(["node", str(WEB_TESTS / "render.mjs"), str(tmp_path / "spec.json")],
                       capture_output=True, text=True, timeout=480)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout)["scenes"]["live"]
    assert res["runSeconds"] < 400, "the run did not finish (see the server log)"
    nodes = {n["type"]: n for n in res["nodes"].values()}
    for t in ("LipSyncExtractPhonemes", "LipSyncMapVisemes", "LipSyncSyncScore"):
        assert nodes[t]["drawn"] > 0, (t, res.get("runSeconds"))
    ph = nodes["LipSyncExtractPhonemes"]
    assert len(ph["data"]["phonemes"]) > 5 and _count(_preview_area(ph, "after"), WAVE) > 1000
    vis = nodes["LipSyncMapVisemes"]
    assert len(vis["data"]["cues"]) > 3
    sync = nodes["LipSyncSyncScore"]
    badge = {0: GREEN, 1: (212, 160, 23)}.get(abs(sync["data"]["offset_frames"]), RED)
    assert _count(_preview_area(sync, "after"), badge, tol=8) > 300
