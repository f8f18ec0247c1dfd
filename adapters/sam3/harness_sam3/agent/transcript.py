"""A session's log line: every LLM call, the SAM 3 calls, the agent's final choice, and its mask.

- ``text``: a JSON document, ``{"agent", "llm", "events", "final"}``. ``events`` holds, in order, each
  LLM call (``kind`` ``agent`` for the loop's turns, ``check`` for ``examine_each_mask``'s per-mask
  verdicts; the messages as sent, with the 66 kB system prompt named by its file and digest and each
  image by its file name and digest; the reply, finish reason, token usage, every try with its HTTP
  status and time) and each SAM 3 call (the prompt, the instances SAM 3 kept with their scores, and
  the masks left after upstream's overlap removal);
- ``reasoning``: the same, readable: each reply in full and one line per SAM 3 call;
- ``answer``: the final tool call (``select_masks_and_return`` with the masks chosen, or
  ``report_no_mask``), or why there is none;
- ``mask``: the union of the masks the final answer selects (upstream's ``final_outputs``), empty for
  ``report_no_mask`` and when the agent gave no answer; ``box``: the box around the selected masks'
  boxes (SAM 3's, in pixels).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from harness import masks
from harness.types import ParseStatus, Prediction

from harness_sam3.agent.llm import Completion, Endpoint, EndpointError
from harness_sam3.agent.session import Outcome
from harness_sam3.agent.upstream import CHECKING_PROMPT, SYSTEM_PROMPT, UPSTREAM, AgentCode

AGENT = f"{UPSTREAM.repository} {UPSTREAM.revision} sam3/agent/agent_core.py agent_inference"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _messages(messages: list[dict[str, Any]], images: list[Any], code: AgentCode) -> tuple[str, list[dict[str, Any]]]:
    """(kind, the messages as sent with system prompts and images named, not inlined)."""
    prompts = {code.system_prompt: SYSTEM_PROMPT.rsplit("/", 1)[-1], code.checking_prompt: CHECKING_PROMPT.rsplit("/", 1)[-1]}
    kind = "agent"
    sent = iter(images)
    out: list[dict[str, Any]] = []
    for message in messages:
        content = message.get("content")
        if message.get("role") == "system" and isinstance(content, str):
            name = prompts.get(content)
            kind = "check" if content == code.checking_prompt else kind
            out.append({"role": "system", "file": name, "sha256": _digest(content)} if name else message)
        elif message.get("role") == "user" and isinstance(content, list):
            parts = []
            for part in content:
                if isinstance(part, dict) and part.get("type") == "image":
                    image = next(sent)
                    parts.append({"type": "image", "image": image.name, "sha256": image.sha256})
                else:
                    parts.append(part)
            out.append({**message, "content": parts})
        else:
            out.append(message)
    return kind, out


def _events(outcome: Outcome, code: AgentCode) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    calls = 0
    for event in outcome.events:
        if "sam3" in event:
            out.append({"sam3": event["sam3"]})
            continue
        call = event["llm"]
        calls += 1
        kind, messages = _messages(call["messages"], call["images"], code)
        record: dict[str, Any] = {"call": calls, "kind": kind, "messages": messages}
        reply = call.get("reply")
        if isinstance(reply, Completion):
            record.update(reply=reply.content, finish_reason=reply.finish_reason, usage=reply.usage, tries=reply.tries,
                          seconds=reply.seconds)
        error = call.get("error")
        if isinstance(error, EndpointError):
            record.update(error=str(error), status=error.status, tries=error.tries)
        out.append({"llm": record})
    return out


def tool_call(reply: str | None) -> dict[str, Any] | None:
    """The tool call of an agent reply, as upstream reads it (the first ``</tool>``, the ``<tool>`` before it)."""
    if not reply or "<tool>" not in reply:
        return None
    raw = reply.split("</tool>", 1)[0].split("<tool>")[-1].strip().replace("}}}", "}}")
    try:
        call = json.loads(raw)
    except json.JSONDecodeError:
        return None
    return call if isinstance(call, dict) else None


def _final(events: list[dict[str, Any]], outcome: Outcome) -> dict[str, Any]:
    if outcome.fault is not None:
        return {"fault": outcome.fault}
    if outcome.agent_error is not None:
        return {"error": outcome.agent_error}
    replies = [e["llm"].get("reply") for e in events if "llm" in e and e["llm"]["kind"] == "agent"]
    call = tool_call(replies[-1] if replies else None) or {}
    final = outcome.final or {}
    return {"tool": call.get("name"), "parameters": call.get("parameters"), "masks": len(final.get("pred_masks", []))}


def _reasoning(events: list[dict[str, Any]], final: dict[str, Any]) -> str:
    lines = []
    for event in events:
        if "sam3" in event:
            s = event["sam3"]
            scores = ", ".join(f"{v:.3f}" for v in s.get("scores", []))
            lines.append(f"[SAM 3] segment_phrase {s.get('text_prompt')!r}: {s.get('instances', 0)} instance(s) kept"
                         f"{f' ({scores})' if scores else ''}, {s.get('masks', 0)} mask(s) after upstream's overlap removal")
            continue
        call = event["llm"]
        head = f"[LLM {call['call']}, {call['kind']}]"
        lines.append(f"{head} failed: {call['error']}" if "error" in call else f"{head} {call.get('reply')}")
    lines.append(f"[final] {_answer(final)}")
    return "\n".join(lines)


def _answer(final: dict[str, Any]) -> str:
    if "fault" in final:
        return f"none: the session failed: {final['fault']}"
    if "error" in final:
        return f"none: the agent stopped without an answer: {final['error']}"
    if final.get("tool") == "select_masks_and_return":
        return f"select_masks_and_return {json.dumps(final.get('parameters'))}: {final['masks']} mask(s)"
    return str(final.get("tool"))


def _mask_and_box(final: dict[str, Any], height: int, width: int) -> tuple[masks.RLE, tuple[float, float, float, float] | None]:
    if (int(final["orig_img_h"]), int(final["orig_img_w"])) != (height, width):
        raise ValueError(f"the agent's masks are {final['orig_img_w']}x{final['orig_img_h']} for an image of {width}x{height}")
    chosen = [{"size": [height, width], "counts": c} for c in final.get("pred_masks", [])]
    union = masks.union(chosen, height, width) if chosen else masks.empty(height, width)  # type: ignore[arg-type]
    boxes = final.get("pred_boxes") or []  # normalised xywh (client_sam3.sam3_inference)
    if not boxes:
        return union, None
    return union, (min(b[0] for b in boxes) * width, min(b[1] for b in boxes) * height,
                   max(b[0] + b[2] for b in boxes) * width, max(b[1] + b[3] for b in boxes) * height)


def prediction(outcome: Outcome, code: AgentCode, endpoint: Endpoint, height: int, width: int) -> Prediction:
    """The log line's prediction for a session (module docstring)."""
    events = _events(outcome, code)
    final = _final(events, outcome)
    llm = {"model": endpoint.model, "temperature": endpoint.temperature, "seed": endpoint.seed, "max_tokens": endpoint.max_tokens}
    text = json.dumps({"agent": AGENT, "llm": llm, "events": events, "final": final}, ensure_ascii=False)
    common = {"text": text, "reasoning": _reasoning(events, final), "answer": _answer(final), "seconds": outcome.seconds}
    if "fault" in final:
        return Prediction(mask=None, error=f"sam3-agent: {final['fault']}", parse_status=ParseStatus.NONE, **common)
    if "error" in final:
        return Prediction(mask=masks.empty(height, width), parse_status=ParseStatus.FAILED, **common)
    mask, box = _mask_and_box(outcome.final or {}, height, width)
    return Prediction(mask=mask, box=box, parse_status=ParseStatus.OK, **common)
