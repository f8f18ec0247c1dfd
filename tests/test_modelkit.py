"""harness.modelkit: the adapters' shared helpers, in their parts that need no torch (the adapters'
own suites check the rest against the upstream checkouts)."""

from __future__ import annotations

import subprocess
import sys
import types

import numpy as np
import pytest

from harness.modelkit import counters, llava_sam
from harness.modelkit.digests import array_sha1
from harness.modelkit.upstream import Upstream, UpstreamError, upstream_commit

SPEC = Upstream(name="Toy", repository="someone/toy", env="HARNESS_TOY_REPO", revision="abc1234", marker="toypkg_mk/TOY.py",
                top_level=("toypkg_mk",), isolation="Toy must run in its own worker process",
                import_hints=(("nothere_mk", " (hint)"),))


def test_importing_modelkit_imports_no_torch() -> None:
    code = ("import sys, harness.modelkit.llava_sam, harness.modelkit.upstream, harness.modelkit.counters, "
            "harness.modelkit.digests, harness.modelkit.testing, harness.modelkit.llava_prompts, harness.modelkit.llava_adapter; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_clip_and_sam_shapes() -> None:
    assert llava_sam.clip_resize_shape(480, 640, 336) == (336, 448)
    assert llava_sam.clip_resize_shape(640, 480, 224) == (298, 224)
    assert llava_sam.sam_resize_shape(3, 2) == (1024, 683)
    pre = llava_sam.preprocess(np.full((2, 4, 3), 200, dtype=np.uint8), clip_size=224)
    assert pre.clip_image.shape == (3, 224, 224) and pre.sam_image.shape == (3, 1024, 1024)
    assert pre.resize_hw == (512, 1024) and pre.original_hw == (2, 4) and not pre.sam_image[:, 512:].any()
    with pytest.raises(ValueError):
        llava_sam.preprocess(np.zeros((4, 4), dtype=np.uint8), clip_size=224)


def test_array_sha1_covers_shape_and_dtype() -> None:
    a = np.zeros((2, 3), dtype=np.float32)
    assert array_sha1(a) == array_sha1(a.copy()) and len(array_sha1(a)) == 40
    assert array_sha1(a) != array_sha1(a.reshape(3, 2)) and array_sha1(a) != array_sha1(a.astype(np.float64))


def test_counter_stats_and_peak_memory_on_cpu() -> None:
    c = counters.WorkCounters(segmenter_images=1, generated_tokens=2, forward_passes=3)
    assert counters.stats(c, "cpu") == {"segmenter_images": 1.0, "generated_tokens": 2.0, "forward_passes": 3.0}
    d = {"peak_gpu_memory_mb": 0.0}
    counters.update_peak_gpu_memory_mb(d, "cpu")
    assert d == {"peak_gpu_memory_mb": 0.0}


def test_resolve_names_the_option_and_the_marker(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("HARNESS_TOY_REPO", raising=False)
    with pytest.raises(UpstreamError, match=r"Toy needs a checkout of someone/toy \(revision abc1234\).*HARNESS_TOY_REPO"):
        SPEC.resolve(None)
    with pytest.raises(UpstreamError, match=r"is not a someone/toy checkout: toypkg_mk/TOY.py is missing"):
        SPEC.resolve(tmp_path)
    (tmp_path / "toypkg_mk").mkdir()
    (tmp_path / "toypkg_mk" / "TOY.py").write_text("VALUE = 7\n")
    monkeypatch.setenv("HARNESS_TOY_REPO", str(tmp_path))
    assert SPEC.resolve(None) == tmp_path.resolve()


def test_import_from_checkout_and_refuse_another_package(tmp_path, monkeypatch) -> None:
    (tmp_path / "toypkg_mk").mkdir()
    (tmp_path / "toypkg_mk" / "__init__.py").write_text("")
    (tmp_path / "toypkg_mk" / "TOY.py").write_text("VALUE = 7\n")
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in ("toypkg_mk", "toypkg_mk.TOY"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    prepared = []
    repo = SPEC.resolve(tmp_path)
    assert SPEC.import_module(repo, "toypkg_mk.TOY", prepare=prepared.append).VALUE == 7
    assert prepared == [repo] and sys.path[0] == str(repo)
    with pytest.raises(UpstreamError, match=r"cannot import toypkg_mk.nothere_mk .*\(hint\)$"):
        SPEC.import_module(repo, "toypkg_mk.nothere_mk")
    other = types.ModuleType("toypkg_mk")
    other.__path__ = [str(tmp_path / "elsewhere")]
    monkeypatch.setitem(sys.modules, "toypkg_mk", other)
    with pytest.raises(UpstreamError, match=r"another package named 'toypkg_mk' .*Toy must run in its own worker process"):
        SPEC.import_module(repo, "toypkg_mk.TOY")


def test_upstream_commit_reads_git_head(tmp_path) -> None:
    assert upstream_commit(tmp_path) is None
    (tmp_path / ".git" / "refs" / "heads").mkdir(parents=True)
    (tmp_path / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (tmp_path / ".git" / "refs" / "heads" / "main").write_text("0123abcd\n")
    assert upstream_commit(tmp_path) == "0123abcd"
    (tmp_path / ".git" / "HEAD").write_text("feedbeef\n")
    assert upstream_commit(tmp_path) == "feedbeef"
