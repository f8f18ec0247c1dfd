"""``harness doctor``: does this machine, and each model's environment, run the model on the device?

Every check ends ``ok``, ``warning`` (works, not as well as it could: sdpa instead of flash-attn, an upstream
checkout at another revision), ``failed`` (the run would fail or be wrong; the line says the fix) or ``skipped``
(not asked of this device; the line says why). Only a failed check makes the exit status non-zero.

The engine's checks need nothing from a model. A model's checks ask its environment, through its own interpreter
(harness.run.doctor_probe, a subprocess as the worker is): torch and the device, the dtype the adapter uses on
CUDA (its manifest's ``DTYPE``), flash-attn or sdpa, free memory against the manifest's ``MEMORY_GB``, NCCL when
several GPUs are visible, the variant's weights in the Hugging Face cache, the adapter's tiny-model tests on the
device (the tests each adapter marks ``slow``, under ``HARNESS_TEST_DEVICE``), the out-of-memory halving path with a
real out-of-memory error, and two torchrun ranks (an NCCL all-reduce, the ``empty`` model sharded and merged). On CPU
the device checks are skipped, each with its reason.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness
from harness.run import envs
from harness.run.manifests import ModelManifest

OK, WARNING, FAILED, SKIPPED = "ok", "warning", "failed", "skipped"
GB = 1e9
PROBE_TIMEOUT = 300  # seconds: a first CUDA initialisation can take a minute
TEST_TIMEOUT = 1800


@dataclass(frozen=True)
class Check:
    scope: str  # "engine" or the model's distribution
    name: str
    status: str
    detail: str

    def line(self) -> str:
        return f"{self.status:<8} {self.scope:<9} {self.name:<12} {self.detail}"


def exit_status(checks: list[Check]) -> int:
    return 1 if any(c.status == FAILED for c in checks) else 0


def probe(python: str, question: str, device: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """One question to an interpreter (harness.run.doctor_probe); {"error": ...} when it could not answer."""
    try:
        res = subprocess.run([python, "-m", "harness.run.doctor_probe", question, device], capture_output=True, text=True,
                             timeout=PROBE_TIMEOUT, check=False, env={**os.environ, **(env or {})})
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"error": f"{python}: {exc}"}
    try:
        answer = json.loads(res.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        tail = (res.stderr.strip() or res.stdout.strip())[-800:]
        return {"error": f"{python} -m harness.run.doctor_probe exited {res.returncode}: {tail}"}
    return answer if isinstance(answer, dict) else {"error": f"unexpected answer {answer!r}"}


# --- the engine -------------------------------------------------------------------------------------------------

def engine_checks() -> Iterator[Check]:
    yield Check("engine", "harness", OK, f"harness {harness.__version__}, Python {sys.version.split()[0]} ({sys.executable})")
    git = shutil.which("git")
    yield (Check("engine", "git", OK, git) if git else
           Check("engine", "git", WARNING, "git is not on PATH: `harness setup` cannot clone upstream code (install git)"))
    try:
        import huggingface_hub

        yield Check("engine", "hub client", OK, f"huggingface_hub {huggingface_hub.__version__}")
    except ImportError:
        yield Check("engine", "hub client", WARNING,
                    "huggingface_hub is not installed: `harness setup` cannot download weights (pip install huggingface_hub)")
    try:
        found = envs.load_envs()
    except envs.EnvError as exc:
        yield Check("engine", "envs", FAILED, str(exc))
        return
    if not found:
        yield Check("engine", "envs", OK, f"no managed environments yet ({envs.registry_path()}): `harness setup MODEL` makes one")
        return
    states = {name: envs.status(rec) for name, rec in found.items()}
    bad = {n: s for n, s in states.items() if s != "ok"}
    listed = ", ".join(f"{n} ({s})" for n, s in sorted(states.items()))
    if bad:
        fixes = "; ".join(f"`harness env create {n} --force`" if s == "stale" else f"`harness setup {n}`" for n, s in sorted(bad.items()))
        yield Check("engine", "envs", WARNING, f"{listed}: {fixes}")
    else:
        yield Check("engine", "envs", OK, listed)


# --- one model --------------------------------------------------------------------------------------------------

def _upstream_check(manifest: ModelManifest, rec: envs.EnvRecord) -> Check:
    pin = manifest.upstream
    if pin is None:
        return Check(manifest.dist, "upstream", SKIPPED, "the manifest pins no upstream repository")
    path = os.environ.get(pin.env) or rec.upstream
    if not path or not Path(path).is_dir():
        return Check(manifest.dist, "upstream", WARNING,
                     f"no checkout of {pin.repo} ({pin.env} unset, none recorded with the environment): `harness setup {manifest.dist}`")
    head = None
    if (Path(path) / ".git").exists() and shutil.which("git"):
        res = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, check=False)
        head = res.stdout.strip() if res.returncode == 0 else None
    elif (Path(path) / "REVISION").is_file():  # a source snapshot (shared/upstream) names its commit there
        head = _revision_file(Path(path))
    if head is None:
        return Check(manifest.dist, "upstream", WARNING, f"{path}: cannot tell its revision (not a git checkout)")
    if not head.startswith(pin.revision):
        return Check(manifest.dist, "upstream", WARNING,
                     f"{path} is at {head[:12]}, not the pinned {pin.revision}: `git -C {path} checkout {pin.revision}`")
    return Check(manifest.dist, "upstream", OK, f"{pin.repo} {pin.revision} at {path}")


def _revision_file(path: Path) -> str | None:
    """The commit a shared/upstream snapshot's REVISION names (``owner/name <sha> <date>``)."""
    for word in (path / "REVISION").read_text(encoding="utf-8").split():
        if len(word) == 40 and all(c in "0123456789abcdef" for c in word):
            return word
    return None


def weights_checks(manifest: ModelManifest, variant: str) -> Iterator[Check]:
    from harness.run.provision import SetupError, cached, hub_cache, weights_plan

    for repo in weights_plan(manifest, variant):
        try:
            snapshot = cached(repo)
        except SetupError as exc:
            yield Check(manifest.dist, "weights", WARNING, f"{repo}: cannot look ({exc})")
            continue
        if snapshot is None:
            yield Check(manifest.dist, "weights", FAILED,
                        f"{repo} is not in the Hugging Face cache ({hub_cache()}): `harness setup {manifest.dist}"
                        + ("`" if variant == manifest.default_variant else f" --variant {variant}`"))
        else:
            yield Check(manifest.dist, "weights", OK, f"{repo} ({snapshot})")


def device_checks(manifest: ModelManifest, variant: str, facts: dict[str, Any], device: str) -> Iterator[Check]:
    d = manifest.dist
    cuda = device.startswith("cuda")
    if "torch_error" in facts:
        yield Check(d, "torch", FAILED, f"{facts['python']}: import torch failed ({facts['torch_error']}): `harness setup {d}`")
        return
    build = f"CUDA {facts['torch_cuda']}" if facts.get("torch_cuda") else "a CPU build"
    yield Check(d, "torch", OK, f"torch {facts['torch']} ({build}) in {facts['python']}")
    if not cuda:
        reason = "--device cpu" if device == "cpu" else f"device {device}"
        for name in ("device", "dtype", "attention", "memory", "nccl"):
            yield Check(d, name, SKIPPED, f"{reason}: a GPU check")
        return
    if not facts.get("cuda_available"):
        fix = ("its torch is a CPU build: recreate it with PyTorch's CUDA wheel index, `harness env create "
               f"{d} --force --pip-args \"--extra-index-url https://download.pytorch.org/whl/cu126\"`" if not facts.get("torch_cuda")
               else "no GPU visible to it: check nvidia-smi, the driver and CUDA_VISIBLE_DEVICES")
        yield Check(d, "device", FAILED, f"torch sees no CUDA device: {fix}")
        return
    name = f"{facts['device_name']} (sm_{''.join(map(str, facts['capability']))}), {facts['device_count']} visible"
    yield Check(d, "device", OK, name)
    if manifest.dtype == "bfloat16" and not facts.get("bf16"):
        yield Check(d, "dtype", FAILED, f"the adapter runs bfloat16 on CUDA and {facts['device_name']} has no bf16: pass "
                                        f"`options: {{dtype: float16}}` in a run config (results then differ from upstream's)")
    else:
        yield Check(d, "dtype", OK, f"{manifest.dtype}" + (" (bf16 supported)" if facts.get("bf16") else ""))
    if facts.get("flash_attn"):
        yield Check(d, "attention", OK, f"flash-attn {facts['flash_attn']}")
    elif facts.get("sdpa"):
        yield Check(d, "attention", WARNING, f"flash-attn not importable ({facts.get('flash_attn_error')}): sdpa is used; for "
                                             f"upstream's kernels `{Path(facts['python']).parent}/pip install flash-attn "
                                             "--no-build-isolation` (the version in adapters/" + d + "/pyproject.toml's gpu extra)")
    else:
        yield Check(d, "attention", FAILED, "neither flash-attn nor torch's scaled_dot_product_attention: torch is too old")
    need, free, total = manifest.memory_gb[variant], facts["free_bytes"] / GB, facts["total_bytes"] / GB
    text = f"{free:.1f} of {total:.1f} GB free; {variant} needs ~{need:.0f} GB ({manifest.memory_source})"
    yield Check(d, "memory", OK if free >= need else FAILED,
                text if free >= need else f"{text}: free the GPU (nvidia-smi shows who holds it) or use a larger one")
    if facts["device_count"] > 1:
        yield (Check(d, "nccl", OK, f"NCCL available for {facts['device_count']} GPUs") if facts.get("nccl") else
               Check(d, "nccl", FAILED, "several GPUs and no NCCL in this torch: torchrun over GPUs needs a CUDA build with NCCL"))
    else:
        yield Check(d, "nccl", SKIPPED, "one GPU visible: NCCL is used only across several")


def tiny_tests_check(manifest: ModelManifest, rec: envs.EnvRecord, device: str,
                     run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run) -> Check:
    d = manifest.dist
    if not device.startswith("cuda"):
        return Check(d, "tiny tests", SKIPPED, f"--device {device}: on CPU they are CI's (`tox` in adapters/{d})")
    adapter_dir = Path(rec.adapter_dir)
    if not (adapter_dir / "tests").is_dir():
        return Check(d, "tiny tests", SKIPPED, f"{adapter_dir} has no tests/ (an adapter installed without its tests)")
    env = {**os.environ, "HARNESS_TEST_DEVICE": device, **envs.worker_env_vars(rec)}
    # the tests an adapter marks slow are its tiny-model end-to-end runs (their pyproject.toml says so): those load
    # the adapter on $HARNESS_TEST_DEVICE (harness.modelkit.testing.test_device)
    cmd = [rec.python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "slow", "tests"]
    try:
        res = run(cmd, cwd=adapter_dir, capture_output=True, text=True, timeout=TEST_TIMEOUT, check=False, env=env)
    except subprocess.TimeoutExpired:
        return Check(d, "tiny tests", FAILED, f"{' '.join(cmd)} ran over {TEST_TIMEOUT} s")
    last = (res.stdout.strip().splitlines() or [""])[-1]
    if res.returncode == 0:
        return Check(d, "tiny tests", OK, f"{last} on {device} (the slow-marked tiny-model tests of {adapter_dir / 'tests'})")
    if "No module named pytest" in res.stderr:
        return Check(d, "tiny tests", FAILED, f"pytest is not in the environment: `{rec.python} -m pip install pytest`")
    return Check(d, "tiny tests", FAILED, f"{last or res.stderr.strip()[-300:]}: rerun `cd {adapter_dir} && HARNESS_TEST_DEVICE={device} "
                                          f"{rec.python} -m pytest -m slow tests` to see the failures")


def oom_check(manifest: ModelManifest, rec: envs.EnvRecord, device: str) -> Check:
    d = manifest.dist
    if not device.startswith("cuda"):
        return Check(d, "oom halving", SKIPPED, f"--device {device}: the forced out-of-memory needs a GPU's allocator")
    got = probe(rec.python, "oom", device)
    if "error" in got:
        return Check(d, "oom halving", FAILED, got["error"])
    fine = got["raised"] == "OutOfMemoryError" and got["predicted"] == got["samples"] and set(got["halvings"]) == {1}
    text = f"a batch of {got['samples']} ran out of memory ({got['raised'] or 'nothing raised'}), calls {got['calls']}, " \
           f"{got['predicted']} predicted"
    return Check(d, "oom halving", OK if fine else FAILED, text if fine else f"{text}: harness.run.predict did not halve and retry")


def model_checks(manifest: ModelManifest, variant: str, device: str) -> Iterator[Check]:
    d = manifest.dist
    rec = envs.load_envs().get(d)
    if rec is None:
        yield Check(d, "environment", FAILED, f"no managed environment {d}: `harness setup {d}`")
        yield from weights_checks(manifest, variant)
        return
    state = envs.status(rec)
    if state == "missing":
        yield Check(d, "environment", FAILED, f"{rec.python} is gone: `harness setup {d}` rebuilds it")
        return
    yield Check(d, "environment", WARNING if state == "stale" else OK,
                f"{rec.python}" + (f": its pins changed since it was built, `harness env create {d} --force`" if state == "stale" else ""))
    yield _upstream_check(manifest, rec)
    yield from weights_checks(manifest, variant)
    facts = probe(rec.python, "facts", device)
    if "error" in facts:
        yield Check(d, "torch", FAILED, facts["error"])
        return
    checks = list(device_checks(manifest, variant, facts, device))
    yield from checks
    if any(c.status == FAILED for c in checks):
        return  # the tests and the forced OOM would only fail again, slower
    yield tiny_tests_check(manifest, rec, device)
    yield oom_check(manifest, rec, device)


# --- several processes ------------------------------------------------------------------------------------------

TORCHRUN_SUITE = """\
    name: doctor
    version: 1
    source: {format: shapes, seed: 1, images: {val: 4}}
    splits: {val: {}}
"""


def torchrun_check(python: str | None, device: str, device_count: int) -> Check:
    """Two ranks over NCCL on two GPUs: an all-reduce, then ``harness run --models empty`` sharded and merged."""
    if not device.startswith("cuda"):
        return Check("engine", "torchrun", SKIPPED, f"--device {device}: the two-process run checks NCCL, which needs CUDA")
    if device_count < 2:
        return Check("engine", "torchrun", SKIPPED, f"{device_count} GPU visible: two NCCL ranks need two GPUs")
    if python is None:
        return Check("engine", "torchrun", SKIPPED, "no interpreter with torch: name a model whose environment to use")
    return two_ranks(python, "cuda")


def _torchrun(python: str, args: list[str], env: dict[str, str] | None = None) -> tuple[list[str], subprocess.CompletedProcess[str] | str]:
    cmd = [str(Path(python).parent / "torchrun"), "--nproc-per-node", "2", *args]
    try:
        return cmd, subprocess.run(cmd, capture_output=True, text=True, timeout=PROBE_TIMEOUT, check=False,
                                   env={**os.environ, **(env or {})})
    except (OSError, subprocess.TimeoutExpired) as exc:
        return cmd, str(exc)


def _json_objects(text: str) -> list[Any]:
    """Every JSON object in ``text``, wherever it starts (torchrun may prefix or join the ranks' lines)."""
    decoder, out, at = json.JSONDecoder(), [], text.find("{")
    while at != -1:
        try:
            obj, end = decoder.raw_decode(text, at)
        except json.JSONDecodeError:
            end = at + 1
        else:
            out.append(obj)
        at = text.find("{", end)
    return out


def two_ranks(python: str, device: str) -> Check:
    """From ``python``'s environment, two torchrun ranks: an all-reduce over NCCL (CUDA) or gloo (CPU), then
    ``harness run --models empty`` on a four-image shapes suite, each rank its shard, rank 0 merging."""
    backend = "NCCL" if device.startswith("cuda") else "gloo"
    cmd, res = _torchrun(python, ["-m", "harness.run.doctor_probe", "allreduce", device])
    if isinstance(res, str) or res.returncode != 0:
        why = res if isinstance(res, str) else f"exited {res.returncode}: {res.stderr.strip()[-600:]}"
        return Check("engine", "torchrun", FAILED, f"{' '.join(cmd)} {why}")
    answers = _json_objects(res.stdout)
    wrong = [a for a in answers if a.get("sum") != a.get("expected")]
    if len(answers) != 2 or wrong:
        return Check("engine", "torchrun", FAILED, f"the {backend} all-reduce of 2 ranks answered {answers}")
    with tempfile.TemporaryDirectory() as tmp:
        suite = Path(tmp) / "doctor.yaml"
        suite.write_text(textwrap.dedent(TORCHRUN_SUITE), encoding="utf-8")
        out = Path(tmp) / "run"
        cmd, res = _torchrun(python, ["-m", "harness", "run", "--models", "empty", "--suite", str(suite), "--device", device,
                                      "--out", str(out), "--no-report"], env={"HARNESS_DATA": tmp})
        if isinstance(res, str) or res.returncode != 0 or not (out / "results.json").is_file():
            why = res if isinstance(res, str) else f"exited {res.returncode}: {res.stderr.strip()[-600:]}"
            return Check("engine", "torchrun", FAILED, f"{' '.join(cmd)} {why}")
    return Check("engine", "torchrun", OK, f"2 ranks: an all-reduce over {backend}, and the empty model sharded and merged "
                                           f"by rank 0 ({cmd[0]})")
