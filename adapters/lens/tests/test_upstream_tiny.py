"""The whole adapter on the upstream LENS model class with a tiny random configuration.

Needs a hustvl/LENS checkout in $HARNESS_LENS_REPO (conformance tests): the model class
(``SAMR1ForConditionalGeneration_qwen2p5``) is built from a tiny Qwen2.5-VL config and a
tiny SAM2, saved as a checkpoint, and loaded by the adapter as a real checkpoint would be.
"""

from __future__ import annotations

import numpy as np
import pytest
import tiny
import torch
import upstream_eval
from harness import masks
from harness.modelkit.testing import test_device
from harness.types import ParseStatus, Query

from harness_lens.adapter import LensAdapter
from harness_lens.parse import find_box, parse_float_sequence_within, rescale_box
from harness_lens.preprocess import PREPROCESSING

pytestmark = pytest.mark.slow

H, W = 48, 64
EXPRESSIONS = ["man", "the man on the left in a red coat", "dog"]


def _image(seed: int = 0, h: int = H, w: int = W) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _samples(exprs=EXPRESSIONS, h: int = H, w: int = W) -> list[Query]:
    return [Query(id=f"tiny/val/0/{i}", image="x.jpg", expression=e, dataset="tiny", split="val") for i, e in enumerate(exprs)]


@pytest.fixture(scope="module")
def samr1(upstream_repo):
    from harness_lens.model import import_upstream, resolve_upstream

    return import_upstream(resolve_upstream(str(upstream_repo)))


def _adapter(checkpoint, upstream_repo, **options) -> LensAdapter:
    a = LensAdapter(checkpoint=str(checkpoint), upstream_repo=str(upstream_repo), sam_config=tiny.TINY_SAM_CONFIG,
                    sam_overrides=tiny.tiny_sam_overrides(), **options)
    a.load(test_device())
    return a


@pytest.fixture(scope="module")
def box_checkpoint(samr1, tmp_path_factory):
    d = tmp_path_factory.mktemp("lens_box")
    tiny.build_lens_checkpoint(d, samr1, script=[tiny.BOX_ANSWER])
    return d


@pytest.fixture(scope="module")
def adapter(box_checkpoint, upstream_repo):
    return _adapter(box_checkpoint, upstream_repo)


def test_end_to_end_refcoco(adapter) -> None:
    image = _image()
    preds = adapter.predict(image, _samples())
    assert len(preds) == 3
    for p in preds:
        assert p.mask is not None and p.mask["size"] == [H, W]
        assert p.text == tiny.BOX_ANSWER and p.parse_status is ParseStatus.OK and p.reasoning is None
        assert p.box == pytest.approx(rescale_box((10, 20, 30, 40), (56, 56), (H, W)))
        assert p.error is None
    assert adapter._lens.dtype == torch.float32 and adapter._lens.attn_implementation == "sdpa"


def test_counters(box_checkpoint, upstream_repo) -> None:
    a = _adapter(box_checkpoint, upstream_repo, share_vision=False, share_prefix=False)
    a.predict(_image(), _samples())
    s = a.stats()
    # prefill + one decoding step (answer token, then the end token) + the mask pass; the ViT runs per copy
    # of the image in both passes without share_vision (test_sameness_tiny counts the savings)
    assert {k: s[k] for k in ("segmenter_images", "generated_tokens", "forward_passes", "vision_encoder_images")} == {
        "segmenter_images": 1.0, "generated_tokens": 6.0, "forward_passes": 3.0, "vision_encoder_images": 6.0}
    a.predict(_image(), _samples(EXPRESSIONS[:1]))  # the same image again (its sentences split over two batches)
    assert a.stats()["segmenter_images"] == 1.0
    a.predict(_image(seed=1), _samples(EXPRESSIONS[:2]))  # another image
    assert a.stats()["segmenter_images"] == 2.0
    assert a.stats()["forward_passes"] == 9.0


def _upstream_recipe(upstream_repo, tmp_path, model, processor, image: np.ndarray, expression: str):
    """hustvl/LENS eval/evaluate_res2.py for one sentence, run from the checkout (``upstream_eval``): its
    ``ReferSegEvaluationSet`` item and ``evaluate_single`` on CPU and fp32 (no padding, whole-sequence
    decoding, SAM encoding inside the model's own forward). The completion text and the upsampled logits."""
    module = upstream_eval.evaluate_res2(upstream_repo)
    root = upstream_eval.write_refcoco(tmp_path / expression.replace(" ", "_"), image, [[expression]])
    [item] = upstream_eval.refcoco_items(module, root)
    logits = []
    postprocess = model.postprocess_masks

    def keep_logits(low_res_mask, *args, **kwargs):  # a spy: upstream's own values, passed on unchanged
        out = postprocess(low_res_mask, *args, **kwargs)
        logits.append(out[0, 0])
        return out

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(model, "postprocess_masks", keep_logits)
        run = upstream_eval.evaluate_single(module, model, processor, item)
    completion = processor.batch_decode(run.sequences, skip_special_tokens=True)
    return completion[0], logits[0]


def test_matches_the_upstream_recipe(adapter, upstream_repo, tmp_path) -> None:
    """Per sentence, the adapter's batched, left-padded, embedding-reusing path gives upstream's
    mask (up to pixels whose logit is within float noise of 0) and upstream's box."""
    image = _image(seed=2)
    preds = adapter.predict(image, _samples())
    encoder = adapter._lens.encoder
    encoder.reuse = False  # upstream: SAM encodes inside the forward, once per sentence
    try:
        for expr, pred in zip(EXPRESSIONS, preds):
            text, logits = _upstream_recipe(upstream_repo, tmp_path, adapter._lens.model, adapter._lens.processor, image, expr)
            ref = (logits > 0).numpy()
            got = masks.decode(pred.mask)
            differ = got != ref
            assert not differ.any() or np.abs(logits.numpy()[differ]).max() < 1e-4
            assert parse_float_sequence_within(text) == [10.0, 20.0, 30.0, 40.0]
            assert pred.box == pytest.approx(rescale_box(tuple(parse_float_sequence_within(text)), (56, 56), (H, W)))
    finally:
        encoder.reuse = True


def test_sam_embedding_reuse_gives_the_same_masks(box_checkpoint, upstream_repo) -> None:
    reused = _adapter(box_checkpoint, upstream_repo)
    upstream = _adapter(box_checkpoint, upstream_repo, reuse_sam_embedding=False)
    image = _image(seed=5)
    a = reused.predict(image, _samples())
    b = upstream.predict(image, _samples())
    assert [p.mask for p in a] == [p.mask for p in b]
    assert [p.box for p in a] == [p.box for p in b]
    assert len({p.mask["counts"] for p in a}) == 3  # three different masks, not one repeated
    assert reused.stats()["segmenter_images"] == 1.0
    assert upstream.stats()["segmenter_images"] == 3.0


def test_reused_logits_are_equal(adapter) -> None:
    """Not only the thresholded masks: the repeated image features equal a batched encoding of the copies."""
    encoder = adapter._lens.encoder
    sam_image = torch.from_numpy(PREPROCESSING["refcoco"](_image(seed=3)).sam_image)
    batch = sam_image.unsqueeze(0).repeat(3, 1, 1, 1)
    with torch.inference_mode():
        encoder.expect(None)
        reused = encoder(batch)
        direct = encoder._encode(batch)
    for r, d in zip(reused["backbone_fpn"] + reused["vision_pos_enc"], direct["backbone_fpn"] + direct["vision_pos_enc"]):
        assert torch.allclose(r, d, atol=1e-6, rtol=0)


def test_reasonseg_cot_variant(samr1, upstream_repo, tmp_path) -> None:
    tiny.build_lens_checkpoint(tmp_path, samr1, script=[tiny.COT_THINK, tiny.COT_ANSWER])
    a = _adapter(tmp_path, upstream_repo, variant="reasonseg-cot")
    assert a.settings["template"] == "samr1_v4" and a.settings["checkpoint"] == str(tmp_path)
    image = _image(h=60, w=90)
    (pred,) = a.predict(image, _samples(["the woman holding an umbrella"], h=60, w=90))
    assert pred.mask["size"] == [60, 90]
    assert pred.reasoning == "The woman on the right holds the umbrella."
    assert pred.answer == '{"bbox_2d": [12, 8, 44, 50]}'
    assert pred.parse_status is ParseStatus.OK
    assert pred.box == pytest.approx(rescale_box((12, 8, 44, 50), (420, 644), (60, 90)))  # the processor's grid


def test_unparsable_output_keeps_the_mask(samr1, upstream_repo, tmp_path) -> None:
    tiny.build_lens_checkpoint(tmp_path, samr1, script=None, seed=7)  # a random model: random text
    a = _adapter(tmp_path, upstream_repo, max_new_tokens=4)
    preds = a.predict(_image(), _samples())
    for p in preds:
        assert p.mask is not None and p.mask["size"] == [H, W]
        if find_box(p.text or "") is None:
            assert p.parse_status is ParseStatus.FAILED and p.box is None
    assert a.stats()["generated_tokens"] <= 12


def test_missing_weights_fail_loudly(samr1, upstream_repo, tmp_path) -> None:
    from safetensors.torch import load_file, save_file

    tiny.build_lens_checkpoint(tmp_path, samr1, script=[tiny.BOX_ANSWER])
    weights = load_file(tmp_path / "model.safetensors")
    del weights["learnable_query"]
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(RuntimeError, match="strict_load"):
        _adapter(tmp_path, upstream_repo)
    _adapter(tmp_path, upstream_repo, strict_load=False)  # loads with a warning when asked to


def test_upstream_stays_contained(upstream_repo) -> None:
    import sys

    from harness_lens.model import UpstreamError, import_upstream

    with pytest.raises(UpstreamError, match="not a hustvl/LENS checkout"):
        from harness_lens.model import resolve_upstream

        resolve_upstream("/nonexistent")
    assert import_upstream(upstream_repo.resolve()).__name__ == "src.open_r1.trainer.samr1"
    assert any(p == str(upstream_repo.resolve()) for p in sys.path)  # only after the import, in this (worker) process
