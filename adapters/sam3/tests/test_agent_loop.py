"""SAM 3 Agent end to end on the tiny SAM 3 and the stand-in LLM server: the masks its final answers select equal
upstream's own loop's (upstream's LLM client, upstream's Sam3Processor) on the same scripted conversations; the
agent's own failures, the endpoint's failures, sessions in flight, preflight.

Every test here imports upstream's agent from the checkout (HARNESS_SAM3_REPO): conformance tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from agent_reference import save_png, upstream_agent
from harness import masks
from harness.registry import adapter_class
from harness.types import ParseStatus, Query
from standin_llm import StandIn, tool, verdict

from harness_sam3.agent.adapter import AgentError, Sam3AgentAdapter
from harness_sam3.agent.segmenter import Segmenter

IMAGES = [np.random.default_rng(5).integers(0, 256, size=(64, 80, 3), dtype=np.uint8),
          np.random.default_rng(2).integers(0, 256, size=(90, 130, 3), dtype=np.uint8)]


def query(expression: str, i: int = 0) -> Query:
    return Query(id=f"t/val/{i}", image="unused.png", expression=expression, dataset="t", split="val")


def agent(path: str, server: StandIn, repo: Path, **options) -> Sam3AgentAdapter:
    adapter = Sam3AgentAdapter(model_path=path, llm_url=server.url, llm_model=server.model, upstream_repo=str(repo),
                               retry_backoff=0.0, **options)
    adapter.check()
    adapter.load("cpu")
    return adapter


# The conversations: every tool, an accepted and a rejected mask, a repeated prompt, indices out of range.
SCRIPT = {
    "the blue thing on the left": {
        "agent": [tool("segment_phrase", text_prompt="blue thing"), tool("examine_each_mask"),
                  tool("select_masks_and_return", final_answer_masks=[2, 1, 7])],
        "check": [verdict(True), verdict(False)],
    },
    "a circle": {
        "agent": [tool("segment_phrase", text_prompt="zebra"), tool("segment_phrase", text_prompt="zebra"),
                  tool("segment_phrase", text_prompt="circle"), tool("select_masks_and_return", final_answer_masks=[2])],
    },
    "nothing to see": {"agent": [tool("report_no_mask")]},
    "every cat": {"agent": [tool("segment_phrase", text_prompt="cat"), tool("select_masks_and_return", final_answer_masks=[1, 2])]},
}
CASES = [(0, "the blue thing on the left"), (0, "a circle"), (1, "nothing to see"), (1, "every cat"), (0, "every cat")]


def _without_renderings(bodies: list[dict]) -> list[dict]:
    """Request bodies with every image after a conversation's first (the renderings, whose colours are random
    upstream and seeded here) replaced by a placeholder; the raw input image is compared byte for byte."""
    out = []
    for body in bodies:
        seen = 0
        messages = []
        for m in body["messages"]:
            if isinstance(m.get("content"), list):
                parts = []
                for p in m["content"]:
                    if p.get("type") == "image_url":
                        seen += 1
                        if seen > 1 or "Image with the" in json.dumps(m["content"]):
                            p = {"type": "image_url", "rendering": True}
                    parts.append(p)
                m = {**m, "content": parts}
            messages.append(m)
        out.append({**body, "messages": messages})
    return out


# 0.985: SAM 3 keeps nothing; the stand-in's own policy then reports no mask
@pytest.mark.parametrize(("threshold", "script"), [(0.5, SCRIPT), (0.985, {})])
def test_final_masks_equal_upstreams_loop_on_the_same_conversations(confident_path, sam3_repo, tmp_path, threshold, script) -> None:
    with StandIn(script) as server:
        ours = agent(confident_path, server, sam3_repo, concurrency=3, score_threshold=threshold)
        preds = ours.predict_many([(IMAGES[k], [query(q, n)]) for n, (k, q) in enumerate(CASES)])
        our_bodies = {(r.image, r.query): [] for r in server.requests}
        for r in server.requests:
            our_bodies[(r.image, r.query)].append(r.body)
    assert ours.stats()["sessions"] == len(CASES) and ours.stats()["sessions_failed"] == 0
    with StandIn(script) as server:
        reference = upstream_agent(sam3_repo, ours.model, ours.processor, server.url, server.model,
                                   resolution=int(ours._pixels(IMAGES[0]).shape[-1]), threshold=threshold)
        for n, ((k, q), (pred,)) in enumerate(zip(CASES, preds)):
            image_path = save_png(IMAGES[k], tmp_path / f"image{n}.png")
            _, final = reference(image_path, q, str(tmp_path / f"out{n}"))
            h, w = IMAGES[k].shape[:2]
            chosen = [{"size": [h, w], "counts": c} for c in final["pred_masks"]]
            expected = masks.union(chosen, h, w) if chosen else masks.empty(h, w)
            assert pred.parse_status is ParseStatus.OK and pred.error is None, pred.answer
            assert np.array_equal(masks.decode(pred.mask), masks.decode(expected)), (q, pred.reasoning)
            record = json.loads(pred.text)
            assert record["final"]["masks"] == len(final["pred_masks"])
        theirs = {(r.image, r.query): [] for r in server.requests}
        for r in server.requests:
            theirs[(r.image, r.query)].append(r.body)
    # the same requests, in the same order, per conversation: our client sends what upstream's sends
    assert {k: _without_renderings(v) for k, v in our_bodies.items()} == {k: _without_renderings(v) for k, v in theirs.items()}
    if threshold == 0.5:  # the scripted paths were taken: 2 masks shown, one rejected, [2, 1, 7] asked of the one left
        first = json.loads(preds[0][0].text)
        assert [e["llm"]["kind"] for e in first["events"] if "llm" in e] == ["agent", "agent", "check", "check", "agent"]
        assert first["final"] == {"tool": "select_masks_and_return", "parameters": {"final_answer_masks": [2, 1, 7]}, "masks": 1}
        assert json.loads(preds[4][0].text)["final"]["masks"] == 2  # two masks chosen: their union
        assert masks.area(preds[2][0].mask) == 0 and json.loads(preds[2][0].text)["final"]["tool"] == "report_no_mask"
    else:
        assert all(masks.area(p.mask) == 0 and json.loads(p.text)["final"]["tool"] == "report_no_mask" for (p,) in preds)
        assert all(json.loads(p.text)["events"][1]["sam3"]["instances"] == 0 for (p,) in preds)


@pytest.mark.parametrize(("reply", "reason"), [
    ("<think>x</think><tool>{not json}</tool>", "Invalid JSON in tool call"),
    ("I am sorry, I cannot help with that.", "Invalid JSON in tool call"),  # a refusal: no tool call at all
    ({"content": None}, "Generated text is None"),  # a filtered answer
    ({"choices": []}, "Generated text is None"),
    (tool("fly_away"), "AssertionError"),  # the first tool must be segment_phrase or report_no_mask
])
def test_the_agents_own_failures_give_an_empty_mask_and_a_failed_parse(confident_path, sam3_repo, reply, reason) -> None:
    with StandIn({"bad": {"agent": [reply]}}) as server:
        adapter = agent(confident_path, server, sam3_repo)
        (bad, good), = adapter.predict_many([(IMAGES[0], [query("bad"), query("fine", 1)])])
    assert bad.error is None and bad.parse_status is ParseStatus.FAILED and masks.area(bad.mask) == 0
    assert reason in bad.answer and json.loads(bad.text)["final"]["error"].startswith(bad.answer.split(": ", 2)[-1][:20])
    assert good.parse_status is ParseStatus.OK and masks.area(good.mask) > 0
    assert adapter.stats()["agent_errors"] == 1 and adapter.stats()["sessions_failed"] == 0


def test_more_rounds_than_max_turns_is_the_agents_failure(confident_path, sam3_repo) -> None:
    prompts = ["zebra", "circle", "cat", "dog"]
    with StandIn({"endless": {"agent": [tool("segment_phrase", text_prompt=p) for p in prompts]}}) as server:
        adapter = agent(confident_path, server, sam3_repo, max_turns=2)
        (pred,), = adapter.predict_many([(IMAGES[0], [query("endless")])])
        assert server.count(query="endless") == 3  # upstream's rule: more than max_generations rounds raises
    assert pred.parse_status is ParseStatus.FAILED and "Exceeded maximum number of allowed generation requests (2)" in pred.answer


def test_an_endpoint_failing_mid_run_fails_only_its_samples_with_the_status(confident_path, sam3_repo) -> None:
    script = {"down": {"agent": [{"status": 500, "body": "engine dead"}] * 3},
              "flaky": {"agent": [{"status": 503, "retry_after": 0}, tool("report_no_mask")]},
              "rejected": {"agent": [{"status": 400, "body": "context too long"}]}}
    with StandIn(script) as server:
        adapter = agent(confident_path, server, sam3_repo, retries=2)
        (down, flaky, rejected, fine), = adapter.predict_many(
            [(IMAGES[0], [query("down"), query("flaky", 1), query("rejected", 2), query("fine", 3)])])
        assert server.count(query="down") == 3 and server.count(query="rejected") == 1  # 400 is not retried
    assert down.mask is None and "HTTP 500" in down.error and "after 3 tries" in down.error and "engine dead" in down.error
    assert rejected.mask is None and "HTTP 400" in rejected.error and "after 1 try" in rejected.error
    call = json.loads(down.text)["events"][0]["llm"]
    assert call["status"] == 500 and [t["status"] for t in call["tries"]] == [500, 500, 500]
    assert flaky.parse_status is ParseStatus.OK and flaky.error is None
    assert [t["status"] for t in json.loads(flaky.text)["events"][0]["llm"]["tries"]] == [503, 200]
    assert fine.parse_status is ParseStatus.OK and masks.area(fine.mask) > 0
    stats = adapter.stats()
    assert stats["sessions_failed"] == 2 and stats["llm_failures"] == 2 and stats["llm_tries"] == stats["llm_calls"] + 3


def test_sessions_in_flight_are_bounded_by_concurrency(confident_path, sam3_repo) -> None:
    with StandIn(delay=0.15) as server:
        adapter = agent(confident_path, server, sam3_repo, concurrency=3)
        preds = adapter.predict_many([(IMAGES[0], [query(f"thing {i}", i) for i in range(4)]),
                                      (IMAGES[1], [query(f"other {i}", 4 + i) for i in range(3)])])
        assert server.max_in_flight == 3
    assert [len(p) for p in preds] == [4, 3] and all(p.parse_status is ParseStatus.OK for ps in preds for p in ps)
    stats = adapter.stats()
    assert stats["images_encoded_by_segmenter"] == 2  # once per image, whatever the number of sessions and prompts
    assert stats["forward_passes"] == 7 and 1 <= stats["sam_batches"] <= 7 and stats["llm_calls"] == 14


def test_prompts_from_several_sessions_share_one_forward_and_match_one_by_one(confident_path) -> None:
    import threading

    sam = Sam3AgentAdapter(model_path=confident_path)
    super(Sam3AgentAdapter, sam).load("cpu")
    asks = [(0, "blue thing"), (1, "circle"), (0, "cat")]

    def serve(max_batch: int) -> tuple[list[dict], dict[str, float]]:
        counters = dict.fromkeys(("images_encoded_by_segmenter", "forward_passes", "sam_batches", "instances_kept"), 0.0)
        segmenter = Segmenter(sam, IMAGES, max_batch, counters, threading.Lock())
        results: list[dict] = [{}] * len(asks)

        def ask(n: int) -> None:
            results[n] = segmenter.segment(*asks[n])
            segmenter.finished()

        threads = [threading.Thread(target=ask, args=(n,)) for n in range(len(asks))]
        for t in threads:
            t.start()
        while segmenter._asks.qsize() < len(asks):  # all three wait: they meet in one forward
            threading.Event().wait(0.01)
        segmenter.serve(len(asks))
        for t in threads:
            t.join()
        return results, counters

    together, counted = serve(16)
    alone, counted_alone = serve(1)
    assert counted["sam_batches"] == 1 and counted_alone["sam_batches"] == 3 and counted["forward_passes"] == 3
    assert counted["images_encoded_by_segmenter"] == counted_alone["images_encoded_by_segmenter"] == 2
    for a, b in zip(together, alone):
        assert torch.equal(a["masks"], b["masks"]) and a["masks"].shape[1] == 1
        assert torch.allclose(a["scores"], b["scores"], atol=1e-6) and torch.allclose(a["boxes"], b["boxes"], atol=1e-4)


def test_preflight_refuses_an_endpoint_that_is_down_or_serves_another_model(sam3_repo, tmp_path) -> None:
    with StandIn() as server:
        url = server.url
        with pytest.raises(AgentError, match=r"does not serve 'qwen'.*serves: stand-in"):
            Sam3AgentAdapter(llm_url=url, llm_model="qwen", upstream_repo=str(sam3_repo)).check()
    with pytest.raises(AgentError, match=f"sam3-agent: the LLM endpoint {url} cannot be reached"):
        Sam3AgentAdapter(llm_url=url, llm_model="stand-in", upstream_repo=str(sam3_repo)).check()
    with StandIn(models_status=401) as server, pytest.raises(AgentError, match="HTTP 401"):
        Sam3AgentAdapter(llm_url=server.url, llm_model="stand-in", upstream_repo=str(sam3_repo)).check()
    with pytest.raises(AgentError, match="not a facebookresearch/sam3 checkout"):
        Sam3AgentAdapter(upstream_repo=str(tmp_path)).check()
    with pytest.raises(AgentError, match=r"KEY_NOT_SET.*is not set"), StandIn() as server:
        Sam3AgentAdapter(llm_url=server.url, llm_model="stand-in", api_key_env="KEY_NOT_SET", upstream_repo=str(sam3_repo)).check()


def test_inputs_are_upstreams_first_request(confident_path, sam3_repo) -> None:
    adapter = Sam3AgentAdapter(model_path=confident_path, upstream_repo=str(sam3_repo), temperature=0.0, seed=7)
    shown = adapter.inputs(IMAGES[0], query("the blue thing"))
    import hashlib

    system = (sam3_repo / "sam3/agent/system_prompts/system_prompt.txt").read_text().strip()
    assert shown["system_prompt"] == f"sha256:{hashlib.sha256(system.encode()).hexdigest()}"
    assert shown["prompt"] == "The above image is the raw input image. The initial user input query is: 'the blue thing'."
    assert json.loads(shown["request"]) == {"model": "Qwen/Qwen2.5-VL-7B-Instruct", "max_completion_tokens": 4096, "n": 1,
                                            "temperature": 0.0, "seed": 7}


def test_options_registry_and_fingerprint(sam3_repo) -> None:
    assert adapter_class("sam3-agent") is Sam3AgentAdapter
    a = Sam3AgentAdapter(llm_url="http://a:1/v1", concurrency=4, upstream_repo="/x")
    b = Sam3AgentAdapter(llm_url="http://b:2/v1", concurrency=16, request_timeout=5, retries=0)
    assert a.config() == b.config()  # where and how patiently to ask: not the model's behaviour
    assert a.config() != Sam3AgentAdapter(llm_model="other").config() != Sam3AgentAdapter(temperature=0.0).config()
    for bad in ({"concurrency": 0}, {"max_turns": 1.5}, {"retries": -1}, {"llm_url": "127.0.0.1:8000"}):
        with pytest.raises(ValueError, match=next(iter(bad)) if "llm_url" not in bad else "llm_url"):
            Sam3AgentAdapter(**bad)
    with pytest.raises(TypeError, match="unknown options"):
        Sam3AgentAdapter(mode="top1")


def test_defaults_are_upstreams(sam3_repo) -> None:
    """``max_turns`` and ``max_tokens`` default to ``agent_inference``'s ``max_generations`` and
    ``send_generate_request``'s ``max_tokens`` in the checkout."""
    import importlib
    import inspect

    from harness_sam3.agent.upstream import load_agent

    code = load_agent(str(sam3_repo))
    client_llm = importlib.import_module("sam3.agent.client_llm")
    options = Sam3AgentAdapter().options
    assert options["max_turns"] == inspect.signature(code.agent_core.agent_inference).parameters["max_generations"].default
    assert options["max_tokens"] == inspect.signature(client_llm.send_generate_request).parameters["max_tokens"].default


def test_a_reply_slower_than_the_timeout_is_retried_then_fails_the_sample(confident_path, sam3_repo) -> None:
    with StandIn({"slow": {"agent": [{"delay": 1.0, "content": tool("report_no_mask")}] * 2}}) as server:
        adapter = agent(confident_path, server, sam3_repo, request_timeout=0.3, retries=1)
        (slow,), = adapter.predict_many([(IMAGES[0], [query("slow")])])
    assert slow.mask is None and "no HTTP answer" in slow.error and "no answer within 0.3 s" in slow.error
    assert "after 2 tries" in slow.error
