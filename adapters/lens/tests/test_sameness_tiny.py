"""Proof of sameness on the upstream LENS class (tiny, fp32, CPU): the adapter against a line-for-line
copy of hustvl/LENS ``eval/evaluate_res2.py RefCOCOEvaluator.evaluate_single`` on a separately
loaded, unwrapped model.

- ``variant: refcoco-upstream`` (one call per ref, the tokenizer's own padding side, no sharing)
  is bit for bit ``evaluate_single`` per ref, with an even and an uneven ref;
- the default (per image, left padding) and each saving alone (``share_vision``, ``share_prefix``,
  ``reuse_sam_embedding``) give the same generated text, 256x256 logits within 1e-5 of
  ``evaluate_single`` (per sentence, and on the same left-padded batch), and identical masks;
- the counters show each saving, with values worked out from the prompt lengths.

Needs $HARNESS_LENS_REPO (skipped otherwise).
"""

from __future__ import annotations

import numpy as np
import pytest
import tiny
import torch
from harness import masks
from harness.types import GroundTruth, Query, Sample

from harness_lens import prompts
from harness_lens.adapter import LensAdapter, groups, ref_key
from harness_lens.model import checkpoint_padding_side
from harness_lens.preprocess import PREPROCESSING

pytestmark = pytest.mark.slow

H, W = 48, 64
EVEN = ["man", "cat"]  # the same number of tokens (checked below)
UNEVEN = ["man", "the man on the left in a red coat", "dog"]
TOL = 1e-5


def _image(seed: int = 4) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(H, W, 3), dtype=np.uint8)


def _samples(refs: list[list[str]]) -> list[Query]:
    """RefCOCO-style ids (refcoco/unc/val/<ref_id>/<sent_id>), the refs' sentences in order."""
    gt = GroundTruth(mask=masks.empty(H, W))
    out, sent = [], 0
    for ref, sentences in enumerate(refs):
        for e in sentences:
            out.append(Sample(id=f"refcoco/unc/val/{100 + ref}/{sent}", image="x.jpg", expression=e, gt=gt, dataset="refcoco",
                              split="val").query())  # what the engine hands a model: no ground truth
            sent += 1
    return out


@pytest.fixture(scope="module")
def samr1(upstream_repo):
    from harness_lens.model import import_upstream, resolve_upstream

    return import_upstream(resolve_upstream(str(upstream_repo)))


@pytest.fixture(scope="module")
def checkpoint(samr1, tmp_path_factory):
    d = tmp_path_factory.mktemp("lens_same")
    tiny.build_lens_checkpoint(d, samr1, script=[tiny.BOX_ANSWER])
    return d


@pytest.fixture(scope="module")
def upstream(samr1, checkpoint):
    """The model class loaded as ``RefCOCOEvaluator.__init__`` loads it (fp32, sdpa on CPU), no wrappers,
    and ``AutoProcessor.from_pretrained`` untouched (the checkpoint's padding side)."""
    from transformers import AutoProcessor

    from harness_lens.model import sam_builder

    with sam_builder(samr1, tiny.TINY_SAM_CONFIG, tiny.tiny_sam_overrides()):
        model = samr1.SAMR1ForConditionalGeneration_qwen2p5.from_pretrained(str(checkpoint), torch_dtype=torch.float32,
                                                                           attn_implementation="sdpa")
    return model.eval(), AutoProcessor.from_pretrained(str(checkpoint))


_LOADED: dict[tuple, LensAdapter] = {}


def _adapter(checkpoint, upstream_repo, **options) -> LensAdapter:
    """One loaded adapter per set of options for the module (its counters are cumulative: use deltas)."""
    key = (str(checkpoint), tuple(sorted(options.items())))
    if key in _LOADED:
        return _LOADED[key]
    a = LensAdapter(checkpoint=str(checkpoint), upstream_repo=str(upstream_repo), sam_config=tiny.TINY_SAM_CONFIG,
                    sam_overrides=tiny.tiny_sam_overrides(), **options)
    a.load("cpu")
    _LOADED[key] = a
    return a


def _delta(a: LensAdapter, run) -> dict[str, float]:
    before = a.stats()
    run()
    after = a.stats()
    out = {k: after[k] - before.get(k, 0.0) for k in after if k != "sequences_per_forward"}
    out["sequences_per_forward"] = out["llm_sequences"] / out["forward_passes"]
    return out


_REFERENCE: dict[tuple, tuple] = {}


@torch.no_grad()
def evaluate_single(model, processor, image: np.ndarray, problems: list[str], padding_side: str | None = None):
    """hustvl/LENS 28cf510 ``evaluate_single`` line for line (device "cpu" and fp32 for "cuda" and bf16;
    ``ReferSegEvaluationSet.__getitem__``'s image preparation is ``PREPROCESSING["refcoco"]``).
    ``padding_side`` forces a side (None: the processor's own, as upstream)."""
    key = (image.tobytes(), tuple(problems), padding_side)
    if key not in _REFERENCE:
        side = processor.tokenizer.padding_side
        try:
            _REFERENCE[key] = _evaluate_single(model, processor, image, problems, padding_side)
        finally:
            processor.tokenizer.padding_side = side
    return _REFERENCE[key]


def _evaluate_single(model, processor, image: np.ndarray, problems: list[str], padding_side: str | None):
    pre = PREPROCESSING["refcoco"](image)
    if padding_side is not None:
        processor.tokenizer.padding_side = padding_side
    messages = [prompts.messages("pr1_grounding", p) for p in problems]
    texts = [processor.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in messages]
    image_inputs = [pre.llm_image] * len(texts)
    inputs = processor(text=texts, images=image_inputs, padding=True, return_tensors="pt").to(device="cpu", dtype=torch.float32)
    width = inputs["input_ids"].shape[1]
    llm_out = model.generate(max_length=768, use_cache=True, do_sample=False, **inputs)
    new_attention_mask = torch.ones_like(llm_out, dtype=torch.int64)
    pos = torch.where(llm_out == processor.tokenizer.pad_token_id)
    new_attention_mask[pos] = 0
    inputs.update({"input_ids": llm_out, "attention_mask": new_attention_mask})
    inputs.update({"sam_images": torch.from_numpy(pre.sam_image).unsqueeze(0).repeat(len(texts), 1, 1, 1)})
    _, low_res_masks = model(output_hidden_states=True, use_learnable_query=True, **inputs)
    pred_masks = [model.postprocess_masks(low_res_mask, orig_hw=(H, W)) for low_res_mask in low_res_masks]
    pred_masks = (torch.cat(pred_masks, dim=0)[:, 0] > 0).int()
    new_text = processor.batch_decode(llm_out[:, width:], skip_special_tokens=True)
    return new_text, [m[0, 0] for m in low_res_masks], pred_masks.numpy().astype(bool), inputs


def _run(adapter: LensAdapter, image: np.ndarray, exprs: list[str]):
    gen, low_res, _ = adapter._run_batch(image, adapter.preprocessing(image), exprs)
    return gen.texts, [m[0, 0] for m in low_res]


def _rows(processor, exprs: list[str]) -> list[list[int]]:
    """Each sentence's prompt as the processor gives it alone (image tokens expanded, no padding)."""
    llm_image = PREPROCESSING["refcoco"](_image()).llm_image
    return [processor(text=[prompts.render(processor, "pr1_grounding", e)], images=[llm_image]).input_ids[0] for e in exprs]


def _token_lengths(processor, exprs: list[str]) -> list[int]:
    return [len(r) for r in _rows(processor, exprs)]


def test_ref_grouping() -> None:
    samples = _samples([EVEN, UNEVEN])
    assert ref_key(samples[0].id) == "refcoco/unc/val/100" and ref_key("reasonseg/val/abc") == "reasonseg/val/abc"
    assert groups(samples, "ref") == [[0, 1], [2, 3, 4]]
    assert groups(samples, "image") == [[0, 1, 2, 3, 4]]


def test_the_batches_are_even_and_uneven(upstream) -> None:
    _, processor = upstream
    assert len(set(_token_lengths(processor, EVEN))) == 1
    assert len(set(_token_lengths(processor, UNEVEN))) == 3
    assert checkpoint_padding_side(processor.tokenizer) == processor.tokenizer.padding_side == "right"


def test_upstream_variant_is_evaluate_single_bit_for_bit(checkpoint, upstream_repo, upstream) -> None:
    """``variant: refcoco-upstream``: one call per ref, right padding as the checkpoint says; the same
    tokens, the same logits to the last bit, the same masks, for an even and an uneven ref."""
    model, processor = upstream
    a = _adapter(checkpoint, upstream_repo, variant="refcoco-upstream")
    assert (a.settings["batching"], a.settings["padding_side"], a.settings["share_prefix"]) == ("ref", "tokenizer", False)
    image = _image()
    before = a.stats()
    preds = a.predict(image, _samples([EVEN, UNEVEN]))
    s = {k: v - before.get(k, 0.0) for k, v in a.stats().items()}  # upstream's work: every copy of the image encoded
    assert s["vision_encoder_images"] == 2 * 5 and s["segmenter_images"] == 5
    got = {"even": preds[:2], "uneven": preds[2:]}
    for name, exprs in (("even", EVEN), ("uneven", UNEVEN)):
        ref_text, ref_logits, ref_masks, ref_inputs = evaluate_single(model, processor, image, exprs)
        if name == "uneven":  # right padding really happened: the shorter rows end in pads
            assert (ref_inputs["attention_mask"][:, :-2] == 0).any()
        texts, logits = _run(a, image, exprs)
        assert texts == ref_text == [tiny.BOX_ANSWER] * len(exprs)
        for x, y in zip(logits, ref_logits):
            assert torch.equal(x, y)
        for pred, ref in zip(got[name], ref_masks):
            assert np.array_equal(masks.decode(pred.mask), ref)


CONFIGS = {
    "default": {},
    "share_vision only": {"share_prefix": False, "reuse_sam_embedding": False},
    "share_prefix only": {"share_vision": False, "reuse_sam_embedding": False},
    "reuse_sam_embedding only": {"share_vision": False, "share_prefix": False},
    "none": {"share_vision": False, "share_prefix": False, "reuse_sam_embedding": False},
}


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("exprs", [EVEN, UNEVEN], ids=["even", "uneven"])
def test_savings_keep_upstreams_results(config, exprs, checkpoint, upstream_repo, upstream) -> None:
    """Left padding, per image: texts identical, logits within 1e-5 of evaluate_single on each sentence
    alone and on the same left-padded batch, thresholded masks identical."""
    model, processor = upstream
    a = _adapter(checkpoint, upstream_repo, **CONFIGS[config])
    image = _image(seed=len(exprs))
    texts, logits = _run(a, image, exprs)
    preds = a.predict(image, _samples([exprs]))
    batch_text, batch_logits, batch_masks, _ = evaluate_single(model, processor, image, exprs, padding_side="left")
    assert texts == batch_text
    for i, e in enumerate(exprs):
        one_text, one_logits, one_masks, _ = evaluate_single(model, processor, image, [e])
        assert texts[i] == one_text[0] == tiny.BOX_ANSWER
        assert (logits[i] - one_logits[0]).abs().max().item() < TOL
        assert (logits[i] - batch_logits[i]).abs().max().item() < TOL
        assert np.array_equal(masks.decode(preds[i].mask), one_masks[0])
        assert np.array_equal(masks.decode(preds[i].mask), batch_masks[i])


@pytest.mark.parametrize("exprs", [EVEN, UNEVEN], ids=["even", "uneven"])
def test_counters_show_each_saving(exprs, checkpoint, upstream_repo, upstream) -> None:
    """Counts worked out from the prompts: n rows of lengths l_i, padded width L, common prefix P
    (system prompt, image tokens and "Output the bounding box of the"), answer + end token = 2 new tokens,
    so one prefill and one decoding step; the mask pass runs L + 2 + 64 positions per row."""
    _, processor = upstream
    lengths = _token_lengths(processor, exprs)
    n, width = len(exprs), max(lengths)
    rows = _rows(processor, exprs)
    prefix = next(i for i in range(min(lengths)) if len({tuple(r[: i + 1]) for r in rows}) > 1)
    image = _image(seed=10 + n)  # an image no adapter has seen (features are kept across calls)
    patches = 16  # 56x56 LLM image: 4x4 patches of 14
    plain = _adapter(checkpoint, upstream_repo, **CONFIGS["none"])
    assert _delta(plain, lambda: plain.predict(image, _samples([exprs]))) == {
        "segmenter_images": n, "generated_tokens": 2 * n, "forward_passes": 3, "vision_encoder_images": 2 * n,
        "vision_encoder_patches": 2 * n * patches, "prefill_tokens": n * width, "decode_steps": n, "decode_passes": 1,
        "mask_pass_tokens": n * (width + 2 + 64), "llm_sequences": 3 * n, "sequences_per_forward": n,
    }
    shared = _adapter(checkpoint, upstream_repo)
    assert _delta(shared, lambda: shared.predict(image, _samples([exprs]))) == {
        "segmenter_images": 1, "generated_tokens": 2 * n, "forward_passes": 5, "vision_encoder_images": 1,
        "vision_encoder_patches": patches, "prefill_tokens": prefix + n * (width - prefix), "decode_steps": n,
        "decode_passes": 1,
        "mask_pass_tokens": prefix + n * (width - prefix + 2 + 64), "llm_sequences": 2 + 3 * n, "sequences_per_forward": (2 + 3 * n) / 5,
    }
    again = _delta(shared, lambda: shared.predict(image, _samples([exprs])))  # the same image again: features kept
    assert again["vision_encoder_images"] == 0 and again["segmenter_images"] == 0


def test_share_prefix_needs_left_padding() -> None:
    from harness_lens.adapter import resolve_options

    with pytest.raises(ValueError, match="share_prefix"):
        resolve_options({"padding_side": "tokenizer"})
    assert resolve_options({"padding_side": "tokenizer", "share_prefix": False})["padding_side"] == "tokenizer"
    with pytest.raises(ValueError, match="unknown batching"):
        resolve_options({"batching": "sentence"})
