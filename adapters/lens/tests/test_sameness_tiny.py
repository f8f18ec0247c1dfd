"""Proof of sameness on the upstream LENS class (tiny, fp32, CPU): the adapter against hustvl/LENS's own
``eval/evaluate_res2.py`` run from the checkout (``ReferSegEvaluationSet`` reading a one-image RefCOCO
tree written here, then ``RefCOCOEvaluator.evaluate_single``; ``upstream_eval.py``) on a separately
loaded, unwrapped model: upstream's preprocessing, prompts, padding, generation and mask pass.

- ``variant: refcoco-upstream`` (one call per ref, the tokenizer's own padding side, no sharing)
  is bit for bit ``evaluate_single`` per ref, with an even and an uneven ref;
- the default (per image, left padding) and each saving alone (``share_vision``, ``share_prefix``,
  ``reuse_sam_embedding``) give the same generated text, 256x256 logits within 1e-5 of
  ``evaluate_single`` (per sentence, and on the same left-padded batch), and identical masks;
- the counters show each saving, with values worked out from the prompt lengths;
- each sameness claim holds at one and at two intra-op (BLAS) threads (``threads``): a batch's
  reductions are split by the thread count, so a claim made at one count is not one at another.

Conformance tests: they need $HARNESS_LENS_REPO.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import tiny
import torch
import upstream_eval
from harness import masks
from harness.modelkit.testing import test_device
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
THREADS = [1, 2]  # torch's intra-op threads: the upstream run and the adapter's, both at each


@pytest.fixture(params=THREADS, ids=lambda n: f"{n}-thread{'s' if n > 1 else ''}")
def threads(request):
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


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


_RES2: list = []  # eval/evaluate_res2.py of the checkout, imported by the ``res2`` fixture


@pytest.fixture(scope="module")
def res2(upstream_repo):
    module = upstream_eval.evaluate_res2(upstream_repo)
    _RES2[:] = [module]
    return module


@pytest.fixture(scope="module")
def upstream(samr1, checkpoint, res2):
    """The model class loaded as ``RefCOCOEvaluator.__init__`` loads it (fp32, sdpa on CPU), no wrappers,
    and ``AutoProcessor.from_pretrained`` untouched (the checkpoint's padding side)."""
    return _load_upstream(samr1, checkpoint)


def _load_upstream(samr1, checkpoint):
    from transformers import AutoProcessor

    from harness_lens.model import sam_builder

    with sam_builder(samr1, tiny.TINY_SAM_CONFIG, tiny.tiny_sam_overrides()):
        model = samr1.SAMR1ForConditionalGeneration_qwen2p5.from_pretrained(str(checkpoint), torch_dtype=torch.float32,
                                                                           attn_implementation="sdpa")
    return model.eval(), AutoProcessor.from_pretrained(str(checkpoint))


_LOADED: dict[tuple, LensAdapter] = {}


def _adapter(checkpoint, upstream_repo, **options) -> LensAdapter:
    """One loaded adapter per set of options for the module (its counters are cumulative: use deltas), and per
    intra-op thread count (what it keeps across calls, an image's features, is then computed at that count)."""
    key = (str(checkpoint), tuple(sorted(options.items())), torch.get_num_threads())
    if key in _LOADED:
        return _LOADED[key]
    a = LensAdapter(checkpoint=str(checkpoint), upstream_repo=str(upstream_repo), sam_config=tiny.TINY_SAM_CONFIG,
                    sam_overrides=tiny.tiny_sam_overrides(), **options)
    a.load(test_device())
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


def _upstream_item(image: np.ndarray, problems: list[str]) -> dict:
    """``ReferSegEvaluationSet.__getitem__`` of upstream for one ref of ``problems`` on ``image``."""
    root = upstream_eval.write_refcoco(Path(tempfile.mkdtemp(prefix="lens_refcoco_")), image, [problems])
    [item] = upstream_eval.refcoco_items(_RES2[0], root)
    return item


def upstream_run(model, processor, image: np.ndarray, problems: list[str], padding_side: str | None = None):
    """(upstream's item, what its ``evaluate_single`` computed); ``padding_side`` forces a side (None: the
    processor's own, as upstream). Cached per model, image, sentences, side and intra-op thread count."""
    key = (id(model), image.tobytes(), tuple(problems), padding_side, torch.get_num_threads())
    if key not in _REFERENCE:
        item = _upstream_item(image, problems)
        side = processor.tokenizer.padding_side
        try:
            if padding_side is not None:
                processor.tokenizer.padding_side = padding_side
            _REFERENCE[key] = (item, upstream_eval.evaluate_single(_RES2[0], model, processor, item))
        finally:
            processor.tokenizer.padding_side = side
    return _REFERENCE[key]


def evaluate_single(model, processor, image: np.ndarray, problems: list[str], padding_side: str | None = None):
    """hustvl/LENS ``evaluate_single`` on upstream's item: new texts, (256, 256) logits, masks, generate inputs."""
    _, run = upstream_run(model, processor, image, problems, padding_side)
    return run.new_texts(processor), run.low_res, np.stack(run.masks), run.generate_inputs


def _run(adapter: LensAdapter, image: np.ndarray, exprs: list[str]):
    gen, low_res, _ = adapter._run_parts([(image, adapter.preprocessing(image), exprs)])
    return gen.texts, [m[0, 0] for m in low_res]


def _rows(processor, exprs: list[str]) -> list[list[int]]:
    """Each sentence's prompt as the processor gives it alone (image tokens expanded, no padding), from
    upstream's item (its messages and LLM image)."""
    item = _upstream_item(_image(), exprs)
    texts = [processor.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in item["messages"]]
    return [processor(text=[t], images=[item["image"]]).input_ids[0] for t in texts]


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


def test_upstream_variant_is_evaluate_single_bit_for_bit(checkpoint, upstream_repo, upstream, threads) -> None:
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
def test_savings_keep_upstreams_results(config, exprs, checkpoint, upstream_repo, upstream, threads) -> None:
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


# -- mask_from_cache: the mask pass continuing from the generation's cache (opt-in) ------------------

CACHE_CONFIGS = {
    "with share_prefix": {"mask_from_cache": True},
    "without share_prefix": {"mask_from_cache": True, "share_prefix": False},
}
# bounds for the measured change (README "Work done once per image"): the positions' convention, not noise
CACHE_LOGIT_TOL = 5e-4
CACHE_MIN_IOU = 0.99


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


@torch.no_grad()
def mask_pass_with_generation_positions(model, processor, sequences: torch.Tensor, inputs, sam_images: torch.Tensor):
    """The reference for ``mask_from_cache``: upstream's full second pass (every column and the 64 queries
    recomputed, upstream's attention mask), but with the 3-D positions generation uses, worked out by
    Qwen2.5-VL's own ``get_rope_index`` over the whole sequence with the queries as trailing text."""
    pad = processor.tokenizer.pad_token_id
    attention = torch.ones_like(sequences, dtype=torch.int64)
    attention[sequences == pad] = 0
    q = int(model.model_num_of_query)
    ids = torch.cat([sequences, torch.full((sequences.shape[0], q), pad, dtype=sequences.dtype)], 1)
    full = torch.cat([attention, torch.ones(sequences.shape[0], q, dtype=attention.dtype)], 1)
    positions, _ = model.get_rope_index(ids, inputs["image_grid_thw"], None, None, full)
    _, low_res = model(input_ids=sequences, attention_mask=attention, position_ids=positions, pixel_values=inputs["pixel_values"],
                       image_grid_thw=inputs["image_grid_thw"], output_hidden_states=True, use_learnable_query=True,
                       sam_images=sam_images)
    return [m[0, 0] for m in low_res]


def _left_padded_generation(model, processor, image: np.ndarray, exprs: list[str]):
    """Upstream's generation on a left-padded batch (``evaluate_single``'s first half, as it ran), for the reference."""
    item, run = upstream_run(model, processor, image, exprs, padding_side="left")
    sam = item["sam_image"].unsqueeze(0).repeat(len(exprs), 1, 1, 1)
    return run.sequences, run.generate_inputs, sam


def test_mask_from_cache_is_off_by_default() -> None:
    from harness_lens.adapter import resolve_options

    assert resolve_options({})["mask_from_cache"] is False
    assert resolve_options({"variant": "refcoco-upstream"})["mask_from_cache"] is False


@pytest.mark.parametrize("config", list(CACHE_CONFIGS))
@pytest.mark.parametrize("exprs", [EVEN, UNEVEN], ids=["even", "uneven"])
def test_mask_from_cache_is_an_exact_continuation(config, exprs, checkpoint, upstream_repo, upstream) -> None:
    """The key proof: the option's logits equal a full recompute of the mask pass with generation's
    3-D positions (the reference above, on a separately loaded model, upstream's left-padded layout)
    within 1e-5, so the cache continuation itself is exact and its whole difference from upstream is
    the positions' convention."""
    model, processor = upstream
    a = _adapter(checkpoint, upstream_repo, **CACHE_CONFIGS[config])
    image = _image(seed=20 + len(exprs))
    texts, logits = _run(a, image, exprs)
    sequences, inputs, sam = _left_padded_generation(model, processor, image, exprs)
    assert texts == processor.batch_decode(sequences[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    reference = mask_pass_with_generation_positions(model, processor, sequences, inputs, sam)
    for x, y in zip(logits, reference):
        assert (x - y).abs().max().item() < TOL


@pytest.mark.parametrize("config", list(CACHE_CONFIGS))
@pytest.mark.parametrize("exprs", [EVEN, UNEVEN], ids=["even", "uneven"])
def test_mask_from_cache_tolerance_against_upstream(config, exprs, checkpoint, upstream_repo, upstream) -> None:
    """Against ``evaluate_single`` per sentence: texts identical (generation is unchanged), logits within
    the README's bound, masks with IoU >= 0.99; and the difference is real (not within 1e-5), which is
    why the option is off by default."""
    model, processor = upstream
    a = _adapter(checkpoint, upstream_repo, **CACHE_CONFIGS[config])
    image = _image(seed=30 + len(exprs))
    texts, logits = _run(a, image, exprs)
    preds = a.predict(image, _samples([exprs]))
    worst = 0.0
    for i, e in enumerate(exprs):
        one_text, one_logits, one_masks, _ = evaluate_single(model, processor, image, [e])
        assert texts[i] == preds[i].text == one_text[0] == tiny.BOX_ANSWER
        diff = (logits[i] - one_logits[0]).abs().max().item()
        worst = max(worst, diff)
        assert diff < CACHE_LOGIT_TOL
        assert _iou(masks.decode(preds[i].mask), one_masks[0]) >= CACHE_MIN_IOU
    assert worst > TOL  # generation's positions really differ from the mask pass's


@pytest.mark.parametrize("exprs", [EVEN, UNEVEN], ids=["even", "uneven"])
def test_mask_from_cache_counts_what_it_computes(exprs, checkpoint, upstream_repo, upstream) -> None:
    """The mask pass runs the last answer column and the 64 queries per row: n x 65 positions, no ViT."""
    n = len(exprs)
    a = _adapter(checkpoint, upstream_repo, mask_from_cache=True)
    image = _image(seed=40 + n)
    d = _delta(a, lambda: a.predict(image, _samples([exprs])))
    assert d["mask_pass_tokens"] == n * 65
    assert d["vision_encoder_images"] == 1 and d["segmenter_images"] == 1
    assert d["forward_passes"] == 4  # prefix prefill, prompt prefill, one decoding step, the mask pass


# Rows that end at different steps: the scripted model answers RAGGED_SHORT (then the end token) or
# RAGGED_LONG_1, RAGGED_LONG_2 (then the end token), choosing by its random logits, which the expression
# sways (the bias gap was measured so that RAGGED_EXPRS split); a row that ended early is fed pads while
# the others decode, and the mask pass must mask them and place its queries right after its end token.
RAGGED_SHORT, RAGGED_LONG_1, RAGGED_LONG_2 = "[1, 2, 3, 4]", "<think>short</think>", "[5, 6, 7, 8]"
RAGGED_EXPRS = ["man", "the man on the left in a red coat", "cat"]
RAGGED_GAP = 0.26  # extra bias for the long answer's first token


@pytest.fixture(scope="module")
def ragged_checkpoint(samr1, tmp_path_factory):
    from transformers import AutoTokenizer, GenerationConfig

    d = tmp_path_factory.mktemp("lens_ragged")
    tiny.build_lens_checkpoint(d, samr1, script=[RAGGED_SHORT, RAGGED_LONG_1, RAGGED_LONG_2])
    ids = AutoTokenizer.from_pretrained(d).convert_tokens_to_ids
    short, long1, long2, end = ids(RAGGED_SHORT), ids(RAGGED_LONG_1), ids(RAGGED_LONG_2), ids("<|im_end|>")
    cfg = GenerationConfig.from_pretrained(d)
    cfg.sequence_bias = [[[short], 1000.0], [[long1], 1000.0 + RAGGED_GAP], [[short, end], 3000.0], [[long1, long2], 3000.0],
                         [[long2, end], 3000.0]]
    cfg.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def ragged_upstream(samr1, ragged_checkpoint, res2):
    return _load_upstream(samr1, ragged_checkpoint)


@pytest.mark.parametrize("config", ["default", *CACHE_CONFIGS])
def test_rows_ending_at_different_steps(config, ragged_checkpoint, upstream_repo, ragged_upstream) -> None:
    """Rows of one batch that end one step apart: the default stays within 1e-5 of ``evaluate_single`` with
    identical masks; ``mask_from_cache`` equals the full recompute with generation's positions within 1e-5
    and stays within its bound of upstream."""
    model, processor = ragged_upstream
    options = {} if config == "default" else CACHE_CONFIGS[config]
    a = _adapter(ragged_checkpoint, upstream_repo, **options)
    image = _image()
    gen, low_res, _ = a._run_parts([(image, a.preprocessing(image), RAGGED_EXPRS)])
    logits = [m[0, 0] for m in low_res]
    long = RAGGED_LONG_1 + RAGGED_LONG_2
    assert gen.texts == [RAGGED_SHORT, long, RAGGED_SHORT] and gen.new_tokens == [2, 3, 2]  # the rows really end apart
    preds = a.predict(image, _samples([RAGGED_EXPRS]))
    for i, e in enumerate(RAGGED_EXPRS):
        one_text, one_logits, one_masks, _ = evaluate_single(model, processor, image, [e])
        assert one_text[0] == gen.texts[i]
        diff = (logits[i] - one_logits[0]).abs().max().item()
        mask = masks.decode(preds[i].mask)
        if config == "default":
            assert diff < TOL and np.array_equal(mask, one_masks[0])
        else:
            assert diff < CACHE_LOGIT_TOL and _iou(mask, one_masks[0]) >= CACHE_MIN_IOU
    if config != "default":
        sequences, inputs, sam = _left_padded_generation(model, processor, image, RAGGED_EXPRS)
        assert (sequences[:, -1] == processor.tokenizer.pad_token_id).sum() == 2  # the short rows end in a pad
        reference = mask_pass_with_generation_positions(model, processor, sequences, inputs, sam)
        for x, y in zip(logits, reference):
            assert (x - y).abs().max().item() < TOL


# -- predict_many: one batch spanning several images (the engine's multi_image batches) ----------------

def _other_image() -> np.ndarray:
    """An image of another size than ``_image``: more image tokens, so a longer shared prefix."""
    return np.random.default_rng(7).integers(0, 256, size=(60, 90, 3), dtype=np.uint8)


def _queries(exprs: list[str], h: int, w: int, tag: str) -> list[Query]:
    gt = GroundTruth(mask=masks.empty(h, w))
    return [Sample(id=f"refcoco/unc/val/{tag}/{i}", image=f"{tag}.jpg", expression=e, gt=gt, dataset="refcoco", split="val").query()
            for i, e in enumerate(exprs)]


MANY_CONFIGS = {"default": {}, "none": CONFIGS["none"], "mask_from_cache": {"mask_from_cache": True},
                "mask_from_cache without share_prefix": CACHE_CONFIGS["without share_prefix"]}


@pytest.mark.parametrize("config", list(MANY_CONFIGS))
def test_predict_many_equals_one_image_at_a_time(config, checkpoint, upstream_repo, upstream, threads) -> None:
    """Two images of different sizes (different prefix lengths: the shorter prefix is left-padded in the
    batch), an uneven and an even set of sentences, in one predict_many call: the same texts and masks as
    one predict call per image, logits within 1e-5; in the default setting also within 1e-5 of
    ``evaluate_single`` per sentence with identical masks."""
    model, processor = upstream
    a = _adapter(checkpoint, upstream_repo, **MANY_CONFIGS[config])
    assert a.multi_image
    big, small = _other_image(), _image(seed=50)
    parts = [(big, a.preprocessing(big), UNEVEN), (small, a.preprocessing(small), EVEN)]
    gen, low_res, inputs = a._run_parts(parts)
    assert len(set(inputs["image_grid_thw"][:, 1:].prod(1).tolist())) == 2  # the images really differ in size
    many = a.predict_many([(big, _queries(UNEVEN, 60, 90, "b")), (small, _queries(EVEN, H, W, "s"))])
    row = 0
    for (image, _, exprs), preds in zip(parts, many):
        texts, logits = _run(a, image, exprs)
        alone = a.predict(image, _queries(exprs, *image.shape[:2], "x"))
        assert gen.texts[row:row + len(exprs)] == texts == [p.text for p in preds]
        for i in range(len(exprs)):
            assert (low_res[row + i][0, 0] - logits[i]).abs().max().item() < TOL
            assert preds[i].mask == alone[i].mask
        if config == "default" and image is small:
            for i, e in enumerate(exprs):
                _, one_logits, one_masks, _ = evaluate_single(model, processor, image, [e])
                assert (low_res[row + i][0, 0] - one_logits[0]).abs().max().item() < TOL
                assert np.array_equal(masks.decode(preds[i].mask), one_masks[0])
        row += len(exprs)


def test_predict_many_batches_across_images(checkpoint, upstream_repo, upstream) -> None:
    """The counters of one predict_many call over two images (default): each image's ViT and SAM encode
    once; one prefill of both prefixes, one prompt prefill, one decoding step and one mask pass for all
    five sentences (plus the mask pass's prefixes): five decoder calls of 19 sequences in all."""
    a = _adapter(checkpoint, upstream_repo)
    big, small = np.random.default_rng(8).integers(0, 256, size=(60, 90, 3), dtype=np.uint8), _image(seed=51)
    d = _delta(a, lambda: a.predict_many([(big, _queries(UNEVEN, 60, 90, "b")), (small, _queries(EVEN, H, W, "s"))]))
    assert d["vision_encoder_images"] == 2 and d["segmenter_images"] == 2
    assert d["forward_passes"] == 5 and d["llm_sequences"] == 2 + 5 + 5 + 2 + 5
    assert d["sequences_per_forward"] == 19 / 5


def test_predict_many_keeps_each_images_length_budget(checkpoint, upstream_repo, upstream) -> None:
    """``max_length`` counts the prompt: in a batch spanning images each row keeps the budget its image's
    own batch would have. With max_length one past the wider image's prompts, its rows stop after one
    token while the narrower image's rows finish their answers, as one call per image does."""
    _, processor = upstream
    big, small = _other_image(), _image(seed=52)
    llm = {id(big): PREPROCESSING["refcoco"](big).llm_image, id(small): PREPROCESSING["refcoco"](small).llm_image}
    widths = {k: max(len(processor(text=[prompts.render(processor, "pr1_grounding", e)], images=[img]).input_ids[0]) for e in EVEN)
              for k, img in llm.items()}
    assert widths[id(big)] > widths[id(small)]
    a = _adapter(checkpoint, upstream_repo, max_length=widths[id(big)] + 1)
    many = a.predict_many([(big, _queries(EVEN, 60, 90, "b")), (small, _queries(EVEN, H, W, "s"))])
    assert [p.text for p in many[0]] == [tiny.BOX_ANSWER] * 2 and [p.parse_status for p in many[1]] == ["ok"] * 2
    for image, preds in zip((big, small), many):
        alone = a.predict(image, _queries(EVEN, *image.shape[:2], "x"))
        assert [p.text for p in preds] == [p.text for p in alone]
        assert [p.mask for p in preds] == [p.mask for p in alone]
    gen, _, _ = a._run_parts([(big, a.preprocessing(big), EVEN), (small, a.preprocessing(small), EVEN)])
    assert gen.new_tokens == [1, 1, 2, 2]  # the wider image's rows cut at one token, no end token


def test_an_image_split_between_two_batches_is_prefilled_once(checkpoint, upstream_repo, upstream) -> None:
    """The engine may split an image's sentences between two predict_many calls: the second call continues
    from the first call's prefix caches of that image (both passes) instead of prefilling it again, and
    gives the same texts and masks as one call per image."""
    a = _adapter(checkpoint, upstream_repo)
    first, second = _image(seed=60), _other_image()
    qs = _queries(UNEVEN, H, W, "f")
    a.predict_many([(first, qs[:2])])
    d = _delta(a, lambda: a.predict_many([(first, qs[2:]), (second, _queries(EVEN, 60, 90, "g"))]))
    # prefix prefill of the second image only (1 row), prompt prefill, one decoding step, mask prefix (1 row), mask pass
    assert d["forward_passes"] == 5 and d["llm_sequences"] == 1 + 3 + 3 + 1 + 3
    got = a.predict_many([(first, qs[:2])]) + a.predict_many([(first, qs[2:]), (second, _queries(EVEN, 60, 90, "g"))])
    alone = [a.predict(first, qs[:2]), a.predict(first, qs[2:]), a.predict(second, _queries(EVEN, 60, 90, "g"))]
    assert [[(p.text, p.mask) for p in x] for x in got] == [[(p.text, p.mask) for p in x] for x in alone]


def test_images_prepared_ahead_give_the_same_predictions(checkpoint, upstream_repo, upstream, monkeypatch) -> None:
    """``prepare_image`` (the engine's decode-ahead thread) does the resizes and the key once, on the array
    predict then gets: the same predictions as without it, preprocessing not done again, nothing kept for long."""
    a = _adapter(checkpoint, upstream_repo)
    big, small, third = _other_image(), _image(seed=52), _image(seed=53)
    items = [(big, _queries(UNEVEN, 60, 90, "b")), (small, _queries(EVEN, H, W, "s"))]
    plain = a.predict_many(items)
    calls = []
    real = a.preprocessing
    monkeypatch.setattr(a, "preprocessing", type("Counted", (), {
        "name": real.name, "__call__": lambda self, image: (calls.append(id(image)), real(image))[1]})())
    for image in (big, small, third):
        a.prepare_image(image)
    assert len(calls) == 3
    ahead = a.predict_many(items)
    assert len(calls) == 3  # nothing preprocessed again
    assert [[(p.text, p.mask, p.box) for p in ps] for ps in ahead] == [[(p.text, p.mask, p.box) for p in ps] for ps in plain]
    assert len(a._ready) == 2  # the call's last image (it may go on in the next batch) and the one prepared ahead
    a.predict(third, _queries(EVEN, H, W, "t"))
    assert len(calls) == 3 and len(a._ready) == 1
