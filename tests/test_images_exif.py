"""The image convention ``exif: apply | ignore`` against ``cv2.imread`` on EXIF-rotated JPEGs.

cv2.imread (IMREAD_COLOR, the default LISA, GLaMM and LENS use for ReasonSeg) turns a JPEG
upright by its EXIF Orientation tag; ``exif: apply`` must give exactly that image (in RGB),
its header-only size, the ReasonSeg ground truth at that size, and the same image in a worker.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from helper_datasets import cv2_reference_map, shape, write_labelme
from PIL import Image

from harness.data.conventions import Conventions
from harness.data.images import image_size, load_image
from harness.data.sources.reasonseg import ReasonSegSource
from harness.data.suites import load_suite
from harness.run.worker import PROTOCOL, query_to_json, serve
from harness.types import GroundTruth, Sample

cv2 = pytest.importorskip("cv2")

H, W = 16, 24  # stored size: wider than high, so a quarter turn is visible in the shape


def rotated_jpeg(path: Path, orientation: int, seed: int = 0) -> Path:
    """A JPEG whose stored pixels are H x W, with EXIF Orientation ``orientation`` (PIL writes the tag)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, size=(H, W, 3), dtype=np.uint8)
    pixels[:4, :6] = (255, 0, 0)  # a red corner, to see which way it turned
    im = Image.fromarray(pixels)
    exif = Image.Exif()
    exif[0x0112] = orientation
    im.save(path, quality=95, exif=exif.tobytes())
    return path


def cv2_rgb(path: Path, flags: int | None = None) -> np.ndarray:
    bgr = cv2.imread(str(path)) if flags is None else cv2.imread(str(path), flags)
    return np.ascontiguousarray(bgr[:, :, ::-1])


@pytest.mark.parametrize("orientation", [6, 8, 3, 2, 5, 7])
def test_apply_is_cv2_imread_and_ignore_is_the_stored_pixels(tmp_path: Path, orientation: int) -> None:
    path = rotated_jpeg(tmp_path / f"o{orientation}.jpg", orientation)
    reference = cv2_rgb(path)
    turned = (W, H) if orientation in (5, 6, 7, 8) else (H, W)
    assert reference.shape[:2] == turned  # cv2 turned it
    upright = load_image(path, "apply")
    assert upright.shape == reference.shape
    assert np.array_equal(upright, reference)  # the same libjpeg decode, then the same transpose
    assert image_size(path, "apply") == turned
    stored = load_image(path, "ignore")
    assert stored.shape[:2] == (H, W) and image_size(path, "ignore") == (H, W) and image_size(path) == (H, W)
    raw = cv2_rgb(path, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    assert np.array_equal(stored, raw)


def test_reasonseg_is_read_as_cv2_reads_it(tmp_path: Path) -> None:
    """The suite's convention is cv2's; the mask is drawn at the upright image's size, as LISA's
    get_mask_from_json draws it on cv2.imread's image."""
    suite = load_suite("reasonseg")
    assert suite.conventions.exif == "apply" and suite.conventions.to_dict()["exif"] == "apply"
    assert Conventions().exif == "ignore"
    folder = tmp_path / "data" / "reason_seg" / "ReasonSeg" / "val"
    jpath = write_labelme(folder, "turned", H, W, [shape("target", [[2, 3], [12, 3], [12, 20], [2, 20]])], ["the thing"], False)
    rotated_jpeg(folder / "turned.jpg", 6)
    params = {"splits": suite.source_params["splits"]}
    val = ReasonSegSource(params, suite.conventions, tmp_path / "data", tmp_path / "cache").samples("val")  # type: ignore[arg-type]
    (s,) = val
    h, w = cv2.imread(str(folder / "turned.jpg")).shape[:2]
    assert (s.gt.height, s.gt.width) == (h, w) == (W, H)
    from harness import masks

    assert np.array_equal(masks.decode(s.gt.mask), cv2_reference_map(jpath, h, w) == 1)
    # Under "ignore" the stored size, and a warning that the reference turns these images.
    with pytest.warns(UserWarning, match=r"1 image\(s\) carry an EXIF rotation \(turned\.jpg.*exif: ignore"):
        plain = ReasonSegSource(params, suite.conventions.replace(exif="ignore"), tmp_path / "data",  # type: ignore[arg-type]
                                tmp_path / "cache").samples("val")
    assert (plain[0].gt.height, plain[0].gt.width) == (H, W)


def test_a_worker_decodes_by_the_convention_it_is_sent(tmp_path: Path) -> None:
    path = rotated_jpeg(tmp_path / "w.jpg", 8)
    sample = Sample(id="x/1", image=str(path), expression="it", gt=GroundTruth(mask={"size": [W, H], "counts": ""}),
                    dataset="x", split="val")
    requests = [{"op": "hello", "protocol": PROTOCOL, "adapter": "full", "options": {}, "id": 1},
                {"op": "load", "device": "cpu", "id": 2},
                {"op": "predict", "image": str(path), "queries": [query_to_json(sample.query())], "exif": "apply", "id": 3},
                {"op": "predict", "image": str(path), "queries": [query_to_json(sample.query())], "id": 4},
                {"op": "predict", "image": str(path), "queries": [query_to_json(sample.query())], "exif": "sideways", "id": 5}]
    out = io.BytesIO()
    assert serve(io.BytesIO(b"".join(json.dumps(r).encode() + b"\n" for r in requests)), out) == 0
    replies = [json.loads(line) for line in out.getvalue().splitlines()]
    assert replies[2]["predictions"][0]["mask"]["size"] == [W, H]  # upright, as cv2 reads it
    assert replies[3]["predictions"][0]["mask"]["size"] == [H, W]  # the default: as stored
    assert not replies[4]["ok"] and "'exif' must be one of apply, ignore" in replies[4]["error"]
