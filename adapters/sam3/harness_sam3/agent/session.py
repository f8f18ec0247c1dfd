"""One agent session per sample: upstream's ``agent_inference`` run unchanged on a thread of its own.

``agent_inference(img_path, initial_text_prompt, send_generate_request=..., call_sam_service=...,
max_generations=..., output_dir=...)`` takes its LLM and its SAM 3 service as arguments: the session
gives it ``Session.ask`` (the chat client, recording every call) and upstream's own
``client_sam3.call_sam_service`` bound to a ``SessionProcessor`` (SAM 3 in process, batched across
sessions). Upstream writes its JSON and renderings under ``output_dir``: a folder of the session's
own, deleted when it ends.

What the process shares is made safe for sessions in flight:

- upstream draws the masks' overlay colours from numpy's and Python's global random generators
  (``helpers/color_map.random_color``) and its zoom-in panel through pyplot's current figure; so
  each rendering (``viz.visualize``, as ``agent_core`` and ``client_sam3`` call it) runs under one
  lock, with both generators seeded from the sample and the rendering's number, and restored after:
  the pictures the LLM sees depend on neither timing nor company, and a run is repeatable;
- upstream prints every step to stdout; a session thread's prints are dropped (the log line keeps
  every call), other threads' output passes through.

How a session ends: upstream returns the final outputs (``select_masks_and_return`` or
``report_no_mask``): its masks are the prediction. The endpoint failed for good, SAM 3 failed, or
the call was cancelled (``fault``): the sample fails, with the reason, and ``--retry-failed`` runs it
again. Upstream's loop raised on the LLM's answer (a tool call that is not JSON, a refusal, no
answer, an unknown tool, more than ``max_turns`` rounds): the agent gave no answer, which is the
model's outcome, so the sample gets an empty mask with ``parse_status`` failed.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import io
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness_sam3.agent.llm import Cancelled, ChatClient, Completion, EndpointError, request_messages
from harness_sam3.agent.segmenter import Segmenter, SegmenterError, SessionProcessor
from harness_sam3.agent.upstream import AgentCode

_local = threading.local()  # .session: the Session this thread runs
_RENDER_LOCK = threading.Lock()


def _render_seed(visualize: Callable[..., Any]) -> Callable[..., Any]:
    """``visualize`` one at a time; in a session, with the global generators seeded (module docstring)."""

    @functools.wraps(visualize)
    def render(*args: Any, **kwargs: Any) -> Any:
        with _RENDER_LOCK:
            session = getattr(_local, "session", None)
            if session is None:
                return visualize(*args, **kwargs)
            saved = random.getstate(), np.random.get_state()
            seed = session.next_render_seed()
            random.seed(seed)
            np.random.seed(seed % 2**32)
            try:
                return visualize(*args, **kwargs)
            finally:
                random.setstate(saved[0])
                np.random.set_state(saved[1])

    render.harness_render_lock = True  # type: ignore[attr-defined]
    return render


def guard_renderings(code: AgentCode) -> None:
    """Route the ``visualize`` that ``agent_core`` and ``client_sam3`` call through ``_render_seed`` (once)."""
    for module in (code.agent_core, code.client_sam3):
        if not getattr(module.visualize, "harness_render_lock", False):
            module.visualize = _render_seed(module.visualize)


class _QuietSessions(io.TextIOBase):
    """sys.stdout while sessions run: their threads' writes are dropped, everyone else's pass through."""

    def __init__(self, target: Any) -> None:
        self.target = target
        self.quiet: set[int] = set()

    def write(self, text: str) -> int:
        if threading.get_ident() in self.quiet:
            return len(text)
        return int(self.target.write(text))

    def flush(self) -> None:
        self.target.flush()


@contextmanager
def quiet_sessions() -> Iterator[_QuietSessions]:
    previous = sys.stdout
    console = _QuietSessions(previous)
    sys.stdout = console
    try:
        yield console
    finally:
        if sys.stdout is console:
            sys.stdout = previous


@dataclass
class AgentRun:
    """What the sessions of one ``predict_many`` call share."""

    code: AgentCode
    client: ChatClient
    segmenter: Segmenter
    console: _QuietSessions
    max_turns: int
    seed: int
    counters: dict[str, float]
    lock: threading.Lock
    cancel: threading.Event = field(default_factory=threading.Event)

    def count(self, **changes: float) -> None:
        with self.lock:
            for key, value in changes.items():
                self.counters[key] = self.counters.get(key, 0.0) + value


@dataclass
class Outcome:
    """How a session ended: final outputs, a fault (the sample fails) or the agent's own error (no answer)."""

    final: dict[str, Any] | None = None
    fault: str | None = None
    agent_error: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


class Session:
    """One sample's agent conversation (module docstring)."""

    def __init__(self, run: AgentRun, sample_id: str, expression: str, image: int, image_path: str, workdir: str) -> None:
        self.run_ = run
        self.sample_id = sample_id
        self.expression = expression
        self.image = image
        self.image_path = image_path
        self.workdir = workdir
        self.events: list[dict[str, Any]] = []  # LLM calls and SAM 3 calls, in order (harness_sam3.agent.transcript)
        self.fault: BaseException | None = None
        self.kept: dict[str, Any] = {}  # what SAM 3 kept for the prompt being served (_Recording)
        self._renders = 0

    def next_render_seed(self) -> int:
        self._renders += 1
        key = f"{self.run_.seed}\0{self.sample_id}\0{self._renders}".encode()
        return int.from_bytes(hashlib.sha256(key).digest()[:8], "little")

    # -------------------------------------------------------------- what upstream calls
    def ask(self, messages: list[dict[str, Any]]) -> str | None:
        """``send_generate_request(messages)``: the reply's content (None as upstream returns it); a failure is a fault."""
        run = self.run_
        messages = copy.deepcopy(messages)  # upstream edits its history in place after the call
        try:
            sent, images = request_messages(messages)
            body = run.client.body(sent)
            try:
                reply: Completion = run.client.complete(body, run.cancel)
            except EndpointError as exc:
                run.count(llm_calls=1, llm_failures=1, llm_tries=len(exc.tries))
                self.events.append({"llm": {"messages": messages, "images": images, "error": exc}})
                raise
        except BaseException as exc:
            self.fault = self.fault or exc
            raise
        usage = reply.usage
        run.count(llm_calls=1, llm_tries=len(reply.tries), generated_tokens=float(usage.get("completion_tokens") or 0),
                  prompt_tokens=float(usage.get("prompt_tokens") or 0))
        self.events.append({"llm": {"messages": messages, "images": images, "reply": reply}})
        return reply.content

    def segment(self, **kwargs: Any) -> str:
        """``call_sam_service(image_path=..., text_prompt=..., output_folder_path=...)``: upstream's own, on our SAM 3."""
        processor = SessionProcessor(self.run_.segmenter, self.image)
        prompt = kwargs.get("text_prompt")
        try:
            path = str(self.run_.code.client_sam3.call_sam_service(sam3_processor=_Recording(processor, self), **kwargs))
        except BaseException as exc:
            self.fault = self.fault or exc
            raise
        record: dict[str, Any] = {"text_prompt": prompt, **self.kept}
        self.kept = {}
        if os.path.isfile(path):  # upstream's answer after its overlap removal, ordering and RLE check
            with open(path) as f:
                saved = json.load(f)
            record.update(masks=len(saved.get("pred_masks", [])), mask_scores=saved.get("pred_scores", []))
        self.events.append({"sam3": record})
        return path

    # -------------------------------------------------------------- the session
    def run(self) -> Outcome:
        run = self.run_
        start = time.perf_counter()
        _local.session = self
        run.console.quiet.add(threading.get_ident())
        outcome = Outcome(events=self.events)
        try:
            if run.cancel.is_set():
                raise Cancelled("cancelled before it started")
            _, final, _ = run.code.agent_core.agent_inference(
                self.image_path, self.expression, debug=False, send_generate_request=self.ask,
                call_sam_service=self.segment, max_generations=run.max_turns, output_dir=self.workdir)
            outcome.final = final
        except BaseException as exc:
            fault = self.fault or (exc if isinstance(exc, (Cancelled, SegmenterError, EndpointError)) else None)
            if fault is not None or not isinstance(exc, Exception):
                outcome.fault = _reason(fault or exc)
            else:
                outcome.agent_error = _reason(exc)
        finally:
            run.console.quiet.discard(threading.get_ident())
            _local.session = None
            shutil.rmtree(self.workdir, ignore_errors=True)
            outcome.seconds = time.perf_counter() - start
            run.count(sessions=1, sessions_failed=float(outcome.fault is not None),
                      agent_errors=float(outcome.agent_error is not None))
            run.segmenter.finished()
        return outcome


class _Recording:
    """The SessionProcessor, recording what SAM 3 kept for each prompt (before upstream's post-processing)."""

    def __init__(self, processor: SessionProcessor, session: Session) -> None:
        self.processor = processor
        self.session = session

    def set_image(self, image: Any, state: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.processor.set_image(image, state)

    def set_text_prompt(self, prompt: str, state: dict[str, Any]) -> dict[str, Any]:
        try:
            state = self.processor.set_text_prompt(prompt=prompt, state=state)
        except BaseException as exc:  # upstream's call_sam_service swallows it: keep it as the session's fault
            self.session.fault = self.session.fault or exc
            raise
        self.session.kept = {"instances": int(state["scores"].numel()), "scores": [round(float(s), 4) for s in state["scores"]]}
        return state


def _reason(exc: BaseException) -> str:
    text = str(exc) if isinstance(exc, (EndpointError, SegmenterError, Cancelled)) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())[:2000]


def session_dir(root: str, index: int) -> str:
    """A short folder of its own for each session (upstream names files after the image path and the prompt)."""
    return tempfile.mkdtemp(prefix=f"s{index}-", dir=root)
