"""The pack as ComfyUI sees it: registration, the classic node API, tooltips, import hygiene."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import comfyui_lipsync as pack
from comfyui_lipsync.lipsync_models import errors

ROOT = Path(__file__).resolve().parents[1]

DESIGN = {
    "LipSyncLoadAudioDriver": "LoadAudioDriver",
    "LipSyncExtractPhonemes": "ExtractPhonemes",
    "LipSyncMapVisemes": "MapVisemes",
    "LipSyncMaskLowerFace": "MaskLowerFace",
    "LipSyncInference": "LipSyncInference",
    "LipSyncComposite": "Composite",
    "LipSyncSyncScore": "SyncScore",
}

COMFY_TYPES = {"IMAGE", "MASK", "AUDIO", "VIDEO", "INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


def test_seven_nodes_registered_with_design_names():
    assert pack.NODE_DISPLAY_NAME_MAPPINGS == DESIGN
    assert set(pack.NODE_CLASS_MAPPINGS) == set(DESIGN)
    assert pack.WEB_DIRECTORY == "./web"
    assert (ROOT / "web").is_dir()


@pytest.mark.parametrize("node_id", sorted(DESIGN))
def test_classic_node_api(node_id):
    cls = pack.NODE_CLASS_MAPPINGS[node_id]
    spec = cls.INPUT_TYPES()
    assert set(spec) <= {"required", "optional", "hidden"}
    assert cls.CATEGORY.startswith("lipsync/")
    assert callable(getattr(cls, cls.FUNCTION))
    assert isinstance(cls.RETURN_TYPES, tuple) and cls.RETURN_TYPES
    if hasattr(cls, "RETURN_NAMES"):
        assert len(cls.RETURN_NAMES) == len(cls.RETURN_TYPES)
    for group in ("required", "optional"):
        for name, entry in spec.get(group, {}).items():
            kind = entry[0]
            opts = entry[1] if len(entry) > 1 else {}
            assert opts.get("tooltip"), f"{node_id}.{name} has no tooltip"
            assert isinstance(kind, list) or kind in COMFY_TYPES or kind.startswith("LIPSYNC_"), (node_id, name, kind)
            if kind in ("INT", "FLOAT"):
                assert "default" in opts, f"{node_id}.{name} has no default"
                lo, hi = opts.get("min", float("-inf")), opts.get("max", float("inf"))
                assert lo <= opts["default"] <= hi, (node_id, name)
    for t in cls.RETURN_TYPES:
        assert t in COMFY_TYPES or t.startswith("LIPSYNC_"), (node_id, t)


def test_pack_imports_only_relatively():
    """ComfyUI has a top-level module named `nodes`: the pack must never import it absolutely."""
    own = {"nodes", "lipsync_models"}
    for path in list(ROOT.glob("*.py")) + list(ROOT.glob("nodes/*.py")) + list(ROOT.glob("lipsync_models/**/*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                assert node.module.split(".")[0] not in own, f"{path}: absolute import of {node.module}"
            if isinstance(node, ast.Import):
                for alias in node.names:
                    assert alias.name.split(".")[0] not in own, f"{path}: absolute import of {alias.name}"


def test_library_never_imports_comfyui():
    for path in ROOT.glob("lipsync_models/**/*.py"):
        text = path.read_text()
        for mod in ("folder_paths", "comfy.", "import comfy", "server"):
            assert f"import {mod}" not in text and f"from {mod}" not in text, f"{path} touches ComfyUI ({mod})"


def test_import_is_light_and_works_from_a_folder_named_like_a_clone(tmp_path):
    """Loaded from custom_nodes/ComfyUI-LipSync the way ComfyUI loads it, with no pocketsphinx,
    mediapipe, scikit-image or scipy imported at import time."""
    link = tmp_path / "ComfyUI-LipSync"
    link.symlink_to(ROOT)
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('ComfyUI-LipSync', r'{link}/__init__.py',"
        f" submodule_search_locations=[r'{link}'])\n"
        "m = importlib.util.module_from_spec(spec); sys.modules[spec.name] = m; spec.loader.exec_module(m)\n"
        "assert len(m.NODE_CLASS_MAPPINGS) == 7, m.NODE_CLASS_MAPPINGS\n"
        "heavy = [h for h in ('pocketsphinx', 'mediapipe', 'skimage', 'scipy') if h in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)


def test_library_errors_are_caught_as_lipsync_errors(tmp_path):
    """The runner and the nodes catch one family: what the library raises on a user's bad input
    (a missing file, a checkpoint that is not there, frames and crops that do not pair, a value out
    of range) is a LipSyncError of the kind that names the problem, never a bare ValueError or
    RuntimeError from deep inside."""
    import torch

    from comfyui_lipsync.lipsync_models import composite, generator, media, weights

    cases = [
        (errors.MediaError, lambda: media.read_audio(str(tmp_path / "none.wav"), "t")),
        (errors.CheckpointError, lambda: weights.read_tensors(str(tmp_path / "none.safetensors"))),
        (errors.InputError, lambda: composite.crop_faces(torch.zeros(2, 8, 8, 3), "not a track")),
        (errors.InputError, lambda: generator.generate(torch.zeros(1, 3, 32, 32), torch.zeros(1, 8, 2),
                                                       torch.zeros(1, 5), strength=3.0)),
    ]
    for kind, call in cases:
        with pytest.raises(errors.LipSyncError) as info:
            call()
        assert isinstance(info.value, kind), (kind, type(info.value), info.value)


FORBIDDEN_TOPS = {"nodes", "lipsync_runner", "comfyui_lipsync", "comfy", "comfy_extras", "folder_paths", "server",
                  "execution"}
"""What the library must never import: the pack's nodes, the runner above them, the pack itself, or
ComfyUI (library <- nodes <- runner)."""


def _upward_imports(path: Path) -> list[str]:
    """The imports of one library file that reach outside the library: absolute imports of the
    pack's nodes, runner or ComfyUI, relative imports that climb above ``lipsync_models``, and
    dynamic imports (importlib, ``__import__``) of anything but a fixed name outside those."""
    package = list(path.relative_to(ROOT).with_suffix("").parts[:-1])  # e.g. [lipsync_models, backends]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if node.level > len(package):
                    found.append(f"line {node.lineno}: relative import above the library")
                    continue
                base = package[:len(package) - node.level + 1]
                names = [".".join(base + ([node.module] if node.module else []))]
            else:
                names = [node.module]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "__import__", "spec_from_file_location"):
            arg = node.args[0] if node.args else None
            if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
                found.append(f"line {node.lineno}: dynamic import of a computed name")
                continue
            names = [arg.value]
        found += [f"line {node.lineno}: {n}" for n in names if n.split(".")[0] in FORBIDDEN_TOPS]
    return found


def test_library_imports_nothing_above_it():
    files = sorted(ROOT.glob("lipsync_models/**/*.py"))
    assert len(files) > 10
    bad = {str(f.relative_to(ROOT)): hits for f in files if (hits := _upward_imports(f))}
    assert not bad, f"the library imports the pack, its nodes, the runner or ComfyUI: {bad}"


def test_nodes_never_import_the_runner():
    """The runner sits above the nodes: no node module imports it (it is not even loaded when
    ComfyUI loads the pack)."""
    for path in sorted(ROOT.glob("nodes/*.py")) + [ROOT / "__init__.py"]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any("lipsync_runner" in n for n in names), f"{path.name} line {node.lineno} imports the runner"


@pytest.mark.parametrize("source, hit", [
    ("from ..nodes import _comfy", "relative import above the library"),
    ("import lipsync_runner.pack", "lipsync_runner.pack"),
    ("from nodes._comfy import Progress", "nodes._comfy"),
    ("import importlib\nm = importlib.import_module(f'{p}.nodes._comfy')", "dynamic import"),
    ("from comfyui_lipsync.lipsync_models import audio", "comfyui_lipsync.lipsync_models"),
])
def test_the_import_walk_catches_upward_imports(tmp_path, monkeypatch, source, hit):
    """The walk above finds each kind of upward import (it would pass on anything otherwise)."""
    lib = tmp_path / "lipsync_models"
    lib.mkdir()
    (lib / "bad.py").write_text(source + "\n")
    (lib / "good.py").write_text("import torch\nfrom . import errors\nfrom .backends import syncnet\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert any(hit in h for h in _upward_imports(lib / "bad.py")), _upward_imports(lib / "bad.py")
    assert _upward_imports(lib / "good.py") == []


def test_requirements_never_list_torch():
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        name = line.split("#")[0].strip().lower()
        assert not name.startswith(("torch", "torchvision", "torchaudio")), line


def test_no_print_in_library_or_nodes():
    for path in list(ROOT.glob("nodes/*.py")) + list(ROOT.glob("lipsync_models/**/*.py")):
        if path.name == "convert.py":
            continue  # a command-line entry point talks to the terminal
        tree = ast.parse(path.read_text(), str(path))
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "print"]
        assert not calls, f"{path} uses print; use logging"
