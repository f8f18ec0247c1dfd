"""``harness setup``: the upstream clone at a pinned revision (from a local bare repository), the environment, the
weights (a Hugging Face cache laid out as huggingface_hub lays it out), each idempotent; the shipped manifests."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest
from test_envs import PYPROJECT, purelib, see_parent_packages

from harness.cli import main
from harness.registry import not_installed_hint, shipped_adapters
from harness.run import envs, manifests, provision

pytestmark = pytest.mark.usefixtures("isolated")

MODULE = """\
    from harness import masks
    from harness.adapter import Adapter, AdapterInfo
    from harness.types import Prediction


    class Dummy(Adapter):
        info = AdapterInfo(name="dummy", description="a full mask", outputs=("mask",))

        def predict(self, image, queries):
            return [Prediction(mask=masks.full(*image.shape[:2])) for _ in queries]
"""


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def upstream(tmp_path: Path) -> tuple[str, str]:
    """A bare repository ``<base>/acme/widget.git`` with two commits; (the file:// base, the first commit)."""
    work = tmp_path / "widget-work"
    work.mkdir()
    git("init", "-q", "-b", "main", cwd=work)
    for n in (1, 2):
        (work / "model.py").write_text(f"VERSION = {n}\n")
        git("add", "model.py", cwd=work)
        git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", f"v{n}", cwd=work)
    first = git("rev-list", "--max-parents=0", "HEAD", cwd=work)
    bare = tmp_path / "git" / "acme" / "widget.git"
    bare.parent.mkdir(parents=True)
    git("clone", "-q", "--bare", str(work), str(bare))
    return (tmp_path / "git").as_uri(), first


def write_dist(adapters: Path, revision: str | None, weights: str = '("acme/tiny-model", "acme/tiny-tower")') -> Path:
    root = adapters / "dummy"
    (root / "harness_dummy").mkdir(parents=True)
    (root / "pyproject.toml").write_text(textwrap.dedent(PYPROJECT))
    (root / "harness_dummy" / "__init__.py").write_text(textwrap.dedent(MODULE))
    upstream = f'{{"repo": "acme/widget", "revision": "{revision}", "env": "HARNESS_DUMMY_REPO"}}' if revision else "None"
    (root / "harness_dummy" / "manifest.py").write_text(textwrap.dedent(f"""\
        UPSTREAM = {upstream}
        DEFAULT_VARIANT = "base"
        WEIGHTS = {{"base": {weights}, "big": ("acme/big-model", "acme/tiny-tower")}}
        MEMORY_GB = {{"base": 1.0, "big": 2.0}}
        MEMORY_SOURCE = "a test figure"
        DTYPE = "bfloat16"
    """))
    return root


def populate_cache(hub: Path, repo: str, files: dict[str, bytes]) -> Path:
    """The layout huggingface_hub writes: blobs, a snapshot of links to them, refs/main naming the snapshot."""
    folder = hub / ("models--" + repo.replace("/", "--"))
    sha = "0123456789abcdef0123456789abcdef01234567"
    snapshot = folder / "snapshots" / sha
    snapshot.mkdir(parents=True)
    (folder / "blobs").mkdir()
    for k, (name, data) in enumerate(files.items()):
        blob = folder / "blobs" / f"blob{k}"
        blob.write_bytes(data)
        (snapshot / name).symlink_to(Path("..") / ".." / "blobs" / blob.name)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(sha)
    return snapshot


class StandInHub:
    """snapshot_download's contract, offline: a local-only look finds what was 'downloaded'; a download writes
    the cache layout (2 kB per repository) and records what was asked for."""

    def __init__(self) -> None:
        self.downloaded: list[str] = []

    def __call__(self, repo: str, cache_dir: str, local_files_only: bool = False) -> str:
        import huggingface_hub.errors

        folder = Path(cache_dir) / ("models--" + repo.replace("/", "--"))
        if (folder / "refs" / "main").exists():
            return str(folder / "snapshots" / (folder / "refs" / "main").read_text())
        if local_files_only:
            raise huggingface_hub.errors.LocalEntryNotFoundError(f"{repo} not in the cache")
        self.downloaded.append(repo)
        return str(populate_cache(Path(cache_dir), repo, {"config.json": b"{}" + b" " * 998, "model.safetensors": b"\0" * 1000}))


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    return tmp_path / "hf" / "hub"


def fake_install(dummy: Path):
    """create_env's installer, offline: a bare venv that sees this interpreter's packages, the dist 'installed'."""

    def run(cmd: list[str]) -> None:
        if cmd[1:3] == ["-m", "venv"]:
            subprocess.run([*cmd[:3], "--without-pip", *cmd[3:]], check=True)
            see_parent_packages(Path(cmd[-1]))
            return
        site = purelib(Path(cmd[0]))
        info = site / "harness_dummy-0.1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: harness-dummy\nVersion: 0.1.0\n")
        (info / "entry_points.txt").write_text("[harness.adapters]\ndummy = harness_dummy:Dummy\n")
        (site / "harness_dummy.pth").write_text(str(dummy) + "\n")

    return run


def test_setup_clones_creates_downloads_then_finds_everything_in_place(
        tmp_path: Path, upstream: tuple[str, str], hub: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base, first = upstream
    monkeypatch.setenv("HARNESS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HARNESS_GIT_BASE", base)
    adapters = tmp_path / "adapters"
    dummy = write_dist(adapters, first[:7])
    manifest = manifests.load_manifest("dummy", base=adapters)
    stand_in = StandInHub()
    options = provision.SetupOptions(download=stand_in, run=fake_install(dummy), installer="pip")
    reported: list[provision.Step] = []

    steps = provision.setup_model(manifest, None, options, reported.append)
    assert reported == steps and [(s.name, s.outcome) for s in steps] == [
        ("upstream", "done"), ("environment", "done"), ("weights", "done"), ("weights", "done")]
    checkout = tmp_path / "home" / "upstream" / "acme__widget"
    assert git("rev-parse", "HEAD", cwd=checkout) == first  # the pinned commit, not the branch's head
    assert (checkout / "model.py").read_text() == "VERSION = 1\n" and not checkout.with_name("acme__widget.partial").exists()
    rec = envs.load_envs()["dummy"]
    assert rec.upstream == str(checkout) and rec.adapters == ["dummy"]
    assert stand_in.downloaded == ["acme/tiny-model", "acme/tiny-tower"]
    assert steps[2].disk_bytes == 2000 + 40 and "2.0 kB new" in steps[2].detail
    assert steps[0].disk_bytes and steps[1].disk_bytes  # what the checkout and the environment occupy

    again = provision.setup_model(manifest, None, options, lambda step: None)
    assert [s.outcome for s in again] == ["present"] * 4
    assert stand_in.downloaded == ["acme/tiny-model", "acme/tiny-tower"]  # nothing asked for twice
    assert [s.disk_bytes for s in again] == [s.disk_bytes for s in steps]

    # the other variant adds only what it lacks
    big = provision.setup_model(manifest, "big", options, lambda step: None)
    assert [s.outcome for s in big] == ["present", "present", "done", "present"]
    assert stand_in.downloaded[-1] == "acme/big-model"


def test_setup_command_is_idempotent_and_says_so(tmp_path: Path, upstream: tuple[str, str], hub: Path,
                                                 monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The command against the local bare repository, environment and weights left out; the weights already in a
    real huggingface_hub cache layout are found offline by huggingface_hub itself."""
    base, first = upstream
    monkeypatch.setenv("HARNESS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HARNESS_GIT_BASE", base)
    adapters = tmp_path / "adapters"
    write_dist(adapters, first[:10], weights='("acme/tiny-model",)')
    monkeypatch.setattr(manifests, "adapters_dir", lambda: adapters)

    assert main(["setup", "dummy", "--skip-env", "--skip-weights"]) == 0
    out = capsys.readouterr().out
    assert f"cloned acme/widget {first[:10]} from {base}/acme/widget.git" in out and "set up: dummy" in out
    assert "environment  skipped  --skip-env" in out and "weights      skipped  --skip-weights" in out
    assert main(["setup", "dummy-too", "--skip-env", "--skip-weights"]) == 0  # a name the distribution registers
    out = capsys.readouterr().out
    assert "present  already at acme/widget" in out and "nothing to do: everything was in place" in out

    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read once, when huggingface_hub is imported
    assert main(["setup", "dummy", "--skip-env"]) == 2  # not in the cache, and the Hub may not be asked
    assert "acme/tiny-model is not in the cache" in capsys.readouterr().err
    populate_cache(hub, "acme/tiny-model", {"config.json": b"{}"})
    assert main(["setup", "dummy", "--skip-env"]) == 0
    out = capsys.readouterr().out
    assert "weights      present  acme/tiny-model is in the cache" in out and "nothing to do" in out


def test_setup_moves_a_checkout_to_the_pin_and_refuses_what_it_cannot_fix(tmp_path: Path, upstream: tuple[str, str],
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    base, first = upstream
    home = tmp_path / "home"
    pin = manifests.UpstreamPin("acme/widget", first[:8], "HARNESS_DUMMY_REPO")
    dest = home / "upstream" / "acme__widget"
    git("clone", "-q", f"{base}/acme/widget.git", str(dest))  # a checkout at the branch's head
    outcome, _, detail = provision.ensure_checkout(pin, home, base)
    assert outcome == "done" and detail.startswith("checked out acme/widget") and git("rev-parse", "HEAD", cwd=dest) == first
    (dest / "model.py").write_text("edited\n")
    git("-c", "advice.detachedHead=false", "checkout", "-q", "--detach", "HEAD", cwd=dest)
    other = manifests.UpstreamPin("acme/widget", git("rev-parse", "main", cwd=dest)[:8], "HARNESS_DUMMY_REPO")
    with pytest.raises(provision.SetupError, match="has local changes"):
        provision.ensure_checkout(other, home, base)
    with pytest.raises(provision.SetupError, match="has no commit 1234567"):
        provision.ensure_checkout(manifests.UpstreamPin("acme/widget", "1234567", "X"), tmp_path / "home2", base)
    assert not (tmp_path / "home2" / "upstream" / "acme__widget").exists()  # a failed clone leaves nothing behind
    with pytest.raises(provision.SetupError, match="where acme/nothing is not public there"):
        provision.ensure_checkout(manifests.UpstreamPin("acme/nothing", "1234567", "X"), tmp_path / "home3", base)
    (tmp_path / "home4" / "upstream" / "acme__widget").mkdir(parents=True)
    with pytest.raises(provision.SetupError, match="exists and is not a git checkout"):
        provision.ensure_checkout(pin, tmp_path / "home4", base)


def test_weights_plan_follows_the_variant() -> None:
    lens = manifests.load_manifest("lens")
    assert provision.weights_plan(lens) == ["OuyBin/LENS"]
    assert provision.weights_plan(lens, "reasonseg-cot") == ["OuyBin/LENS_ReasonSeg_CoT"]
    glamm = manifests.load_manifest("glamm")
    assert provision.weights_plan(glamm, "grand-glamm-protocol") == ["MBZUAI/GLaMM-GranD-Pretrained", "openai/clip-vit-large-patch14-336"]
    with pytest.raises(manifests.ManifestError, match=r"unknown variant 'nope'.*known: 13b"):
        provision.weights_plan(manifests.load_manifest("lisa"), "nope")
    assert manifests.resolve("visionreasoner") == ("segzero", "visionreasoner")
    assert provision.weights_plan(manifests.load_manifest("segzero"), "visionreasoner") == [
        "Ricky06662/VisionReasoner-7B", "facebook/sam2-hiera-large"]


def test_every_shipped_manifest_is_complete_and_agrees_with_upstream_md() -> None:
    """Each adapters/<dist> manifest loads on its own and pins the revision shared/upstream's snapshot is at."""
    for dist in manifests.shipped_dists():
        m = manifests.load_manifest(dist)
        assert m.upstream is not None and len(m.upstream.revision) >= 7, dist
        assert all(repo.count("/") == 1 for repos in m.weights.values() for repo in repos), dist
        assert all(gb > 0 for gb in m.memory_gb.values()) and "estimate" in m.memory_source, dist
        assert m.upstream.env == envs.upstream_var(dist), dist


def test_manifest_errors_name_the_file_and_field(tmp_path: Path) -> None:
    root = write_dist(tmp_path, None)
    path = root / "harness_dummy" / "manifest.py"
    path.write_text(path.read_text().replace('DTYPE = "bfloat16"', 'DTYPE = "int8"'))
    with pytest.raises(manifests.ManifestError, match=r"manifest.py: DTYPE 'int8'"):
        manifests.load_manifest("dummy", base=tmp_path)
    path.write_text("import harness_dummy.nothing\n")
    with pytest.raises(manifests.ManifestError, match="does not run on its own"):
        manifests.load_manifest("dummy", base=tmp_path)
    path.write_text("UPSTREAM = None\n")
    with pytest.raises(manifests.ManifestError, match="WEIGHTS is missing"):
        manifests.load_manifest("dummy", base=tmp_path)
    with pytest.raises(manifests.ManifestError, match=r"unknown model 'lense'\. Did you mean 'lens'"):
        manifests.resolve("lense")


def test_an_uninstalled_shipped_model_names_the_command_that_provides_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shipped = shipped_adapters()
    assert shipped["lens"] == "lens" and shipped["visionreasoner"] == "segzero" and shipped["sa2va-qwen2.5vl-7b"] == "sa2va"
    assert "`harness setup segzero`" in not_installed_hint("visionreasoner") and not_installed_hint("nothing") == ""
    from conftest import write_suite

    code = main(["run", "--models", "lens", "--suite", str(write_suite(tmp_path)), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code != 0 and "`harness setup lens`" in err and "`harness env create lens`" in err
