"""A small stand-in for ComfyUI's HTTP server, enough for the real frontend to boot in a browser.

It serves the static frontend from the ``comfyui-frontend-package`` wheel (the same files a real
ComfyUI serves), ``/api/object_info`` from the recording of a real server merged with our node
definitions built from ``NODE_CLASS_MAPPINGS``, our ``web/`` folder at
``/extensions/ComfyUI-LipSync/`` (as ComfyUI serves ``WEB_DIRECTORY``) and our
``workflows/`` as templates. Everything else answers the way ComfyUI 0.3.64 answers
an empty, fresh install. No websocket: tests dispatch the ``executed`` event in the page.

Only 127.0.0.1 is bound; requests it does not know are recorded in ``server.missing``.
"""

from __future__ import annotations

import json
import mimetypes
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDER = "ComfyUI-LipSync"
COMFYUI_VERSION = "0.3.64"


def frontend_dir() -> Path:
    import comfyui_frontend_package

    return Path(comfyui_frontend_package.__file__).parent / "static"


def frontend_version() -> str:
    from importlib.metadata import version

    return version("comfyui-frontend-package")


class Stub:
    """Start with ``with Stub(object_info) as s: s.url``."""

    def __init__(self, object_info: dict, static: Path | None = None):
        self.object_info = object_info
        self.static = static or frontend_dir()
        self.missing: list[str] = []
        self.uploads: dict[str, bytes] = {}
        self.settings = {"Comfy.TutorialCompleted": True, "Comfy.InstalledVersion": frontend_version(),
                         "Comfy.Notification.ShowVersionUpdates": False}
        self._server = None

    # --- routes ---
    def extensions(self) -> list[str]:
        core = sorted("/" + p.relative_to(self.static).as_posix() for p in (self.static / "extensions").rglob("*.js"))
        ours = sorted(f"/extensions/{FOLDER}/" + p.relative_to(ROOT / "web").as_posix() for p in (ROOT / "web").rglob("*.js"))
        return core + ours

    def templates(self) -> dict:
        names = sorted(p.stem for p in (ROOT / "workflows").glob("*.json"))
        return {FOLDER: names} if names else {}

    def _store_upload(self, body: bytes, content_type: str) -> str | None:
        """Keep the file of a multipart form's ``image`` field in ``self.uploads``; its name or None."""
        from email.parser import BytesParser
        from email.policy import HTTP

        msg = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
        for part in msg.iter_parts():
            if part.get_param("name", header="content-disposition") == "image" and part.get_filename():
                self.uploads[part.get_filename()] = part.get_payload(decode=True)
                return part.get_filename()
        return None

    def answer(self, method: str, path: str, query: dict, body: bytes, content_type: str = ""):
        """(status, content type, bytes) for one request."""
        j = lambda obj, status=200: (status, "application/json", json.dumps(obj).encode())
        if method == "POST":
            if path.startswith("/api/settings/"):
                key = urllib.parse.unquote(path[len("/api/settings/"):])
                try:
                    self.settings[key] = json.loads(body or b"null")
                except ValueError:
                    pass
                return j({})
            if path in ("/api/upload/image", "/upload/image"):
                name = self._store_upload(body, content_type)
                if name is None:
                    return j({"error": "no file in the form"}, 400)
                return j({"name": name, "subfolder": "", "type": "input"})
            if path == "/api/settings":
                self.settings.update(json.loads(body or b"{}"))
                return j({})
            self.missing.append(f"POST {path}")
            return j({"error": "not in the stub"}, 404)
        api = {
            "/api/system_stats": lambda: {"system": {"os": "posix", "ram_total": 0, "ram_free": 0,
                                                      "comfyui_version": COMFYUI_VERSION,
                                                      "required_frontend_version": frontend_version(),
                                                      "python_version": "3", "pytorch_version": "cpu",
                                                      "embedded_python": False, "argv": ["main.py", "--cpu"]},
                                           "devices": [{"name": "cpu", "type": "cpu", "index": None,
                                                        "vram_total": 0, "vram_free": 0,
                                                        "torch_vram_total": 0, "torch_vram_free": 0}]},
            "/api/users": lambda: {"storage": "server", "migrated": True},
            "/api/settings": lambda: self.settings,
            "/api/i18n": lambda: {},
            "/api/extensions": self.extensions,
            "/api/object_info": lambda: self.object_info,
            "/api/workflow_templates": self.templates,
            "/api/queue": lambda: {"queue_running": [], "queue_pending": []},
            "/api/history": lambda: {},
            "/api/prompt": lambda: {"exec_info": {"queue_remaining": 0}},
            "/api/embeddings": lambda: [],
            "/api/features": lambda: {"supports_preview_metadata": True, "max_upload_size": 104857600},
            "/api/experiment/models": lambda: [],
            "/templates/index.json": lambda: [],
        }
        if path in api:
            return j(api[path]())
        if path.startswith("/api/userdata"):
            return 404, "text/plain", b"Not found"  # a fresh install has no user files
        prefix = f"/api/workflow_templates/{FOLDER}/"
        if path.startswith(prefix):
            return self._file(ROOT / "workflows", path[len(prefix):])
        prefix = f"/extensions/{FOLDER}/"
        if path.startswith(prefix):
            return self._file(ROOT / "web", path[len(prefix):])
        if path == "/":
            return self._file(self.static, "index.html")
        status = self._file(self.static, path.lstrip("/"))
        if status[0] == 404:
            self.missing.append(f"GET {path}")
        return status

    @staticmethod
    def _file(root: Path, rel: str):
        rel = urllib.parse.unquote(rel)
        p = (root / rel).resolve()
        if not p.is_relative_to(root.resolve()) or not p.is_file():
            return 404, "text/plain", b"Not found"
        ctype = mimetypes.guess_type(p.name)[0] or "application/octet-stream"
        if p.suffix in (".js", ".mjs"):
            ctype = "text/javascript"
        return 200, ctype, p.read_bytes()

    # --- server ---
    def __enter__(self):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self, method):
                u = urllib.parse.urlsplit(self.path)
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                status, ctype, data = stub.answer(method, u.path, urllib.parse.parse_qs(u.query), body,
                                                  self.headers.get("Content-Type", ""))
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._serve("GET")

            def do_POST(self):
                self._serve("POST")

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # the browser drops connections when the page closes; nothing to report

        self._server = Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()
