"""A parsed split, cached as one compact JSON Lines file keyed by the content of its annotation files.

Parsing RefCOCO means loading a pickle and a large ``instances.json`` and rasterising
thousands of polygons; the result (ids, expressions, RLE masks, boxes, metadata) is small.
It is written once under ``<cache>/index/<format>/<key>.jsonl`` where the key is the sha256
of the reader's name and version, the split's parameters and the sha256 of every
annotation file. A second run reads that file and starts at once.

- Never pickle: the cache is plain JSON, read with ``json.loads``.
- File hashes are remembered per (path, size, mtime) in ``<cache>/index/file-hashes.json``
  so a run does not re-read gigabytes to learn that nothing changed (the same trade-off as
  git's index: a file rewritten with identical size and mtime would go unnoticed).
- Ground truths are stored once per object and shared by its sentences; image paths are
  stored relative to the data root (``d:``) or the cache (``c:``), so moving the data root
  keeps the cache valid.
- A header line (images, each ground truth's height, width and area, where the sections are),
  the samples' rows 2,048 to a line, then each ground truth's RLE counts and box (and, where it has
  them, each annotator's instance masks) on a line of its own, read when its sample is scored or
  drawn (``lazy_gt``), so the samples of a 100k split hold no counts. The format is in the key, and a file of another format, or whose size
  is not what its header says (torn), is parsed again and rewritten.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from harness.data.sources.lazy_gt import GroundTruthStore, LazyGroundTruth
from harness.files import write_lines_atomic, write_text_atomic
from harness.types import Sample

CACHE_FORMAT = 2  # 2: ground truths on lines of their own, read on demand (1: one JSON document)
_HASH_CHUNK = 1 << 20
_ROWS_PER_LINE = 2048  # samples per line of the cache file


class FileHasher:
    """sha256 of files, remembered across runs by (resolved path, size, mtime_ns)."""

    def __init__(self, cache_dir: Path) -> None:
        self.path = Path(cache_dir) / "index" / "file-hashes.json"
        self._memo: dict[str, list[Any]] | None = None
        self._dirty = False

    def _load(self) -> dict[str, list[Any]]:
        if self._memo is None:
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                self._memo = data if isinstance(data, dict) else {}
            except (OSError, ValueError):
                self._memo = {}
        return self._memo

    def digest(self, path: Path) -> str:
        p = Path(path).resolve()
        st = p.stat()
        memo = self._load()
        entry = memo.get(str(p))
        if isinstance(entry, list) and len(entry) == 3 and entry[0] == st.st_size and entry[1] == st.st_mtime_ns:
            return str(entry[2])
        h = hashlib.sha256()
        with p.open("rb") as f:
            while chunk := f.read(_HASH_CHUNK):
                h.update(chunk)
        memo[str(p)] = [st.st_size, st.st_mtime_ns, h.hexdigest()]
        self._dirty = True
        return h.hexdigest()

    def save(self) -> None:
        if self._dirty and self._memo is not None:
            try:
                write_text_atomic(self.path, json.dumps(self._memo, separators=(",", ":")))
            except OSError:
                pass  # the memo is an optimisation; an unwritable cache only costs re-hashing
            self._dirty = False


def index_key(fmt: str, version: int, spec: dict[str, Any], digests: Iterable[str]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"cache": CACHE_FORMAT, "format": fmt, "version": version, "spec": spec},
                        sort_keys=True, separators=(",", ":"), default=str).encode())
    for d in digests:
        h.update(d.encode())
    return h.hexdigest()[:32]


def content_digest(fmt: str, version: int, spec: dict[str, Any], digests: Iterable[str]) -> str:
    """What a split is made of: the reader and its version, the split's parameters and the content of
    every annotation file. The index key less the cache's own format, so a new cache layout does not
    make every run's ground truth look changed."""
    h = hashlib.sha256()
    h.update(json.dumps({"format": fmt, "version": version, "spec": spec}, sort_keys=True, separators=(",", ":"), default=str).encode())
    for d in digests:
        h.update(d.encode())
    return f"{fmt}:{h.hexdigest()[:32]}"


def index_path(cache_dir: Path, fmt: str, key: str) -> Path:
    return Path(cache_dir) / "index" / fmt / f"{key}.jsonl"


def _rel(image: str, data_root: Path | None, cache_dir: Path) -> str:
    p = Path(image)
    for tag, base in (("c", cache_dir), ("d", data_root)):
        if base is None:
            continue
        try:
            return f"{tag}:{p.relative_to(base).as_posix()}"
        except ValueError:
            continue
    return f"a:{p.as_posix()}"


def _abs(ref: str, data_root: Path | None, cache_dir: Path) -> str:
    tag, _, rest = ref.partition(":")
    if tag == "c":
        return str(cache_dir / rest)
    if tag == "d":
        return str((data_root or Path(".")) / rest)
    return rest


def save_index(path: Path, key: str, samples: Sequence[Sample], data_root: Path | None, cache_dir: Path,
               warnings: Sequence[str] = ()) -> bool:
    """Write ``samples`` compactly: distinct images and ground truths once, samples as rows; False when
    the cache cannot be written.

    The file is JSON Lines: a header (images, each ground truth's height, width and area, where the
    sections are), the samples' rows a batch per line, then one line per ground truth with its RLE
    counts and box, read only when a sample's mask is used (``lazy_gt``). Rows come in batches so that
    reading them never holds every row's parsed JSON at once."""
    images: dict[str, int] = {}
    gts: dict[int, int] = {}
    gt_rows: list[list[int]] = []
    gt_lines: list[str] = []
    offsets = [0]
    rows: list[list[Any]] = []
    for s in samples:
        ii = images.setdefault(s.image, len(images))
        gi = gts.get(id(s.gt))
        if gi is None:
            gi = gts[id(s.gt)] = len(gt_rows)
            g = s.gt
            gt_rows.append([g.height, g.width, g.area])
            # ASCII only (RLE counts are), so characters are bytes and the offsets are byte offsets.
            fields: list[Any] = [g.mask["counts"], list(g.box) if g.box is not None else None,
                      g.ignore["counts"] if g.ignore is not None else None,
                      g.overlap["counts"] if g.overlap is not None else None]
            if g.instances is not None:  # each annotator's instance masks (SA-Co); absent elsewhere, as before
                fields.append([[m["counts"] for m in annotator] for annotator in g.instances])
            line = json.dumps(fields, separators=(",", ":")) + "\n"
            gt_lines.append(line)
            offsets.append(offsets[-1] + len(line))
        rows.append([s.id, ii, s.expression, gi, s.dataset, s.split, int(s.no_target), s.meta or None])
    row_lines = [json.dumps(rows[k:k + _ROWS_PER_LINE], separators=(",", ":"), ensure_ascii=False) + "\n"
                 for k in range(0, len(rows), _ROWS_PER_LINE)]
    header = {
        "cache_format": CACHE_FORMAT,
        "key": key,
        "warnings": list(warnings),
        "images": [_rel(i, data_root, cache_dir) for i in images],
        "gts": gt_rows,
        "samples": len(rows),
        "sample_lines": len(row_lines),
        "sample_bytes": sum(len(line.encode()) for line in row_lines),
        "gt_offsets": offsets,  # of each ground truth's line, after the rows; the last is the section's size
    }
    try:
        write_lines_atomic(path, [json.dumps(header, separators=(",", ":"), ensure_ascii=False) + "\n", *row_lines, *gt_lines])
    except OSError:
        return False  # a read-only cache: the next run parses again
    return True


def _shared(meta: dict[str, Any], pool: dict[Any, Any]) -> dict[str, Any]:
    """``meta`` with each string or int value replaced by the pool's equal one: ``json.loads`` makes a
    new object per occurrence, and 100k samples repeat their dataset, split, text normalisation, object,
    image id and sentence (``sent`` is the expression) — a third of what their metadata held."""
    for k, v in meta.items():
        if type(v) is str or type(v) is int:  # not bool (True == 1) nor float (1.0 == 1): equal, not the same value
            meta[k] = pool.setdefault(v, v)
    return meta


def load_index(path: Path, key: str, data_root: Path | None, cache_dir: Path) -> tuple[list[Sample], list[str]] | None:
    """The cached samples (their ground truths read on demand) and warnings, or None when absent,
    stale, of another format, torn or unreadable (the caller then parses the split again)."""
    fd = -1
    try:
        with path.open("rb") as f:
            first = f.readline()
            doc = json.loads(first)
            if not isinstance(doc, dict) or doc.get("cache_format") != CACHE_FORMAT or doc.get("key") != key:
                return None
            offsets = doc["gt_offsets"]
            start = len(first) + int(doc["sample_bytes"])
            # A file cut short (or grown) is not trusted: every line must be where the header says.
            if not first.endswith(b"\n") or len(offsets) != len(doc["gts"]) + 1 or os.fstat(f.fileno()).st_size != start + int(offsets[-1]):
                return None
            del first
            images = [_abs(r, data_root, cache_dir) for r in doc["images"]]
            # Images the reader extracted into the cache must still be there.
            if any(r.startswith("c:") and not os.path.exists(p) for r, p in zip(doc["images"], images)):
                return None
            fd = os.dup(f.fileno())
            store = GroundTruthStore(path, fd, start, offsets)
            fd = -1  # the store closes it
            gts = [LazyGroundTruth(store, i, int(h), int(w), int(area)) for i, (h, w, area) in enumerate(doc["gts"])]
            # One object per distinct string: 100k samples of one dataset and split hold two strings, not 200k.
            pool: dict[Any, Any] = {}
            samples: list[Sample] = []
            for _ in range(int(doc["sample_lines"])):
                samples += [
                    Sample(id=sid, image=images[ii], expression=pool.setdefault(expr, expr), gt=gts[gi], dataset=pool.setdefault(ds, ds),
                           split=pool.setdefault(sp, sp), no_target=bool(nt), meta=_shared(meta, pool) if meta else {})
                    for sid, ii, expr, gi, ds, sp, nt, meta in json.loads(f.readline())
                ]
            if f.tell() != start or len(samples) != doc["samples"]:
                return None
    except (OSError, KeyError, TypeError, ValueError, IndexError):
        return None
    finally:
        if fd >= 0:
            os.close(fd)
    return samples, [str(w) for w in doc.get("warnings", [])]
