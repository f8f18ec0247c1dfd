"""Variants, options, the manifest, registration, and the input-review hook (no model weights)."""

from __future__ import annotations

import json
from importlib.metadata import entry_points

import numpy as np
import pytest
import tiny
from harness.types import Query

from harness_lens import manifest, prompts
from harness_lens.adapter import LensAdapter, resolve_options
from harness_lens.preprocess import PREPROCESSING


def test_registered_as_entry_point() -> None:
    found = {e.name: e.value for e in entry_points(group="harness.adapters")}
    assert found.get("lens") == "harness_lens.adapter:LensAdapter"


def test_info_and_manifest() -> None:
    info = LensAdapter.info
    assert info.name == "lens" and info.box_space == "pixel"
    assert info.outputs == ("mask", "box", "text", "reasoning")
    assert set(info.checkpoints) == {"OuyBin/LENS", "OuyBin/LENS_ReasonSeg_CoT", "OuyBin/LENS_ReasonSeg_FT"}
    m = json.loads(json.dumps(manifest.manifest()))
    assert m["pins"]["transformers"] == "4.51.3"
    assert m["variants"]["refcoco"]["checkpoint"] == "OuyBin/LENS"


@pytest.mark.parametrize(
    ("variant", "checkpoint", "template", "prep", "max_length", "max_new"),
    [
        ("refcoco", "OuyBin/LENS", "pr1_grounding", "refcoco", 768, None),
        ("refcoco-demo", "OuyBin/LENS", "pr1_grounding", "refcoco", None, 256),
        ("reasonseg-cot", "OuyBin/LENS_ReasonSeg_CoT", "samr1_v4", "reasonseg", 768, None),
        ("reasonseg-ft", "OuyBin/LENS_ReasonSeg_FT", "pr1_grounding", "reasonseg", 768, None),
    ],
)
def test_variants(variant, checkpoint, template, prep, max_length, max_new) -> None:
    s = resolve_options({"variant": variant})
    assert (s["checkpoint"], s["template"], s["preprocessing"], s["max_length"], s["max_new_tokens"]) == (
        checkpoint, template, prep, max_length, max_new)


def test_default_is_refcoco_and_overrides_apply() -> None:
    assert resolve_options({})["variant"] == "refcoco"
    s = resolve_options({"checkpoint": "/ckpt", "max_new_tokens": 512})
    assert s["checkpoint"] == "/ckpt" and s["max_new_tokens"] == 512 and s["max_length"] is None


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"variant": "refcocoo"}, "unknown LENS variant"),
        ({"temperature": 0.7}, "unknown options temperature"),
        ({"template": "free"}, "unknown template"),
        ({"preprocessing": "letterbox"}, "unknown preprocessing"),
        ({"max_length": None}, "max_length"),
    ],
)
def test_bad_options(options, error) -> None:
    with pytest.raises((TypeError, ValueError), match=error):
        LensAdapter(**options)


def test_fingerprint_leaves_out_machine_specific_options() -> None:
    a = LensAdapter(device="cuda:1", upstream_repo="/somewhere/LENS")
    b = LensAdapter()
    assert a.config() == b.config()
    assert LensAdapter(reuse_sam_embedding=False).config() != b.config()


def test_predict_before_load_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="before load"):
        LensAdapter().predict(np.zeros((4, 4, 3), np.uint8), [_sample("x")])


def _sample(expr: str) -> Query:
    return Query(id="t/0", image="x.jpg", expression=expr, dataset="t", split="val")


def test_inputs_hook_without_weights(tmp_path) -> None:
    tiny.build_processor().save_pretrained(tmp_path)
    adapter = LensAdapter(checkpoint=str(tmp_path))
    image = np.random.default_rng(0).integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
    rec = adapter.inputs(image, _sample("the man on the left"))
    assert rec["prompt"] == prompts.render(tiny.build_tokenizer(), "pr1_grounding", "the man on the left")
    assert rec["llm_image_hw"] == [56, 56] and rec["image_grid_thw"] == [1, 4, 4]
    assert rec["prompt_tokens"] > 4  # 4 image tokens (16 patches merged 2x2) plus the text
    assert len(rec["sam_image_sha1"]) == 40
    again = adapter.inputs(image.copy(), _sample("the man on the left"))
    assert again == rec  # deterministic
    other = adapter.inputs(image, _sample("the dog"))
    assert other["sam_image_sha1"] == rec["sam_image_sha1"] and other["input_ids_sha1"] != rec["input_ids_sha1"]
    # the reasonseg protocol changes both branches' digests
    rs = LensAdapter(checkpoint=str(tmp_path), variant="reasonseg-cot").inputs(image, _sample("the man on the left"))
    assert rs["sam_image_sha1"] != rec["sam_image_sha1"] and rs["template"] == "samr1_v4"
    assert rs["llm_image_hw"] == [480, 640]  # the longer side scaled up to 640
    assert rs["image_grid_thw"] == [1, 34, 46]  # the processor's own smart_resize: 476 x 644 pixels
    assert PREPROCESSING["reasonseg"].llm_image(image).size == (640, 480)


def test_batches_across_images_except_for_upstreams_protocol() -> None:
    """The engine sends batches spanning images only where one batch really runs them together; the
    per-ref protocol keeps one image per batch, so that no ref is split between two batches by an image
    boundary that the engine chose."""
    assert LensAdapter().multi_image is True
    assert LensAdapter(variant="refcoco-upstream").multi_image is False
    assert LensAdapter(batching="ref").multi_image is False
