"""A stand-in Hugging Face Hub on 127.0.0.1: what huggingface_hub's real download code asks of the Hub.

It serves dataset repositories held in memory ({repo: {path: bytes}}) at one commit, the way the Hub
answers huggingface_hub (read from its source: ``HfApi.dataset_info``, ``HfApi.list_repo_tree`` and
``hf_hub_download``):

- ``GET /api/datasets/<repo>/revision/<rev>``: the repository's info with ``sha`` (the commit);
- ``GET /api/datasets/<repo>/tree/<rev>``: every file with ``size``, ``oid`` (the git blob id) and, for
  files stored in LFS (here: every file over 1 kB), ``lfs`` {``oid`` (sha256), ``size``, ``pointerSize``};
- ``HEAD``/``GET /datasets/<repo>/resolve/<rev>/<path>``: ``X-Repo-Commit``, ``ETag`` (the sha256 of an
  LFS file, else the blob id), ``Content-Length``, and HTTP Range on GET (206 with ``Content-Range``);
- ``GET /files/<name>``: a plain file with Range support, for the URL entries of a fetch table.

``drop_after[path] = n`` makes the next GET of ``path`` send n bytes of the body and close the
connection (once); ``serve_instead[path] = bytes`` serves other bytes than the listing describes (a copy
that does not verify). ``gated[repo] = token``: the repository answers 403 GatedRepo unless the request
carries ``Authorization: Bearer <token>``. ``requests`` records (method, path, Range header) of every request.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlparse

COMMIT = "0123456789abcdef0123456789abcdef01234567"
LFS_OVER = 1024


def blob_id(data: bytes) -> str:
    return hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()


class StandInHub:
    def __init__(self) -> None:
        self.repos: dict[str, dict[str, bytes]] = {}
        self.files: dict[str, bytes] = {}
        self.drop_after: dict[str, int] = {}
        self.serve_instead: dict[str, bytes] = {}
        self.requests: list[tuple[str, str, str | None]] = []
        self.gated: dict[str, str] = {}  # repo -> the token that may read it
        self.endpoint = ""

    # -- what the handler serves ---------------------------------------------------------------

    def tree(self, repo: str) -> list[dict[str, Any]]:
        out = []
        for path, data in sorted(self.repos[repo].items()):
            entry: dict[str, Any] = {"type": "file", "path": path, "size": len(data), "oid": blob_id(data)}
            if len(data) > LFS_OVER:
                entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
            out.append(entry)
        return out

    def etag(self, repo: str, path: str) -> str:
        data = self.repos[repo][path]
        return hashlib.sha256(data).hexdigest() if len(data) > LFS_OVER else blob_id(data)


def _handler(hub: StandInHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def _json(self, payload: Any) -> None:
            body = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _missing(self) -> None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.send_header("X-Error-Code", "EntryNotFound")
            self.end_headers()

        def _repo_and_rest(self, path: str, prefix: str, marker: str) -> tuple[str, str, str] | None:
            """(repo, revision, rest) of ``<prefix><owner>/<name>/<marker>/<rev>[/<rest>]``."""
            if not path.startswith(prefix):
                return None
            parts = path[len(prefix):].split("/")
            if len(parts) < 4 or parts[2] != marker:
                return None
            return f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:])

        def _body(self, key: str, data: bytes, headers: dict[str, str], head: bool) -> None:
            start = 0
            ranged = self.headers.get("Range")
            if ranged and ranged.startswith("bytes="):
                start = int(ranged[len("bytes="):].split("-")[0] or 0)
            if start >= len(data) and start > 0:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            part = data[start:]
            self.send_response(206 if start else 200)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Accept-Ranges", "bytes")
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Length", str(len(part)))
            self.end_headers()
            if head:
                return
            cut = hub.drop_after.pop(key, None) if not head else None
            if cut is not None:
                self.wfile.write(part[:cut])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)  # the connection drops midway through the body
                return
            self.wfile.write(part)

        def _refused(self, path: str) -> bool:
            for repo, token in hub.gated.items():
                if f"/{repo}/" in path and self.headers.get("Authorization") != f"Bearer {token}":
                    self.send_response(403)
                    self.send_header("X-Error-Code", "GatedRepo")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return True
            return False

        def _serve(self, head: bool) -> None:
            path = unquote(urlparse(self.path).path)
            hub.requests.append((self.command, path, self.headers.get("Range")))
            if self._refused(path):
                return None
            info = self._repo_and_rest(path, "/api/datasets/", "revision")
            if info and info[0] in hub.repos:
                return self._json({"id": info[0], "sha": COMMIT, "private": False,
                                   "siblings": [{"rfilename": p} for p in sorted(hub.repos[info[0]])]})
            tree = self._repo_and_rest(path, "/api/datasets/", "tree")
            if tree and tree[0] in hub.repos:
                return self._json(hub.tree(tree[0]))
            got = self._repo_and_rest(path, "/datasets/", "resolve")
            if got and got[0] in hub.repos and got[2] in hub.repos[got[0]]:
                repo, _, rel = got
                data = hub.serve_instead.get(rel, hub.repos[repo][rel])
                headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{hub.etag(repo, rel)}"'}
                return self._body(rel, data, headers, head)
            if path.startswith("/files/") and path[len("/files/"):] in hub.files:
                name = path[len("/files/"):]
                return self._body(name, hub.serve_instead.get(name, hub.files[name]), {}, head)
            return self._missing()

        def do_GET(self) -> None:
            self._serve(head=False)

        def do_HEAD(self) -> None:
            self._serve(head=True)

    return Handler


@contextmanager
def stand_in_hub() -> Iterator[StandInHub]:
    hub = StandInHub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    hub.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
