"""Rows of tabular dataset copies on disk: parquet files, ``datasets.save_to_disk`` folders, JSON.

Nothing is downloaded: every path is local. Parquet is read with pyarrow and saved
datasets with ``datasets.load_from_disk`` (both come with the ``hf`` extra), batch by
batch, and large cells (images, dense masks) stay pyarrow values until a reader needs them,
so a 600 MB parquet file never becomes Python lists at once. Images embedded in rows are
written once into the cache so samples can name them by path.
"""

from __future__ import annotations

import glob
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from harness.data.sources import SourceError

BATCH = 32
DISK_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")


def _need_pyarrow() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise SourceError("reading parquet needs pyarrow: pip install 'harness-seg[hf]'") from None
    return pq


def _need_datasets() -> Any:
    try:
        import datasets
    except ImportError:
        raise SourceError("reading a saved Hugging Face dataset needs the datasets library: pip install 'harness-seg[hf]'") from None
    return datasets


def table_files(root: Path, pattern: str) -> tuple[str, list[Path]]:
    """(kind, files) for a dataset path: ``disk`` (save_to_disk folder), ``parquet`` or ``json``.

    ``pattern`` is relative to ``root`` (or absolute) and may hold glob characters.
    """
    p = Path(pattern).expanduser()
    full = p if p.is_absolute() else root / p
    if any(c in pattern for c in "*?["):
        files = sorted(Path(f) for f in glob.glob(str(full), recursive=True))
        if not files:
            raise SourceError(f"no file matches {full}")
    elif full.is_dir():
        if any((full / m).is_file() for m in DISK_MARKERS):
            return "disk", sorted(f for f in full.rglob("*") if f.is_file() and f.suffix in (".arrow", ".json"))
        files = sorted(full.rglob("*.parquet"))
        if not files:
            raise SourceError(f"{full}: neither a saved dataset (save_to_disk) nor a folder of .parquet files")
    else:
        files = [full]
    suffixes = {f.suffix for f in files}
    if suffixes <= {".parquet"}:
        return "parquet", files
    if suffixes <= {".json", ".jsonl"}:
        return "json", files
    raise SourceError(f"{full}: expected .parquet, .json or .jsonl files, found {', '.join(sorted(suffixes))}")


def disk_root(files: list[Path]) -> Path:
    for f in files:
        for parent in [f.parent, *f.parents]:
            if any((parent / m).is_file() for m in DISK_MARKERS) and not (parent.parent / "dataset_dict.json").is_file():
                return parent
    raise SourceError(f"{files[0]}: not inside a saved dataset folder")


def _batches_to_rows(batch: Any, heavy: set[str]) -> Iterator[dict[str, Any]]:
    names = list(batch.schema.names)
    light = [n for n in names if n not in heavy]
    rows = batch.select(light).to_pylist()
    heavy_cols = {n: batch.column(n) for n in names if n in heavy}
    for i, row in enumerate(rows):
        for n, col in heavy_cols.items():
            row[n] = col[i]
        yield row


def iter_rows(kind: str, files: list[Path], heavy: set[str], hf_split: str | None = None) -> Iterator[dict[str, Any]]:
    """Every row as a dict; columns in ``heavy`` stay pyarrow scalars (parquet, disk) or Python values (json)."""
    if kind == "parquet":
        pq = _need_pyarrow()
        for f in files:
            try:
                pf = pq.ParquetFile(f)
                for batch in pf.iter_batches(batch_size=BATCH):
                    yield from _batches_to_rows(batch, heavy)
            except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
                raise SourceError(f"{f}: not a readable parquet file ({exc})") from exc
    elif kind == "disk":
        datasets = _need_datasets()
        root = disk_root(files)
        try:
            ds = datasets.load_from_disk(str(root))
        except Exception as exc:  # datasets raises many kinds on a broken folder
            raise SourceError(f"{root}: not a loadable saved dataset ({type(exc).__name__}: {exc})") from exc
        if isinstance(ds, datasets.DatasetDict):
            names = list(ds)
            name = hf_split or (names[0] if len(names) == 1 else None)
            if name not in ds:
                raise SourceError(f"{root}: choose one of its splits with hf_split ({', '.join(names)})")
            ds = ds[name]
        for table in ds.with_format("arrow").iter(batch_size=BATCH):
            yield from _batches_to_rows(table, heavy)
    else:
        for f in files:
            try:
                text = f.read_text(encoding="utf-8")
                data = [json.loads(line) for line in text.splitlines() if line.strip()] if f.suffix == ".jsonl" else json.loads(text)
            except (OSError, ValueError) as exc:
                raise SourceError(f"{f}: not readable JSON ({exc})") from exc
            if not isinstance(data, list) or any(not isinstance(r, dict) for r in data):
                raise SourceError(f"{f}: expected a list of row objects")
            yield from data


def py(cell: Any) -> Any:
    """A cell as a Python value (pyarrow scalars converted)."""
    return cell.as_py() if hasattr(cell, "as_py") else cell


def bool_grid(cell: Any, height: int, width: int, where: str) -> np.ndarray:
    """A 2-D boolean mask cell (list of rows) as an (h, w) array, flattened in pyarrow when possible."""
    if hasattr(cell, "values") and cell.values is not None and hasattr(cell.values, "flatten"):
        flat = cell.values.flatten().to_numpy(zero_copy_only=False)
    else:
        flat = np.asarray(py(cell), dtype=bool).reshape(-1)
    if flat.size != height * width:
        raise SourceError(f"{where}: mask has {flat.size} pixels, expected {height}x{width}")
    return flat.astype(bool).reshape(height, width)


_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def image_bytes(cell: Any, where: str) -> tuple[bytes | None, str | None]:
    value = py(cell)
    if isinstance(value, dict):
        return value.get("bytes"), value.get("path")
    if isinstance(value, (bytes, bytearray)):
        return bytes(value), None
    if isinstance(value, str):
        return None, value
    if value is None:
        return None, None
    raise SourceError(f"{where}: 'image' is neither image bytes nor a path")


def store_image(data: bytes, folder: Path, name: str) -> Path:
    """Write embedded image bytes once under ``folder`` (names sanitised; nothing escapes it)."""
    safe = _SAFE.sub("_", Path(name).name) or "image"
    if "." not in safe:
        safe += ".png" if data[:8] == b"\x89PNG\r\n\x1a\n" else ".jpg"
    path = folder / safe
    if not (path.is_file() and path.stat().st_size == len(data)):
        folder.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return path


def header_size(data: bytes, where: str) -> tuple[int, int]:
    """(height, width) of encoded image bytes from the header."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise SourceError(f"{where}: embedded image cannot be read ({exc})") from exc
    return h, w
