"""Check UI-format ComfyUI workflows against node definitions, and turn them into API prompts.

Node definitions use the ``/object_info`` format of a ComfyUI server: ours are built from the
pack's ``NODE_CLASS_MAPPINGS`` exactly as ComfyUI's ``server.py`` builds them (``node_info``),
core ones come from the recording ``tests/data/comfyui/object_info.json`` (or a live server).

A UI workflow (what ComfyUI saves and what artists drag in) is::

    {"last_node_id", "last_link_id", "nodes": [{"id", "type", "pos", "size", "inputs": [{"name",
     "type", "link", "widget"?}], "outputs": [{"name", "type", "links"}], "widgets_values": [...]}],
     "links": [[id, from_node, from_slot, to_node, to_slot, type], ...], "version": 0.4}

``widgets_values`` holds one value per widget input in definition order, where the frontend
adds a ``control_after_generate`` value after seed-like INTs and an upload button value after
image/video upload combos.

Usage from the command line (prints the API prompt to POST to ``/prompt``)::

    python tests/workflow_schema.py workflows/lipsync_basic.json [--object-info URL_OR_FILE]
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OBJECT_INFO = ROOT / "tests" / "data" / "comfyui" / "object_info.json"

FRONTEND_ONLY = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
"""Node types that exist only in the browser (never in /object_info, never sent to /prompt)."""

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize"}
UPLOAD_FLAGS = ("image_upload", "video_upload", "animated_image_upload")
MEDIA_EXTS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".gif", ".png", ".jpg", ".jpeg",
              ".webp", ".wav", ".mp3", ".flac", ".ogg", ".m4a", ".aac")


# --- definitions ---------------------------------------------------------------------------

def node_info(name: str, cls, display_name: str | None = None) -> dict:
    """The ``/object_info`` entry ComfyUI's server.py makes for a classic (dict API) node class."""
    inputs = cls.INPUT_TYPES()
    info = {
        "input": inputs,
        "input_order": {key: list(value.keys()) for key, value in inputs.items()},
        "output": list(cls.RETURN_TYPES),
        "output_is_list": list(getattr(cls, "OUTPUT_IS_LIST", [False] * len(cls.RETURN_TYPES))),
        "output_name": list(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)),
        "name": name,
        "display_name": display_name or name,
        "description": getattr(cls, "DESCRIPTION", ""),
        "python_module": "custom_nodes.ComfyUI-LipSync",
        "category": getattr(cls, "CATEGORY", "sd"),
        "output_node": bool(getattr(cls, "OUTPUT_NODE", False)),
    }
    if hasattr(cls, "OUTPUT_TOOLTIPS"):
        info["output_tooltips"] = list(cls.OUTPUT_TOOLTIPS)
    return json.loads(json.dumps(info, default=_json_default))


def _json_default(o):
    raise TypeError(f"not JSON serialisable in INPUT_TYPES: {o!r}")


def our_definitions() -> dict:
    """``/object_info`` entries of the pack's nodes (the pack is loaded as ``comfyui_lipsync``)."""
    import comfyui_lipsync as pack

    return {name: node_info(name, cls, pack.NODE_DISPLAY_NAME_MAPPINGS.get(name))
            for name, cls in pack.NODE_CLASS_MAPPINGS.items()}


def core_definitions(source: str | Path | None = None) -> dict:
    """Core node definitions: the recorded object_info.json, another file, or a server URL."""
    source = str(source or OBJECT_INFO)
    if source.startswith(("http://", "https://")):
        import urllib.request

        with urllib.request.urlopen(source.rstrip("/") + "/object_info", timeout=60) as r:
            return json.loads(r.read())
    return json.loads(Path(source).read_text())


def all_definitions(core: dict | None = None) -> dict:
    defs = dict(core if core is not None else core_definitions())
    defs.update(our_definitions())
    return defs


# --- input specs ---------------------------------------------------------------------------

def _spec_type(spec) -> str:
    """Socket type of an input spec: a list of options (old combo) reads as COMBO."""
    t = spec[0]
    return "COMBO" if isinstance(t, (list, tuple)) else str(t)


def _spec_opts(spec) -> dict:
    return spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}


def combo_options(spec) -> list:
    if isinstance(spec[0], (list, tuple)):
        return list(spec[0])
    return list(_spec_opts(spec).get("options", []))


def inputs_of(info: dict) -> dict:
    """name -> (spec, section) for required and optional inputs (hidden ones are not in the UI)."""
    out = {}
    for section in ("required", "optional"):
        order = info.get("input_order", {}).get(section) or list(info.get("input", {}).get(section, {}))
        for name in order:
            out[name] = (info["input"][section][name], section)
    return out


def is_widget(spec) -> bool:
    return _spec_type(spec) in WIDGET_TYPES and not _spec_opts(spec).get("forceInput", False)


def widget_slots(info: dict) -> list[tuple[str, str, list | None]]:
    """The frontend's widgets_values layout: (input name, kind, spec) per value.

    kind is "value" for the input's own value, "control" for control_after_generate,
    "upload" for an upload button's value.
    """
    slots = []
    for name, (spec, _) in inputs_of(info).items():
        if not is_widget(spec):
            continue
        opts = _spec_opts(spec)
        slots.append((name, "value", spec))
        if _spec_type(spec) in ("INT", "COMBO") and (opts["control_after_generate"] if "control_after_generate" in opts
                                                       else name in ("seed", "noise_seed")):
            slots.append((name, "control", None))
        if any(opts.get(f) for f in UPLOAD_FLAGS):
            slots.append((name, "upload", None))
    return slots


def types_match(a: str, b: str) -> bool:
    """ComfyUI's rule: equal, either is "*", or a comma list on one side contains the other."""
    if a == "*" or b == "*":
        return True
    sa, sb = set(a.split(",")), set(b.split(","))
    return bool(sa & sb)


# --- validation ----------------------------------------------------------------------------

def check_value(node_label: str, name: str, kind: str, spec, value) -> list[str]:
    """Errors for one widget value (empty when it is fine)."""
    if kind == "control":
        return [] if value in CONTROL_VALUES else [f"{node_label}: {name} control_after_generate value {value!r} not in {sorted(CONTROL_VALUES)}"]
    if kind == "upload":
        return [] if value is None or isinstance(value, str) else [f"{node_label}: {name} upload value {value!r} is not a string"]
    t, opts = _spec_type(spec), _spec_opts(spec)
    where = f"{node_label}: widget {name!r} = {value!r}"
    if t == "INT":
        if isinstance(value, bool) or not isinstance(value, int):
            return [f"{where}: expected an integer"]
    elif t == "FLOAT":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return [f"{where}: expected a number"]
    elif t == "STRING":
        return [] if isinstance(value, str) else [f"{where}: expected a string"]
    elif t == "BOOLEAN":
        return [] if isinstance(value, bool) else [f"{where}: expected true/false"]
    elif t == "COMBO":
        if any(opts.get(f) for f in UPLOAD_FLAGS) or opts.get("audio_upload"):
            ok = isinstance(value, str) and value.lower().endswith(MEDIA_EXTS)
            return [] if ok else [f"{where}: expected a media file name"]
        choices = combo_options(spec)
        return [] if value in choices else [f"{where}: not one of {choices}"]
    if t in ("INT", "FLOAT"):
        lo, hi = opts.get("min"), opts.get("max")
        if lo is not None and value < lo or hi is not None and value > hi:
            return [f"{where}: outside [{lo}, {hi}]"]
    return []


def _index(nodes: list, links: list, workflow: dict, errors: list[str]) -> tuple[dict, dict]:
    """Nodes and links by id; duplicate ids and stale last ids go to ``errors``."""
    by_id, link_by_id = {}, {}
    for n in nodes:
        if n.get("id") in by_id:
            errors.append(f"node id {n.get('id')} used twice")
        by_id[n.get("id")] = n
    for link in links:
        if not isinstance(link, list) or len(link) != 6:
            errors.append(f"link {link!r}: expected [id, from_node, from_slot, to_node, to_slot, type]")
            continue
        if link[0] in link_by_id:
            errors.append(f"link id {link[0]} used twice")
        link_by_id[link[0]] = link
    if nodes and workflow.get("last_node_id", 0) < max(by_id, default=0):
        errors.append(f"last_node_id {workflow.get('last_node_id')} below the largest node id {max(by_id)}")
    if links and workflow.get("last_link_id", 0) < max(link_by_id, default=0):
        errors.append(f"last_link_id {workflow.get('last_link_id')} below the largest link id {max(link_by_id)}")
    return by_id, link_by_id


def _node_outputs(n: dict, info: dict, label: str, link_by_id: dict) -> list[str]:
    """Output names and types in the definition's order, and the links they list start here."""
    errors = []
    outs = n.get("outputs", [])
    if len(outs) != len(info["output"]):
        errors.append(f"{label}: {len(outs)} outputs, definition has {len(info['output'])}")
    for i, o in enumerate(outs[: len(info["output"])]):
        if o.get("type") != info["output"][i]:
            errors.append(f"{label}: output {i} type {o.get('type')!r}, definition says {info['output'][i]!r}")
        if o.get("name") != info["output_name"][i]:
            errors.append(f"{label}: output {i} name {o.get('name')!r}, definition says {info['output_name'][i]!r}")
        for lid in o.get("links") or []:
            lk = link_by_id.get(lid)
            if lk is None or lk[1] != n["id"] or lk[2] != i:
                errors.append(f"{label}: output {i} lists link {lid}, which does not start here")
    return errors


def _node_inputs(n: dict, info: dict, ins: dict, label: str, link_by_id: dict) -> list[str]:
    """Known input names, matching types, links that end here, required sockets connected."""
    errors = []
    listed = {}
    for slot, inp in enumerate(n.get("inputs", [])):
        name = inp.get("name")
        listed[name] = inp
        if name == "upload" and "widget" in inp and any(k == "upload" for _, k, _ in widget_slots(info)):
            if inp.get("link") is not None:
                errors.append(f"{label}: the upload button cannot be linked")
            continue  # the frontend's upload button of an image/video combo
        if name not in ins:
            errors.append(f"{label}: input {name!r} is not an input of {n['type']} ({sorted(ins)})")
            continue
        spec = ins[name][0]
        if not types_match(str(inp.get("type")), _spec_type(spec)):
            errors.append(f"{label}: input {name!r} type {inp.get('type')!r}, definition says {_spec_type(spec)!r}")
        if "widget" in inp and not is_widget(spec):
            errors.append(f"{label}: input {name!r} marked as a widget, but it is a socket")
        lid = inp.get("link")
        if lid is not None:
            lk = link_by_id.get(lid)
            if lk is None:
                errors.append(f"{label}: input {name!r} refers to missing link {lid}")
            elif lk[3] != n["id"] or lk[4] != slot:
                errors.append(f"{label}: input {name!r} link {lid} ends at node {lk[3]} slot {lk[4]}, not here (slot {slot})")
    for name, (spec, section) in ins.items():
        if section == "required" and not is_widget(spec):
            if name not in listed or listed[name].get("link") is None:
                errors.append(f"{label}: required input {name!r} ({_spec_type(spec)}) is not connected")
    return errors


def _node_widgets(n: dict, info: dict, ins: dict, label: str) -> list[str]:
    """One value per widget, each valid for its widget."""
    errors = []
    slots = widget_slots(info)
    values = n.get("widgets_values", [])
    if isinstance(values, dict):
        errors.append(f"{label}: widgets_values must be a list")
        values = []
    # a workflow saved before optional widgets were added lacks their trailing values: the frontend
    # keeps those widgets' defaults (LGraphNode.configure sets values by index)
    missing_ok = len(values) < len(slots) and all(ins[s[0]][1] == "optional" for s in slots[len(values):])
    if len(values) != len(slots) and not missing_ok:
        errors.append(f"{label}: {len(values)} widget values, definition needs {len(slots)} "
                      f"({[s[0] + ('' if s[1] == 'value' else '/' + s[1]) for s in slots]})")
    for (name, kind, spec), value in zip(slots, values):
        errors.extend(check_value(label, name, kind, spec, value))
    return errors


def _check_node(n: dict, defs: dict, link_by_id: dict) -> list[str]:
    label = f"node {n.get('id')} ({n.get('type')})"
    errors = [f"{label}: missing {key!r}" for key in ("id", "type", "pos", "size", "inputs", "outputs") if key not in n]
    if n.get("type") in FRONTEND_ONLY:
        return errors
    info = defs.get(n.get("type"))
    if info is None:
        return errors + [f"{label}: unknown node type"]
    ins = inputs_of(info)
    return (errors + _node_outputs(n, info, label, link_by_id) + _node_inputs(n, info, ins, label, link_by_id)
            + _node_widgets(n, info, ins, label))


def _check_link(lid, link: list, by_id: dict, defs: dict) -> list[str]:
    """Both ends exist and the type agrees with both sockets."""
    _, src, sslot, dst, dslot, ltype = link
    label = f"link {lid} ({src}:{sslot} -> {dst}:{dslot}, {ltype})"
    a, b = by_id.get(src), by_id.get(dst)
    if a is None or b is None:
        return [f"{label}: node {src if a is None else dst} does not exist"]
    errors = []
    if a.get("type") not in FRONTEND_ONLY and a.get("type") in defs:
        outs = defs[a["type"]]["output"]
        if sslot >= len(outs):
            errors.append(f"{label}: {a['type']} has no output {sslot}")
        elif not types_match(ltype, outs[sslot]):
            errors.append(f"{label}: {a['type']} output {sslot} is {outs[sslot]}, not {ltype}")
        if sslot < len(a.get("outputs", [])) and lid not in (a["outputs"][sslot].get("links") or []):
            errors.append(f"{label}: not listed in {a['type']} output {sslot} links")
    b_inputs = b.get("inputs", [])
    if dslot >= len(b_inputs):
        return errors + [f"{label}: {b.get('type')} has no input slot {dslot}"]
    inp = b_inputs[dslot]
    if inp.get("link") != lid:
        errors.append(f"{label}: {b.get('type')} input {inp.get('name')!r} holds link {inp.get('link')}")
    if not types_match(ltype, str(inp.get("type"))):
        errors.append(f"{label}: {b.get('type')} input {inp.get('name')!r} is {inp.get('type')}, not {ltype}")
    return errors


def _has_cycle(link_by_id: dict) -> bool:
    succ = {}
    for _, src, _, dst, _, _ in link_by_id.values():
        succ.setdefault(src, []).append(dst)
    state = {}

    def visit(v) -> bool:
        state[v] = 1
        for w in succ.get(v, []):
            if state.get(w) == 1 or (w not in state and visit(w)):
                return True
        state[v] = 2
        return False

    return any(v not in state and visit(v) for v in list(succ))


def validate(workflow: dict, defs: dict) -> list[str]:
    """All problems found in a UI-format workflow, as readable strings (empty list: valid)."""
    nodes = workflow.get("nodes")
    links = workflow.get("links")
    if not isinstance(nodes, list) or not isinstance(links, list):
        return ["workflow: needs 'nodes' and 'links' lists (UI format, as ComfyUI saves it)"]
    errors: list[str] = []
    by_id, link_by_id = _index(nodes, links, workflow, errors)
    for n in nodes:
        errors.extend(_check_node(n, defs, link_by_id))
    for lid, link in link_by_id.items():
        errors.extend(_check_link(lid, link, by_id, defs))
    if _has_cycle(link_by_id):
        errors.append("workflow: the links form a cycle")
    return errors


def idle_nodes(workflow: dict, defs: dict) -> list[str]:
    """Nodes ComfyUI would never run: not an output node and not upstream of one."""
    nodes = {n["id"]: n for n in workflow["nodes"] if n["type"] not in FRONTEND_ONLY}
    preds: dict = {}
    for _, src, _, dst, _, _ in workflow["links"]:
        preds.setdefault(dst, set()).add(src)
    live, todo = set(), [i for i, n in nodes.items() if defs.get(n["type"], {}).get("output_node")]
    while todo:
        i = todo.pop()
        if i not in live:
            live.add(i)
            todo.extend(preds.get(i, ()))
    return [f"node {i} ({n['type']})" for i, n in nodes.items() if i not in live]


# --- UI -> API prompt ------------------------------------------------------------------------

def to_api_prompt(workflow: dict, defs: dict) -> dict:
    """The API-format prompt (what the frontend's "Export (API)" writes and ``/prompt`` takes).

    {node id (str): {"class_type", "inputs": {name: value or [from id (str), from slot]}}};
    muted (mode 2) and bypassed (mode 4) nodes and frontend-only nodes are left out.
    """
    links = {lk[0]: lk for lk in workflow["links"]}
    prompt = {}
    for n in workflow["nodes"]:
        if n["type"] in FRONTEND_ONLY or n.get("mode", 0) in (2, 4):
            continue
        info = defs[n["type"]]
        inputs = {}
        for (name, kind, _), value in zip(widget_slots(info), n.get("widgets_values", [])):
            if kind == "value":
                inputs[name] = value
        for inp in n.get("inputs", []):
            if inp.get("link") is not None:
                lk = links[inp["link"]]
                inputs[inp["name"]] = [str(lk[1]), lk[2]]
        prompt[str(n["id"])] = {"class_type": n["type"], "inputs": inputs,
                                "_meta": {"title": n.get("title") or info.get("display_name", n["type"])}}
    return prompt


def main(argv: list[str]) -> int:
    import argparse

    p = argparse.ArgumentParser(description="Validate a UI workflow and print its API prompt.")
    p.add_argument("workflow")
    p.add_argument("--object-info", default=None, help="object_info.json file or a ComfyUI server URL")
    a = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from lipsync_runner.pack import load_pack

    load_pack()
    defs = all_definitions(core_definitions(a.object_info))
    wf = json.loads(Path(a.workflow).read_text())
    errs = validate(wf, defs)
    for e in errs:
        print("error:", e, file=sys.stderr)
    if errs:
        return 1
    print(json.dumps({"prompt": to_api_prompt(wf, defs)}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))


# --- building workflows ----------------------------------------------------------------------

class Graph:
    """Small builder for UI-format workflows with the frontend's layout of inputs and widgets.

    g = Graph(defs); v = g.add("LoadVideo", (0, 0), file="clip.mp4"); c = g.add("GetVideoComponents", (300, 0))
    g.link(v, "VIDEO", c, "video"); json.dumps(g.to_json())
    """

    def __init__(self, defs: dict):
        self.defs = defs
        self.nodes: list[dict] = []
        self.links: list[list] = []
        self.groups: list[dict] = []

    @staticmethod
    def default_value(spec):
        t, opts = _spec_type(spec), _spec_opts(spec)
        if "default" in opts:
            return opts["default"]
        if t == "INT":
            return int(opts.get("min", 0))
        if t == "FLOAT":
            return float(opts.get("min", 0.0))
        if t == "STRING":
            return ""
        if t == "BOOLEAN":
            return False
        choices = combo_options(spec)
        return choices[0] if choices else ""

    def add(self, type_: str, pos, size=None, title: str | None = None, **widgets) -> int:
        node_id = len(self.nodes) + 1
        node = {"id": node_id, "type": type_, "pos": [float(pos[0]), float(pos[1])], "size": None,
                "flags": {}, "order": len(self.nodes), "mode": 0, "inputs": [], "outputs": [],
                "properties": {"Node name for S&R": type_}, "widgets_values": []}
        if title:
            node["title"] = title
        if type_ in ("Note", "MarkdownNote"):
            node["widgets_values"] = [widgets.pop("text", "")]
            node["color"], node["bgcolor"] = "#432", "#653"
            node["size"] = list(size or (360, 160))
            self.nodes.append(node)
            return node_id
        info = self.defs[type_]
        # as the frontend (1.27) saves them: sockets in definition order, then one input per widget
        for name, (spec, section) in inputs_of(info).items():
            if not is_widget(spec):
                inp = {"localized_name": name, "name": name, "type": _spec_type(spec), "link": None}
                if section == "optional":
                    inp["shape"] = 7
                node["inputs"].append(inp)
        for name, kind, spec in widget_slots(info):
            if kind == "value":
                node["inputs"].append({"localized_name": name, "name": name, "type": _spec_type(spec),
                                       "widget": {"name": name}, "link": None})
            elif kind == "upload":
                node["inputs"].append({"localized_name": "choose file to upload", "name": "upload",
                                       "type": "IMAGEUPLOAD", "widget": {"name": "upload"}, "link": None})
        for i, t in enumerate(info["output"]):
            node["outputs"].append({"name": info["output_name"][i], "type": t, "links": []})
        unknown = set(widgets) - {s[0] for s in widget_slots(info)}
        if unknown:
            raise KeyError(f"{type_} has no widget {sorted(unknown)}")
        for name, kind, spec in widget_slots(info):
            if kind == "value":
                node["widgets_values"].append(widgets.get(name, self.default_value(spec)))
            elif kind == "control":
                node["widgets_values"].append("fixed")
            else:
                node["widgets_values"].append("image")
        rows = max(len(node["inputs"]), len(node["outputs"]))
        node["size"] = list(size or (340, 46 + 22 * rows + 26 * len(node["widgets_values"])))
        self.nodes.append(node)
        return node_id

    def _node(self, node_id: int) -> dict:
        return self.nodes[node_id - 1]

    def link(self, src: int, output, dst: int, input_name: str) -> int:
        a, b = self._node(src), self._node(dst)
        slot = output if isinstance(output, int) else next(
            (i for i, o in enumerate(a["outputs"]) if o["name"] == output), None)
        if slot is None:
            raise KeyError(f"{a['type']} has no output {output!r}")
        dslot = next((i for i, inp in enumerate(b["inputs"]) if inp["name"] == input_name), None)
        if dslot is None:  # a widget turned into an input socket
            spec = inputs_of(self.defs[b["type"]])[input_name][0]
            b["inputs"].append({"name": input_name, "type": _spec_type(spec), "widget": {"name": input_name}, "link": None})
            dslot = len(b["inputs"]) - 1
        link_id = len(self.links) + 1
        ltype = a["outputs"][slot]["type"]
        self.links.append([link_id, src, slot, dst, dslot, ltype])
        a["outputs"][slot]["links"].append(link_id)
        b["inputs"][dslot]["link"] = link_id
        return link_id

    def group(self, title: str, bounding, color: str = "#3f789e") -> None:
        self.groups.append({"id": len(self.groups) + 1, "title": title, "bounding": list(bounding),
                            "color": color, "font_size": 24, "flags": {}})

    def to_json(self) -> dict:
        import copy

        nodes = copy.deepcopy(self.nodes)
        for n in nodes:  # the frontend saves null for outputs without links
            for o in n["outputs"]:
                if not o["links"]:
                    o["links"] = None
        return {"id": "00000000-0000-4000-8000-000000000000", "revision": 0,
                "last_node_id": len(self.nodes), "last_link_id": len(self.links),
                "nodes": nodes, "links": copy.deepcopy(self.links), "groups": copy.deepcopy(self.groups),
                "config": {}, "extra": {"ds": {"scale": 0.75, "offset": [40, 40]}}, "version": 0.4}
