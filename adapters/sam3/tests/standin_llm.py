"""A stand-in for an OpenAI-compatible chat endpoint (a vLLM server), on 127.0.0.1, for tests and the bench.

``GET /v1/models`` lists one model; ``POST /v1/chat/completions`` answers in upstream's tool-call format
(``<think>...</think> <tool>{"name": ..., "parameters": ...}</tool>``, ``<verdict>Accept</verdict>``).
A conversation is the sample's raw input image (the digest of its pixels, decoded from the request's
first image) and the initial query (``The initial user input query is: '...'``), and is either the
agent's (``agent``) or ``examine_each_mask``'s per-mask check (``check``, told apart by ``<verdict>``
in the system prompt). The n-th request of a conversation gets the n-th scripted reply for its query
and kind; past the script (or without one), ``policy`` answers from the request alone:
segment the query, select mask 1 once masks are shown, report no mask when there are none, accept
every mask. A reply is a string (the content) or a dict: ``{"status": 503, "body": ..., "retry_after": s}``
(an HTTP error), ``{"content": None}`` (a null content, as a refusal filter gives), ``{"choices": []}``,
``{"drop": True}`` (the connection closed without an answer), ``{"delay": s, "content": ...}``.
Every request is recorded (``requests``), with its body.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
from PIL import Image

QUERY = re.compile(r"initial user input query is: '(.*?)'(?:\.|$)", re.S)


def tool(name: str, **parameters: Any) -> str:
    """An agent reply calling ``name``, in upstream's format."""
    call = json.dumps({"name": name, "parameters": parameters})
    return f"<think>The user asks for something; calling {name}.</think>\n<tool>{call}</tool>"


def verdict(accept: bool) -> str:
    return f"<think>Looking at the zoomed-in mask.</think>\n<verdict>{'Accept' if accept else 'Reject'}</verdict>"


def pixels_digest(image: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(image).tobytes() + str(image.shape).encode()).hexdigest()


def _texts(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    return " ".join(p.get("text", "") for p in content or [] if isinstance(p, dict) and p.get("type") == "text")


def _parts(message: dict[str, Any]) -> list[str]:
    content = message.get("content")
    if isinstance(content, str):
        return [content]
    return [p.get("text", "") for p in content or [] if isinstance(p, dict) and p.get("type") == "text"]


def _first_image(messages: list[dict[str, Any]]) -> np.ndarray | None:
    for m in messages:
        for p in m.get("content") or [] if isinstance(m.get("content"), list) else []:
            if isinstance(p, dict) and p.get("type") == "image_url":
                data = p["image_url"]["url"].split(",", 1)[1]
                return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))
    return None


def policy(kind: str, query: str, messages: list[dict[str, Any]]) -> str:
    """The reply when nothing is scripted: the obvious agent (module docstring)."""
    if kind == "check":
        return verdict(True)
    last = _texts(messages[-1]) if len(messages) > 2 else ""
    if "did not generate any masks" in last or "rejected all of the masks" in last:
        return tool("report_no_mask")
    if "available masks" in last or "available mask(s)" in last:
        return tool("select_masks_and_return", final_answer_masks=[1])
    return tool("segment_phrase", text_prompt=query)


@dataclass
class Request:
    n: int
    image: str | None  # digest of the raw input image's pixels
    query: str | None
    kind: str
    turn: int  # 1 for the conversation's first request of this kind
    body: dict[str, Any]
    reply: Any


class StandIn:
    """The server; a context manager that starts it on a free port and stops it (nothing left running)."""

    def __init__(self, script: dict[str, dict[str, list[Any]]] | None = None, model: str = "stand-in", delay: float = 0.0,
                 models_status: int = 200, override: Callable[[str | None, str | None, str, int], Any] | None = None) -> None:
        self.script = script or {}
        self.override = override  # (image digest, query, kind, turn) -> a reply that replaces the script's, or None
        self.model = model
        self.delay = delay  # seconds before every answer (an LLM's latency)
        self.models_status = models_status
        self.requests: list[Request] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._turns: dict[tuple[Any, ...], int] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> StandIn:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                if self.path.rstrip("/") == "/v1/models" and stand_in.models_status == 200:
                    self._json(200, {"object": "list", "data": [{"id": stand_in.model, "object": "model"}]})
                else:
                    self._json(stand_in.models_status if self.path.rstrip("/") == "/v1/models" else 404, {"error": "no"})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with stand_in._lock:
                    stand_in.in_flight += 1
                    stand_in.max_in_flight = max(stand_in.max_in_flight, stand_in.in_flight)
                try:
                    reply = stand_in._reply(body)
                    if stand_in.delay:
                        time.sleep(stand_in.delay)
                    if isinstance(reply, dict) and reply.get("delay"):
                        time.sleep(float(reply["delay"]))
                    if isinstance(reply, dict) and reply.get("drop"):
                        self.close_connection = True
                        self.connection.shutdown(2)
                        return
                    if isinstance(reply, dict) and "status" in reply:
                        extra = {"Retry-After": str(reply["retry_after"])} if "retry_after" in reply else {}
                        self._json(int(reply["status"]), {"error": {"message": reply.get("body", "scripted failure")}}, extra)
                        return
                    if isinstance(reply, dict) and "choices" in reply:
                        self._json(200, {"id": "x", "object": "chat.completion", "choices": reply["choices"]})
                        return
                    content = reply.get("content") if isinstance(reply, dict) else reply
                    self._json(200, {"id": "x", "object": "chat.completion", "model": stand_in.model,
                                     "choices": [{"index": 0, "finish_reason": "stop",
                                                  "message": {"role": "assistant", "content": content}}],
                                     "usage": {"prompt_tokens": 100, "completion_tokens": len((content or "").split()),
                                               "total_tokens": 100 + len((content or "").split())}})
                finally:
                    with stand_in._lock:
                        stand_in.in_flight -= 1

            def _json(self, status: int, doc: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="stand-in-llm", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
        assert not self._thread.is_alive()

    def _reply(self, body: dict[str, Any]) -> Any:
        messages = body["messages"]
        system = _texts(messages[0]) if messages and messages[0].get("role") == "system" else ""
        kind = "check" if "<verdict>" in system else "agent"
        found = [m.group(1) for message in messages for text in _parts(message) for m in [QUERY.search(text)] if m]
        query = found[0] if found else None
        image = _first_image(messages)
        digest = pixels_digest(image) if image is not None else None
        with self._lock:
            key = (digest, query, kind)
            turn = self._turns[key] = self._turns.get(key, 0) + 1
            scripted = self.script.get(query or "", {}).get(kind, [])
            reply = scripted[turn - 1] if turn <= len(scripted) else policy(kind, query or "", messages)
            if self.override is not None:
                reply = self.override(digest, query, kind, turn) or reply
            self.requests.append(Request(len(self.requests) + 1, digest, query, kind, turn, body, reply))
        return reply

    def count(self, image: str | None = None, query: str | None = None) -> int:
        """Requests received for a conversation (by image digest and/or query)."""
        with self._lock:
            return sum((image is None or r.image == image) and (query is None or r.query == query) for r in self.requests)
