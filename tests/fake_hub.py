"""A stand-in for the Hugging Face Hub on 127.0.0.1, and what the download tests serve from it."""
from __future__ import annotations

import hashlib
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from annolid_depth.weights import CHECKPOINTS

COMMIT = "0123456789abcdef0123456789abcdef01234567"
VITS = CHECKPOINTS["video_depth_anything_vits"]
PAYLOAD = os.urandom(300_000)


class FakeHub:
    """The part of the Hugging Face Hub that downloads use: HEAD and GET on
    /{repo_id}/resolve/{revision}/{filename}, answered with the headers huggingface_hub checks."""

    def __init__(self):
        self.files: dict[str, bytes] = {}  # "repo_id/filename" -> content
        self.etags: dict[str, str] = {}  # "repo_id/filename" -> the SHA-256 published, when not the content's
        self.requests: list[tuple[str, str, str | None]] = []  # method, path, Authorization
        self.token: str | None = None  # when set, requests without it get 401
        self.cut_body_at: int | None = None  # first GET stops after this many bytes, later GETs get 503
        self.stall = threading.Event()  # while `hold` is set, GET stops half-way until `stall` is set
        self.hold = False
        self.stalled = threading.Event()
        self._gets = 0
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                hub.answer(self, body=False)

            def do_GET(self):
                hub.answer(self, body=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def serve(self, entry, content: bytes) -> None:
        self.files[f"{entry.repo_id}/{entry.filename}"] = content

    def body_requests(self) -> list[str]:
        return [path for method, path, _ in self.requests if method == "GET"]

    def answer(self, handler: BaseHTTPRequestHandler, body: bool) -> None:
        auth = handler.headers.get("Authorization")
        self.requests.append((handler.command, handler.path, auth))
        repo_and_file = handler.path.replace("/resolve/main/", "/", 1)
        content = self.files.get(repo_and_file.lstrip("/"))
        if self.token is not None and auth != f"Bearer {self.token}":
            return self._status(handler, 401)
        if content is None:
            return self._status(handler, 404, {"X-Error-Code": "EntryNotFound"})
        if body:
            self._gets += 1
            if self.cut_body_at is not None and self._gets > 1:
                return self._status(handler, 503)
        handler.send_response(200)
        handler.send_header("X-Repo-Commit", COMMIT)
        published = self.etags.get(repo_and_file.lstrip("/"), hashlib.sha256(content).hexdigest())
        handler.send_header("ETag", f'"{published}"')
        handler.send_header("Content-Length", str(len(content)))
        handler.send_header("Content-Type", "application/octet-stream")
        handler.end_headers()
        if not body:
            return
        if self.cut_body_at is not None:
            handler.wfile.write(content[: self.cut_body_at])
            handler.close_connection = True
            return
        if self.hold:
            half = len(content) // 2
            handler.wfile.write(content[:half])
            handler.wfile.flush()
            self.stalled.set()
            self.stall.wait(10)
            content = content[half:]
        handler.wfile.write(content)

    @staticmethod
    def _status(handler, code: int, headers: dict | None = None) -> None:
        handler.send_response(code)
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", "0")
        handler.end_headers()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []
