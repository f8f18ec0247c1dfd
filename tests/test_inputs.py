"""``harness inputs``: per-sample hashes of what models are shown, and the diff between two captures."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from conftest import write_suite

from harness import masks, registry
from harness.adapter import Adapter, AdapterInfo
from harness.cli import main
from harness.registry import AdapterEntry
from harness.run.inputs import collect, diff, digest, read, write
from harness.types import Prediction, Query


class TemplatedAdapter(Adapter):
    """Shows the model a chat template around the expression and a downscaled, normalised image."""

    info = AdapterInfo(name="templated", description="prompt template + resize")
    TEMPLATE: ClassVar[str] = "<image>\nPlease segment: {}"
    STEP: ClassVar[int] = 2

    def predict(self, image: np.ndarray, queries: Sequence[Query]) -> list[Prediction]:
        return [Prediction(mask=masks.empty(*image.shape[:2])) for _ in queries]

    def inputs(self, image: np.ndarray, query: Query) -> dict[str, Any]:
        pixels = image[:: self.STEP, :: self.STEP].astype(np.float32) / 255.0
        return {"prompt": self.TEMPLATE.format(query.expression), "pixel_values": pixels}


@pytest.fixture
def suite(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    entry = AdapterEntry("templated", "test_inputs:TemplatedAdapter", "test")
    monkeypatch.setattr(registry, "BUILTINS", {**registry.BUILTINS, "templated": entry})
    return write_suite(isolated, val=3, test=2)


def test_digest_is_stable_and_typed() -> None:
    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert digest("abc") == digest("abc") and len(digest("abc")) == 16
    assert digest("abc") != digest(b"abc")
    assert digest(a) != digest(a.astype(np.int16)) != digest(a.reshape(4, 3))
    assert digest(a) == digest(np.asfortranarray(a))  # layout does not matter, content does
    assert digest({"b": 1, "a": [1, 2]}) == digest({"a": [1, 2], "b": 1})


def test_default_inputs_are_the_expression_and_the_image(suite: Path) -> None:
    header, lines = collect("shapes-reasoner", str(suite), splits="val")
    assert header["schema"] == "harness.publish.inputs" and header["suite"]["name"] == "mini"
    assert header["models"]["shapes-reasoner"]["adapter"] == "shapes-reasoner"
    assert len({r["id"] for r in lines}) == len(lines) > 3 and all(r["split"] == "val" for r in lines)
    assert [r["id"] for r in lines] == sorted(r["id"] for r in lines)
    by_image: dict[str, set[str]] = {}
    for r in lines:
        assert set(r["inputs"]) == {"prompt", "image"}
        by_image.setdefault(r["id"].rsplit("/", 1)[0], set()).add(r["inputs"]["image"])
    assert all(len(hashes) == 1 for hashes in by_image.values())  # one image, one hash
    assert len({next(iter(h)) for h in by_image.values()}) == len(by_image)  # different images differ


def test_diff_names_the_changed_component(suite: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    a, b, c = suite.parent / "a.jsonl", suite.parent / "b.jsonl", suite.parent / "c.jsonl"
    assert main(["inputs", "--models", "templated,empty", "--suite", str(suite), "--out", str(a)]) == 0
    monkeypatch.setattr(TemplatedAdapter, "TEMPLATE", "<image>\nSegment {}.")  # a prompt-template change
    assert main(["inputs", "--models", "templated,empty", "--suite", str(suite), "--out", str(b)]) == 0
    monkeypatch.setattr(TemplatedAdapter, "STEP", 3)  # and a preprocessing change
    assert main(["inputs", "--models", "templated", "--suite", str(suite), "--splits", "val", "--out", str(c)]) == 0
    capsys.readouterr()

    report, differs = diff(a, b)
    _, entries = read(a)
    n_templated = sum(1 for k in entries if k[0] == "templated")
    assert differs and report[0].startswith(f"{n_templated} changed, 0 added, 0 removed")
    assert "changed components: prompt" in report[0] and "pixel_values" not in report[0]
    assert all(line.endswith("  prompt") for line in report[1:])  # the "empty" model saw the same inputs

    assert main(["inputs", "--diff", str(a), str(c)]) == 1
    out = capsys.readouterr().out
    assert "pixel_values" in out and "removed  empty  val" in out and "removed  templated  test" in out
    assert main(["inputs", "--diff", str(a), str(a)]) == 0
    assert capsys.readouterr().out.startswith("0 changed, 0 added, 0 removed")


def test_added_ids_errors_and_truncation(tmp_path: Path) -> None:
    header = {"schema": "harness.publish.inputs", "schema_version": 1, "suite": {"fingerprint": "x"}, "models": {}}
    lines = [{"model": "m", "split": "val", "id": f"i{k}", "inputs": {"prompt": digest(str(k))}} for k in range(5)]
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write(a, header, lines[:2])
    write(b, {**header, "suite": {"fingerprint": "y"}}, lines)
    report, differs = diff(a, b, max_lines=2)
    assert differs and "suite fingerprint: x -> y" in report
    assert report[-1] == "... and 1 more (--max-lines)" and report[-3] == "added    m  val  i2"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"not": "inputs"}\n')
    assert main(["inputs", "--diff", str(a), str(bad)]) == 2
    assert main(["inputs", "--models", "empty"]) == 2  # needs --out


def test_unreadable_image_is_recorded(suite: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.data.images import ImageError

    def broken(path: Any, exif: str = "ignore") -> np.ndarray:
        raise ImageError(f"image {path} is corrupt")

    monkeypatch.setattr("harness.run.inputs.load_image", broken)
    _, lines = collect("empty", str(suite), splits="val", limit=2)
    assert len(lines) == 2 and all(set(r["inputs"]) == {"error"} for r in lines)
