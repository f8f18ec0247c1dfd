"""The agent's LLM: an OpenAI-compatible chat endpoint (a local vLLM server, a hosted API), over httpx.

Upstream's ``client_llm.send_generate_request`` is replaced (``agent_inference`` takes it as an
argument) because it turns every failure into ``None``, which the loop then reports as "Generated
text is None": the HTTP status is lost and nothing is retried. What it sends is kept: the messages
with each ``{"type": "image", "image": PATH}`` of a user message turned into an ``image_url`` data URL
(base64 of the file, MIME type from its extension, ``detail: high``), ``max_completion_tokens``
(upstream: 4096) and ``n: 1``; ``temperature`` and ``seed`` are added only when set (upstream sends
neither: the server's defaults apply). The reply's ``choices[0].message.content`` is returned as is,
``None`` included (a refusal or a filtered answer), as upstream returns it.

Failures: a timeout, a dropped connection or HTTP 408/409/425/429/5xx is retried ``retries`` times,
waiting ``backoff`` x 2^attempt seconds (or the server's ``Retry-After``, at most 60 s); any other
status, or the last failed try, raises ``EndpointError`` carrying the status. Every try is recorded.
"""

from __future__ import annotations

import base64
import hashlib
import mimetypes
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

RETRIED_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
MAX_WAIT = 60.0  # seconds between two tries, whatever Retry-After says


class EndpointError(Exception):
    """The endpoint failed a request for good: the sample fails with this reason (its HTTP status when it answered)."""

    def __init__(self, message: str, status: int | None = None, tries: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.tries = tries or []


class Cancelled(Exception):
    """The call this session waited for was cancelled (the batch timed out or was interrupted)."""


@dataclass(frozen=True)
class Endpoint:
    """Where and how to ask: the adapter's LLM options."""

    url: str  # the OpenAI base URL, e.g. http://127.0.0.1:8000/v1
    model: str
    api_key_env: str | None = None  # the environment variable holding the API key (none: no Authorization header)
    temperature: float | None = None
    seed: int | None = None
    max_tokens: int = 4096  # upstream's send_generate_request default
    timeout: float = 300.0  # seconds per try
    retries: int = 3
    backoff: float = 2.0

    def api_key(self) -> str | None:
        if not self.api_key_env:
            return None
        key = os.environ.get(self.api_key_env)
        if not key:
            raise EndpointError(f"the environment variable {self.api_key_env} (option api_key_env) is not set: "
                                f"it must hold the API key of {self.url}")
        return key


@dataclass
class Completion:
    """One chat call: what came back and every try it took."""

    content: str | None
    finish_reason: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    tries: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


@dataclass(frozen=True)
class SentImage:
    """An image a request carried: its file name and the digest of the bytes sent."""

    name: str
    sha256: str


def image_part(path: str) -> tuple[dict[str, Any], SentImage]:
    """A user message's image as upstream sends it: a base64 data URL of the file's bytes."""
    try:
        data = open(path, "rb").read()
    except OSError as exc:
        raise FileNotFoundError(f"the agent's image {path} cannot be read: {exc}") from exc
    mime = mimetypes.guess_type(path)[0] or "image/jpeg"
    url = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    return ({"type": "image_url", "image_url": {"url": url, "detail": "high"}},
            SentImage(os.path.basename(path), hashlib.sha256(data).hexdigest()))


def request_messages(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[SentImage]]:
    """The messages as sent (user messages' images inlined) and the images they carry, in order."""
    sent: list[dict[str, Any]] = []
    images: list[SentImage] = []
    for message in messages:
        content = message.get("content")
        if message.get("role") == "user" and isinstance(content, list):
            parts = []
            for part in content:
                if isinstance(part, dict) and part.get("type") == "image":
                    inlined, image = image_part(str(part["image"]))
                    parts.append(inlined)
                    images.append(image)
                else:
                    parts.append(part)
            message = {**message, "content": parts}
        sent.append(message)
    return sent, images


class ChatClient:
    """One connection pool to the endpoint, shared by the sessions in flight (httpx.Client is thread-safe)."""

    def __init__(self, endpoint: Endpoint, connections: int = 8) -> None:
        self.endpoint = endpoint
        key = endpoint.api_key()
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._http = httpx.Client(base_url=endpoint.url.rstrip("/") + "/", headers=headers, timeout=endpoint.timeout,
                                  limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections))

    def close(self) -> None:
        self._http.close()

    def served_models(self) -> list[str]:
        """``GET /models``: the ids the endpoint serves; EndpointError when it cannot be reached or refuses."""
        url = self.endpoint.url
        try:
            response = self._http.get("models", timeout=min(self.endpoint.timeout, 30.0))
        except httpx.HTTPError as exc:
            raise EndpointError(f"the LLM endpoint {url} cannot be reached ({type(exc).__name__}: {exc})") from exc
        if response.status_code != 200:
            raise EndpointError(f"the LLM endpoint {url} answered GET /models with HTTP {response.status_code}: "
                                f"{_excerpt(response.text)}", response.status_code)
        try:
            return [str(m["id"]) for m in response.json().get("data", [])]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise EndpointError(f"the LLM endpoint {url} answered GET /models with a body that is not a model list: "
                                f"{_excerpt(response.text)}") from exc

    def check(self) -> None:
        """The endpoint is up and serves the model (an id may carry a ``models/`` prefix, as some APIs list them)."""
        served = self.served_models()
        if self.endpoint.model not in {s.removeprefix("models/") for s in served} | set(served):
            raise EndpointError(f"the LLM endpoint {self.endpoint.url} does not serve {self.endpoint.model!r} "
                                f"(option llm_model); it serves: {', '.join(served) or 'nothing'}")

    def body(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        """The request body for ``messages`` (as sent: images inlined, ``request_messages``)."""
        return self.body_for(self.endpoint, messages)

    @staticmethod
    def body_for(e: Endpoint, messages: list[dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {"model": e.model, "messages": messages, "max_completion_tokens": e.max_tokens, "n": 1}
        if e.temperature is not None:
            out["temperature"] = e.temperature
        if e.seed is not None:
            out["seed"] = e.seed
        return out

    def complete(self, body: dict[str, Any], cancel: threading.Event) -> Completion:
        """POST ``chat/completions`` with retries (module docstring); EndpointError when it fails for good."""
        url = self.endpoint.url
        done = Completion(content=None)
        start = time.perf_counter()
        for attempt in range(self.endpoint.retries + 1):
            if cancel.is_set():
                raise Cancelled("cancelled")
            began = time.perf_counter()
            status: int | None = None
            wait = self.endpoint.backoff * 2**attempt
            try:
                response = self._http.post("chat/completions", json=body)
            except httpx.TimeoutException as exc:
                reason, retried = f"no answer within {self.endpoint.timeout:g} s ({type(exc).__name__})", True
            except httpx.HTTPError as exc:
                reason, retried = f"{type(exc).__name__}: {exc}", True
            else:
                status = response.status_code
                if status == 200:
                    try:
                        data = response.json()
                        choice = (data.get("choices") or [{}])[0]  # no choice: None, as upstream returns
                        done.content = (choice.get("message") or {}).get("content")
                        done.finish_reason = choice.get("finish_reason")
                        done.usage = dict(data.get("usage") or {})
                    except (ValueError, AttributeError, IndexError, TypeError):
                        reason, retried = f"HTTP 200 with a body that is not a chat completion: {_excerpt(response.text)}", True
                    else:
                        done.tries.append({"status": 200, "seconds": round(time.perf_counter() - began, 3)})
                        done.seconds = round(time.perf_counter() - start, 3)
                        return done
                else:
                    reason, retried = f"HTTP {status}: {_excerpt(response.text)}", status in RETRIED_STATUSES
                    wait = _retry_after(response) or wait
            done.tries.append({"status": status, "error": reason, "seconds": round(time.perf_counter() - began, 3)})
            if not retried or attempt == self.endpoint.retries:
                what = f"HTTP {status}" if status is not None else "no HTTP answer"
                raise EndpointError(f"the LLM endpoint {url} failed ({what}) after {len(done.tries)} tr"
                                    f"{'y' if len(done.tries) == 1 else 'ies'}: {reason}", status, done.tries)
            if cancel.wait(min(wait, MAX_WAIT)):
                raise Cancelled("cancelled")
        raise AssertionError("unreachable")  # the loop returns or raises


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: the backoff applies


def _excerpt(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."
