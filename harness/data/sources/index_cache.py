"""A parsed split, cached as one compact JSON file keyed by the content of its annotation files.

Parsing RefCOCO means loading a pickle and a large ``instances.json`` and rasterising
thousands of polygons; the result (ids, expressions, RLE masks, boxes, metadata) is small.
It is written once under ``<cache>/index/<format>/<key>.json`` where the key is the sha256
of the reader's name and version, the split's parameters and the sha256 of every
annotation file. A second run reads that file and starts at once.

- Never pickle: the cache is plain JSON, read with ``json.loads``.
- File hashes are remembered per (path, size, mtime) in ``<cache>/index/file-hashes.json``
  so a run does not re-read gigabytes to learn that nothing changed (the same trade-off as
  git's index: a file rewritten with identical size and mtime would go unnoticed).
- Ground truths are stored once per object and shared by its sentences; image paths are
  stored relative to the data root (``d:``) or the cache (``c:``), so moving the data root
  keeps the cache valid.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from harness.files import write_text_atomic
from harness.types import GroundTruth, Sample

CACHE_FORMAT = 1
_HASH_CHUNK = 1 << 20


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
    return Path(cache_dir) / "index" / fmt / f"{key}.json"


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
               warnings: Sequence[str] = ()) -> None:
    """Write ``samples`` compactly: distinct images and ground truths once, samples as rows."""
    images: dict[str, int] = {}
    gts: dict[int, int] = {}
    gt_rows: list[list[Any]] = []
    rows: list[list[Any]] = []
    for s in samples:
        ii = images.setdefault(s.image, len(images))
        gi = gts.get(id(s.gt))
        if gi is None:
            gi = gts[id(s.gt)] = len(gt_rows)
            g = s.gt
            gt_rows.append([
                g.mask["size"][0], g.mask["size"][1], g.mask["counts"],
                list(g.box) if g.box is not None else None,
                g.ignore["counts"] if g.ignore is not None else None,
                g.overlap["counts"] if g.overlap is not None else None,
            ])
        rows.append([s.id, ii, s.expression, gi, s.dataset, s.split, int(s.no_target), s.meta or None])
    doc = {
        "cache_format": CACHE_FORMAT,
        "key": key,
        "warnings": list(warnings),
        "images": [_rel(i, data_root, cache_dir) for i in images],
        "gts": gt_rows,
        "samples": rows,
    }
    try:
        write_text_atomic(path, json.dumps(doc, separators=(",", ":"), ensure_ascii=False))
    except OSError:
        pass  # a read-only cache: the next run parses again


def load_index(path: Path, key: str, data_root: Path | None, cache_dir: Path) -> tuple[list[Sample], list[str]] | None:
    """The cached samples and warnings, or None when absent, stale or unreadable."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("cache_format") != CACHE_FORMAT or doc.get("key") != key:
        return None
    try:
        images = [_abs(r, data_root, cache_dir) for r in doc["images"]]
        # Images the reader extracted into the cache must still be there.
        if any(r.startswith("c:") and not os.path.exists(p) for r, p in zip(doc["images"], images)):
            return None
        gts = []
        for h, w, counts, box, ign, ovl in doc["gts"]:
            size = [int(h), int(w)]
            gts.append(GroundTruth(
                mask={"size": size, "counts": counts},
                box=tuple(box) if box is not None else None,
                ignore={"size": size, "counts": ign} if ign is not None else None,
                overlap={"size": size, "counts": ovl} if ovl is not None else None,
            ))
        samples = [
            Sample(id=sid, image=images[ii], expression=expr, gt=gts[gi], dataset=ds, split=sp, no_target=bool(nt), meta=meta or {})
            for sid, ii, expr, gi, ds, sp, nt, meta in doc["samples"]
        ]
    except (KeyError, TypeError, ValueError, IndexError):
        return None
    return samples, [str(w) for w in doc.get("warnings", [])]
