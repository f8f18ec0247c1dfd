"""The model runs on a thread of its own (or in its worker) while the engine scores and logs: the same
logs, byte for byte but for timings, as calling it in the engine's thread; resume, interrupts,
fail-fast, out-of-memory halving and the log's timings behave as they did."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import types
from pathlib import Path
from typing import Any

import helper_adapters
import pytest
from conftest import results_of, write_suite
from helper_adapters import predict_samples
from helper_datasets import write_refer_many
from test_worker import plugin_site, plugins  # noqa: F401 (fixtures: the test adapters in every worker)

from harness import masks
from harness.data.samples import load_samples
from harness.data.suites import load_suite
from harness.records.store import read_records
from harness.run import callers, predict
from harness.run.config import build_config
from harness.run.runner import run
from harness.types import Prediction

pytestmark = pytest.mark.usefixtures("isolated", "plugins")

TIMING = re.compile(rb'"seconds":[^,}]+')


def without_timings(log: Path) -> bytes:
    return TIMING.sub(b'"seconds":null', log.read_bytes())


def records_without_timings(log: Path) -> list[dict[str, Any]]:
    out = read_records(log)
    for r in out:
        r["prediction"]["seconds"] = None
    return out


def direct_caller(adapter: Any, timeout: Any, device: Any = None) -> Any:
    """The engine as it was: an in-process model called in the engine's thread."""
    return callers.Pipelined(adapter) if adapter.pipeline_window > 1 else callers.Direct(adapter)


def refer_suite(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "data"
    assert write_refer_many(root) >= 30
    suite = tmp_path / "refer-many.yaml"
    suite.write_text(textwrap.dedent("""\
        name: refer-many
        version: 1
        source:
          format: refer
          splits: {val: {dataset: refcoco, split_by: unc, split: val}}
        splits: {val: {}}
        conventions: {sample_unit: sentence}
        """))
    return suite, root


def suite_of(tmp_path: Path, kind: str) -> tuple[Path, Path | None]:
    return refer_suite(tmp_path) if kind == "refer" else (write_suite(tmp_path, val=5, test=1), None)


MODELS = ("pixel-boxes", "multi-pixel-boxes")  # one image per call, and batches spanning images


def run_models(tmp_path: Path, name: str, suite: Path, root: Path | None, models: dict[str, Any], batch_size: int,
               **kw: Any) -> Path:
    config = tmp_path / f"{name}.json"
    config.write_text(json.dumps({"suite": str(suite), "splits": ["val"], "models": models}))
    out = tmp_path / name
    run(build_config(config_file=config, out=out, batch_size=batch_size, data_root=root, **kw), render=False)
    return out


@pytest.mark.parametrize("batch_size", [1, 3, 8])
@pytest.mark.parametrize("kind", ["shapes", "refer"])
def test_logs_are_those_of_a_model_called_in_the_engines_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 kind: str, batch_size: int) -> None:
    suite, root = suite_of(tmp_path, kind)
    with monkeypatch.context() as m:
        m.setattr(predict, "caller_for", direct_caller)
        before = run_models(tmp_path, "direct", suite, root, {name: {} for name in MODELS}, batch_size)
    assert helper_adapters.PixelBoxes.threads == helper_adapters.MultiPixelBoxes.threads == {"MainThread"}
    threaded = run_models(tmp_path, "threaded", suite, root, {name: {} for name in MODELS}, batch_size)
    assert helper_adapters.PixelBoxes.threads - {"MainThread"} == {"harness-model"}
    worker = run_models(tmp_path, "worker", suite, root, {name: {"python": sys.executable} for name in MODELS}, batch_size)
    for name in MODELS:
        expected = without_timings(before / name / "val.jsonl")
        assert expected.count(b"\n") >= 20
        assert without_timings(threaded / name / "val.jsonl") == expected, (name, "in process")
        assert without_timings(worker / name / "val.jsonl") == expected, (name, "in a worker")
    assert results_of(threaded) == results_of(before) == results_of(worker)
    assert not [t for t in threading.enumerate() if t.name == "harness-model"]  # every model thread was joined


@pytest.mark.slow
@pytest.mark.parametrize("where", ["in-process", "worker"])
def test_a_killed_run_resumes_to_the_same_logs(tmp_path: Path, where: str) -> None:
    """A real `harness run` killed with SIGKILL mid-run, then run again: the log is the clean run's."""
    suite, root = refer_suite(tmp_path)
    model: dict[str, Any] = {"adapter": "pixel-boxes"} if where == "in-process" else {"adapter": "pixel-boxes", "python": sys.executable}
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"suite": str(suite), "splits": ["val"], "models": {"m": model}}))
    args = [sys.executable, "-m", "harness", "run", "--config", str(config), "--data-root", str(root), "--no-report", "--batch-size", "1"]
    env = {**os.environ, "HARNESS_CACHE": str(tmp_path / "cache")}
    subprocess.run([*args, "--out", str(tmp_path / "clean")], check=True, env=env, capture_output=True, timeout=300)
    clean = records_without_timings(tmp_path / "clean" / "m" / "val.jsonl")
    log = tmp_path / "killed" / "m" / "val.jsonl"
    proc = subprocess.Popen([*args, "--out", str(tmp_path / "killed")], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not log.exists() or log.read_bytes().count(b"\n") < 3):
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 3 <= log.read_bytes().count(b"\n") < len(clean), "the run was not killed midway"
    subprocess.run([*args, "--out", str(tmp_path / "killed")], check=True, env=env, capture_output=True, timeout=300)
    assert records_without_timings(log) == clean
    assert results_of(tmp_path / "killed") == results_of(tmp_path / "clean")


@pytest.mark.parametrize("where", ["in-process", "worker"])
def test_an_interrupt_stops_within_one_batch_and_the_run_resumes(tmp_path: Path, where: str) -> None:
    suite, root = refer_suite(tmp_path)
    clean = run_models(tmp_path, "clean", suite, root, {"pixel-boxes": {}}, batch_size=2)
    options = {"at": 3, "once": str(tmp_path / "pressed"), "parent": where == "worker"}
    spec: dict[str, Any] = {"adapter": "interrupter", "options": options}
    if where == "worker":
        spec["python"] = sys.executable
    with pytest.raises(KeyboardInterrupt):
        run_models(tmp_path, "stopped", suite, root, {"pixel-boxes": spec}, batch_size=2)
    assert not [t for t in threading.enumerate() if t.name == "harness-model"]  # the model thread was stopped
    if where == "in-process":
        # Ctrl-C came during call 3; the batch queued behind it may have started, none after it.
        assert 3 <= len(helper_adapters.Interrupter.calls) <= 4
    log = tmp_path / "stopped" / "pixel-boxes" / "val.jsonl"
    # At most the batches answered before the one it was pressed on (none yet, perhaps, behind a worker's window).
    assert (log.read_bytes().count(b"\n") if log.exists() else 0) <= 2 * 2
    run_models(tmp_path, "stopped", suite, root, {"pixel-boxes": spec}, batch_size=2)  # resumed: once only
    assert records_without_timings(log) == records_without_timings(clean / "pixel-boxes" / "val.jsonl")


def test_fail_fast_raises_the_models_exception_with_its_traceback(tmp_path: Path) -> None:
    suite = str(write_suite(tmp_path, val=2, test=1))
    with pytest.raises(RuntimeError, match="CUDA went away") as info:
        run(build_config(models="flaky", suite=suite, splits="val", out=tmp_path / "ff", fail_fast=True, batch_size=1), render=False)
    frames = [(Path(str(e.path)).name, e.name) for e in info.traceback]
    assert ("helper_adapters.py", "predict") in frames  # raised in the model thread, shown where it happened
    assert ("predict.py", "predict_batches") in frames  # and re-raised in the engine's
    assert not [t for t in threading.enumerate() if t.name == "harness-model"]


def test_out_of_memory_halves_run_before_the_next_batch_as_in_the_engines_thread(tmp_path: Path,
                                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    suite, root = refer_suite(tmp_path)
    with monkeypatch.context() as m:
        m.setattr(predict, "caller_for", direct_caller)
        before = run_models(tmp_path, "direct", suite, root, {"greedy-pixel-boxes": {}}, batch_size=8)
    direct_calls = list(helper_adapters.GreedyPixelBoxes.calls)
    helper_adapters.GreedyPixelBoxes.calls.clear()
    threaded = run_models(tmp_path, "threaded", suite, root, {"greedy-pixel-boxes": {}}, batch_size=8)
    assert helper_adapters.GreedyPixelBoxes.threads == {"MainThread", "harness-model"}
    # 8 -> 4 -> 2, each half before the batches sent behind it: the calls in the same order, the same sizes.
    assert helper_adapters.GreedyPixelBoxes.calls == direct_calls
    assert [len(c) for c in direct_calls[:4]] == [8, 4, 2, 2]
    log = "greedy-pixel-boxes/val.jsonl"
    assert without_timings(threaded / log) == without_timings(before / log)
    assert max(r.get("oom_halvings", 0) for r in read_records(threaded / log)) == 2


def test_a_samples_seconds_are_the_model_calls_own(tmp_path: Path) -> None:
    """Measured in the model thread: neither the engine's wait for the answer (nil when the model is ahead)
    nor the time the batch spent queued while the engine was busy."""
    samples = load_samples(load_suite(str(write_suite(tmp_path, val=3, test=1))), ["val"], None)["val"]
    seconds = []
    for ready in predict.predict_batches(helper_adapters.Sleeper(seconds=0.05), samples, 2):
        time.sleep(0.2)  # the engine scoring and logging slowly, while the model runs the next batch
        seconds += [p.prediction.seconds for _, p in ready]
    assert len(seconds) == len(samples)
    assert all(0.05 / 2 <= s < 0.2 / 2 for s in seconds), seconds


def test_a_timeout_keeps_the_model_in_the_engines_thread(tmp_path: Path) -> None:
    """SIGALRM reaches the main thread only: under --timeout the model runs there, and is interrupted."""
    samples = load_samples(load_suite(str(write_suite(tmp_path, val=2, test=1))), ["val"], None)["val"]
    adapter = helper_adapters.PixelBoxes()
    list(predict_samples(adapter, samples, 4, timeout=30))
    assert helper_adapters.PixelBoxes.threads == {"MainThread"}
    out = [p.prediction for _, p in predict_samples(helper_adapters.SlowAdapter(), samples, 1, timeout=0.3)]
    assert sum("timed out after" in (p.error or "") for p in out) == 2  # the samples ending in /0, interrupted


class FakeCuda:
    """torch.cuda as the model thread sees it: what it is asked to select, by which thread."""

    def __init__(self, initialized: bool = True) -> None:
        self.events: list[tuple[str, str, Any]] = []
        self.initialized = initialized

    def is_available(self) -> bool:
        return True

    def is_initialized(self) -> bool:
        return self.initialized

    def current_device(self) -> int:
        return 0

    def current_stream(self, index: int) -> str:
        return f"stream of cuda:{index}"

    def set_device(self, index: int) -> None:
        self.events.append((threading.current_thread().name, "set_device", index))

    def set_stream(self, stream: str) -> None:
        self.events.append((threading.current_thread().name, "set_stream", stream))


@pytest.mark.parametrize(("device", "initialized", "expected"), [
    ("cuda:1", True, [("set_device", 1), ("set_stream", "stream of cuda:1")]),
    ("cuda:1", False, [("set_device", 1)]),  # CUDA not started yet: the model thread starts it on its device
    ("cuda", True, [("set_device", 0), ("set_stream", "stream of cuda:0")]),  # the engine thread's current device
    ("cuda", False, []),
    ("cpu", True, []),
])
def test_the_model_thread_runs_on_the_device_the_model_was_loaded_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, device: str,
                                                                      initialized: bool, expected: list[tuple[str, Any]]) -> None:
    cuda = FakeCuda(initialized)

    def torch_device(spec: str) -> Any:
        return types.SimpleNamespace(index=int(spec.split(":")[1]) if ":" in spec else None)

    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=cuda, device=torch_device))
    samples = load_samples(load_suite(str(write_suite(tmp_path, val=2, test=1))), ["val"], None)["val"]

    class Watching(helper_adapters.PixelBoxes):
        def predict(self, image: Any, queries: Any) -> Any:
            cuda.events.append((threading.current_thread().name, "predict", None))
            return super().predict(image, queries)

    list(predict.predict_batches(Watching(), samples, 4, device=device))
    selected = [(what, arg) for thread, what, arg in cuda.events if what != "predict"]
    assert selected == expected
    assert {thread for thread, _, _ in cuda.events} == {"harness-model"}  # selected in the thread that runs the model
    assert cuda.events[len(expected)][1] == "predict"  # before its first call


def test_a_torch_model_on_the_model_thread_gives_the_masks_of_the_engines_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A small convolutional 'segmenter' in torch (CPU, intra-op threads as set in the engine's thread), its
    thread-local state (inference mode) set inside predict as the adapters do: bit-identical masks."""
    torch = pytest.importorskip("torch")
    samples = load_samples(load_suite(str(write_suite(tmp_path, val=3, test=1))), ["val"], None)["val"]

    class TorchSegmenter(helper_adapters.PixelBoxes):
        multi_image = True

        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 5, padding=2), torch.nn.ReLU(), torch.nn.Conv2d(8, 1, 3, padding=1))
            with torch.no_grad():
                for i, p in enumerate(self.net.parameters()):
                    p.copy_(torch.linspace(-1, 1, p.numel()).reshape(p.shape) * (0.3 + 0.1 * i))
            self.threads: list[tuple[str, int, bool]] = []

        def predict_many(self, items: Any) -> Any:
            self.threads.append((threading.current_thread().name, torch.get_num_threads(), torch.is_grad_enabled()))
            with torch.inference_mode():
                batch = torch.stack([torch.tensor(image).permute(2, 0, 1).float() / 255 for image, _ in items])
                logits = self.net(batch)[:, 0]
            out = []
            for (_, queries), logit in zip(items, logits):
                mask = (logit > logit.median()).numpy()
                out.append([Prediction(mask=masks.encode(mask)) for _ in queries])
            return out

    def masks_of(adapter: Any) -> list[Any]:
        return [p.prediction.mask for _, p in predict_samples(adapter, samples, 5)]

    torch.set_num_threads(2)
    with monkeypatch.context() as m:
        m.setattr(predict, "caller_for", direct_caller)
        direct = TorchSegmenter()
        expected = masks_of(direct)
    threaded = TorchSegmenter()
    assert masks_of(threaded) == expected
    assert {t for t, _, _ in direct.threads} == {"MainThread"} and {t for t, _, _ in threaded.threads} == {"harness-model"}
    assert {(n, g) for _, n, g in threaded.threads} == {(2, True)}  # the engine thread's intra-op threads; grad mode as a new thread has it
