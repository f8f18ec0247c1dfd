"""The runner decodes the next images in a thread while this batch's samples are predicted.

The decode runs in the prefetch thread; the pixels are copied out to their array in the engine's
thread (harness.data.images.Decoded), which is what keeps per-image allocation churn away; the
model runs on its own thread (harness.run.callers).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from helper_adapters import predict_samples
from PIL import Image

import harness.run.predict as predict
from harness.adapter import Adapter, AdapterInfo
from harness.builtin_adapters.trivial import EmptyAdapter
from harness.data.images import load_image
from harness.types import GroundTruth, Prediction, Query, Sample


def _sample(i: int, image: Path) -> Sample:
    return Sample(id=f"s{i}", image=str(image), expression="x", gt=GroundTruth(mask={"size": [8, 12], "counts": "0`1"}),
                  dataset="d", split="val")


def _images(tmp_path: Path, n: int) -> list[Path]:
    paths = []
    for i in range(n):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(np.full((8, 12, 3), 40 * i, np.uint8)).save(paths[-1])
    return paths


class Seeing(EmptyAdapter):
    """Records the pixels (and the thread) each call was given; a model, unlike ``empty``, on the model thread."""

    model_thread = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, np.ndarray, str]] = []

    def predict(self, image: np.ndarray, queries: Sequence[Query]) -> list[Prediction]:
        self.seen.append((queries[0].image, image.copy(), threading.current_thread().name))
        return super().predict(image, queries)


def test_each_image_is_given_its_own_pixels_in_order_decoded_once(tmp_path: Path, monkeypatch: Any) -> None:
    paths = _images(tmp_path, 3)
    decoded: list[str] = []
    real = predict.decode
    monkeypatch.setattr(predict, "decode", lambda path, exif="ignore": decoded.append(str(path)) or real(path, exif))
    adapter = Seeing()
    samples = [_sample(10 * i + k, p) for i, p in enumerate(paths) for k in range(3)]
    out = list(predict_samples(adapter, samples, 2))  # 3 samples per image, batches of 2: each image called twice
    assert [s.id for s, _ in out] == [s.id for s in samples]
    assert decoded == [str(p) for p in paths]  # once per image, though its samples span two batches
    for path, pixels, _ in adapter.seen:
        np.testing.assert_array_equal(pixels, load_image(path))
    assert {thread for _, _, thread in adapter.seen} == {"harness-model"}  # one persistent model thread, not the engine's
    plain = Seeing()
    plain.model_thread = False  # a reference point's calls stay in the engine's thread, with the same pixels
    assert [s.id for s, _ in predict_samples(plain, samples, 2)] == [s.id for s in samples]
    assert [(p, t) for p, _, t in plain.seen] == [(p, threading.main_thread().name) for p, _, _ in adapter.seen]


def test_the_next_image_is_read_while_this_one_is_predicted(tmp_path: Path, monkeypatch: Any) -> None:
    paths = _images(tmp_path, 2)
    second_read = threading.Event()
    real = predict.decode

    def watched(path: str, exif: str = "ignore") -> Any:
        if str(path) == str(paths[1]):
            second_read.set()
        return real(path, exif)

    monkeypatch.setattr(predict, "decode", watched)
    waited: list[bool] = []

    class Waits(EmptyAdapter):
        def predict(self, image: np.ndarray, queries: Sequence[Query]) -> list[Prediction]:
            if queries[0].image == str(paths[0]):
                waited.append(second_read.wait(5))  # the second image is decoded while the first is predicted
            return super().predict(image, queries)

    out = list(predict_samples(Waits(), [_sample(i, p) for i, p in enumerate(paths)], 4))
    assert waited == [True] and all(r.prediction.mask is not None for _, r in out)


class SizeOnly(Adapter):
    """Stands for a worker proxy: it decodes the images itself, so the parent reads only the size."""

    info = AdapterInfo(name="size-only", description="records the array it is given")
    decodes_images = True

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []

    def predict(self, image: np.ndarray, queries: Sequence[Query]) -> list[Prediction]:
        self.shapes.append(image.shape)
        return [Prediction(mask={"size": [8, 12], "counts": "0`1"}) for _ in queries]


def test_a_worker_adapter_still_gets_only_the_size(tmp_path: Path) -> None:
    """With a worker the parent reads the header only (the worker decodes): (h, w, 0)."""
    (path,) = _images(tmp_path, 1)
    adapter = SizeOnly()
    list(predict_samples(adapter, [_sample(0, path)], 4))
    assert adapter.shapes == [(8, 12, 0)]


def test_a_bad_image_fails_only_its_samples(tmp_path: Path) -> None:
    paths = _images(tmp_path, 2)
    paths[0].write_bytes(paths[0].read_bytes()[:30])
    samples = [s for i, p in enumerate(paths) for s in (_sample(i, p), _sample(10 + i, p))]
    out = [(s.id, r.prediction) for s, r in predict_samples(EmptyAdapter(), samples, 4)]
    assert [sid for sid, _ in out] == ["s0", "s10", "s1", "s11"]
    assert all(p.mask is None and "0.png is not a readable image file" in p.error for _, p in out[:2])
    assert all(p.mask is not None for _, p in out[2:])


def test_pixels_of_images_done_with_are_freed(tmp_path: Path) -> None:
    """Memory stays flat: the arrays of images already predicted are referenced from nowhere
    (a planned batch list that kept them made a 100k-sample run hold 11 GB)."""
    import gc
    import weakref

    paths = _images(tmp_path, 6)
    alive_at_last: list[int] = []

    class Watches(EmptyAdapter):
        refs: ClassVar[list[weakref.ref[np.ndarray]]] = []

        def predict(self, image: np.ndarray, queries: Sequence[Query]) -> list[Prediction]:
            self.refs.append(weakref.ref(image))
            if queries[0].image == str(paths[-1]):
                gc.collect()
                alive_at_last.append(sum(r() is not None for r in self.refs[:-3]))  # older than the prefetch window
            return super().predict(image, queries)

    list(predict_samples(Watches(), [_sample(i, p) for i, p in enumerate(paths)], 4))
    assert alive_at_last == [0]
