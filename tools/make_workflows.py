"""Write the shipped workflows (workflows/*.json, which ComfyUI also lists in its template
browser) from the node definitions, so widget layouts always match the code.

    .venv/bin/python tools/make_workflows.py          # rewrite both folders
    .venv/bin/python tools/make_workflows.py --check  # exit 1 when a file is out of date

Core node definitions come from the recording of a real ComfyUI server
(tests/data/comfyui/object_info.json), ours from NODE_CLASS_MAPPINGS; tests/test_workflows.py
validates the result and tests/test_web.py loads each file in the real frontend.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from lipsync_runner.pack import load_pack  # noqa: E402

load_pack()
import workflow_schema as ws  # noqa: E402

VIDEO = "lipsync_input.mp4"
LINE = "line.wav"
PORTRAIT = "portrait.png"

HOW_TO = """## ComfyUI-LipSync
1. Put the clip and the spoken line in ComfyUI's **input** folder (or use the upload buttons).
2. Queue. The mouth follows the line; every pixel outside the lower-face mask stays as it was.
3. Check **SyncScore**: offset 0 frames (green badge) means the lips are in sync.

Only use footage of people who agreed to it. Videos written by the pack say they were lip-synced."""


def lipsync_chain(g: ws.Graph, images: tuple[int, str], fps: tuple[int, str] | None, x: float, y: float,
                  transcript: str = "", backend: str = "auto", audio_file: str = LINE, prefix: str = "lipsync/clip",
                  face: dict | None = None, save: bool = True, mask: bool = False, generate: dict | None = None):
    """Our seven nodes after a node giving IMAGE frames (+ fps), then (``save``) CreateVideo -> SaveVideo.
    ``face``: MaskLowerFace's widgets (which face to follow). ``mask``: feed MaskLowerFace's MASK to
    Composite's optional mask (else Composite builds the lower-face region per crop, and MaskLowerFace,
    its mask unread, does not build the B x H x W mask). ``generate``: LipSyncInference's widgets (the model)."""
    src, out = images
    drv = g.add("LipSyncLoadAudioDriver", (x, y), audio_file=audio_file)
    g.link(src, out, drv, "images")
    if fps is not None:
        g.link(fps[0], fps[1], drv, "fps")
    ph = g.add("LipSyncExtractPhonemes", (x + 400, y), size=(360, 520), backend=backend, transcript=transcript)
    g.link(drv, "driver", ph, "driver")
    vis = g.add("LipSyncMapVisemes", (x + 800, y), size=(380, 820))
    g.link(ph, "phonemes", vis, "phonemes")
    g.link(drv, "driver", vis, "driver")
    face = g.add("LipSyncMaskLowerFace", (x, y + 1000), size=(340, 600), **(face or {}))
    g.link(src, out, face, "images")
    gen = g.add("LipSyncInference", (x + 400, y + 1000), **(generate or {}))
    g.link(src, out, gen, "images")
    g.link(face, "face_track", gen, "face_track")
    g.link(vis, "visemes", gen, "visemes")
    g.link(drv, "driver", gen, "driver")
    comp = g.add("LipSyncComposite", (x + 800, y + 1000))
    g.link(src, out, comp, "images")
    g.link(gen, "crops", comp, "crops")
    g.link(gen, "face_track", comp, "face_track")
    if mask:
        g.link(face, "mask", comp, "mask")
    score = add_sync_score(g, (x + 1220, y), (comp, "images"), drv, (gen, "face_track"), fps)
    g.group("Audio -> phonemes -> mouth shapes", (x - 20, y - 80, 1220, 960), "#3f789e")
    g.group("Face -> new mouth -> paste back", (x - 20, y + 920, 1220, 720), "#8A8")
    nodes = {"driver": drv, "phonemes": ph, "visemes": vis, "face": face, "generate": gen, "composite": comp,
             "score": score}
    if not save:
        return nodes
    make = g.add("CreateVideo", (x + 1220, y + 1000), fps=25.0)
    g.link(comp, "images", make, "images")
    g.link(drv, "audio", make, "audio")
    if fps is not None:
        g.link(fps[0], fps[1], make, "fps")
    save = g.add("SaveVideo", (x + 1640, y + 1000), size=(420, 500), filename_prefix=prefix)
    g.link(make, "VIDEO", save, "video")
    g.group("Check sync and save", (x + 1200, y - 80, 880, 1720), "#b58b2a")
    return {**nodes, "save": save}


def add_sync_score(g: ws.Graph, pos, images, driver: int | None, face_track, fps, audio=None) -> int:
    """SyncScore wired to whatever of images / driver / audio / face_track / fps it takes, with its
    report shown by PreviewAny (an output node, so the score runs even though nothing else needs it)."""
    node = g.add("LipSyncSyncScore", pos, size=(400, 840))
    names = {i["name"] for i in g.nodes[node - 1]["inputs"]}
    g.link(images[0], images[1], node, "images")
    if driver is not None and "driver" in names:
        g.link(driver, "driver", node, "driver")
    elif audio is not None and "audio" in names:
        g.link(audio[0], audio[1], node, "audio")
    if face_track is not None and "face_track" in names:
        g.link(face_track[0], face_track[1], node, "face_track")
    if fps is not None and "fps" in names:
        g.link(fps[0], fps[1], node, "fps")
    show = g.add("PreviewAny", (pos[0] + 420, pos[1]), size=(420, 420))
    g.link(node, "report", show, "source")
    return node


def wf_clip(defs, text: str = HOW_TO, prefix: str = "lipsync/clip", generate: dict | None = None):
    g = ws.Graph(defs)
    g.add("MarkdownNote", (-420, 0), size=(380, 300), text=text)
    v = g.add("LoadVideo", (-420, 340), size=(340, 520), file=VIDEO)
    c = g.add("GetVideoComponents", (-420, 1000))
    g.link(v, "VIDEO", c, "video")
    lipsync_chain(g, (c, "images"), (c, "fps"), 0, 0, prefix=prefix, generate=generate)
    return g.to_json()


def wf_after_generator(defs, generator: str, prompt_widgets: dict, image_input: str, prefix: str, note: str,
                       mask: bool = False):
    g = ws.Graph(defs)
    g.add("MarkdownNote", (-800, 0), size=(380, 300), text=note)
    img = g.add("LoadImage", (-800, 340), size=(340, 420), image=PORTRAIT)
    gen = g.add(generator, (-420, 340), size=(400, 300), **prompt_widgets)
    g.link(img, "IMAGE", gen, image_input)
    c = g.add("GetVideoComponents", (-420, 1000))
    g.link(gen, "VIDEO", c, "video")
    lipsync_chain(g, (c, "images"), (c, "fps"), 0, 0, prefix=prefix, mask=mask)
    return g.to_json()


def wf_sync_check(defs):
    g = ws.Graph(defs)
    g.add("MarkdownNote", (-420, 0), size=(380, 240), text=(
        "## Sync check\nScores a finished clip against its own sound track: the offset in frames and ms "
        "(positive = audio late) and a confidence that the clip is in sync as it stands (high, about "
        "0.3-0.6, for recorded speech; near 0 for shifted or foreign audio). Use it before delivery, or to "
        "compare settings."))
    v = g.add("LoadVideo", (-420, 280), size=(340, 420), file=VIDEO)
    c = g.add("GetVideoComponents", (0, 280))
    g.link(v, "VIDEO", c, "video")
    add_sync_score(g, (340, 280), (c, "images"), None, None, (c, "fps"), audio=(c, "audio"))
    return g.to_json()


def wf_dubbing(defs):
    g = ws.Graph(defs)
    g.add("MarkdownNote", (-420, 0), size=(380, 300), text=(
        "## Dubbing with a transcript\nType the dubbed line exactly as spoken into ExtractPhonemes: forced "
        "alignment of the words is the most accurate way to time the mouth. The dub replaces the clip's "
        "sound in the saved video."))
    v = g.add("LoadVideo", (-420, 340), size=(340, 520), file=VIDEO)
    c = g.add("GetVideoComponents", (-420, 1000))
    g.link(v, "VIDEO", c, "video")
    lipsync_chain(g, (c, "images"), (c, "fps"), 0, 0, transcript="Lay blue at X four now.", backend="align",
                  audio_file="dub_line.wav", prefix="lipsync/dub")
    return g.to_json()


TWO_PEOPLE = """## Dubbing two people
Two passes over the same clip, one per person, each with its own line and its own face:
1. **Left person**: its line (`line_left.wav`, the whole clip long, silent while the other one speaks);
   MaskLowerFace follows face *index 0* (leftmost).
2. **Right person**: the first pass's frames, its line (`line_right.wav`); face *index 1*.
Each MaskLowerFace follows its person through the clip even when they move (or use face *point*, or
*speaking* with the clip's own sound). Frames where a person is not in view pass through unchanged.
The saved video carries `dialogue_mix.wav`, both lines mixed. Each pass's SyncScore checks its own line."""


def wf_two_people(defs):
    g = ws.Graph(defs)
    g.add("MarkdownNote", (-420, 0), size=(380, 420), text=TWO_PEOPLE)
    v = g.add("LoadVideo", (-420, 460), size=(340, 520), file=VIDEO)
    c = g.add("GetVideoComponents", (-420, 1100))
    g.link(v, "VIDEO", c, "video")
    left = lipsync_chain(g, (c, "images"), (c, "fps"), 0, 0, audio_file="line_left.wav",
                         face={"face": "index", "face_index": 0}, save=False)
    right = lipsync_chain(g, (left["composite"], "images"), (c, "fps"), 0, 1900, audio_file="line_right.wav",
                          face={"face": "index", "face_index": 1}, save=False)
    mix = g.add("LipSyncLoadAudioDriver", (1640, 0), title="Both lines (for the saved video)",
                audio_file="dialogue_mix.wav")
    g.link(c, "images", mix, "images")
    g.link(c, "fps", mix, "fps")
    make = g.add("CreateVideo", (1640, 1900), fps=25.0)
    g.link(right["composite"], "images", make, "images")
    g.link(mix, "audio", make, "audio")
    g.link(c, "fps", make, "fps")
    save = g.add("SaveVideo", (2060, 1900), size=(420, 500), filename_prefix="lipsync/two_people")
    g.link(make, "VIDEO", save, "video")
    g.group("Both lines and save", (1620, -80, 880, 2600), "#b58b2a")
    return g.to_json()


MUSETALK = """## MuseTalk 1.5
LipSyncInference runs MuseTalk 1.5: it redraws the lower face at 256 px from the line (a GPU is
advised). Its files are not shipped: put them in ComfyUI's **models/lipsync/musetalk/** as MuseTalk's
download script lays them out: `musetalkV15/` (unet.pth, musetalk.json), `sd-vae/` (or sd-vae-ft-mse
in models/vae), `whisper/`. The weights' licence is yours to respect. *lip_frame*: the frame whose
whole face each new lower face is drawn from (-1: automatic)."""


def wf_musetalk(defs):
    from comfyui_lipsync.nodes._comfy import MUSETALK_ENTRY

    return wf_clip(defs, MUSETALK, "lipsync/musetalk", {"model": MUSETALK_ENTRY, "batch_size": 8})


LATENTSYNC = """## LatentSync 1.6
LipSyncInference runs LatentSync 1.6: a latent-diffusion model that redraws the lower face at 512 px
from the line (20 denoising steps per 16 frames; a GPU with 18 GB or more is advised, 1.5 at 256 px
needs less). Its files are not shipped: put `latentsync_unet.pt` and `whisper/tiny.pt` in ComfyUI's
**models/lipsync/latentsync/** (1.5's in latentsync/1.5/), and sd-vae-ft-mse as `sd-vae/` there or in
models/vae. The weights' licence is yours to respect. *steps* and *seed*: the denoising steps and the
starting noise. *feature_reuse* 3 computes the UNet's deep features every third step and reuses them
between (the reference's DeepCache option): faster, slightly different mouths; 0 (default) is off."""


def wf_latentsync(defs):
    from comfyui_lipsync.nodes._comfy import LATENTSYNC_ENTRIES

    entry = next(iter(LATENTSYNC_ENTRIES))
    return wf_clip(defs, LATENTSYNC, "lipsync/latentsync", {"model": entry, "steps": 20})


def build() -> dict[str, dict]:
    defs = ws.all_definitions()
    return {
        "01_lipsync_clip.json": wf_clip(defs),
        "02_runway_i2v_lipsync.json": wf_after_generator(
            defs, "RunwayImageToVideoNodeGen4",
            {"prompt": "The person looks into the camera and talks calmly, natural head motion, soft light.",
             "duration": 5, "ratio": "960:960", "seed": 0}, "start_frame", "lipsync/runway",
            "## Runway image-to-video, then lip sync\nRunway animates the portrait (needs a Comfy account "
            "for API nodes); the seven LipSync nodes then make the mouth say the line. MaskLowerFace's mask "
            "feeds Composite here, to show a custom MASK (any mask at the frames' size) limiting the paste; "
            "left unconnected, Composite blends inside its own lower-face region (drawn per crop) and no "
            "full-size mask is made.",
            mask=True),
        "03_pika_i2v_lipsync.json": wf_after_generator(
            defs, "PikaImageToVideoNode2_2",
            {"prompt_text": "The person looks into the camera and talks calmly, natural head motion.",
             "negative_prompt": "", "seed": 0, "resolution": "720p", "duration": 5}, "image", "lipsync/pika",
            "## Pika image-to-video, then lip sync\nPika animates the portrait (needs a Comfy account for "
            "API nodes); the seven LipSync nodes then make the mouth say the line."),
        "04_sync_check.json": wf_sync_check(defs),
        "05_dubbing_transcript.json": wf_dubbing(defs),
        "06_dubbing_two_people.json": wf_two_people(defs),
        "07_musetalk_lipsync.json": wf_musetalk(defs),
        "08_latentsync_lipsync.json": wf_latentsync(defs),
    }


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name, wf in build().items():
        text = json.dumps(wf, indent=2) + "\n"
        for folder in ("workflows",):
            path = ROOT / folder / name
            if check:
                if not path.is_file() or path.read_text() != text:
                    stale.append(str(path.relative_to(ROOT)))
            else:
                path.parent.mkdir(exist_ok=True)
                path.write_text(text)
    if stale:
        print("out of date (run tools/make_workflows.py):", *stale, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
