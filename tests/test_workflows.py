"""Shipped workflows load: every node type, input, widget value and link matches the definitions.

Our nodes' definitions are built from NODE_CLASS_MAPPINGS the way ComfyUI's server builds
/object_info; core nodes come from the recording of a real ComfyUI 0.3.64 server in
tests/data/comfyui/object_info.json. The validator itself is tested first on a small
hand-made workflow of core nodes, with one broken copy per rule.
"""

import copy
import json
from pathlib import Path

import pytest

import workflow_schema as ws

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / "workflows").glob("*.json"))
OUR_NODES = ["LipSyncLoadAudioDriver", "LipSyncExtractPhonemes", "LipSyncMapVisemes", "LipSyncMaskLowerFace",
             "LipSyncInference", "LipSyncComposite", "LipSyncSyncScore"]


@pytest.fixture(scope="module")
def core():
    if not ws.OBJECT_INFO.is_file():
        pytest.fail(f"recorded core node definitions missing: {ws.OBJECT_INFO}")
    return ws.core_definitions()


@pytest.fixture(scope="module")
def defs(core):
    return ws.all_definitions(core)


def core_clip(core):
    """LoadVideo -> GetVideoComponents -> CreateVideo (with the clip's audio) -> SaveVideo."""
    g = ws.Graph(core)
    v = g.add("LoadVideo", (0, 0), file="clip.mp4")
    c = g.add("GetVideoComponents", (350, 0))
    m = g.add("CreateVideo", (700, 0), fps=25.0)
    s = g.add("SaveVideo", (1050, 0), filename_prefix="video/test")
    g.link(v, "VIDEO", c, "video")
    g.link(c, "images", m, "images")
    g.link(c, "audio", m, "audio")
    g.link(c, "fps", m, "fps")  # a widget turned into a socket
    g.link(m, "VIDEO", s, "video")
    return g.to_json()


# --- the validator on core nodes -----------------------------------------------------------------

def test_core_workflow_is_valid_and_shaped_like_a_saved_one(core):
    wf = core_clip(core)
    assert ws.validate(wf, core) == []
    save = next(n for n in wf["nodes"] if n["type"] == "SaveVideo")
    assert save["widgets_values"] == ["video/test", "auto", "auto"]  # as in ComfyUI's own templates
    load = next(n for n in wf["nodes"] if n["type"] == "LoadVideo")
    assert load["widgets_values"] == ["clip.mp4", "image"]  # file + upload button value
    create = next(n for n in wf["nodes"] if n["type"] == "CreateVideo")
    assert [i["name"] for i in create["inputs"]] == ["images", "audio", "fps"]
    assert create["inputs"][2]["widget"] == {"name": "fps"}
    assert wf["links"][2] == [3, 2, 1, 3, 1, "AUDIO"]


def test_control_after_generate_slot(core):
    slots = ws.widget_slots(core["KSampler"])
    assert [s[:2] for s in slots[:3]] == [("seed", "value"), ("seed", "control"), ("steps", "value")]
    assert len(slots) == 7  # seed, control, steps, cfg, sampler, scheduler, denoise


def _broken(core, mutate):
    wf = core_clip(core)
    mutate(wf)
    return ws.validate(wf, core)


def _node(wf, type_):
    return next(n for n in wf["nodes"] if n["type"] == type_)


@pytest.mark.parametrize("mutate,expect", [
    (lambda wf: _node(wf, "CreateVideo").update(type="CreateVide0"), "unknown node type"),
    (lambda wf: _node(wf, "CreateVideo")["inputs"][0].update(name="frames"), "'frames' is not an input"),
    (lambda wf: _node(wf, "CreateVideo").update(widgets_values=[500.0]), "outside [1.0, 120.0]"),
    (lambda wf: _node(wf, "CreateVideo").update(widgets_values=["25"]), "expected a number"),
    (lambda wf: _node(wf, "CreateVideo").update(widgets_values=[25.0, 1]), "2 widget values, definition needs 1"),
    (lambda wf: _node(wf, "SaveVideo").update(widgets_values=["v", "avi", "auto"]), "'avi': not one of"),
    (lambda wf: _node(wf, "LoadVideo").update(widgets_values=[3, "image"]), "expected a media file name"),
    (lambda wf: wf["links"][1].__setitem__(5, "MASK"), "output 0 is IMAGE, not MASK"),
    (lambda wf: wf["links"][1].__setitem__(2, 2), "output 2 is FLOAT, not IMAGE"),
    (lambda wf: _node(wf, "SaveVideo")["inputs"][0].update(link=None), "required input 'video' (VIDEO) is not connected"),
    (lambda wf: _node(wf, "GetVideoComponents")["outputs"][0].update(type="MASK"), "output 0 type 'MASK'"),
    (lambda wf: wf.update(last_link_id=2), "last_link_id 2 below"),
    (lambda wf: wf["links"].append([9, 5, 0, 1, 0, "VIDEO"]), "node 5 does not exist"),
])
def test_validator_catches(core, mutate, expect):
    errors = _broken(core, mutate)
    assert any(expect in e for e in errors), errors


def test_validator_catches_a_cycle(core):
    g = ws.Graph(core)
    a = g.add("CreateVideo", (0, 0))
    b = g.add("GetVideoComponents", (300, 0))
    g.link(a, "VIDEO", b, "video")
    g.link(b, "images", a, "images")
    assert "workflow: the links form a cycle" in ws.validate(g.to_json(), core)


def test_api_prompt_of_core_workflow(core):
    prompt = ws.to_api_prompt(core_clip(core), core)
    assert prompt["3"] == {"class_type": "CreateVideo", "_meta": {"title": "Create Video"},
                           "inputs": {"fps": ["2", 2], "images": ["2", 0], "audio": ["2", 1]}}
    assert prompt["1"]["inputs"] == {"file": "clip.mp4"}  # the upload button value is not sent
    assert prompt["4"]["inputs"] == {"filename_prefix": "video/test", "format": "auto", "codec": "auto", "video": ["3", 0]}


def test_node_info_mirrors_comfyui_server():
    class Fake:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"x": ("IMAGE", {"tooltip": "t"}), "k": (["a", "b"], {"default": "b"})},
                    "optional": {"n": ("INT", {"default": 3, "min": 0, "max": 9})}}
        RETURN_TYPES = ("IMAGE", "STRING")
        RETURN_NAMES = ("image", "report")
        CATEGORY = "lipsync/test"
        DESCRIPTION = "d"

    info = ws.node_info("LipSyncFake", Fake, "Fake")
    assert info["input_order"] == {"required": ["x", "k"], "optional": ["n"]}
    assert info["output"] == ["IMAGE", "STRING"] and info["output_name"] == ["image", "report"]
    assert info["output_is_list"] == [False, False] and info["output_node"] is False
    assert [s[:2] for s in ws.widget_slots(info)] == [("k", "value"), ("n", "value")]


# --- the shipped workflows -----------------------------------------------------------------------

def test_our_nodes_have_definitions(defs):
    missing = [n for n in OUR_NODES if n not in defs]
    assert not missing, f"node classes not registered: {missing}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_shipped_workflow_valid(path, defs):
    wf = json.loads(path.read_text())
    errors = ws.validate(wf, defs)
    assert errors == [], "\n".join(errors)
    assert ws.to_api_prompt(wf, defs)  # converts to an API prompt


def test_the_workflows_shipped_where_comfyui_lists_templates():
    """ComfyUI serves a custom node's ``workflows/`` folder as templates (as it does
    ``example_workflows/``; app/custom_node_manager.py of 0.3.64): one folder, no duplicates."""
    assert len(WORKFLOWS) == 8, [p.name for p in WORKFLOWS]
    assert not (ROOT / "example_workflows").exists(), "a second template folder lists every workflow twice"
    assert all(p.parent.name == "workflows" for p in WORKFLOWS)


def _load(stem):
    return json.loads((ROOT / "workflows" / f"{stem}.json").read_text())


def _links_into(wf, type_, input_name):
    """(source node type, source output name) of what feeds ``input_name`` of the first ``type_`` node."""
    node = next(n for n in wf["nodes"] if n["type"] == type_)
    inp = next(i for i in node["inputs"] if i["name"] == input_name)
    if inp["link"] is None:
        return None
    lk = next(lk for lk in wf["links"] if lk[0] == inp["link"])
    src = next(n for n in wf["nodes"] if n["id"] == lk[1])
    return src["type"], src["outputs"][lk[2]]["name"]


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_every_node_runs(path, defs):
    """ComfyUI only runs what an output node needs: no node may be left idle (SyncScore's report
    goes to PreviewAny so the score runs)."""
    assert ws.idle_nodes(json.loads(path.read_text()), defs) == []


def test_clip_workflow_is_the_full_chain():
    wf = _load("01_lipsync_clip")
    types = [n["type"] for n in wf["nodes"]]
    for t in OUR_NODES + ["LoadVideo", "GetVideoComponents", "CreateVideo", "SaveVideo"]:
        assert types.count(t) == 1, t
    assert _links_into(wf, "CreateVideo", "audio") == ("LipSyncLoadAudioDriver", "audio")  # the driver's sound
    assert _links_into(wf, "CreateVideo", "images") == ("LipSyncComposite", "images")
    assert _links_into(wf, "CreateVideo", "fps") == ("GetVideoComponents", "fps")
    assert _links_into(wf, "LipSyncLoadAudioDriver", "images") == ("GetVideoComponents", "images")
    assert _links_into(wf, "LipSyncSyncScore", "images") == ("LipSyncComposite", "images")
    assert _links_into(wf, "SaveVideo", "video") == ("CreateVideo", "VIDEO")


@pytest.mark.parametrize("stem,generator", [("02_runway_i2v_lipsync", "RunwayImageToVideoNodeGen4"),
                                            ("03_pika_i2v_lipsync", "PikaImageToVideoNode2_2")])
def test_generator_workflows_feed_the_chain(stem, generator):
    wf = _load(stem)
    assert _links_into(wf, "GetVideoComponents", "video") == (generator, "VIDEO")
    types = [n["type"] for n in wf["nodes"]]
    assert all(t in types for t in OUR_NODES)
    assert _links_into(wf, "CreateVideo", "audio") == ("LipSyncLoadAudioDriver", "audio")


def test_sync_check_scores_the_clip_against_its_own_sound():
    wf = _load("04_sync_check")
    assert _links_into(wf, "LipSyncSyncScore", "images") == ("GetVideoComponents", "images")
    assert _links_into(wf, "LipSyncSyncScore", "audio") == ("GetVideoComponents", "audio")
    assert _links_into(wf, "PreviewAny", "source") == ("LipSyncSyncScore", "report")


def test_dubbing_workflow_aligns_the_typed_line():
    wf = _load("05_dubbing_transcript")
    ph = next(n for n in wf["nodes"] if n["type"] == "LipSyncExtractPhonemes")
    backend, transcript = ph["widgets_values"][:2]
    assert backend == "align" and len(transcript.split()) >= 3
    drv = next(n for n in wf["nodes"] if n["type"] == "LipSyncLoadAudioDriver")
    assert drv["widgets_values"][0] == "dub_line.wav"


def test_two_person_dubbing_is_two_passes_each_with_its_line_and_face():
    wf = _load("06_dubbing_two_people")
    faces = [n for n in wf["nodes"] if n["type"] == "LipSyncMaskLowerFace"]
    assert [n["widgets_values"][1:3] for n in faces] == [["index", 0], ["index", 1]]
    drivers = [n for n in wf["nodes"] if n["type"] == "LipSyncLoadAudioDriver"]
    assert sorted(n["widgets_values"][0] for n in drivers) == ["dialogue_mix.wav", "line_left.wav", "line_right.wav"]
    by_id = {n["id"]: n for n in wf["nodes"]}
    links = {lk[0]: lk for lk in wf["links"]}

    def source(node, name):
        inp = next(i for i in node["inputs"] if i["name"] == name)
        lk = links[inp["link"]]
        return by_id[lk[1]], by_id[lk[1]]["outputs"][lk[2]]["name"]

    # each pass's generator takes its own face track and its own line
    gens = [n for n in wf["nodes"] if n["type"] == "LipSyncInference"]
    assert len(gens) == 2
    lines = {source(g, "face_track")[0]["id"]: source(g, "driver")[0]["widgets_values"][0] for g in gens}
    assert sorted((by_id[f]["widgets_values"][2], line) for f, line in lines.items()) == [
        (0, "line_left.wav"), (1, "line_right.wav")]
    # the second pass works on the first pass's output, and the saved video on the second's
    comps = [n for n in wf["nodes"] if n["type"] == "LipSyncComposite"]
    second = next(c for c in comps if source(c, "images")[0]["type"] == "LipSyncComposite")
    assert source(second, "images")[0] is not second
    assert _links_into(wf, "CreateVideo", "images") == ("LipSyncComposite", "images")
    make = next(n for n in wf["nodes"] if n["type"] == "CreateVideo")
    assert source(make, "images")[0] is second
    assert source(make, "audio")[0]["widgets_values"][0] == "dialogue_mix.wav"


def test_a_mask_lower_face_saved_before_the_new_inputs_still_loads(defs):
    """Workflows saved before MaskLowerFace had 'video', 'driver' and 'point' (7 widget values, IMAGE
    required) validate and convert: the new inputs are optional, the new widget comes last."""
    wf = _load("01_lipsync_clip")
    node = next(n for n in wf["nodes"] if n["type"] == "LipSyncMaskLowerFace")
    node["inputs"] = [i for i in node["inputs"] if i["name"] not in ("video", "driver", "point")]
    node["widgets_values"] = node["widgets_values"][:7]
    assert ws.validate(wf, defs) == []
    prompt = ws.to_api_prompt(wf, defs)
    api = prompt[str(node["id"])]["inputs"]
    assert api["face"] == "largest" and "point" not in api and isinstance(api["images"], list)
