"""harness.modelkit.prepared.PreparedImages: what prepare_image computed, kept by array for the predict call."""

from __future__ import annotations

import threading

import numpy as np

from harness.modelkit.prepared import PreparedImages


def test_kept_by_the_array_object_not_its_pixels() -> None:
    ready = PreparedImages()
    a = np.zeros((2, 2, 3), np.uint8)
    ready.put(a, "a")
    assert ready.get(a) == "a"
    assert ready.get(a.copy()) is None  # same pixels, another array: not what was prepared for it


def test_done_with_keeps_the_last_image_and_what_comes_after() -> None:
    ready = PreparedImages()
    images = [np.zeros((1, 1, 3), np.uint8) for _ in range(4)]
    for i, image in enumerate(images):
        ready.put(image, i)
    ready.done_with(images[:2])  # a call on images 0 and 1: image 1's sentences may go on in the next call
    assert [ready.get(image) for image in images] == [None, 1, 2, 3]
    ready.done_with([images[2]])
    assert [ready.get(image) for image in images] == [None, None, 2, 3]


def test_capacity_drops_the_oldest_and_puts_from_threads_are_safe() -> None:
    ready = PreparedImages(capacity=3)
    images = [np.zeros((1, 1, 3), np.uint8) for _ in range(8)]
    threads = [threading.Thread(target=ready.put, args=(image, i)) for i, image in enumerate(images)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ready) == 3
