"""load_image: the same pixels as PIL's open + convert("RGB"), whatever the file's mode, and
arrays that own their pixels even though Pillow reuses its decode buffers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.data.images import image_size, load_image


def _reference(path: Path) -> np.ndarray:
    """What load_image returned before decode buffers were reused (and what upstream PIL loaders do)."""
    with Image.open(path) as im:
        im.load()
        return np.asarray(im.convert("RGB"))


def _photo(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * (c + 1) + yy * (3 - c)) % 256 for c in range(3)], axis=-1)
    return np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)


def _files(folder: Path) -> dict[str, Path]:
    rgb = _photo(37, 53, 0)
    out = {}

    def save(name: str, im: Image.Image, **kw: object) -> None:
        out[name] = folder / name
        im.save(out[name], **kw)

    save("rgb.jpg", Image.fromarray(rgb), quality=90)
    save("gray.jpg", Image.fromarray(rgb[..., 0]), quality=90)
    save("cmyk.jpg", Image.fromarray(rgb).convert("CMYK"), quality=90)
    save("rgb.png", Image.fromarray(rgb))
    save("gray.png", Image.fromarray(rgb[..., 1]))
    rgba = np.dstack([rgb, (np.arange(37 * 53).reshape(37, 53) % 256).astype(np.uint8)])
    save("rgba.png", Image.fromarray(rgba))
    save("la.png", Image.fromarray(np.ascontiguousarray(rgba[..., [0, 3]])))
    save("palette.png", Image.fromarray(rgb).quantize(16))
    pal = Image.fromarray(rgb).quantize(8)
    save("palette-transparent.png", pal, transparency=3)
    save("bilevel.png", Image.fromarray(rgb[..., 2] > 128))
    save("gray16.png", Image.fromarray(rgb[..., 0].astype(np.uint16) * 257))
    return out


def test_pixels_are_those_of_pil_convert_rgb_for_every_mode(tmp_path: Path) -> None:
    files = _files(tmp_path)
    modes = {}
    for name, path in files.items():
        with Image.open(path) as im:
            modes[name] = im.mode
        got = load_image(path)
        want = _reference(path)
        assert got.shape == want.shape == (37, 53, 3), name
        assert got.dtype == np.uint8, name
        assert got.flags["C_CONTIGUOUS"], name
        np.testing.assert_array_equal(got, want, err_msg=name)
        assert image_size(path) == (37, 53)
    # the files really cover the modes the loader must convert
    assert {"RGB", "L", "CMYK", "RGBA", "LA", "P", "1"} <= set(modes.values())


def test_each_array_owns_its_pixels_across_reused_decode_buffers(tmp_path: Path) -> None:
    """Pillow hands the next image the same block; an array already returned must not change."""
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(_photo(40, 60, i)).save(paths[-1])
    first = load_image(paths[0])
    kept = first.copy()
    for p in paths[1:]:
        load_image(p)
    np.testing.assert_array_equal(first, kept)
    assert not np.array_equal(load_image(paths[1]), kept)


TRIMMING_ALLOCATOR = """
import ctypes, resource, sys
libc = ctypes.CDLL("libc.so.6")
# The regime of issue 15's 100k-sample runs, made certain: every free at the top of the heap is
# handed back to the kernel (M_TRIM_THRESHOLD 128 KB) and nothing is served by mmap.
libc.mallopt(-3, 64 << 20)  # M_MMAP_THRESHOLD
libc.mallopt(-1, 128 << 10)  # M_TRIM_THRESHOLD
from harness.data.images import load_image
for _ in range(3):
    image = load_image(sys.argv[1])
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    image = load_image(sys.argv[1])
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_decode_buffers_are_reused_not_faulted_in_again(tmp_path: Path) -> None:
    """With an allocator that trims at every free, decoding a 1280x960 JPEG used to fault in
    ~1,330 pages per image (the decode, the RGB copy, the packed bytes); now Pillow's cached
    block holds the decode and only the returned pixels are new: fewer pages than one RGB
    copy of the image (900)."""
    path = tmp_path / "big.jpg"
    Image.fromarray(_photo(960, 1280, 1)).save(path, quality=85)
    res = subprocess.run([sys.executable, "-c", TRIMMING_ALLOCATOR, str(path)], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert res.returncode == 0, res.stderr
    assert float(res.stdout) < 960 * 1280 * 3 / 4096


def test_pillow_keeps_decode_blocks() -> None:
    import harness.data.images  # noqa: F401  (configures Pillow on import)

    assert Image.core.get_blocks_max() >= 2


@pytest.mark.parametrize("name", ["rgb.jpg", "palette.png"])
def test_a_truncated_file_is_still_an_error(tmp_path: Path, name: str) -> None:
    from harness.data.images import ImageError

    path = _files(tmp_path)[name]
    cut = tmp_path / f"cut-{name}"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ImageError, match="corrupt or truncated"):
        load_image(cut)
