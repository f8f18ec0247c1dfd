"""``harness setup MODEL...``: a model's upstream checkout, environment and weights, each checked before it is made.

Per model three steps, each idempotent (what is already there is checked and kept, and said so):

1. upstream: ``git clone`` of the manifest's ``UPSTREAM`` repository into ``$HARNESS_HOME/upstream/<owner>__<name>``
   and a detached checkout of the pinned commit, verified with ``git rev-parse HEAD``. The clone goes to a
   ``.partial`` folder first and is renamed when verified, so an interrupted clone is never taken for a checkout.
   ``$HARNESS_GIT_BASE`` (default https://github.com) replaces the host: a mirror, or a local folder of bare
   repositories (``file:///srv/git``, holding ``owner/name.git``);
2. environment: ``harness env create`` (harness.run.envs.create_env) with that checkout; an environment already
   registered and current is kept, a stale or missing one rebuilt;
3. weights: ``huggingface_hub.snapshot_download`` of the repositories the variant loads, into the Hugging Face
   cache (``HF_HOME`` / ``HF_HUB_CACHE``; ``HF_TOKEN`` and ``HF_ENDPOINT`` as huggingface_hub reads them). A
   repository already in the cache is not asked for again (an offline check first).

Each step reports the disk it used (the checkout, the environment, the repository's cache folder).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.run import envs
from harness.run.manifests import ModelManifest, UpstreamPin

DEFAULT_GIT_BASE = "https://github.com"

# What a step did: made it, found it there already, or left it out (and why, in the detail).
DONE, PRESENT, SKIPPED = "done", "present", "skipped"


class SetupError(HarnessError):
    """A step that cannot be done; the message says what to do."""


@dataclass(frozen=True)
class Step:
    model: str
    name: str  # upstream, environment, weights
    outcome: str  # DONE, PRESENT or SKIPPED
    detail: str
    disk_bytes: int | None = None  # what the step's result occupies on disk


@dataclass(frozen=True)
class SetupOptions:
    skip_env: bool = False
    skip_weights: bool = False
    python: str | None = None
    installer: str = "auto"
    pip_args: Sequence[str] = ()
    system_site_packages: bool = False
    download: Callable[..., str] | None = None  # huggingface_hub.snapshot_download, or a stand-in in tests
    run: Callable[[list[str]], None] | None = None  # envs.create_env's command runner, or a stand-in in tests


def disk_usage(path: Path) -> int:
    """Bytes of the regular files under ``path`` (links not followed: a Hub cache's snapshots link to its blobs)."""
    if path.is_file():
        return path.stat().st_size
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            p = os.path.join(folder, name)
            if not os.path.islink(p):
                total += os.path.getsize(p)
    return total


def human(n: int | None) -> str:
    if n is None:
        return ""
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"  # pragma: no cover  (the loop returns at GB)


# --- 1. the upstream checkout -------------------------------------------------------------------------------------

def git_url(pin: UpstreamPin, base: str | None = None) -> str:
    base = (base or os.environ.get("HARNESS_GIT_BASE") or DEFAULT_GIT_BASE).rstrip("/")
    return f"{base}/{pin.repo}.git"


def _git(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    if shutil.which("git") is None:
        raise SetupError("git is not on PATH: install git (harness setup clones the upstream code with it)")
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)


def _head(checkout: Path) -> str | None:
    res = _git(["rev-parse", "HEAD"], cwd=checkout)
    return res.stdout.strip() if res.returncode == 0 else None


def _check_out(checkout: Path, pin: UpstreamPin, url: str) -> str:
    """Detach ``checkout`` at the pinned commit (fetching when it lacks it); its full hash."""
    if _git(["cat-file", "-e", f"{pin.revision}^{{commit}}"], cwd=checkout).returncode != 0:
        fetched = _git(["fetch", "--quiet", "origin"], cwd=checkout)
        if fetched.returncode != 0:
            raise SetupError(f"git fetch in {checkout} failed: {fetched.stderr.strip()}")
    res = _git(["-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", pin.revision], cwd=checkout)
    if res.returncode != 0:
        raise SetupError(f"{url} has no commit {pin.revision} (the revision {pin.repo} is pinned at): {res.stderr.strip()}")
    head = _head(checkout)
    if head is None or not head.startswith(pin.revision):
        raise SetupError(f"{checkout}: HEAD is {head}, not the pinned {pin.revision} after the checkout")
    return head


def ensure_checkout(pin: UpstreamPin, home: Path, base: str | None = None) -> tuple[str, Path, str]:
    """(DONE or PRESENT, the checkout, what was done) with HEAD at the pinned revision."""
    url = git_url(pin, base)
    dest = home / "upstream" / pin.folder
    if dest.exists():
        head = _head(dest) if (dest / ".git").exists() else None
        if head is None:
            raise SetupError(f"{dest} exists and is not a git checkout: move it away or delete it, then run setup again")
        if head.startswith(pin.revision):
            return PRESENT, dest, f"already at {pin.repo} {pin.revision} in {dest}"
        if _git(["status", "--porcelain", "--untracked-files=no"], cwd=dest).stdout.strip():
            raise SetupError(f"{dest} is at {head[:12]}, not the pinned {pin.revision}, and has local changes: commit or discard "
                             f"them, or check out {pin.revision} yourself")
        _check_out(dest, pin, url)
        return DONE, dest, f"checked out {pin.repo} {pin.revision} in {dest} (it was at {head[:12]})"
    partial = dest.with_name(dest.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)  # an interrupted clone: start again
    partial.parent.mkdir(parents=True, exist_ok=True)
    print(f"+ git clone {url} {dest}", file=sys.stderr, flush=True)
    res = _git(["clone", "--quiet", "--no-checkout", url, str(partial)])
    if res.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        raise SetupError(f"git clone {url} failed: {res.stderr.strip()}. Check the network; where {pin.repo} is not public "
                         "there, set HARNESS_GIT_BASE to a mirror, or clone it yourself at the revision and pass "
                         "`harness env create --upstream PATH`")
    _check_out(partial, pin, url)
    partial.rename(dest)
    return DONE, dest, f"cloned {pin.repo} {pin.revision} from {url} into {dest}"


# --- 2. the environment -------------------------------------------------------------------------------------------

def _interpreter(manifest: ModelManifest, options: SetupOptions) -> tuple[str | None, str]:
    """The base interpreter for the environment, and a note when the manifest's wish could not be met."""
    if options.python or not manifest.python:
        return options.python, ""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == manifest.python:
        return None, ""
    found = shutil.which(f"python{manifest.python}")
    if found:
        return found, ""
    return None, (f"; warning: {manifest.dist} wants Python {manifest.python} and python{manifest.python} is not on PATH, "
                  f"so this interpreter ({sys.version_info.major}.{sys.version_info.minor}) was used: pass --python")


def ensure_env(manifest: ModelManifest, checkout: Path | None, options: SetupOptions) -> tuple[str, str, int]:
    """(DONE or PRESENT, what was done, the environment's disk bytes)."""
    name = manifest.dist
    rec = envs.load_envs().get(name)
    if rec is not None and envs.status(rec) == "ok":
        note = ""
        if checkout is not None and rec.upstream != str(checkout):
            note = (f"; it names upstream {rec.upstream}, not {checkout}: `harness env create {name} --force --upstream {checkout}` "
                    "to use the setup checkout")
        return PRESENT, f"environment {name} ({rec.python}) is current{note}", disk_usage(Path(rec.path))
    reason = "" if rec is None else f" (it was {envs.status(rec)}: rebuilt)"
    python, note = _interpreter(manifest, options)
    kwargs: dict[str, Any] = {"run": options.run} if options.run is not None else {}
    rec = envs.create_env(name, python=python, upstream=checkout, adapter_dir=manifest.path.parent.parent,
                          installer=options.installer, pip_args=options.pip_args,
                          system_site_packages=options.system_site_packages, force=rec is not None, **kwargs)
    return DONE, f"created environment {name} ({rec.python}){reason}, providing {', '.join(rec.adapters)}{note}", disk_usage(Path(rec.path))


# --- 3. the weights -----------------------------------------------------------------------------------------------

def hub_cache() -> Path:
    """Where huggingface_hub keeps repositories, read from the environment as it reads it (at each call: tests change it)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "huggingface")
    return Path(home).expanduser() / "hub"


def repo_folder(repo: str) -> Path:
    return hub_cache() / ("models--" + repo.replace("/", "--"))


def weights_plan(manifest: ModelManifest, variant: str | None = None) -> list[str]:
    """The Hub repositories ``variant`` (default: the manifest's) loads, in order, each once."""
    return list(dict.fromkeys(manifest.weights[manifest.variant(variant)]))


def cached(repo: str, download: Callable[..., str] | None = None) -> Path | None:
    """The snapshot of ``repo`` in the cache, or None; asks nothing of the network."""
    hub = _hub()
    fetch = download or hub.snapshot_download
    try:
        return Path(fetch(repo, cache_dir=str(hub_cache()), local_files_only=True))
    except (hub.errors.LocalEntryNotFoundError, FileNotFoundError):
        return None


def _hub() -> Any:
    try:
        import huggingface_hub
        import huggingface_hub.errors
    except ImportError as exc:
        raise SetupError("huggingface_hub is not installed: `pip install huggingface_hub` (or the engine's extra: "
                         "pip install -e '.[hf]'), or pass --skip-weights") from exc
    return huggingface_hub


def ensure_weights(repo: str, download: Callable[..., str] | None = None) -> tuple[str, str, int]:
    """(DONE or PRESENT, what was done, the repository's bytes in the cache)."""
    hub = _hub()
    fetch = download or hub.snapshot_download
    snapshot = cached(repo, download)
    if snapshot is not None:
        return PRESENT, f"{repo} is in the cache ({snapshot})", disk_usage(repo_folder(repo))
    before = disk_usage(repo_folder(repo)) if repo_folder(repo).exists() else 0
    try:
        snapshot = Path(fetch(repo, cache_dir=str(hub_cache())))
    except hub.errors.GatedRepoError as exc:
        raise SetupError(f"{repo} is gated: accept its licence at https://huggingface.co/{repo} with your account, then set "
                         "HF_TOKEN (or `hf auth login`) and run setup again") from exc
    except hub.errors.LocalEntryNotFoundError as exc:  # HF_HUB_OFFLINE, or no network to the endpoint
        raise SetupError(f"{repo} is not in the cache ({hub_cache()}) and the Hub could not be asked ({exc}): unset "
                         "HF_HUB_OFFLINE or check HF_ENDPOINT and the network, or pass --skip-weights") from exc
    except hub.errors.RepositoryNotFoundError as exc:
        raise SetupError(f"{repo} is not on the Hub at {os.environ.get('HF_ENDPOINT', 'https://huggingface.co')} (or is "
                         "private: set HF_TOKEN)") from exc
    used = disk_usage(repo_folder(repo))
    return DONE, f"downloaded {repo} into {snapshot} ({human(used - before)} new)", used


# --- all three ----------------------------------------------------------------------------------------------------

def setup_model(manifest: ModelManifest, variant: str | None, options: SetupOptions,
                report: Callable[[Step], None]) -> list[Step]:
    """The three steps for one model, each reported as it ends."""
    steps: list[Step] = []

    def done(step: Step) -> None:
        steps.append(step)
        report(step)

    model = manifest.dist
    checkout: Path | None = None
    pin = manifest.upstream
    if pin is None:
        done(Step(model, "upstream", SKIPPED, "the manifest pins no upstream repository: the model's code comes from PyPI"))
    else:
        outcome, checkout, detail = ensure_checkout(pin, envs.harness_home())
        note = f"; note: {manifest.upstream_note}" if manifest.upstream_note else ""
        done(Step(model, "upstream", outcome, detail + note, disk_usage(checkout)))
    if options.skip_env:
        done(Step(model, "environment", SKIPPED, "--skip-env"))
    else:
        outcome, detail, size = ensure_env(manifest, checkout, options)
        done(Step(model, "environment", outcome, detail, size))
    if options.skip_weights:
        done(Step(model, "weights", SKIPPED, "--skip-weights"))
    else:
        for repo in weights_plan(manifest, variant):
            outcome, detail, size = ensure_weights(repo, options.download)
            done(Step(model, "weights", outcome, detail, size))
    return steps
