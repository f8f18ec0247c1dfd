"""Batches across images, decoding ahead, and the pipelined worker: the same results, faster."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import helper_adapters
import pytest
from conftest import results_of, write_suite
from helper_adapters import predict_samples
from test_worker import plugin_site, plugins  # noqa: F401 (fixtures: the worker test adapters)

from harness.data.images import ImageError
from harness.data.samples import load_samples
from harness.data.suites import load_suite
from harness.records.store import read_records
from harness.run.batches import Entry, Prefetcher, plan_batches
from harness.run.channel import Channel
from harness.run.config import build_config
from harness.run.predict import image_groups
from harness.run.remote import RemoteAdapter
from harness.run.runner import run
from harness.types import Prediction

pytestmark = pytest.mark.usefixtures("isolated", "plugins")


def shape_of(batches: list[list[Entry]]) -> list[list[tuple[str, int]]]:
    return [[(e.path, e.seq) for e in b] for b in batches]


def test_batches_span_images_only_for_a_multi_image_adapter() -> None:
    groups = [("a", ["a0", "a1", "a2"]), ("b", ["b0"]), ("c", ["c0", "c1"])]
    assert shape_of(plan_batches(groups, 2, multi_image=False)) == [
        [("a", 0), ("a", 1)], [("a", 2)], [("b", 3)], [("c", 4), ("c", 5)]]
    assert shape_of(plan_batches(groups, 2, multi_image=True)) == [
        [("a", 0), ("a", 1)], [("a", 2), ("b", 3)], [("c", 4), ("c", 5)]]
    assert shape_of(plan_batches(groups, 4, multi_image=True)) == [[("a", 0), ("a", 1), ("a", 2), ("b", 3)], [("c", 4), ("c", 5)]]
    with pytest.raises(ValueError, match="at least 1"):
        plan_batches(groups, 0, multi_image=True)


def test_the_prefetcher_decodes_ahead_once_per_image_and_hands_over_unreadable_images() -> None:
    decoded: list[str] = []

    def decode(path: str) -> Any:
        decoded.append(path)
        if path == "bad":
            raise ImageError("bad: not an image")
        return path.upper()

    batches = plan_batches([("a", [1, 2, 3]), ("bad", [4]), ("c", [5])], 2, multi_image=True)
    with Prefetcher(batches, decode, depth=2) as it:
        first = next(it)
        deadline = time.monotonic() + 5
        while len(decoded) < 3 and time.monotonic() < deadline:  # the next two batches decode while this one "runs"
            time.sleep(0.01)
        assert decoded == ["a", "bad", "c"]  # "a" once, though its samples span two batches
        rest = list(it)
    assert [e.image for e in first] == ["A", "A"]
    assert [e.image if isinstance(e.image, str) else str(e.image) for b in rest for e in b] == ["A", "bad: not an image", "C"]


def test_a_decoder_crash_is_raised_in_the_callers_thread() -> None:
    def decode(path: str) -> Any:
        raise MemoryError("no room")

    with pytest.raises(MemoryError, match="no room"), Prefetcher(plan_batches([("a", [1])], 1, True), decode) as it:
        list(it)


def run_records(tmp_path: Path, name: str, models: Any, batch_size: int, val: int = 5,
                **kw: Any) -> tuple[list[dict[str, Any]], dict[str, Any], Path]:
    suite = write_suite(tmp_path, val=val, test=1)
    out = tmp_path / name
    config = tmp_path / f"{name}.json"
    config.write_text(json.dumps({"suite": str(suite), "splits": ["val"], "models": models}))
    run(build_config(config_file=config, out=out, batch_size=batch_size, **kw), render=False)
    (model,) = models
    records = read_records(out / model / "val.jsonl")
    for r in records:  # timings are the one thing allowed to differ
        r["prediction"]["seconds"] = None
    return records, results_of(out)[model], out


def same_numbers(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_multi_image_batches_give_the_same_logs_and_results_in_process_and_in_a_worker(tmp_path: Path) -> None:
    base, base_results, _ = run_records(tmp_path, "one", {"shapes-reasoner": {}}, batch_size=3)
    multi, multi_results, _ = run_records(tmp_path, "multi", {"multi-shapes": {}}, batch_size=7)
    assert multi == base and len(base) == 20
    same_numbers(multi_results, base_results)
    calls = helper_adapters.MultiShapes.calls
    assert calls[0] == [4, 3] and calls[1] == [1, 4, 2] and sum(map(sum, calls)) == 20  # several images per call, split as planned
    isolated, isolated_results, out = run_records(tmp_path, "worker", {"multi-shapes": {"python": sys.executable}}, batch_size=7)
    assert isolated == base
    same_numbers(isolated_results, base_results)
    counters = json.loads((out / "manifest.json").read_text())["models"]["multi-shapes"]["efficiency"]["val"]["all"]
    assert counters["multi_calls"] == 3 and counters["multi_images"] == 7 and counters["peak_images_per_call"] == 3
    assert counters["images"] == 5  # the worker decoded each image once, though image 2 spans two calls
    one_worker, one_worker_results, _ = run_records(tmp_path, "one-worker", {"shapes-reasoner": {"python": sys.executable}}, batch_size=3)
    assert one_worker == base
    same_numbers(one_worker_results, base_results)


def test_out_of_memory_halves_a_multi_image_batch(tmp_path: Path) -> None:
    base, base_results, _ = run_records(tmp_path, "one", {"shapes-reasoner": {}}, batch_size=8)
    greedy, greedy_results, _ = run_records(tmp_path, "greedy", {"multi-greedy": {}}, batch_size=8)
    assert [r.get("oom_halvings", 0) for r in greedy] == [2] * 16 + [1] * 4  # 8 -> 4 -> 2 twice, then the last 4 -> 2
    assert [{k: v for k, v in r.items() if k != "oom_halvings"} for r in greedy] == base
    same_numbers(greedy_results, base_results)
    isolated, isolated_results, _ = run_records(tmp_path, "greedy-worker", {"multi-greedy": {"python": sys.executable}}, batch_size=8)
    diffs = [(a["id"], k, a.get(k), b.get(k)) for a, b in zip(isolated, greedy) for k in set(a) | set(b) if a.get(k) != b.get(k)]
    assert not diffs, diffs[:3]  # halved in the worker exactly as in-process, pipelined
    same_numbers(isolated_results, base_results)


def test_an_unreadable_image_in_a_multi_image_batch_fails_its_own_samples(tmp_path: Path) -> None:
    samples = load_samples(load_suite(str(write_suite(tmp_path, val=3, test=1))), ["val"], None)["val"]
    bad = samples[4].image
    Path(bad).write_bytes(b"not a png")
    got = list(predict_samples(helper_adapters.MultiShapes(), samples, 12))
    assert [s.id for s, _ in got] == [s.id for s in samples]
    failed = [s.image for s, p in got if p.prediction.failed]
    assert failed == [bad] * 4 and all(bad in (p.prediction.error or "") for s, p in got if s.image == bad)
    assert helper_adapters.MultiShapes.calls == [[4, 4]]


class FakePipelined:
    """A pipelined adapter that records the order of sends, receives and the caller's reading."""

    info = helper_adapters.MultiShapes.info
    decodes_images = True
    multi_image = True
    pipeline_window = 2

    def __init__(self, events: list[str]) -> None:
        self.events, self.queue, self.n = events, [], 0

    def send(self, items: Any) -> None:
        self.n += 1
        self.events.append(f"send {self.n}")
        self.queue.append([[Prediction(mask=None, error="x") for _ in q] for _, q in items])

    def receive(self) -> Any:
        self.events.append("receive")
        return self.queue.pop(0)

    def cancel(self) -> None:
        self.events.append("cancel")


def test_the_next_request_is_sent_before_the_previous_answer_is_read(tmp_path: Path) -> None:
    samples = load_samples(load_suite(str(write_suite(tmp_path, val=3, test=1))), ["val"], None)["val"]
    events: list[str] = []
    order = []
    for s, _ in predict_samples(FakePipelined(events), samples, 4):  # type: ignore[arg-type]
        events.append("read")
        order.append(s.id)
    assert order == [s.id for _, g in image_groups(samples) for s in g]
    assert events == ["send 1", "send 2", "receive", *["read"] * 4, "send 3", "receive", *["read"] * 4, "receive", *["read"] * 4]
    events.clear()
    gen = predict_samples(FakePipelined(events), samples, 4)  # type: ignore[arg-type]
    next(gen)
    gen.close()  # stopped with a request in flight: its answer must not stay in the pipe
    assert events[-1] == "cancel"


def test_a_worker_has_three_requests_in_flight(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []
    send, receive = Channel.send, Channel.receive
    monkeypatch.setattr(Channel, "send", lambda self, msg: (events.append(f"send {msg['op']}"), send(self, msg))[1])
    monkeypatch.setattr(Channel, "receive", lambda self, i: (events.append(f"receive {i}"), receive(self, i))[1])
    samples = load_samples(load_suite(str(write_suite(tmp_path, val=5, test=1))), ["val"], None)["val"]
    adapter = RemoteAdapter("shapes-reasoner", python=sys.executable)
    adapter.load("cpu")
    events.clear()
    try:
        got = list(predict_samples(adapter, samples, 4))
    finally:
        adapter.close()
    assert not any(p.prediction.failed for _, p in got)
    assert events == ["send predict"] * 3 + ["receive 3", "send predict", "receive 4", "send predict",
                                             "receive 5", "receive 6", "receive 7"]


@pytest.mark.parametrize("race", [False, True], ids=["as-it-comes", "request-written-after-the-death"])
def test_a_crash_mid_window_fails_exactly_the_batch_it_crashed_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, race: bool) -> None:
    samples = load_samples(load_suite(str(write_suite(tmp_path, val=4, test=1))), ["val"], None)["val"]
    victim = samples[5]  # second image: its batch is in flight with the third image's
    images = list(dict.fromkeys(s.image for s in samples))
    after = images[images.index(victim.image) + 1]
    waited: list[int] = []
    if race:
        # The window's race, made certain: the request behind the victim's is written only once the
        # worker is dead (it kills itself on the victim whatever comes next), so the write breaks.
        send = Channel.send

        def late_send(self: Channel, msg: dict[str, Any]) -> int:
            if msg.get("image") == after and not waited:  # the first write only: not the new worker's
                waited.append(self.proc.wait(30))
            return send(self, msg)

        monkeypatch.setattr(Channel, "send", late_send)
    spec = {"adapter": "suicidal", "options": {"kill_on": [victim.id]}, "python": sys.executable}
    records, _, out = run_records(tmp_path, "crash", {"suicidal": spec}, batch_size=4, val=4)
    failed = [r["id"] for r in records if r["prediction"]["mask"] is None]
    # Its batch alone: the one behind it never ran on the lost worker and is predicted by the new one.
    assert failed == [s.id for s in samples if s.image == victim.image], failed
    assert all(r["prediction"]["error"].startswith("worker crashed (exit code -9, SIGKILL) on image " + victim.image)
               for r in records if r["id"] in failed)
    log = (out / "suicidal" / "worker.log").read_text()
    assert log.count("harness.run.worker: pid") == 2
    assert waited == ([-9] if race else [])


def test_a_worker_lost_between_requests_fails_no_batch(tmp_path: Path) -> None:
    from harness.data.images import load_image

    samples = load_samples(load_suite(str(write_suite(tmp_path, val=2, test=1))), ["val"], None)["val"]
    (first, a), (second, b) = list(image_groups(samples))[:2]
    adapter = RemoteAdapter("shapes-reasoner", python=sys.executable)
    adapter.load("cpu")
    try:
        assert not any(p.failed for p in adapter.predict(load_image(first), [s.query() for s in a]))
        channel = adapter._channel[0]
        assert channel is not None
        channel.proc.kill()  # gone after its answer, before the next request (the OOM killer, a stray kill)
        channel.proc.wait(30)
        got = adapter.predict(load_image(second), [s.query() for s in b])
        assert len(got) == len(b) and not any(p.failed for p in got), [p.error for p in got]
        assert adapter.restarts == 1
    finally:
        adapter.close()


def test_the_worker_reader_decodes_the_next_request_while_the_model_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.run import requests, worker
    from harness.run.worker import query_to_json

    samples = load_samples(load_suite(str(write_suite(tmp_path, val=2, test=1))), ["val"], None)["val"]
    threads: list[str] = []
    real = requests.decode

    def decode(path: str, exif: str = "ignore") -> Any:
        threads.append(threading.current_thread().name)
        return real(path, exif)

    monkeypatch.setattr(requests, "decode", decode)
    hello = {"op": "hello", "protocol": worker.PROTOCOL, "adapter": "shapes-reasoner", "options": {}, "id": 1}
    reqs = [hello, *({"op": "predict", "image": path, "queries": [query_to_json(s.query()) for s in g], "id": i}
                     for i, (path, g) in enumerate(image_groups(samples), 2))]
    from io import BytesIO

    out = BytesIO()
    worker.serve(BytesIO(b"".join(json.dumps(r).encode() + b"\n" for r in reqs)), out)
    replies = [json.loads(line) for line in out.getvalue().splitlines()]
    assert all(r["ok"] for r in replies) and len(replies) == 3
    assert threads == ["harness-worker-reader"] * 2  # each image decoded once, by the reader


def test_an_adapter_prepares_each_image_ahead_on_the_array_it_then_predicts(tmp_path: Path) -> None:
    base, base_results, _ = run_records(tmp_path, "plain", {"multi-shapes": {}}, batch_size=7)
    for where, spec in (("in-process", {}), ("worker", {"python": sys.executable})):
        got, got_results, out = run_records(tmp_path, where, {"preparing-shapes": spec}, batch_size=7)
        assert got == base, where  # the same logs and numbers: preparing ahead is an optimisation only
        same_numbers(got_results, base_results)
        counts = json.loads((out / "manifest.json").read_text())["models"]["preparing-shapes"]["efficiency"]["val"]["all"]
        images = counts["multi_images"]
        # Every image predicted was prepared first, on the very array predict got, in another thread
        # (the prefetcher's, or the worker's reader); an image spanning two calls is prepared once.
        assert counts["hits"] == images and counts["misses"] == 0, (where, counts)
        assert counts["prepared"] == counts["prepared_elsewhere"] == len({r["id"].rsplit("/", 1)[0] for r in got}), (where, counts)
