"""``harness doctor``: on CPU every GPU check is skipped with its reason and the exit is 0; a failed check exits 1
and names its fix; the CUDA branch's verdicts from the facts a GPU environment reports; the forced OOM path."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from test_setup import populate_cache

from harness.cli import main
from harness.run import doctor, doctor_probe, envs, manifests

pytestmark = pytest.mark.usefixtures("isolated")

SHARED_LENS = Path(__file__).resolve().parents[2] / "shared" / "upstream" / "hustvl__LENS"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HARNESS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    for var in [v for v in os.environ if v.startswith("HARNESS_") and v.endswith("_REPO")]:  # CI names the upstream checkouts
        monkeypatch.delenv(var)
    return tmp_path / "home"


def register_this_interpreter_as(name: str, upstream: Path | None = None) -> envs.EnvRecord:
    """A managed environment record whose interpreter is this one (it has torch, CPU build, and the engine)."""
    adapter_dir = manifests.adapters_dir() / name
    rec = envs.EnvRecord(name=name, python=sys.executable, path=sys.prefix, adapters=[name],
                         created=datetime.now(timezone.utc).isoformat(), pins_hash=envs.pins_hash(adapter_dir),
                         adapter_dir=str(adapter_dir), engine="test", installer="pip", upstream=str(upstream) if upstream else None)
    envs._save_envs({name: rec})
    return rec


def lines(out: str) -> dict[tuple[str, str], str]:
    """(scope, check) -> the line, from doctor's output."""
    found = {}
    for line in out.splitlines():
        parts = line.split(None, 3)
        if len(parts) == 4 and parts[0] in ("ok", "warning", "failed", "skipped"):
            found[(parts[1], parts[2] if parts[2] != "tiny" and parts[2] != "oom" else " ".join(line.split()[2:4]))] = line
    return found


def test_doctor_without_models_on_cpu_passes_and_names_the_skip(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    found = lines(out)
    assert found[("engine", "harness")].startswith("ok") and found[("engine", "envs")].startswith("ok")
    assert found[("engine", "torchrun")].startswith("skipped") and "needs CUDA" in found[("engine", "torchrun")]
    assert out.rstrip().endswith("all required checks passed")


@pytest.mark.skipif(not (SHARED_LENS / "REVISION").is_file(), reason="the hustvl/LENS snapshot (shared/upstream) is not here")
def test_doctor_on_cpu_checks_the_environment_and_skips_each_gpu_check(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    register_this_interpreter_as("lens", upstream=SHARED_LENS)
    populate_cache(home.parent / "hf" / "hub", "OuyBin/LENS", {"config.json": b"{}"})
    assert main(["doctor", "--device", "cpu", "lens"]) == 0
    found = lines(capsys.readouterr().out)
    assert found[("lens", "environment")].startswith("ok")
    assert found[("lens", "upstream")].startswith("ok") and "hustvl/LENS 28cf510" in found[("lens", "upstream")]
    assert found[("lens", "weights")].startswith("ok") and "OuyBin/LENS" in found[("lens", "weights")]
    assert found[("lens", "torch")].startswith("ok") and "torch 2." in found[("lens", "torch")]
    for check in ("device", "dtype", "attention", "memory", "nccl"):
        assert found[("lens", check)].startswith("skipped") and "--device cpu: a GPU check" in found[("lens", check)]
    assert found[("lens", "tiny tests")].startswith("skipped") and "CI's" in found[("lens", "tiny tests")]
    assert found[("lens", "oom halving")].startswith("skipped") and "needs a GPU" in found[("lens", "oom halving")]


def test_a_failed_check_exits_1_and_names_the_fix(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--device", "cpu", "glamm"]) == 1
    out = capsys.readouterr().out
    found = lines(out)
    assert found[("glamm", "environment")].startswith("failed") and "`harness setup glamm`" in found[("glamm", "environment")]
    weights = [line for line in out.splitlines() if " glamm     weights " in line]
    assert len(weights) == 2 and all(line.startswith("failed") and "`harness setup glamm`" in line for line in weights)
    assert "check(s) failed" in out

    register_this_interpreter_as("lisa")
    populate_cache(home.parent / "hf" / "hub", "xinlai/LISA-13B-llama2-v1", {"config.json": b"{}"})
    assert main(["doctor", "--device", "cpu", "lisa", "--variant", "13b"]) == 1  # the tower is missing
    out = capsys.readouterr().out
    assert "ok       lisa      weights      xinlai/LISA-13B-llama2-v1" in out
    assert "openai/clip-vit-large-patch14 is not in the Hugging Face cache" in out and "`harness setup lisa --variant 13b`" in out
    assert "warning  lisa      upstream     no checkout of dvlab-research/LISA" in out


GPU = {"python": "/envs/lens/bin/python", "torch": "2.7.1+cu128", "torch_cuda": "12.8", "cuda_available": True, "device_count": 1,
       "sdpa": True, "nccl": True, "flash_attn": "2.7.0.post2", "device_name": "NVIDIA H100", "capability": [9, 0], "bf16": True,
       "free_bytes": 80e9, "total_bytes": 81e9}


def verdicts(facts: dict[str, Any], model: str = "lens") -> dict[str, doctor.Check]:
    manifest = manifests.load_manifest(model)
    return {c.name: c for c in doctor.device_checks(manifest, manifest.default_variant, facts, "cuda")}


def test_the_cuda_branch_judges_what_the_environment_reports() -> None:
    good = verdicts(GPU)
    assert {c.status for c in good.values()} == {"ok", "skipped"} and good["nccl"].status == "skipped"
    assert "needs ~14 GB (estimate" in good["memory"].detail

    cpu_build = verdicts({**GPU, "torch": "2.13.0+cpu", "torch_cuda": None, "cuda_available": False})
    assert cpu_build["device"].status == "failed" and "--extra-index-url" in cpu_build["device"].detail
    assert set(cpu_build) == {"torch", "device"}  # nothing asked of a device that is not there

    old = verdicts({**GPU, "bf16": False, "device_name": "Tesla V100", "capability": [7, 0]})
    assert old["dtype"].status == "failed" and "dtype: float16" in old["dtype"].detail
    assert verdicts({**GPU, "bf16": False}, "sam3")["dtype"].status == "ok"  # SAM 3 runs float32

    tight = verdicts({**GPU, "free_bytes": 6e9, "flash_attn": None, "flash_attn_error": "ModuleNotFoundError: flash_attn"})
    assert tight["memory"].status == "failed" and "6.0 of 81.0 GB free" in tight["memory"].detail
    assert tight["attention"].status == "warning" and "sdpa is used" in tight["attention"].detail

    two = verdicts({**GPU, "device_count": 2, "nccl": False})
    assert two["nccl"].status == "failed" and doctor.exit_status(list(two.values())) == 1
    assert doctor.exit_status(list(tight.values())[:3]) == 0  # a warning alone passes


def test_tiny_tests_run_on_the_device_in_the_environment(home: Path) -> None:
    rec = register_this_interpreter_as("lens", upstream=SHARED_LENS)
    calls: list[dict[str, Any]] = []

    def run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append({"cmd": cmd, **kwargs})
        return subprocess.CompletedProcess(cmd, 1, stdout="1 failed, 9 passed in 3.0s\n", stderr="")

    check = doctor.tiny_tests_check(manifests.load_manifest("lens"), rec, "cuda", run=run)
    (call,) = calls
    assert call["cmd"][:3] == [sys.executable, "-m", "pytest"] and call["cmd"][-3:] == ["-m", "slow", "tests"]
    assert call["env"]["HARNESS_TEST_DEVICE"] == "cuda" and call["env"]["HARNESS_LENS_REPO"] == os.environ.get(
        "HARNESS_LENS_REPO", str(SHARED_LENS))
    assert call["cwd"] == Path(rec.adapter_dir)
    assert check.status == "failed" and "1 failed, 9 passed" in check.detail and "HARNESS_TEST_DEVICE=cuda" in check.detail


def test_the_forced_out_of_memory_is_halved_and_every_sample_predicted() -> None:
    got = doctor_probe.oom_halving("cpu")
    assert got == {"raised": "OutOfMemoryError", "calls": [4, 2, 2], "halvings": [1, 1, 1, 1], "predicted": 4, "samples": 4}
    # the same through a subprocess, as doctor asks a model's environment
    assert doctor.probe(sys.executable, "oom", "cpu")["halvings"] == [1, 1, 1, 1]
    assert "error" in doctor.probe(sys.executable, "nonsense", "cpu")


@pytest.mark.slow
def test_two_ranks_of_the_empty_model_run_and_merge() -> None:
    """The torchrun check on gloo (CPU): what doctor runs over NCCL on two GPUs."""
    check = doctor.two_ranks(sys.executable, "cpu")
    assert check.status == "ok" and "all-reduce over gloo" in check.detail, check.detail
    assert doctor.torchrun_check(sys.executable, "cuda", 1).status == "skipped"
