"""``harness run`` with ``sam3-agent`` as its own process, against the stand-in server: a run killed with SIGKILL
resumes without asking the LLM again about any stored sample; an endpoint that is down fails the model before
any sample; one that fails mid-run fails only its samples (HTTP status in the reason), which ``--retry-failed``
runs again, and only those. Conformance tests (upstream's agent from HARNESS_SAM3_REPO)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from harness.data.images import decode
from standin_llm import StandIn, pixels_digest

pytestmark = pytest.mark.slow
CLI = [sys.executable, str(Path(__file__).with_name("harness_cli.py"))]


def _suite(tmp_path: Path, images: int) -> Path:
    path = tmp_path / "mini.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: mini
        version: 1
        source: {{format: shapes, seed: 3, images: {{val: {images}, test: 1}}}}
        splits: {{val: {{}}, test: {{}}}}
        conventions: {{}}
        """))
    return path


def _config(tmp_path: Path, model_path: str, url: str, repo: Path, **options) -> Path:
    path = tmp_path / "run.yaml"
    opts = {"model_path": model_path, "llm_url": url, "llm_model": "stand-in", "upstream_repo": str(repo),
            "retry_backoff": 0.0, **options}
    path.write_text(json.dumps({"models": {"sam3-agent": {"options": opts}}}))
    return path


def _harness(tmp_path: Path, *args: str, wait: bool = True):
    env = {**os.environ, "HARNESS_CACHE": str(tmp_path / "cache")}
    command = [*CLI, *args]
    if not wait:
        return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)


def _records(log: Path) -> list[dict]:
    """The log's whole lines (a kill may leave a torn last one)."""
    out = []
    for line in log.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


def _conversations(tmp_path: Path, records: list[dict]) -> set[tuple[str, str]]:
    """(image digest, expression) of the stored samples: how the stand-in names a sample's conversation."""
    images = {p.stem: pixels_digest(decode(p).array()) for p in (tmp_path / "cache").rglob("val/*.png")}
    return {(images[r["id"].split("/")[2]], r["expression"]) for r in records}


def test_a_killed_run_resumes_without_asking_again_about_a_stored_sample(confident_path, sam3_repo, tmp_path) -> None:
    suite = _suite(tmp_path, images=6)
    with StandIn(delay=0.05) as server:
        config = _config(tmp_path, confident_path, server.url, sam3_repo, concurrency=2)
        args = ["run", "--config", str(config), "--models", "sam3-agent", "--suite", str(suite), "--splits", "val",
                "--out", str(tmp_path / "run"), "--no-report", "--batch-size", "2"]
        log = tmp_path / "run" / "sam3-agent" / "val.jsonl"
        proc = _harness(tmp_path, *args, wait=False)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and (not log.exists() or len(_records(log)) < 6) and proc.poll() is None:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        stored = _records(log)
        assert 6 <= len(stored) < 24, "the run was not killed midway"
        before = len(server.requests)
        done = _conversations(tmp_path, stored)
        assert all(server.count(image, query) >= 2 for image, query in done)  # each asked the LLM (segment, select)

        result = _harness(tmp_path, *args)
        assert result.returncode == 0, result.stderr[-3000:]
        again = [(r.image, r.query) for r in server.requests[before:]]
    assert again and not done & set(again)  # the resumed run asked about unstored samples only
    final = _records(log)
    ids = [r["id"] for r in final]
    assert sorted(set(ids)) == sorted(ids) and len(ids) == 24  # every sample once
    assert all(r["prediction"]["parse_status"] == "ok" for r in final)
    assert (tmp_path / "run" / "results.json").exists()


def test_an_endpoint_that_is_down_fails_the_model_before_any_sample(confident_path, sam3_repo, tmp_path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    config = _config(tmp_path, confident_path, url, sam3_repo)
    result = _harness(tmp_path, "run", "--config", str(config), "--models", "sam3-agent", "--suite", str(_suite(tmp_path, 2)),
                      "--splits", "val", "--out", str(tmp_path / "run"), "--no-report")
    assert result.returncode != 0
    assert "no model has predicted anything" in result.stderr and f"the LLM endpoint {url} cannot be reached" in result.stderr
    assert not (tmp_path / "run" / "sam3-agent").exists()


def test_an_endpoint_failing_mid_run_fails_its_samples_and_retry_failed_runs_only_them(confident_path, sam3_repo, tmp_path,
                                                                                       monkeypatch) -> None:
    from harness.data.samples import load_samples
    from harness.data.suites import load_suite

    suite = _suite(tmp_path, images=3)
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))  # the images the run will read, made here first
    second_image = load_samples(load_suite(str(suite)), ["val"], None, None, {}, {})["val"][4].image
    broken = pixels_digest(decode(second_image).array())

    def outage(image, query, kind, turn):  # every request about the second image fails
        return {"status": 503, "body": "overloaded"} if image == broken else None

    args = ["--models", "sam3-agent", "--suite", str(suite), "--splits", "val", "--out", str(tmp_path / "run"), "--no-report"]
    with StandIn(override=outage) as server:
        config = _config(tmp_path, confident_path, server.url, sam3_repo, retries=1, concurrency=1)
        first = _harness(tmp_path, "run", "--config", str(config), *args, "--batch-size", "1")
    log = tmp_path / "run" / "sam3-agent" / "val.jsonl"
    records = _records(log)
    failed = [r for r in records if r["prediction"]["mask"] is None]
    assert first.returncode != 0 and len(records) == 12 and len(failed) == 4
    assert all("HTTP 503" in r["prediction"]["error"] and "overloaded" in r["prediction"]["error"] for r in failed)
    assert len({r["id"].split("/")[2] for r in failed}) == 1  # one image's samples, and only them

    with StandIn() as server:
        config = _config(tmp_path, confident_path, server.url, sam3_repo)
        second = _harness(tmp_path, "run", "--config", str(config), *args, "--retry-failed")
        asked = {(r.image, r.query) for r in server.requests}
    assert second.returncode == 0, second.stderr[-3000:]
    assert asked == _conversations(tmp_path, failed)  # only the failed samples were asked about
    latest = {r["id"]: r for r in _records(log)}
    assert len(latest) == 12 and all(r["prediction"]["parse_status"] == "ok" for r in latest.values())
