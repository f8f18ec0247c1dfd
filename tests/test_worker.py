"""Isolated model processes: the worker protocol, RemoteAdapter, crashes, timeouts, two interpreters in one run."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path
from typing import Any

import pytest
import worker_adapters
from conftest import results_of, write_suite

from harness.cli import main
from harness.data.samples import load_samples
from harness.data.suites import load_suite
from harness.records.store import read_records
from harness.registry import create_adapter
from harness.run import envs
from harness.run.channel import alarm_paused
from harness.run.config import ConfigError, ModelSpec, build_config
from harness.run.remote import (
    RemoteAdapter,
    WorkerAbort,
    WorkerError,
    collect_stats,
    counters_since,
    isolation_for,
    make_adapter,
    merge_counters,
)
from harness.run.runner import run
from harness.run.worker import PROTOCOL, query_from_json, query_to_json, serve
from harness.types import Sample

TESTS = Path(__file__).parent
pytestmark = pytest.mark.usefixtures("isolated", "plugins")


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dist-info registering the worker test adapters, as an installed plugin would."""
    site = tmp_path_factory.mktemp("plugin_site")
    info = site / "harness_worker_tests-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: harness-worker-tests\nVersion: 1.0\n")
    lines = "".join(f"{name} = {target}\n" for name, target in worker_adapters.ENTRY_POINTS.items())
    (info / "entry_points.txt").write_text("[harness.adapters]\n" + lines)
    return site


@pytest.fixture
def plugins(plugin_site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The test adapters visible here and in every worker; a private environment registry."""
    path = [str(plugin_site), str(TESTS), *([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(path))
    monkeypatch.syspath_prepend(str(plugin_site))
    monkeypatch.setenv("HARNESS_HOME", str(tmp_path / "home"))


def val_samples(tmp_path: Path, images: int = 2) -> list[Sample]:
    suite = load_suite(str(write_suite(tmp_path, val=images, test=1)))
    return load_samples(suite, ["val"], None)["val"]


def converse(requests: list[Any], max_bytes: int = 1 << 20) -> list[dict[str, Any]]:
    data = b"".join(r if isinstance(r, bytes) else json.dumps(r).encode() + b"\n" for r in requests)
    out = io.BytesIO()
    assert serve(io.BytesIO(data), out, max_bytes) == 0
    return [json.loads(line) for line in out.getvalue().splitlines()]


def hello(adapter: str = "shapes-reasoner", **options: Any) -> dict[str, Any]:
    return {"op": "hello", "protocol": PROTOCOL, "adapter": adapter, "options": options, "id": 1}


# -- the protocol, served in-process ----------------------------------------------------------


def test_protocol_round_trip_equals_a_direct_call(tmp_path: Path) -> None:
    samples = val_samples(tmp_path, images=1)
    image = samples[0].image
    replies = converse([hello(), {"op": "load", "device": "cpu", "id": 2},
                        {"op": "predict", "image": image, "queries": [query_to_json(s.query()) for s in samples], "id": 3},
                        {"op": "stats", "id": 4}, {"op": "shutdown", "id": 5}, {"op": "stats", "id": 6}])
    assert [r["id"] for r in replies] == [1, 2, 3, 4, 5]  # nothing is read after shutdown
    assert all(r["ok"] for r in replies)
    assert replies[0]["info"]["name"] == "shapes-reasoner" and replies[0]["info"]["box_space"] == "norm1000"
    assert replies[0]["config"] == create_adapter("shapes-reasoner").config()
    from harness.data.images import load_image

    direct = create_adapter("shapes-reasoner").predict(load_image(image), [s.query() for s in samples])
    got = replies[2]["predictions"]
    assert [{**p, "seconds": None} for p in got] == [p.to_json() for p in direct]
    assert all(p["seconds"] > 0 for p in got)
    assert replies[3]["stats"] == {**replies[2]["stats"]} and replies[3]["stats"]["samples"] == len(samples)
    assert [query_from_json(query_to_json(s.query()), "s") for s in samples] == [s.query() for s in samples]


def test_malformed_requests_get_error_replies_and_the_worker_goes_on(tmp_path: Path) -> None:
    sample = query_to_json(val_samples(tmp_path, images=1)[0].query())
    replies = converse([
        b"this is not json\n",
        b"[1, 2]\n",
        {"op": "predict", "image": sample["image"], "queries": [sample], "id": "early"},
        {"op": "hello", "protocol": 99, "adapter": "empty", "id": 2},
        {"op": "hello", "protocol": PROTOCOL, "adapter": "no-such-model", "id": 3},
        hello("empty"),
        hello("empty"),
        {"op": "fly", "id": 5},
        {"op": "predict", "image": sample["image"], "queries": [], "id": 6},
        {"op": "predict", "image": sample["image"], "queries": [{**sample, "gt": {"mask": {"size": [1], "counts": "1"}}}], "id": 7},
        {"op": "predict", "image": "/elsewhere.png", "queries": [sample], "id": 8},
        {"op": "predict", "image": sample["image"], "queries": [{**sample, "id": 7}], "id": 9},
        {"op": "predict", "image": sample["image"], "queries": [sample], "id": 10},
    ])
    errors = [(r.get("id"), r["error"]) for r in replies if not r["ok"]]
    assert [r["ok"] for r in replies] == [False] * 5 + [True] + [False] * 6 + [True]
    text = "\n".join(str(e) for e in errors)
    for expected in ("malformed JSON", "a JSON object with an 'op'", "before hello", f"speaks protocol {PROTOCOL}, the caller 99",
                     "unknown model 'no-such-model'", "already sent", "unknown op 'fly'", "1 to 4096 queries", "'gt' is not a query field",
                     "on the request's image", "'id' must be a string"):
        assert expected in text, expected
    assert errors[0][0] is None and errors[2][0] == "early"  # ids are echoed when there is one


def test_oversized_requests_are_refused_not_fatal() -> None:
    replies = converse([{"op": "stats", "pad": "x" * 5000, "id": 1}, hello("empty")], max_bytes=2000)
    assert replies[0] == {"ok": False, "error": "request longer than 2000 bytes refused", "type": "ProtocolError", "traceback": None}
    assert replies[1]["ok"] and replies[1]["id"] == 1


def test_merge_counters_sums_and_keeps_peaks() -> None:
    assert merge_counters({"samples": 3, "peak_gpu_memory_bytes": 10}, {"samples": 2, "peak_gpu_memory_bytes": 7, "new": 1}) == {
        "samples": 5, "peak_gpu_memory_bytes": 10, "new": 1}
    assert counters_since({"samples": 5, "peak_x": 9}, {"samples": 3, "peak_x": 4}) == {"samples": 2, "peak_x": 9}


# -- RemoteAdapter: a real worker process -----------------------------------------------------


def test_worker_stdout_is_reserved_and_counters_come_back(tmp_path: Path) -> None:
    samples = val_samples(tmp_path, images=2)
    log = tmp_path / "worker.log"
    adapter = RemoteAdapter("noisy", python=sys.executable, log_path=log)
    adapter.load("cpu")
    by_image: dict[str, list[Sample]] = {}
    for s in samples:
        by_image.setdefault(s.image, []).append(s)
    for batch in by_image.values():
        preds = adapter.predict(None, [s.query() for s in batch])  # type: ignore[arg-type]  # a remote adapter never needs the pixels
        assert len(preds) == len(batch) and all(isinstance(p.mask["counts"], str) for p in preds if p.mask)
    stats = collect_stats(adapter)
    assert stats["segmenter_images"] == 2 and stats["generated_tokens"] == 10 * len(samples)
    assert stats["samples"] == len(samples) and stats["batches"] == 2 and stats["worker_restarts"] == 0
    assert adapter.runtime_info()["python"] == sys.executable and adapter.runtime_info()["log"] == str(log)
    adapter.close()
    text = log.read_text()
    assert "loading on cpu" in text and "predicting, loudly" in text and "raw bytes on fd 1" in text
    assert collect_stats(adapter)["segmenter_images"] == 2  # counters outlive the process


def test_isolated_predictions_equal_in_process_ones(tmp_path: Path) -> None:
    suite = write_suite(tmp_path, val=3, test=2)
    config = tmp_path / "run.yaml"
    config.write_text(textwrap.dedent(f"""\
        suite: {suite}
        models:
          local: {{adapter: shapes-reasoner}}
          isolated: {{adapter: shapes-reasoner, python: {sys.executable}}}
          raiser-local: {{adapter: raiser}}
          raiser-isolated: {{adapter: raiser, python: {sys.executable}}}
    """))
    out = tmp_path / "run"
    # the raisers fail every sample: results are still written, and the exit status says so
    assert main(["run", "--config", str(config), "--out", str(out), "--batch-size", "3", "--no-report"]) == 4
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["models"]["local"]["fingerprint"] == manifest["models"]["isolated"]["fingerprint"]
    for split in ("val", "test"):
        for a, b in (("local", "isolated"), ("raiser-local", "raiser-isolated")):
            ra, rb = read_records(out / a / f"{split}.jsonl"), read_records(out / b / f"{split}.jsonl")
            strip = [{**r, "prediction": {**r["prediction"], "seconds": None}} for r in ra]
            assert strip == [{**r, "prediction": {**r["prediction"], "seconds": None}} for r in rb]
    assert "raiser failed on" in read_records(out / "raiser-isolated" / "val.jsonl")[0]["prediction"]["error"]
    results = results_of(out)
    assert results["local"] == results["isolated"]
    assert (out / "isolated" / "worker.log").exists() and not (out / "local" / "worker.log").exists()


def test_a_sample_that_kills_the_worker_fails_alone_and_the_worker_restarts(tmp_path: Path) -> None:
    samples = val_samples(tmp_path, images=2)
    victim = samples[1]
    suite = write_suite(tmp_path, val=2, test=1)
    spec = {"adapter": "suicidal", "options": {"kill_on": [victim.id]}, "python": sys.executable}
    config = tmp_path / "run.yaml"
    config.write_text(json.dumps({"suite": str(suite), "splits": ["val"], "models": {"suicidal": spec}}))
    out = tmp_path / "run"
    run(build_config(config_file=config, out=out, batch_size=1), render=False)
    records = {r["id"]: r for r in read_records(out / "suicidal" / "val.jsonl")}
    assert set(records) == {s.id for s in samples}
    error = records[victim.id]["prediction"]["error"]
    assert error.startswith(f"worker crashed (exit code -9, SIGKILL) on image {victim.image}") and "worker.log" in error
    # The batch behind the victim never ran and is sent again to the fresh worker, unless the worker
    # was already gone when its request was written (a race of the pipelined window): then it fails
    # too, and no other sample ever does.
    failed = [s.id for s in samples if records[s.id]["prediction"]["mask"] is None]
    assert failed in ([victim.id], [victim.id, samples[2].id]), failed
    log = (out / "suicidal" / "worker.log").read_text()
    assert log.count("harness.run.worker: pid") == 2 and "restarting worker for suicidal (restart 1)" in log


def test_a_worker_that_keeps_dying_stops_the_run(tmp_path: Path) -> None:
    samples = val_samples(tmp_path, images=2)
    adapter = RemoteAdapter("suicidal", {"kill_on": "*"}, sys.executable, max_restarts=2)
    adapter.load("cpu")
    for s in samples[:2]:
        [pred] = adapter.predict(None, [s.query()])  # type: ignore[arg-type]
        assert pred.failed and "SIGKILL" in (pred.error or "")
    with pytest.raises(WorkerAbort, match="lost 3 times in a row"):
        adapter.predict(None, [samples[2].query()])  # type: ignore[arg-type]
    assert adapter.stats()["worker_restarts"] == 2


def test_out_of_memory_in_the_worker_halves_the_batch_as_in_process(tmp_path: Path) -> None:
    suite = write_suite(tmp_path, val=2, test=1)
    config = tmp_path / "run.yaml"
    config.write_text(json.dumps({"suite": str(suite), "splits": ["val"], "models": {"greedy-plugin": {"python": sys.executable}}}))
    out = tmp_path / "run"
    run(build_config(config_file=config, out=out, batch_size=4), render=False)
    records = read_records(out / "greedy-plugin" / "val.jsonl")
    assert all(r["prediction"]["mask"] is not None for r in records)
    assert max(r.get("oom_halvings", 0) for r in records) >= 1


def test_a_timed_out_batch_kills_the_worker_and_the_rest_goes_on(tmp_path: Path) -> None:
    suite = write_suite(tmp_path, val=2, test=1)
    config = tmp_path / "run.yaml"
    config.write_text(json.dumps({"suite": str(suite), "splits": ["val"], "models": {"sleepy": {"python": sys.executable}}}))
    out = tmp_path / "run"
    run(build_config(config_file=config, out=out, batch_size=1, timeout=1.0), render=False)
    records = read_records(out / "sleepy" / "val.jsonl")
    slow = [r for r in records if r["id"].endswith("/0")]
    assert slow and all("timed out" in r["prediction"]["error"] for r in slow)
    assert all(r["prediction"]["mask"] is not None for r in records if not r["id"].endswith("/0"))
    assert "interrupted by SampleTimeout" in (out / "sleepy" / "worker.log").read_text()


def test_a_worker_that_cannot_start_is_a_clear_error(tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    with pytest.raises(WorkerError, match=r"No module named 'harness'(.|\n)*the engine is not installed there"):
        RemoteAdapter("empty", python=str(bare / "bin" / "python"), log_path=tmp_path / "w.log")
    with pytest.raises(WorkerError, match="refused adapter 'no-such-model'"):
        RemoteAdapter("no-such-model", python=sys.executable)
    with pytest.raises(WorkerError, match="does not exist"):
        make_adapter(ModelSpec(name="x", adapter="empty", python=str(tmp_path / "nope" / "python")))
    rude = tmp_path / "rude-python"  # an "interpreter" that answers anything but the protocol
    rude.write_text("#!/bin/sh\necho 'Welcome to my banner'\ncat > /dev/null\n")
    rude.chmod(0o755)
    with pytest.raises(WorkerError, match="malformed reply"):
        RemoteAdapter("empty", python=str(rude))


def test_restarting_a_worker_does_not_count_against_the_sample_timer() -> None:
    signal.setitimer(signal.ITIMER_REAL, 100.0)
    try:
        with alarm_paused():
            assert signal.getitimer(signal.ITIMER_REAL)[0] == 0.0
        assert 99.0 < signal.getitimer(signal.ITIMER_REAL)[0] <= 100.0
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


# -- configuration and precedence -------------------------------------------------------------


def test_config_python_and_env_keys(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("models:\n  a: {python: venvs/a/bin/python}\n  b: {adapter: empty, env: lens}\n  c: {}\n")
    a, b, c = build_config(config_file=path).models
    assert a.python == str(tmp_path / "venvs/a/bin/python") and a.env is None
    assert b.env == "lens" and b.python is None and c.python is c.env is None
    path.write_text("models:\n  a: {python: /x/python, env: lens}\n")
    with pytest.raises(ConfigError, match="at most one of python"):
        build_config(config_file=path)


def test_isolation_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HARNESS_LENS_REPO", raising=False)  # CI sets it for the conformance tests
    assert isolation_for(ModelSpec(name="e", adapter="empty")) is None
    rec = envs.EnvRecord(name="lens", python=sys.executable, path=str(tmp_path), adapters=["lens", "lens-cot"], created="now",
                         pins_hash="x", adapter_dir=str(tmp_path), engine="x", installer="pip", upstream="/src/LENS")
    envs._save_envs({"lens": rec})
    found = isolation_for(ModelSpec(name="m", adapter="lens-cot"))
    assert found is not None and found.env_name == "lens" and found.env_vars == {"HARNESS_LENS_REPO": "/src/LENS"}
    assert isolation_for(ModelSpec(name="m", adapter="lens", env="local")) is None
    explicit = isolation_for(ModelSpec(name="m", adapter="lens", python=sys.executable))
    assert explicit is not None and explicit.env_name is None
    with pytest.raises(envs.EnvError, match="Did you mean 'lens'"):
        isolation_for(ModelSpec(name="m", adapter="empty", env="lenz"))
    os.environ["HARNESS_LENS_REPO"] = "/mine"
    try:
        assert envs.worker_env_vars(rec) == {}  # the shell's value wins
    finally:
        del os.environ["HARNESS_LENS_REPO"]
    envs._save_envs({"lens": rec, "lens2": envs.EnvRecord(**{**rec.__dict__, "name": "lens2"})})
    with pytest.raises(envs.EnvError, match="provided by the environments lens, lens2"):
        isolation_for(ModelSpec(name="m", adapter="lens"))


# -- two interpreters in one run --------------------------------------------------------------


def layered_venv(path: Path) -> Path:
    """A second interpreter in seconds and offline: a bare venv that also sees this one's packages."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    parent = sysconfig.get_paths()["purelib"]
    (Path(purelib) / "_harness_parent.pth").write_text(f"import site; site.addsitedir({parent!r})\n")
    return python


def install_fake_dist(site: Path, dist: str, module: str, source: str, entry_points: dict[str, str]) -> None:
    """What pip leaves behind for a plugin: its module and a dist-info with entry points."""
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[harness.adapters]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items()))
    (site / f"{module}.py").write_text(textwrap.dedent(source))


ONLY_HERE = """\
    import sys
    from harness import masks
    from harness.adapter import Adapter, AdapterInfo
    from harness.types import Prediction

    class OnlyHere(Adapter):
        info = AdapterInfo(name="only-here", description="exists only in the second environment", outputs=("mask", "text"))

        def predict(self, image, samples):
            h, w = image.shape[:2]
            return [Prediction(mask=masks.full(h, w), text=sys.prefix) for _ in samples]
"""


@pytest.mark.slow
def test_two_models_from_two_interpreters_in_one_run(tmp_path: Path) -> None:
    venv = tmp_path / "venv2"
    python = layered_venv(venv)
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    install_fake_dist(site, "harness-only-here", "only_here", ONLY_HERE, {"only-here": "only_here:OnlyHere"})
    with pytest.raises(KeyError):
        create_adapter("only-here")  # not importable here: the run below must use the second interpreter
    suite = write_suite(tmp_path, val=2, test=1)
    config = tmp_path / "run.yaml"
    config.write_text(json.dumps({"suite": str(suite), "splits": ["val"],
                                  "models": {"only-here": {"python": str(python)}, "shapes-reasoner": {}}}))
    out = tmp_path / "run"
    assert main(["run", "--config", str(config), "--models", "shapes-reasoner,only-here", "--out", str(out)]) == 0
    texts = {r["prediction"]["text"] for r in read_records(out / "only-here" / "val.jsonl")}
    assert texts == {str(venv)}
    assert (out / "report" / "index.html").exists() and set(results_of(out)) == {"shapes-reasoner", "only-here"}
    assert "python " + str(python) in (out / "only-here" / "worker.log").read_text()


def test_a_model_in_a_worker_has_its_images_decoded_once_there(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import ImageFile

    from harness.run import predict

    pixel_loads: list[str] = []
    real_load = ImageFile.ImageFile.load
    def counted_load(im: Any) -> Any:  # a pixel decode is a load() with tiles still to decode
        if im.tile:
            pixel_loads.append(str(im.filename))
        return real_load(im)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counted_load)
    headers: list[str] = []
    monkeypatch.setattr(predict, "image_size", lambda p, *a, real=predict.image_size: headers.append(p) or real(p, *a))
    suite = write_suite(tmp_path, val=3, test=1)
    images = sorted({s.image for s in load_samples(load_suite(str(suite)), ["val"], None)["val"]})
    config = tmp_path / "run.yaml"
    config.write_text(f"suite: {suite}\nmodels:\n  isolated: {{adapter: shapes-reasoner, python: {sys.executable}}}\n"
                      "  local: {adapter: shapes-reasoner}\n")
    out = tmp_path / "run"
    pixel_loads.clear()
    assert main(["run", "--config", str(config), "--out", str(out), "--splits", "val", "--batch-size", "2", "--no-report"]) == 0
    # The parent read each image's header for the worker model, and decoded each once for the in-process one.
    assert sorted(headers) == images
    assert sorted(pixel_loads) == images
    efficiency = json.loads((out / "manifest.json").read_text())["models"]["isolated"]["efficiency"]["val"]["all"]
    assert efficiency["images"] == len(images)  # the worker's own count of decodes
    scores = {m: [r["score"] for r in read_records(out / m / "val.jsonl")] for m in ("isolated", "local")}
    assert scores["isolated"] == scores["local"]


def test_a_worker_decodes_images_by_the_suites_exif_convention(tmp_path: Path) -> None:
    """ReasonSeg's convention is cv2's (exif: apply): a worker model gets the upright image, the same
    size as the ground truth drawn on it, so its full-image mask is scored, not refused for its size."""
    pytest.importorskip("cv2")
    from helper_datasets import shape, write_labelme
    from test_images_exif import H, W, rotated_jpeg

    folder = tmp_path / "data" / "reason_seg" / "ReasonSeg" / "val"
    write_labelme(folder, "turned", H, W, [shape("target", [[2, 3], [12, 3], [12, 20], [2, 20]])], ["the thing"], False)
    rotated_jpeg(folder / "turned.jpg", 6)
    config = tmp_path / "run.yaml"
    config.write_text(f"suite: reasonseg\ndata_root: {tmp_path / 'data'}\nmodels:\n"
                      f"  isolated: {{adapter: full, python: {sys.executable}}}\n  local: {{adapter: full}}\n")
    out = tmp_path / "run"
    assert main(["run", "--config", str(config), "--out", str(out), "--splits", "val", "--no-report"]) == 0
    for model in ("isolated", "local"):
        (rec,) = read_records(out / model / "val.jsonl")
        assert rec["prediction"]["mask"]["size"] == [W, H] and not rec["score"]["failed"]
    res = results_of(out)
    assert res["isolated"]["val"] == res["local"]["val"]
