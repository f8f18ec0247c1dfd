"""Managed environments: ``harness env create|list|remove`` and ``--models NAME`` finding them."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest
from conftest import write_suite

from harness.cli import main
from harness.records.store import read_records
from harness.run import envs

pytestmark = pytest.mark.usefixtures("isolated")

PYPROJECT = """\
    [build-system]
    requires = ["hatchling"]
    build-backend = "hatchling.build"

    [project]
    name = "harness-dummy"
    version = "0.1.0"
    requires-python = ">=3.10"

    [project.entry-points."harness.adapters"]
    dummy = "harness_dummy:Dummy"
    dummy-too = "harness_dummy:Dummy"

    [tool.hatch.build.targets.wheel]
    packages = ["harness_dummy"]
"""

MODULE = """\
    import os
    import sys

    from harness import masks
    from harness.adapter import Adapter, AdapterInfo
    from harness.types import Prediction


    class Dummy(Adapter):
        info = AdapterInfo(name="dummy", description="reports where it runs", outputs=("mask", "text"))

        def predict(self, image, queries):
            h, w = image.shape[:2]
            text = f"{sys.prefix}|{os.environ.get('HARNESS_DUMMY_REPO')}"
            return [Prediction(mask=masks.full(h, w), text=text) for _ in queries]
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HARNESS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("HARNESS_DUMMY_REPO", raising=False)
    return tmp_path / "home"


@pytest.fixture
def dummy(tmp_path: Path) -> Path:
    """A tiny adapter distribution, laid out as adapters/<name> is."""
    root = tmp_path / "adapters" / "dummy"
    (root / "harness_dummy").mkdir(parents=True)
    (root / "pyproject.toml").write_text(textwrap.dedent(PYPROJECT))
    (root / "harness_dummy" / "__init__.py").write_text(textwrap.dedent(MODULE))
    (root / "requirements.txt").write_text("# the environment's exact pins\n")
    return root


def purelib(python: Path) -> Path:
    out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True).stdout
    return Path(out.strip())


def see_parent_packages(env: Path) -> None:
    """Let a fresh venv see this interpreter's packages *after* its own (offline, no downloads)."""
    parent = sysconfig.get_paths()["purelib"]
    (purelib(env / "bin" / "python") / "_harness_parent.pth").write_text(f"import site; site.addsitedir({parent!r})\n")


def test_plan_installs_engine_pins_and_adapter_in_one_pass(tmp_path: Path, dummy: Path) -> None:
    env = tmp_path / "env"
    pip = envs.plan(env, "python3.12", dummy, Path("/src/harness"), "pip", pip_args=["--extra-index-url", "https://x"])
    assert pip == [["python3.12", "-m", "venv", str(env)],
                   [str(env / "bin/python"), "-m", "pip", "install", "--extra-index-url", "https://x",
                    "-e", "/src/harness", "-r", str(dummy / "requirements.txt"), "-e", str(dummy)]]
    (dummy / "requirements.txt").unlink()
    uv = envs.plan(env, "python3.12", dummy, "harness-seg==0.1.0", "uv", system_site_packages=True)
    assert uv[0][1:] == ["venv", "--python", "python3.12", "--system-site-packages", str(env)]
    assert uv[1][1:] == ["pip", "install", "--python", str(env / "bin/python"), "harness-seg==0.1.0", "-e", str(dummy)]


def test_env_create_registers_and_models_use_it(tmp_path: Path, home: Path, dummy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """create_env with the installer stubbed (a bare venv, the dist's files written as pip would):
    everything after the install is real: the probe, the registry, the run in that interpreter."""
    upstream = tmp_path / "upstream-checkout"
    upstream.mkdir()

    def fake_install(cmd: list[str]) -> None:
        if cmd[1:3] == ["-m", "venv"]:
            subprocess.run([*cmd[:3], "--without-pip", *cmd[3:]], check=True)
            see_parent_packages(Path(cmd[-1]))
            return
        assert cmd[-2:] == ["-e", str(dummy)] and "-r" in cmd
        site = purelib(Path(cmd[0]))
        info = site / "harness_dummy-0.1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: harness-dummy\nVersion: 0.1.0\n")
        (info / "entry_points.txt").write_text("[harness.adapters]\ndummy = harness_dummy:Dummy\ndummy-too = harness_dummy:Dummy\n")
        (site / "harness_dummy.pth").write_text(str(dummy) + "\n")

    rec = envs.create_env("dummy", upstream=upstream, adapter_dir=dummy, installer="pip", run=fake_install)
    assert rec.adapters == ["dummy", "dummy-too"] and rec.python == str(home / "envs" / "dummy" / "bin" / "python")
    assert envs.load_envs()["dummy"] == rec and envs.status(rec) == "ok"
    with pytest.raises(envs.EnvError, match="exists: use --force"):
        envs.create_env("dummy", adapter_dir=dummy, run=fake_install)

    suite = write_suite(tmp_path, val=1, test=1)
    out = tmp_path / "run"
    assert main(["run", "--models", "dummy-too", "--suite", str(suite), "--splits", "val", "--out", str(out), "--no-report"]) == 0
    texts = {r["prediction"]["text"] for r in read_records(out / "dummy-too" / "val.jsonl")}
    assert texts == {f"{home / 'envs' / 'dummy'}|{upstream}"}  # ran in the env, with the upstream checkout named

    capsys.readouterr()
    (dummy / "requirements.txt").write_text("torch==2.13.0\n")
    assert main(["env", "list"]) == 0
    assert "dummy        stale" in capsys.readouterr().out
    assert main(["env", "remove", "dummy"]) == 0
    assert not (home / "envs" / "dummy").exists() and envs.load_envs() == {}
    assert main(["env", "remove", "dummy"]) == 2


def test_env_create_refuses_what_is_not_an_adapter(tmp_path: Path, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["env", "create", "nothing-here", "--from", str(tmp_path)]) == 2
    assert "is not an adapter distribution" in capsys.readouterr().err
    assert main(["env", "create", "local"]) == 2
    (tmp_path / "notavenv").mkdir()
    (tmp_path / "notavenv" / "precious.txt").write_text("keep me")
    (tmp_path / "pyproject.toml").write_text("[project]\nname='x'\n")
    assert main(["env", "create", "x", "--from", str(tmp_path), "--path", str(tmp_path / "notavenv"), "--force"]) == 2
    assert "does not look like a virtualenv" in capsys.readouterr().err and (tmp_path / "notavenv" / "precious.txt").exists()


def _index_reachable(dest: Path) -> bool:
    res = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--dest", str(dest), "hatchling"],
                         capture_output=True, timeout=120, check=False)
    return res.returncode == 0


@pytest.mark.slow
def test_env_create_for_real(tmp_path: Path, home: Path, dummy: Path) -> None:
    """A real venv and a real pip install of the engine and the dummy adapter (build backends
    come from the package index; the engine's own dependencies are seen from this interpreter)."""
    if not _index_reachable(tmp_path / "probe"):
        pytest.skip("no package index reachable for the build backend")

    def run_then_layer(cmd: list[str]) -> None:
        envs._run(cmd)
        if cmd[1:3] == ["-m", "venv"]:
            see_parent_packages(Path(cmd[-1]))

    rec = envs.create_env("dummy", adapter_dir=dummy, installer="pip", run=run_then_layer)
    assert rec.adapters == ["dummy", "dummy-too"]
    freeze = (home / "envs" / "dummy" / "harness-freeze.txt").read_text()
    assert "harness-dummy" in freeze.lower().replace("_", "-")
    worker = [rec.python, "-m", "harness.run.worker", "--list"]
    listed = json.loads(subprocess.run(worker, capture_output=True, text=True, check=True).stdout)
    assert listed["adapters"]["dummy"] == "harness-dummy" and listed["prefix"] == str(home / "envs" / "dummy")
