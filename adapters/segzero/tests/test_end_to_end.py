"""The whole path on tiny random models: image + expression -> prompt -> generate -> parse -> SAM2 -> mask.

The checkpoints are saved to disk and loaded through the adapter's own ``load`` (from_pretrained,
AutoProcessor, build_sam2 + checkpoint), as on a GPU machine with real weights.
"""

from __future__ import annotations

import numpy as np
import pytest
from harness import masks
from harness.modelkit.testing import test_device
from harness.registry import adapter_class
from harness.types import ParseStatus, Query

from harness_segzero.adapter import SegZeroAdapter, SegZeroReasonSegAdapter, SegZeroSingleAdapter, VisionReasonerAdapter

H, W = 120, 160


def sample(expr: str, i: int = 0) -> Query:
    return Query(id=f"t/val/0/{i}", image="unused.jpg", expression=expr, dataset="t", split="val")


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, size=(H, W, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def loaded(tiny_options):
    adapter = SegZeroAdapter(**tiny_options, max_new_tokens=6, prompt="multi")  # the multi-object parser's paths
    adapter.load(test_device())
    return adapter


@pytest.fixture(scope="module")
def reference_sam(tiny_options):
    """SAM2ImagePredictor built independently from the same checkpoint, for expected masks."""
    from sam2.build_sam import build_sam2
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    model = build_sam2(tiny_options["sam_config"], tiny_options["sam_checkpoint"], device="cpu",
                       hydra_overrides_extra=tiny_options["sam_hydra_overrides"])
    return SAM2ImagePredictor(model)


def scripted(adapter, script: str) -> None:
    from tiny import script_answer

    ids = adapter.processor.tokenizer(adapter.inputs(np.zeros((8, 8, 3), np.uint8), sample("x"))["prompt"])["input_ids"]
    script_answer(adapter.model, adapter.processor.tokenizer, ids[-1], script)


def expected_mask(sam, image, prompts_: list[tuple[list[int], list[list[int]]]]) -> np.ndarray:
    sam.set_image(image)
    out = np.zeros((H, W), bool)
    for box, points in prompts_:
        m, s, _ = sam.predict(point_coords=points, point_labels=[1] * len(points), box=box)
        out |= m[np.argsort(s)[::-1]][0].astype(bool)
    return out


@pytest.mark.slow
def test_random_model_output_fails_to_parse(loaded, image) -> None:
    """An untrained model writes gibberish: a failed prediction with the text kept, SAM never runs."""
    from tiny import build_qwen

    fresh = build_qwen(loaded.processor.tokenizer, seed=3)
    loaded.model.load_state_dict(fresh.state_dict())
    before = loaded.stats()
    preds = loaded.predict(image, [sample("the man"), sample("a dog", 1)])
    assert [p.parse_status for p in preds] == [ParseStatus.FAILED] * 2
    assert all(p.mask is None and p.text and "unparsable" in p.error for p in preds)
    after = loaded.stats()
    assert after["tokens_generated"] - before["tokens_generated"] <= 12
    assert after["forward_passes"] - before["forward_passes"] >= 1
    assert after["images_encoded_by_segmenter"] == before["images_encoded_by_segmenter"]


@pytest.mark.slow
def test_one_object_end_to_end(loaded, image, reference_sam) -> None:
    scripted(loaded, "one")
    before = loaded.stats()
    preds = loaded.predict(image, [sample("The man on the left."), sample("the man on the left", 1), sample("left man", 2)])
    assert len(preds) == 3
    p = preds[0]
    assert p.parse_status is ParseStatus.OK and p.error is None
    assert p.reasoning == "The man on the left wears red."
    assert p.answer == '[{"bbox_2d": [84,168,420,672], "point_2d": [252,420]}]'
    # 840-space -> 160x120, int(v * f + 0.5): 84*160/840 = 16; 168*120/840 = 24; 420 -> 80; 672 -> 96; point (48, 60)
    assert p.box == (16.0, 24.0, 80.0, 96.0)
    assert p.mask["size"] == [H, W]
    want = expected_mask(reference_sam, image, [([16, 24, 80, 96], [[48, 60]])])
    assert np.array_equal(masks.decode(p.mask), want)
    assert all(q.mask == p.mask for q in preds)
    after = loaded.stats()
    assert after["images_encoded_by_segmenter"] - before["images_encoded_by_segmenter"] == 1  # once per image
    assert after["sam_decoder_calls"] - before["sam_decoder_calls"] == 3
    assert after["tokens_generated"] - before["tokens_generated"] == 6  # answer token + <|im_end|> per sentence
    assert after["forward_passes"] - before["forward_passes"] == 2  # prefill + one decoding step, batched


@pytest.mark.slow
def test_two_objects_are_ored(loaded, image, reference_sam) -> None:
    scripted(loaded, "two")
    (p,) = loaded.predict(image, [sample("two dogs")])
    # [0,0,420,420] -> (0,0,80,60), point (40,30); [500,500,800,820] -> (95,71,152,117), point (650,660) -> (124,94)
    want = expected_mask(reference_sam, image, [([0, 0, 80, 60], [[40, 30]]), ([95, 71, 152, 117], [[124, 94]])])
    assert np.array_equal(masks.decode(p.mask), want)
    assert p.box == (0.0, 0.0, 152.0, 117.0)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("script", "status", "empty", "box"),
    [
        ("none", ParseStatus.OK, True, None),  # "[]": nothing found, an empty mask (a no-target answer)
        ("outside", ParseStatus.OK, False, (-9.0, 100.0, 229.0, 143.0)),  # passed to SAM2 as written
        ("no_tag", ParseStatus.FAILED, None, None),
        ("bad_json", ParseStatus.FAILED, None, None),
        ("no_point", ParseStatus.FAILED, None, None),
    ],
)
def test_scripted_outputs(loaded, image, script, status, empty, box) -> None:
    scripted(loaded, script)
    (p,) = loaded.predict(image, [sample("something")])
    assert p.parse_status is status
    if status is ParseStatus.FAILED:
        assert p.mask is None and p.error.startswith("unparsable answer")
    else:
        assert p.mask["size"] == [H, W] and (masks.area(p.mask) == 0) is empty
        assert p.box == box


@pytest.mark.slow
def test_chunked_batches_give_the_same_predictions(tiny_options, image) -> None:
    chunked = SegZeroAdapter(**tiny_options, max_new_tokens=6, batch_size=1, prompt="multi")
    chunked.load(test_device())
    scripted(chunked, "one")
    preds = chunked.predict(image, [sample("a"), sample("b", 1)])
    assert chunked.stats()["generate_calls"] == 2
    assert chunked.stats()["images_encoded_by_segmenter"] == 1
    assert preds[0].mask == preds[1].mask and preds[0].parse_status is ParseStatus.OK


@pytest.mark.slow
def test_single_object_variant(tiny_options, image, reference_sam) -> None:
    adapter = SegZeroAdapter(**tiny_options, max_new_tokens=6)  # the default: Seg-Zero's single-object prompt
    adapter.load(test_device())
    assert "with bbox and points." in adapter.inputs(image, sample("x"))["prompt"]
    scripted(adapter, "single")
    (p,) = adapter.predict(image, [sample("one man")])
    # round(int(v) * f): bbox (16, 24, 80, 96); points (252,420) -> (48, 60), (300,500) -> (57.14 -> 57, 71.43 -> 71)
    want = expected_mask(reference_sam, image, [([16, 24, 80, 96], [[48, 60], [57, 71]])])
    assert np.array_equal(masks.decode(p.mask), want)


def test_inputs_are_recorded(loaded, image) -> None:
    info = loaded.inputs(image, sample('"The Man on the left?"'))
    assert info["question"] == "the man on the left"
    assert info["prompt"].count("<|image_pad|>") == 1 and info["prompt"].endswith("<|im_start|>assistant\n")
    assert info["image_grid_thw"] == [[1, 60, 60]]  # 840 / 14 patches a side: no further resize
    assert info["sam_input_shape"] == [3, 1024, 1024]
    assert len(info["pixel_values_sha256"]) == 64
    assert loaded.processor.tokenizer.padding_side == "left"


def test_variants_and_registry() -> None:
    assert SegZeroAdapter().options["max_new_tokens"] == 1024
    assert SegZeroAdapter().options["model_path"] == "Ricky06662/Seg-Zero-7B"
    vr = VisionReasonerAdapter()
    assert vr.options["max_new_tokens"] == 2048 and vr.options["model_path"] == "Ricky06662/VisionReasoner-7B"
    assert vr.options["sam_bf16_autocast"] is False and SegZeroAdapter().options["sam_bf16_autocast"] is True
    assert SegZeroAdapter().options["prompt"] == "single" and vr.options["prompt"] == "multi"
    assert SegZeroSingleAdapter().options == SegZeroAdapter().options
    assert adapter_class("segzero") is SegZeroAdapter
    assert adapter_class("visionreasoner") is VisionReasonerAdapter
    assert adapter_class("segzero-single") is SegZeroSingleAdapter
    assert adapter_class("segzero-reasonseg") is SegZeroReasonSegAdapter


def test_reasonseg_variant_is_what_eval_reasonseg_sh_runs() -> None:
    # Seg-Zero 42a3345 eval_reasonseg.sh: evaluation.py (single-object prompt), Seg-Zero-7B-Best-on-ReasonSegTest,
    # max_new_tokens=1024, SAM2-L under bf16 autocast
    options = SegZeroReasonSegAdapter().options
    assert options["prompt"] == "single"
    assert options["model_path"] == "Ricky06662/Seg-Zero-7B-Best-on-ReasonSegTest"
    assert options["max_new_tokens"] == 1024 and options["sam_bf16_autocast"] is True
    assert options["sam_model"] == "facebook/sam2-hiera-large"
    info = SegZeroReasonSegAdapter.info
    assert info.name == "segzero-reasonseg"
    assert info.checkpoints == ("Ricky06662/Seg-Zero-7B-Best-on-ReasonSegTest", "facebook/sam2-hiera-large")
    assert SegZeroAdapter(model_path="x").config()["options"]["model_path"] == "x"
    with pytest.raises(TypeError, match="unknown options"):
        SegZeroAdapter(temperature=0.7)
    with pytest.raises(ValueError, match="prompt"):
        SegZeroAdapter(prompt="other")


@pytest.mark.slow
def test_several_images_in_one_call_give_the_same_predictions(tiny_options, image) -> None:
    adapter = SegZeroAdapter(**tiny_options, max_new_tokens=6, prompt="multi")
    adapter.load(test_device())
    scripted(adapter, "one")
    assert adapter.multi_image
    other = np.ascontiguousarray(image[:, ::-1])
    first, second = [sample("a"), sample("b", 1)], [sample("c", 2)]
    one_by_one = [adapter.predict(image, first), adapter.predict(other, second)]
    before = adapter.stats()
    together = adapter.predict_many([(image, first), (other, second)])
    after = adapter.stats()
    assert after["generate_calls"] - before["generate_calls"] == 1  # three rows of two images in one generate call
    assert after["images_encoded_by_segmenter"] - before["images_encoded_by_segmenter"] == 2  # SAM2: once per image

    def key(p):
        return p.mask, p.box, p.text, p.parse_status

    assert [[key(p) for p in preds] for preds in together] == [[key(p) for p in preds] for preds in one_by_one]
    assert one_by_one[0][0].mask != one_by_one[1][0].mask  # the two images really are segmented apart
