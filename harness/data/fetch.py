"""``harness data fetch SUITE``: download what a suite needs into the layout its reader expects, verified.

What to get comes from the suite's ``fetch:`` table (harness/data/published.py). Three kinds of entry:

- a Hugging Face dataset repository: its files are listed at one commit (sizes, and the sha256 of LFS
  files, from the Hub's tree listing), each matched file is downloaded with ``huggingface_hub`` into a
  staging folder under the data root (``.harness-fetch/``; huggingface_hub resumes a dropped connection
  with an HTTP Range request and shows a progress bar per file), checked against its size and sha256 (the
  git blob id for small non-LFS files), and only then moved to its final name. ``HF_ENDPOINT``,
  ``HF_TOKEN`` and ``HF_HOME`` (the stored login) are honoured as huggingface_hub honours them;
- a plain URL: downloaded to ``<name>.part`` beside the archive, resumed with HTTP Range after a dropped
  connection (here or in a later run), checked against the published sha256 or size when there is one,
  renamed, and unpacked (a zip) into a staging folder whose top-level entries are then moved into place;
- a page a human must go through (a licence, a sign-in, a Google Drive folder): nothing is downloaded;
  when its path is missing the command names the page and the path, and exits 2 (bad input).

A file already at its final name with the right size and checksum is not downloaded again. Nothing is
ever left half-written under a final name: a file that fails its check is removed and named. Once every
part is in place the suite's splits are read and held against their official counts, as ``harness data
check`` does (image headers only: the checksums already vouch for the bytes).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import sys
import urllib.error
import urllib.request
import zipfile
from collections.abc import Sequence
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath
from typing import Any, TextIO

from tqdm import tqdm

from harness.data.published import HubFiles, Manual, UrlFile
from harness.data.samples import holds_own_files
from harness.data.suites import load_suite
from harness.errors import HarnessError

STAGING = ".harness-fetch"  # under the data root: same file system as the final names, so moves are renames
URL_ATTEMPTS = 4  # a dropped connection is resumed this many times within one command
CHUNK = 1 << 20


class FetchError(HarnessError):
    """A download that cannot be done or does not verify; the message names the file and the way forward."""


def fetch_suite(suite_name: str, data_root: Path | None, splits: Sequence[str] | None, out: TextIO | None = None) -> int:
    """Download the parts of ``splits`` (default: every split) that are missing, then check the official counts.
    Returns the exit status of the check; raises FetchError when a part cannot be had."""
    from harness.data import datacheck

    out = out or sys.stdout
    suite = load_suite(suite_name)
    names = suite.select_splits(list(splits)) if splits else list(suite.splits)
    if suite.fetch is None:
        if suite.source_format == "shapes":
            print(f"suite {suite.name} is generated from a seed: nothing to fetch", file=out)
            return 0
        raise FetchError(f"suite {suite.name} ({suite.path}) has no fetch table: `harness data layout {suite_name}` "
                         "shows the files it needs and where they are published")
    if data_root is None:
        raise FetchError("data fetch needs a data root to write to: pass --data-root DIR, set data_root in the run config, "
                         "or set HARNESS_DATA")
    root = Path(data_root).expanduser().absolute()
    root.mkdir(parents=True, exist_ok=True)
    if suite.fetch.source is not None and holds_own_files(suite, root):
        print(f"suite {suite.name}: its own {suite.source_format} files are under {root}, and a run reads them rather than "
              "a fetched copy: nothing to fetch; checking them", file=out)
        return datacheck.run_check(suite_name, root, names, decode=False, out=out)
    print(f"suite {suite.name}: fetching {', '.join(names)} into {root}", file=out)
    by_hand: list[Manual] = []
    for entry in suite.fetch.for_splits(names):
        if isinstance(entry, Manual):
            if (root / entry.path).exists():
                print(f"  [ok] {entry.path} (put there by hand)", file=out)
            else:
                by_hand.append(entry)
        elif isinstance(entry, HubFiles):
            fetch_hub(entry, root, names, out)
        else:
            fetch_url(entry, root, out)
    if by_hand:
        lines = [f"{len(by_hand)} part(s) of suite {suite.name} must be downloaded by hand (a licence to accept or a "
                 "sign-in); every other part is in place:"]
        for e in by_hand:
            lines.append(f"  {e.what}\n    from {e.page}\n    put it at {root / e.path}")
        lines.append(f"then run `harness data check --suite {suite_name} --data-root {root}`")
        raise FetchError("\n".join(lines))
    print("checking the official counts", file=out)
    return datacheck.run_check(suite_name, root, names, decode=False, out=out)


# ----------------------------------------------------------------------------- Hugging Face Hub


def _hub() -> Any:
    try:
        import huggingface_hub
    except ImportError:
        raise FetchError("fetching from the Hugging Face Hub needs huggingface_hub: pip install 'harness-seg[hf]'") from None
    return huggingface_hub


def file_check(path: Path, size: int, sha256: str | None, blob_id: str | None) -> str | None:
    """What is wrong with ``path`` against the publisher's size and checksum, or None when it matches."""
    got = path.stat().st_size
    if got != size:
        return f"{got} bytes where the publisher lists {size}"
    if sha256 is None and blob_id is None:
        return None
    # A small file kept in git is named by its blob id: the sha1 of "blob <size>\0" + its content.
    h = hashlib.sha256() if sha256 is not None else hashlib.sha1(f"blob {got}\0".encode())
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    want, what = (sha256, "sha256") if sha256 is not None else (blob_id, "git blob id")
    return None if h.hexdigest() == want else f"{what} {h.hexdigest()} where the publisher lists {want}"


def _unreachable(exc: BaseException) -> bool:
    """A transport failure of huggingface_hub's HTTP client (httpx, httpx2 or requests, by its version): no answer."""
    return type(exc).__module__.split(".")[0] in ("httpx", "httpx2", "httpcore", "httpcore2", "requests", "urllib3")


def _hub_call(hub: Any, repo: str, what: str, call: Any) -> Any:
    """``call()``, its Hub failures turned into FetchErrors that say what to do."""
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    try:
        return call()
    except hub.errors.GatedRepoError:
        raise FetchError(f"{repo} is gated: accept its terms at https://huggingface.co/datasets/{repo} while signed in, "
                         "then set HF_TOKEN (or run `hf auth login`) and run the same command again") from None
    except hub.errors.LocalEntryNotFoundError as exc:  # hf_hub_download could not reach the Hub
        raise FetchError(f"{what}: cannot reach {endpoint} ({exc}); check the network or HF_ENDPOINT and run the same "
                         "command again") from None
    except hub.errors.HfHubHTTPError as exc:
        raise FetchError(f"{what}: {exc}") from None
    except Exception as exc:
        if not _unreachable(exc):
            raise
        raise FetchError(f"{what}: cannot reach {endpoint} ({exc}); check the network or HF_ENDPOINT and run the same "
                         "command again") from None


def _hub_files(hub: Any, entry: HubFiles, splits: list[str]) -> tuple[str, list[Any]]:
    """(commit, the repository files the splits need), listed once at one commit."""
    api = hub.HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None)
    commit = _hub_call(hub, entry.repo, entry.where, lambda: api.dataset_info(entry.repo, revision=entry.revision).sha)
    tree = _hub_call(hub, entry.repo, entry.where, lambda: [
        f for f in api.list_repo_tree(entry.repo, repo_type="dataset", revision=commit, recursive=True)
        if isinstance(f, hub.hf_api.RepoFile)])
    chosen: list[Any] = []
    for pattern in entry.patterns(splits):
        matched = [f for f in tree if fnmatch(f.path, pattern)]
        if not matched:
            held = ", ".join(sorted(f.path for f in tree)[:20])
            raise FetchError(f"no file of {entry.repo} at {commit[:12]} matches {pattern!r} (the suite's fetch table); "
                             f"the repository holds: {held}")
        chosen.extend(f for f in matched if f not in chosen)
    if entry.save_as and len(chosen) != 1:
        raise FetchError(f"{entry.repo}: the fetch table saves one file as {entry.save_as!r} but {len(chosen)} match: "
                         + ", ".join(f.path for f in chosen))
    return commit, chosen


def fetch_hub(entry: HubFiles, root: Path, splits: list[str], out: TextIO) -> None:
    hub = _hub()
    commit, files = _hub_files(hub, entry, splits)
    print(f"  {entry.repo} at {commit[:12]}: {len(files)} file(s) into {entry.into}/", file=out)
    staging = root / STAGING / "hub" / entry.repo.replace("/", "--")
    for f in files:
        rel = entry.save_as or (PurePosixPath(f.path).name if entry.flatten else f.path)
        final = root / entry.into / rel
        size, sha = (f.lfs.size, f.lfs.sha256) if f.lfs is not None else (f.size, None)
        blob = None if f.lfs is not None else f.blob_id
        if final.is_file() and file_check(final, size, sha, blob) is None:
            print(f"  [ok] {final.relative_to(root)} (verified)", file=out)
            continue
        got = Path(_hub_call(hub, entry.repo, f"{entry.repo}/{f.path}", lambda f=f: hub.hf_hub_download(
            entry.repo, f.path, repo_type="dataset", revision=commit, local_dir=staging,
            endpoint=os.environ.get("HF_ENDPOINT") or None)))
        problem = file_check(got, size, sha, blob)
        if problem:
            got.unlink()
            raise FetchError(f"{entry.repo}/{f.path} at {commit[:12]} does not verify: {problem}; the download was removed "
                             f"and nothing was written to {final}. Run the same command again; if it fails the same way, "
                             "the copy on the Hub differs from its own listing")
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(got, final)
        print(f"  [new] {final.relative_to(root)} ({size:,} bytes, {'sha256' if sha else 'git blob id'} verified)", file=out)


# ----------------------------------------------------------------------------- plain URLs


def _total(response: Any, have: int) -> int | None:
    """The whole file's size from a (partial) response: Content-Range's total, else Content-Length."""
    content_range = response.headers.get("Content-Range")
    if content_range and "/" in content_range and not content_range.endswith("/*"):
        return int(content_range.rsplit("/", 1)[1])
    length = response.headers.get("Content-Length")
    return have + int(length) if length is not None else None


def download(url: str, final: Path, size: int | None = None, sha256: str | None = None) -> None:
    """``url`` into ``final`` through ``final.part``, resumed with HTTP Range (in this call after a dropped
    connection, or in a later one), verified, then renamed: ``final`` never holds a partial file."""
    part = final.with_name(final.name + ".part")
    part.parent.mkdir(parents=True, exist_ok=True)
    last: Exception | None = None
    total = size
    for _ in range(URL_ATTEMPTS):
        have = part.stat().st_size if part.exists() else 0
        request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                if have and response.status != 206:  # the server ignored the range: start again
                    have = 0
                total = _total(response, have) or total
                if size is not None and total is not None and total != size:
                    raise FetchError(f"{url}: the server offers {total} bytes where the fetch table lists {size}")
                with part.open("ab" if have else "wb") as f, tqdm(total=total, initial=have, unit="B", unit_scale=True,
                                                                   desc=final.name, disable=None, file=sys.stderr) as bar:
                    while chunk := response.read(CHUNK):
                        f.write(chunk)
                        bar.update(len(chunk))
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and have and total in (None, have):  # nothing left to send: the part is whole
                total = have
                break
            raise FetchError(f"{url}: HTTP {exc.code} {exc.reason}") from None
        except (http.client.HTTPException, OSError) as exc:  # a dropped connection, a timeout: resume from the part
            last = exc
            continue
        if total is None or part.stat().st_size >= total:
            break
        last = OSError(f"the connection closed after {part.stat().st_size} of {total} bytes")
    else:
        got = part.stat().st_size if part.exists() else 0
        raise FetchError(f"{url}: the download was interrupted ({last}); {part} keeps the {got:,} bytes received: "
                         "run the same command again to resume")
    problem = file_check(part, total if total is not None else part.stat().st_size, sha256, None)
    if problem:
        part.unlink()
        raise FetchError(f"{url} does not verify: {problem}; the download was removed and nothing was written to {final}")
    os.replace(part, final)


def _unzip(archive: Path, into: Path, staging: Path) -> None:
    """Unpack into ``staging`` (zipfile checks every member's CRC), then move its top-level entries into ``into``."""
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with zipfile.ZipFile(archive) as z:
            z.extractall(staging)
    except (zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        archive.unlink()
        raise FetchError(f"{archive}: not a whole zip archive ({exc}); it was removed: run the same command again") from None
    into.mkdir(parents=True, exist_ok=True)
    for item in sorted(staging.iterdir()):
        target = into / item.name
        if target.is_dir() and not any(target.iterdir()):
            target.rmdir()  # an empty folder made by hand, or left by a user: the archive's takes its place
        if target.exists():
            raise FetchError(f"{target} already exists: move it away (or finish it by hand), then run the same command again")
        os.replace(item, target)
    shutil.rmtree(staging, ignore_errors=True)


def fetch_url(entry: UrlFile, root: Path, out: TextIO) -> None:
    final = root / entry.path
    if entry.extract and final.is_dir() and any(final.iterdir()):
        print(f"  [ok] {entry.path} (present)", file=out)
        return
    if not entry.extract and final.is_file() and file_check(final, entry.size or final.stat().st_size, entry.sha256, None) is None:
        print(f"  [ok] {entry.path} (verified)", file=out)
        return
    name = PurePosixPath(entry.url.split("?", 1)[0]).name
    print(f"  {entry.url} -> {entry.path}", file=out)
    if not entry.extract:
        download(entry.url, final, entry.size, entry.sha256)
        return
    archive = root / STAGING / "url" / name
    if not archive.is_file():
        download(entry.url, archive, entry.size, entry.sha256)
    _unzip(archive, root / entry.into, root / STAGING / "unpack" / name)
    archive.unlink()
    print(f"  [new] {entry.path}", file=out)
