"""Both image branches: smart_resize, resize_longest, the 1024x1024 squash and SAM's normalisation."""

from __future__ import annotations

import ast
import importlib.util
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness_lens import preprocess as pp


@pytest.mark.parametrize(
    ("hw", "expected"),
    [
        ((480, 640), (476, 644)),  # 480/28=17.1 -> 17*28; 640/28=22.9 -> 23*28; 306,544 px within range
        ((427, 640), (420, 644)),  # a typical COCO image
        ((1080, 1920), (728, 1316)),  # 1092x1932 > 1e6 -> beta=sqrt(2.0736)=1.44; floor(750/28)=26, floor(1333.3/28)=47
        ((20, 30), (56, 84)),  # 28x28 < 3136 -> beta=sqrt(3136/600); ceil(1.63)=2, ceil(2.45)=3
        ((28, 28 * 199), (28, 28 * 199)),  # aspect 199 <= 200 is allowed
    ],
)
def test_smart_resize_hand_values(hw: tuple[int, int], expected: tuple[int, int]) -> None:
    assert pp.smart_resize(*hw, 28, max_pixels=pp.LENS_MAX_PIXELS) == expected


def test_smart_resize_rejects_extreme_aspect() -> None:
    with pytest.raises(ValueError, match="aspect ratio"):
        pp.smart_resize(10, 2010, 28, max_pixels=pp.LENS_MAX_PIXELS)


def _qwen_vl_utils_smart_resize() -> Callable[..., tuple[int, int]]:
    """qwen_vl_utils.smart_resize; when the package cannot be imported (it imports torchvision,
    which a CPU-only torch here cannot load), the function's own source from the installed file."""
    try:
        from qwen_vl_utils import smart_resize

        return smart_resize
    except Exception:
        spec = importlib.util.find_spec("qwen_vl_utils")
        if spec is None or not spec.submodule_search_locations:
            pytest.skip("qwen_vl_utils is not installed")
        source = (Path(next(iter(spec.submodule_search_locations))) / "vision_process.py").read_text()
    tree = ast.parse(source)
    wanted = {"IMAGE_FACTOR", "MIN_PIXELS", "MAX_PIXELS", "MAX_RATIO", "round_by_factor", "ceil_by_factor",
              "floor_by_factor", "smart_resize"}
    keep = [n for n in tree.body if (isinstance(n, ast.FunctionDef) and n.name in wanted)
            or (isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id in wanted for t in n.targets))]
    namespace: dict = {"math": math}
    exec(compile(ast.Module(body=keep, type_ignores=[]), "qwen_vl_utils/vision_process.py", "exec"), namespace)
    return namespace["smart_resize"]


def test_smart_resize_matches_qwen_vl_utils() -> None:
    reference = _qwen_vl_utils_smart_resize()
    rng = np.random.default_rng(0)
    heights = (1, 13, 27, 28, 29, 55, 56, 100, 333, 427, 480, 640, 1024, 2000, 4000)
    sizes = [(h, w) for h in heights for w in (1, 28, 57, 480, 640, 1920, 3000)]
    sizes += [tuple(int(v) for v in rng.integers(20, 5000, size=2)) for _ in range(500)]
    checked = 0
    for h, w in sizes:
        for max_pixels in (pp.LENS_MAX_PIXELS, pp.MAX_PIXELS_QWEN_DEFAULT):
            try:
                expected = reference(h, w, 28, min_pixels=3136, max_pixels=max_pixels)
            except ValueError:
                with pytest.raises(ValueError):
                    pp.smart_resize(h, w, 28, max_pixels=max_pixels)
                continue
            assert pp.smart_resize(h, w, 28, max_pixels=max_pixels) == expected, (h, w, max_pixels)
            checked += 1
    assert checked > 900


@pytest.mark.parametrize(
    ("hw", "expected"),
    [
        ((427, 640), (427, 640)),
        ((500, 1000), (320, 640)),
        ((400, 300), (640, 480)),  # portrait: the height is the longer side
        ((500, 500), (640, 640)),  # square: scaled by its height
        ((400, 581), (440, 639)),  # upstream's int() truncation: 581 * (640 / 581) = 639.999...
    ],
)
def test_resize_longest_size(hw: tuple[int, int], expected: tuple[int, int]) -> None:
    assert pp.resize_longest_size(*hw) == expected


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def test_llm_image_refcoco_is_pil_bicubic_at_smart_resize() -> None:
    img = _image(480, 640)
    out = pp.PREPROCESSING["refcoco"].llm_image(img)
    assert out.size == (644, 476)
    # upstream: Image.open(...).convert("RGB").resize((w, h)) with PIL's default filter for RGB
    expected = Image.fromarray(img).resize((644, 476))
    assert np.array_equal(np.asarray(out), np.asarray(expected))


def test_llm_image_reasonseg_is_resize_longest_640() -> None:
    img = _image(400, 581)
    out = pp.PREPROCESSING["reasonseg"].llm_image(img)
    assert out.size == (639, 440)
    assert np.array_equal(np.asarray(out), np.asarray(Image.fromarray(img).resize((639, 440))))


def test_normalisation_on_a_hand_made_2x2_image() -> None:
    img = np.array([[[0, 0, 0], [255, 255, 255]], [[124, 116, 104], [10, 20, 30]]], dtype=np.uint8)
    out = pp.normalize_sam(img)
    assert out.shape == (3, 2, 2) and out.dtype == np.float32
    mean, std = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]
    for c in range(3):
        for (y, x) in [(0, 0), (0, 1), (1, 0), (1, 1)]:
            assert out[c, y, x] == pytest.approx((img[y, x, c] - mean[c]) / std[c], abs=1e-6)
    assert out[0, 0, 0] == pytest.approx(-2.117904, abs=1e-6)  # (0 - 123.675) / 58.395
    assert out[0, 0, 1] == pytest.approx(2.248908, abs=1e-6)  # (255 - 123.675) / 58.395


@pytest.mark.parametrize("name", ["refcoco", "reasonseg"])
def test_sam_branch_shape_and_constant_colour(name: str) -> None:
    img = np.empty((2, 2, 3), dtype=np.uint8)
    img[...] = (200, 100, 50)
    out = pp.PREPROCESSING[name].sam_image(img)
    assert out.shape == (3, 1024, 1024) and out.dtype == np.float32
    for c, v in enumerate((200, 100, 50)):
        assert np.allclose(out[c], (v - pp.SAM_PIXEL_MEAN[c]) / pp.SAM_PIXEL_STD[c])


def test_sam_squash_refcoco_is_pil_bilinear_rounded_to_uint8() -> None:
    img = _image(37, 53)
    expected = np.asarray(Image.fromarray(img).resize((1024, 1024), Image.Resampling.BILINEAR))
    assert np.array_equal(pp.sam_resize_pil_bilinear(img), expected)
    assert np.array_equal(pp.PREPROCESSING["refcoco"].sam_image(img), pp.normalize_sam(expected))


def test_sam_squash_refcoco_equals_torchvision_on_pil() -> None:
    try:
        from torchvision.transforms.functional import resize
    except Exception:
        pytest.skip("torchvision cannot be imported here (a CUDA torchvision wheel over a CPU torch)")
    img = _image(37, 53)
    expected = np.asarray(resize(Image.fromarray(img), (1024, 1024)))  # upstream's exact call
    assert np.array_equal(pp.sam_resize_pil_bilinear(img), expected)


def test_sam_squash_reasonseg_is_cv2_linear() -> None:
    cv2 = pytest.importorskip("cv2")
    img = _image(37, 53)
    assert np.array_equal(pp.sam_resize_cv2_linear(img), cv2.resize(img, (1024, 1024)))
    # and it is not PIL's antialiased bilinear when shrinking
    big = _image(2048, 1536)
    assert not np.array_equal(pp.sam_resize_cv2_linear(big), pp.sam_resize_pil_bilinear(big))


def test_preprocessing_rejects_non_rgb() -> None:
    with pytest.raises(ValueError, match="uint8 RGB"):
        pp.PREPROCESSING["refcoco"](np.zeros((4, 4), dtype=np.uint8))
