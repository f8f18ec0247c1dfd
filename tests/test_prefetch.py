"""The runner reads the next image in a thread while this one's samples are predicted."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import harness.run.predict as predict
from harness.builtin_adapters.trivial import EmptyAdapter
from harness.data.images import ImageError, load_image
from harness.run.predict import pixels_of, predict_on_image, prefetched
from harness.run.remote import RemoteAdapter
from harness.types import GroundTruth, Sample


def _sample(i: int, image: Path) -> Sample:
    return Sample(id=f"s{i}", image=str(image), expression="x", gt=GroundTruth(mask={"size": [8, 12], "counts": "0`1"}),
                  dataset="d", split="val")


def _images(tmp_path: Path, n: int) -> list[Path]:
    paths = []
    for i in range(n):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(np.full((8, 12, 3), 40 * i, np.uint8)).save(paths[-1])
    return paths


def test_groups_come_in_order_with_their_own_pixels_and_errors(tmp_path: Path) -> None:
    paths = _images(tmp_path, 3)
    paths.insert(1, tmp_path / "missing.png")
    groups = [(str(p), [_sample(i, p)]) for i, p in enumerate(paths)]
    got = list(prefetched(EmptyAdapter(), iter(groups)))
    assert [(g[0], g[1]) for g in got] == groups
    for (_, _, image), p in zip(got, paths):
        if p.name == "missing.png":
            with pytest.raises(ImageError, match=r"missing\.png does not exist"):
                image.result()
        else:
            np.testing.assert_array_equal(pixels_of(image.result()), load_image(p))


def test_the_next_image_is_read_while_this_one_is_predicted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = _images(tmp_path, 2)
    started = {str(p): threading.Event() for p in paths}
    real = predict.read_image

    def watched(adapter: Any, image_path: str, exif: str = "ignore") -> Any:
        started[image_path].set()
        return real(adapter, image_path, exif)

    monkeypatch.setattr(predict, "read_image", watched)
    groups = prefetched(EmptyAdapter(), iter([(str(p), [_sample(i, p)]) for i, p in enumerate(paths)]))
    first = next(groups)
    # the first group is handed over only once the second image's read has been queued
    assert started[str(paths[1])].wait(5)
    results = list(predict_on_image(EmptyAdapter(), first[0], first[1], 4, image=first[2]))
    assert results[0][1].prediction.mask is not None
    assert len(list(groups)) == 1


def test_a_worker_adapter_still_gets_only_the_size(tmp_path: Path) -> None:
    """With a worker the parent reads the header only (the worker decodes): (h, w, 0)."""
    (path,) = _images(tmp_path, 1)
    adapter = RemoteAdapter.__new__(RemoteAdapter)  # decodes_images is a class attribute; no worker is started
    ((_, _, image),) = list(prefetched(adapter, iter([(str(path), [_sample(0, path)])])))
    assert image.result().shape == (8, 12, 0)


def test_a_bad_image_fails_only_its_samples(tmp_path: Path) -> None:
    paths = _images(tmp_path, 2)
    paths[0].write_bytes(paths[0].read_bytes()[:30])
    groups = [(str(p), [_sample(i, p), _sample(10 + i, p)]) for i, p in enumerate(paths)]
    out = [(s.id, r.prediction) for path, group, image in prefetched(EmptyAdapter(), iter(groups))
           for s, r in predict_on_image(EmptyAdapter(), path, group, 4, image=image)]
    assert [sid for sid, _ in out] == ["s0", "s10", "s1", "s11"]
    assert all(p.mask is None and "0.png is not a readable image file" in p.error for _, p in out[:2])
    assert all(p.mask is not None for _, p in out[2:])
