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


def test_error_family():
    for cls in (errors.InputError, errors.PathError, errors.MediaError, errors.SilentAudioError,
                errors.LengthMismatchError, errors.NoFaceError, errors.CheckpointError, errors.DependencyError):
        assert issubclass(cls, errors.LipSyncError)


def test_requirements_never_list_torch():
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        name = line.split("#")[0].strip().lower()
        assert not name.startswith(("torch", "torchvision", "torchaudio")), line


def test_no_print_in_library_or_nodes():
    for path in list(ROOT.glob("nodes/*.py")) + list(ROOT.glob("lipsync_models/**/*.py")):
        if path.name in ("cli.py", "__main__.py", "convert.py"):
            continue  # command-line entry points talk to the terminal
        tree = ast.parse(path.read_text(), str(path))
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "print"]
        assert not calls, f"{path} uses print; use logging"
