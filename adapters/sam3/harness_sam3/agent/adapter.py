"""``sam3-agent``: SAM 3 Agent, upstream's loop (facebookresearch/sam3 ``sam3/agent/``) run unchanged from a
checkout, an OpenAI-compatible LLM endpoint, and transformers' ``Sam3Model`` in process.

Per sample, one agent session (``harness_sam3.agent.session``): upstream's ``agent_inference`` with the
sample's image (the engine's decoded pixels, saved losslessly as PNG, so that what the LLM and SAM 3 see
is what is scored, under the suite's EXIF convention) and its expression as the initial query. Up to
``concurrency`` sessions of a batch run at once; their SAM 3 calls meet in one forward
(``harness_sam3.agent.segmenter``). The log line holds every call (``harness_sam3.agent.transcript``).

Options: ``llm_url`` (the OpenAI base URL, e.g. ``http://127.0.0.1:8000/v1``), ``llm_model``,
``api_key_env`` (the variable holding the key; none: no key sent), ``max_turns`` (upstream's
``max_generations``: 100), ``max_tokens`` (upstream's 4096), ``temperature`` and ``seed`` (sent only when
set; ``seed`` also seeds the overlay colours of the renderings), ``request_timeout`` (seconds per try),
``retries`` and ``retry_backoff`` (seconds, doubled per try), ``concurrency`` (sessions in flight),
``sam_batch`` (prompts per SAM 3 forward), ``upstream_repo`` (else ``$HARNESS_SAM3_REPO``), and SAM 3's
``model_path``, ``score_threshold``, ``mask_threshold``, ``dtype``. Where to send and how patiently
(``llm_url``, ``api_key_env``, timeouts, retries, concurrency, batching, the checkout's path) are kept
out of the run's fingerprint: a resumed run may reach the same model at another address.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import numpy as np
from harness.adapter import AdapterInfo
from harness.errors import HarnessError
from harness.modelkit.counters import update_peak_gpu_memory_mb
from harness.types import Prediction, Query
from PIL import Image

from harness_sam3 import manifest
from harness_sam3.adapter import Sam3Base
from harness_sam3.agent import transcript
from harness_sam3.agent.llm import ChatClient, Endpoint, EndpointError, request_messages
from harness_sam3.agent.segmenter import Segmenter
from harness_sam3.agent.session import AgentRun, Outcome, Session, guard_renderings, quiet_sessions, session_dir
from harness_sam3.agent.upstream import AgentCode, UpstreamError, load_agent, resolve

# options that change no output: kept out of the run's fingerprint
_NOT_FINGERPRINTED = ("llm_url", "api_key_env", "request_timeout", "retries", "retry_backoff", "concurrency", "sam_batch",
                      "upstream_repo")


class AgentError(HarnessError):
    """The agent cannot start: its checkout, its endpoint or an option is wrong (names which)."""


class Sam3AgentAdapter(Sam3Base):
    """SAM 3 Agent (module docstring)."""

    info: ClassVar[AdapterInfo] = AdapterInfo(
        name="sam3-agent",
        description="SAM 3 Agent: facebookresearch/sam3's agent loop driving transformers' Sam3Model with an OpenAI-compatible LLM",
        outputs=("mask", "box", "text", "reasoning"), box_space="pixel", version="1", checkpoints=(manifest.CHECKPOINT,))
    VARIANT: ClassVar[dict[str, Any]] = {
        **Sam3Base.VARIANT,
        "llm_url": "http://127.0.0.1:8000/v1",
        "llm_model": "Qwen/Qwen2.5-VL-7B-Instruct",  # LENS Table 3's SAM 3 Agent row
        "api_key_env": None,
        "max_turns": 100,  # agent_inference's max_generations default
        "max_tokens": 4096,  # send_generate_request's max_tokens default
        "temperature": None,
        "seed": None,
        "request_timeout": 300.0,
        "retries": 3,
        "retry_backoff": 2.0,
        "concurrency": 8,
        "sam_batch": 16,
        "upstream_repo": None,
    }
    multi_image = True  # a batch's sessions span images; each image is encoded once per call

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        o = self.options
        for key in ("max_turns", "max_tokens", "concurrency", "sam_batch"):
            if not isinstance(o[key], int) or isinstance(o[key], bool) or o[key] < 1:
                raise ValueError(f"option {key} must be a whole number >= 1, got {o[key]!r}")
        if not isinstance(o["retries"], int) or isinstance(o["retries"], bool) or o["retries"] < 0:
            raise ValueError(f"option retries must be a whole number >= 0, got {o['retries']!r}")
        for key in ("request_timeout", "retry_backoff"):
            if not isinstance(o[key], (int, float)) or o[key] < 0:
                raise ValueError(f"option {key} must be a number of seconds >= 0, got {o[key]!r}")
        if not isinstance(o["llm_url"], str) or not o["llm_url"].startswith(("http://", "https://")):
            raise ValueError(f"option llm_url must be an http(s) URL, e.g. http://127.0.0.1:8000/v1, got {o['llm_url']!r}")
        self.endpoint = Endpoint(
            url=o["llm_url"], model=str(o["llm_model"]), api_key_env=o["api_key_env"], temperature=o["temperature"],
            seed=o["seed"], max_tokens=o["max_tokens"], timeout=float(o["request_timeout"]), retries=o["retries"],
            backoff=float(o["retry_backoff"]))
        self._code: AgentCode | None = None
        self._client: ChatClient | None = None
        self._lock = threading.Lock()
        self._counters: dict[str, float] = dict.fromkeys(
            ("sessions", "sessions_failed", "agent_errors", "llm_calls", "llm_tries", "llm_failures", "generated_tokens",
             "prompt_tokens", "images_encoded_by_segmenter", "forward_passes", "sam_batches", "instances_kept",
             "peak_gpu_memory_mb"), 0.0)

    def config(self) -> dict[str, Any]:
        options = {k: v for k, v in self.options.items() if k not in _NOT_FINGERPRINTED}
        return {"adapter": self.info.name, "version": self.info.version, "options": options}

    # ----------------------------------------------------------------------------- preflight, loading
    def _endpoint_up(self) -> None:
        try:
            client = ChatClient(self.endpoint, connections=1)
            try:
                client.check()
            finally:
                client.close()
        except EndpointError as exc:
            raise AgentError(f"sam3-agent: {exc}") from exc

    def check(self) -> None:
        """The checkout is there and the endpoint serves the model: a model whose endpoint is down fails before any sample."""
        try:
            resolve(self.options["upstream_repo"])
        except UpstreamError as exc:
            raise AgentError(f"sam3-agent: {exc}") from exc
        self._endpoint_up()

    def load(self, device: str = "cpu") -> None:
        try:
            self._code = load_agent(self.options["upstream_repo"])
        except UpstreamError as exc:
            raise AgentError(f"sam3-agent: {exc}") from exc
        guard_renderings(self._code)
        self._endpoint_up()  # again: hours may have passed since the preflight
        super().load(device)
        self._client = ChatClient(self.endpoint, connections=int(self.options["concurrency"]))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # ----------------------------------------------------------------------------- prediction
    def predict(self, image: np.ndarray, samples: Sequence[Query]) -> list[Prediction]:
        return self.predict_many([(image, samples)])[0]

    def predict_many(self, items: Sequence[tuple[np.ndarray, Sequence[Query]]]) -> list[list[Prediction]]:
        """One session per query, up to ``concurrency`` at once; SAM 3 served on this thread."""
        if self._code is None or self._client is None or self.model is None:
            raise RuntimeError("sam3-agent: predict before load()")
        images = [np.ascontiguousarray(image) for image, _ in items]
        with tempfile.TemporaryDirectory(prefix="sam3-agent-", ignore_cleanup_errors=True) as root, quiet_sessions() as console:
            paths = []
            for k, image in enumerate(images):
                paths.append(os.path.join(root, f"image{k}.png"))
                Image.fromarray(image).save(paths[-1], compress_level=1)
            segmenter = Segmenter(self, images, int(self.options["sam_batch"]), self._counters, self._lock)
            run = AgentRun(code=self._code, client=self._client, segmenter=segmenter, console=console,
                           max_turns=int(self.options["max_turns"]), seed=int(self.options["seed"] or 0),
                           counters=self._counters, lock=self._lock)
            sessions = [Session(run, q.id, q.expression, k, paths[k], session_dir(root, n))
                        for n, (k, q) in enumerate((k, q) for k, (_, queries) in enumerate(items) for q in queries)]
            outcomes = self._run_sessions(run, segmenter, sessions)
        update_peak_gpu_memory_mb(self._counters, self.device)
        out: list[list[Prediction]] = [[] for _ in items]
        for session, outcome in zip(sessions, outcomes):
            height, width = images[session.image].shape[:2]
            out[session.image].append(self._prediction(outcome, height, width))
        return out

    def _run_sessions(self, run: AgentRun, segmenter: Segmenter, sessions: list[Session]) -> list[Outcome]:
        pool = ThreadPoolExecutor(max_workers=min(int(self.options["concurrency"]), len(sessions)) or 1,
                                  thread_name_prefix="sam3-agent")
        try:
            futures = [pool.submit(s.run) for s in sessions]
            segmenter.serve(len(sessions))
            return [f.result() for f in futures]
        except BaseException as exc:  # a time limit or an interrupt: stop the sessions, give up on their answers
            run.cancel.set()
            segmenter.cancel(exc)
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        finally:
            pool.shutdown(wait=False)

    def _prediction(self, outcome: Outcome, height: int, width: int) -> Prediction:
        assert self._code is not None
        try:
            return transcript.prediction(outcome, self._code, self.endpoint, height, width)
        except ValueError as exc:
            return Prediction(mask=None, error=f"sam3-agent: {exc}")

    def inputs(self, image: np.ndarray, sample: Query) -> dict[str, Any]:
        """The agent's first request as upstream builds it (``agent_inference`` stopped at its first LLM call):
        the system prompt's digest, the initial user message, the image as sent (digest), the other fields."""
        code = self._code or load_agent(self.options["upstream_repo"])

        class _Stop(Exception):
            pass

        captured: list[list[dict[str, Any]]] = []

        def ask(messages: list[dict[str, Any]]) -> str:
            captured.append(copy.deepcopy(messages))
            raise _Stop

        with tempfile.TemporaryDirectory(prefix="sam3-agent-") as root, quiet_sessions() as console:
            path = os.path.join(root, "image.png")
            Image.fromarray(np.ascontiguousarray(image)).save(path, compress_level=1)
            console.quiet.add(threading.get_ident())
            try:
                code.agent_core.agent_inference(path, sample.expression, send_generate_request=ask, call_sam_service=None,
                                                output_dir=root)
            except _Stop:
                pass
            _, images = request_messages(captured[0])
        system, user = captured[0][0], captured[0][1]
        body = {k: v for k, v in ChatClient.body_for(self.endpoint, []).items() if k != "messages"}
        return {"system_prompt": f"sha256:{hashlib.sha256(system['content'].encode()).hexdigest()}",
                "prompt": "\n".join(p["text"] for p in user["content"] if p.get("type") == "text"),
                "image": f"sha256:{images[0].sha256}", "request": json.dumps(body, sort_keys=True)}

    def stats(self) -> dict[str, float]:
        """Sessions, LLM calls and tries, generated tokens (the endpoint's usage), SAM 3 encodes, prompts and batches."""
        with self._lock:
            return dict(self._counters)
