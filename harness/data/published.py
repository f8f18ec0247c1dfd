"""Where a suite's data is published: the ``fetch:`` block of a suite file, read into typed entries.

One table per suite, in the suite file, that ``harness data fetch`` downloads from and ``harness data
layout`` prints. Each entry gives the layout path it provides under the data root and one of three
ways to get it::

    fetch:
      source: {format: hf, ...}          # optional: the reader of the fetched copy (see below)
      files:
        - hub: moondream/refcoco-m        # a Hugging Face dataset repository
          files: [data/validation-*.parquet]   # globs over the repository's paths (or split -> globs)
          into: refcoco-m                 # folder under the data root; repository paths kept below it
          flatten: false                  # true: each file straight into ``into`` (its folders dropped)
          as: null                        # one matched file saved under this name in ``into``
          revision: main
        - url: http://images.cocodataset.org/zips/unlabeled2017.zip
          sha256: null                    # the publisher's checksum, when it publishes one
          extract: zip                    # unpacked into ``into`` (the archive is removed once unpacked)
          into: coco
          path: coco/unlabeled2017/       # what exists once it is done (a rerun skips it)
        - manual: https://github.com/dvlab-research/LISA#dataset
          path: reason_seg/ReasonSeg/     # where a human puts what the page gives after its licence

``what`` describes an entry; ``splits`` (a list) limits it to the splits that need it. Only faithful
copies are listed: a copy whose ground truth differs from the reference (``hf.py``'s unfaithful ones)
never appears here, so it is never fetched.

``source``, when present, is the reader of the fetched copy where it differs from the suite's own
(RefCOCO: the REFER pickles are not on the Hub; ``jxu124/refcoco-benchmark`` holds the same refs and
polygons with the images embedded, read by the ``hf`` reader with the same sample ids and ground
truth). A run reads the suite's own files when any is present, else the fetched copy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.errors import HarnessError

# Hub copies that cannot give the reference ground truth (harness/data/sources/hf.py says why: boolean masks,
# ignore regions as target, one flat polygon, mixed splits). A fetch table that names one is refused, so
# they are never downloaded, silently or not; read one from disk with the hf reader, which warns on it.
UNFAITHFUL_REPOS = ("Ricky06662/", "lmms-lab/RefCOCO")


class FetchTableError(HarnessError):
    """A suite's ``fetch:`` block that cannot be used; the message names the suite file."""


@dataclass(frozen=True)
class HubFiles:
    repo: str
    files: dict[str, tuple[str, ...]]  # split -> globs; key "" for every split
    into: str
    what: str
    flatten: bool = False
    save_as: str | None = None
    revision: str = "main"
    splits: tuple[str, ...] = ()

    @property
    def path(self) -> str:
        into = "" if self.into.strip("/") in ("", ".") else self.into.strip("/") + "/"
        return f"{into}{self.save_as}" if self.save_as else into

    @property
    def where(self) -> str:
        return f"Hugging Face dataset {self.repo} (huggingface.co/datasets/{self.repo})"

    def patterns(self, splits: list[str]) -> list[str]:
        """The globs the given splits need, in table order, without repeats."""
        out: list[str] = []
        for key, globs in self.files.items():
            if key == "" or key in splits:
                out.extend(g for g in globs if g not in out)
        return out


@dataclass(frozen=True)
class UrlFile:
    url: str
    into: str
    path: str
    what: str
    sha256: str | None = None
    size: int | None = None
    extract: str | None = None  # zip
    splits: tuple[str, ...] = ()

    @property
    def where(self) -> str:
        check = f"sha256 {self.sha256[:12]}..." if self.sha256 else "the publisher gives no checksum"
        return f"{self.url} ({check})"


@dataclass(frozen=True)
class Manual:
    page: str
    path: str
    what: str
    splits: tuple[str, ...] = ()

    @property
    def where(self) -> str:
        return f"{self.page} (by hand: the page asks you to accept its terms or sign in)"


Entry = HubFiles | UrlFile | Manual


@dataclass(frozen=True)
class FetchTable:
    entries: tuple[Entry, ...]
    source: dict[str, Any] | None = None  # the fetched copy's reader: {format: ..., params...}

    @property
    def downloads(self) -> bool:
        """Whether ``harness data fetch`` downloads anything (not only points at pages)."""
        return any(not isinstance(e, Manual) for e in self.entries)

    def for_splits(self, splits: list[str]) -> list[Entry]:
        return [e for e in self.entries if not e.splits or any(s in e.splits for s in splits)]

    def covering(self, layout_path: str) -> Entry | None:
        """The entry that provides ``layout_path`` (a path of ``harness data layout``), if any."""
        want = layout_path.strip("/")
        for e in self.entries:
            have = e.path.strip("/")
            if want == have or want.startswith(have + "/") or have.startswith(want + "/"):
                return e
        return None


def _str(raw: dict[str, Any], key: str, where: str, required: bool = True) -> Any:
    value = raw.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise FetchTableError(f"{where}: {key!r} must be a non-empty string")
    return value


def _splits(raw: dict[str, Any], where: str, known: list[str]) -> tuple[str, ...]:
    splits = raw.get("splits") or []
    if not isinstance(splits, list) or any(s not in known for s in splits):
        raise FetchTableError(f"{where}: splits must list splits of the suite ({', '.join(known)})")
    return tuple(splits)


def _relative(path: str, where: str) -> str:
    if path.startswith("/") or ".." in path.split("/"):
        raise FetchTableError(f"{where}: {path!r} must be a path under the data root (relative, no '..')")
    return path


def _hub(raw: dict[str, Any], where: str, known: list[str]) -> HubFiles:
    files = raw.get("files")
    if isinstance(files, list):
        table = {"": tuple(files)}
    elif isinstance(files, dict) and all(k in known for k in files):
        table = {k: tuple(v) if isinstance(v, list) else (v,) for k, v in files.items()}
    else:
        raise FetchTableError(f"{where}: files must be a list of globs, or map splits of the suite to globs")
    if not table or any(not isinstance(g, str) or not g for globs in table.values() for g in globs):
        raise FetchTableError(f"{where}: files must name at least one glob, each a non-empty string")
    repo = _str(raw, "hub", where)
    if repo.startswith(UNFAITHFUL_REPOS):
        raise FetchTableError(f"{where}: {repo} is a copy that cannot give the reference ground truth (see "
                              "harness/data/sources/hf.py): it is not fetched")
    save_as = _str(raw, "as", where, required=False)
    if save_as is not None and "/" in save_as:
        raise FetchTableError(f"{where}: 'as' is a file name, not a path")
    return HubFiles(repo=repo, files=table, into=_relative(_str(raw, "into", where), where),
                    what=_str(raw, "what", where), flatten=bool(raw.get("flatten", False)), save_as=save_as,
                    revision=str(raw.get("revision") or "main"), splits=_splits(raw, where, known))


def _url(raw: dict[str, Any], where: str, known: list[str]) -> UrlFile:
    sha = _str(raw, "sha256", where, required=False)
    if sha is not None and (len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha)):
        raise FetchTableError(f"{where}: sha256 must be 64 lower-case hex digits")
    size = raw.get("size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size <= 0):
        raise FetchTableError(f"{where}: size must be a positive integer (bytes)")
    extract = raw.get("extract")
    if extract not in (None, "zip"):
        raise FetchTableError(f"{where}: extract must be 'zip' or absent")
    return UrlFile(url=_str(raw, "url", where), into=_relative(_str(raw, "into", where), where),
                   path=_relative(_str(raw, "path", where), where), what=_str(raw, "what", where), sha256=sha, size=size,
                   extract=extract, splits=_splits(raw, where, known))


def _manual(raw: dict[str, Any], where: str, known: list[str]) -> Manual:
    return Manual(page=_str(raw, "manual", where), path=_relative(_str(raw, "path", where), where),
                  what=_str(raw, "what", where), splits=_splits(raw, where, known))


KINDS: dict[str, Callable[[dict[str, Any], str, list[str]], Entry]] = {"hub": _hub, "url": _url, "manual": _manual}


def parse_fetch(raw: Any, where: str, splits: list[str]) -> FetchTable | None:
    """The ``fetch:`` block of a suite file (``where`` names it), or None when it has none."""
    if raw is None:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("files"), list):
        raise FetchTableError(f"{where}: fetch must be a mapping with a 'files' list (and optionally 'source')")
    unknown = sorted(set(raw) - {"files", "source"})
    if unknown:
        raise FetchTableError(f"{where}: fetch: unknown key(s) {', '.join(unknown)}; known: files, source")
    entries: list[Entry] = []
    for i, item in enumerate(raw["files"]):
        at = f"{where}: fetch.files[{i}]"
        kinds = [k for k in KINDS if isinstance(item, dict) and k in item]
        if len(kinds) != 1:
            raise FetchTableError(f"{at}: each entry names exactly one of hub, url, manual")
        entries.append(KINDS[kinds[0]](item, at, splits))
    source = raw.get("source")
    if source is not None and not (isinstance(source, dict) and isinstance(source.get("format"), str)):
        raise FetchTableError(f"{where}: fetch.source must be a source mapping with a format")
    return FetchTable(entries=tuple(entries), source=dict(source) if source else None)
