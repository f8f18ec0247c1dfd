"""The generation half end to end on a tiny random stock Qwen2.5-VL (no LENS checkout needed):
image and expression -> prompt -> left-padded batch -> greedy generation -> new tokens -> parse."""

from __future__ import annotations

import numpy as np
import pytest
import tiny
import torch
from harness.types import ParseStatus

from harness_lens import generation, prompts
from harness_lens.parse import find_box, parse_answer, rescale_box
from harness_lens.preprocess import PREPROCESSING

pytestmark = pytest.mark.slow

EXPRESSIONS = ["man", "the man on the left in a red coat", "dog"]


def _image(h: int = 48, w: int = 64) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _load(directory):
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    from harness_lens.model import load_processor

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(directory, torch_dtype=torch.float32, attn_implementation="sdpa")
    processor = load_processor(str(directory))
    assert AutoProcessor.from_pretrained(directory).tokenizer.padding_side == "right"  # what the checkpoint says
    return model.eval(), processor


def _run(model, processor, image, template, prep="refcoco", **budget):
    pre = PREPROCESSING[prep](image)
    texts = [prompts.render(processor, template, e) for e in EXPRESSIONS]
    inputs = generation.processor_inputs(processor, texts, pre.llm_image, "cpu", torch.float32)
    with torch.inference_mode():
        gen = generation.generate(model, processor, inputs, **budget)
    return pre, texts, inputs, gen


@pytest.fixture(scope="module")
def scripted_box(tmp_path_factory):
    d = tmp_path_factory.mktemp("qwen_box")
    tiny.build_stock_qwen(d, script=[tiny.BOX_ANSWER])
    return _load(d)


def test_box_answer_end_to_end(scripted_box) -> None:
    model, processor = scripted_box
    image = _image()
    pre, _texts, inputs, gen = _run(model, processor, image, "pr1_grounding")
    # left padding: the shorter prompts start with padding, every prompt ends at the same column
    att = inputs["attention_mask"]
    assert att[:, -1].all() and not att[0, 0] and att[1, 0]
    assert gen.texts == [tiny.BOX_ANSWER] * 3  # the new tokens only, no prompt text
    assert gen.new_tokens == [2, 2, 2]  # the answer token and the end token
    hw = (int(inputs["image_grid_thw"][0, 1]) * 14, int(inputs["image_grid_thw"][0, 2]) * 14)
    assert hw == (56, 56) == pre.llm_image.size[::-1]  # the processor does not resize smart_resize's output again
    parsed = parse_answer(gen.texts[0], hw, pre.original_hw)
    assert parsed.status is ParseStatus.OK
    assert parsed.box == pytest.approx((10 * 64 / 56, 20 * 48 / 56, 30 * 64 / 56, 40 * 48 / 56))


def test_whole_sequence_decoding_contains_the_prompt(scripted_box) -> None:
    # upstream decodes prompt + answer; we decode the answer only (the same box here)
    model, processor = scripted_box
    _, _, _, gen = _run(model, processor, _image(), "pr1_grounding")
    whole = processor.batch_decode(gen.sequences, skip_special_tokens=True)
    assert whole[1].startswith(
        "system\nYou are a helpful assistant. \nuser\n"
        "Output the bounding box of the the man on the left in a red coat in the image.\nassistant\n"
    )
    assert whole[1].endswith(tiny.BOX_ANSWER)
    assert find_box(whole[1]) == find_box(gen.texts[1])


def test_max_length_includes_the_prompt(scripted_box) -> None:
    model, processor = scripted_box
    pre = PREPROCESSING["refcoco"](_image())
    texts = [prompts.render(processor, "pr1_grounding", EXPRESSIONS[0])]
    inputs = generation.processor_inputs(processor, texts, pre.llm_image, "cpu", torch.float32)
    n = int(inputs["input_ids"].shape[1])
    with torch.inference_mode():
        gen = generation.generate(model, processor, inputs, max_length=n + 1)
        assert gen.new_tokens == [1] and gen.texts == [tiny.BOX_ANSWER]  # cut before the end token
        with pytest.raises(ValueError, match="max_length"):  # upstream's failure when the prompt reaches 768
            generation.generate(model, processor, inputs, max_length=n)


@pytest.fixture(scope="module")
def scripted_cot(tmp_path_factory):
    d = tmp_path_factory.mktemp("qwen_cot")
    tiny.build_stock_qwen(d, script=[tiny.COT_THINK, tiny.COT_ANSWER])
    return _load(d)


def test_cot_answer_reasonseg_protocol(scripted_cot) -> None:
    model, processor = scripted_cot
    image = _image(60, 90)
    pre, texts, inputs, gen = _run(model, processor, image, "samr1_v4", prep="reasonseg")
    assert 'Locate "the man on the left in a red coat", report the bbox coordinates' in texts[1]
    assert pre.llm_image.size == (640, 426)  # resize_longest(640): int(60 * 640 / 90) = 426
    grid = inputs["image_grid_thw"][0].tolist()
    hw = (grid[1] * 14, grid[2] * 14)
    assert hw == (420, 644)  # the processor resizes the 640x426 image once more
    assert gen.texts == [tiny.COT_THINK + tiny.COT_ANSWER] * 3
    parsed = parse_answer(gen.texts[2], hw, pre.original_hw)
    assert parsed.status is ParseStatus.OK
    assert parsed.reasoning == "The woman on the right holds the umbrella."
    assert parsed.answer == '{"bbox_2d": [12, 8, 44, 50]}'
    assert parsed.box == pytest.approx(rescale_box((12, 8, 44, 50), hw, (60, 90)))


def test_qwen_box_tokens_are_skipped_and_the_pair_form_parses(tmp_path) -> None:
    tiny.build_stock_qwen(tmp_path, script=["<|box_start|>", "(7,9),(41,47)", "<|box_end|>"])
    model, processor = _load(tmp_path)
    _, _, _, gen = _run(model, processor, _image(), "pr1_grounding")
    assert gen.texts == ["(7,9),(41,47)"] * 3  # <|box_start|>/<|box_end|> are special tokens
    assert gen.new_tokens == [4] * 3
    assert find_box(gen.texts[0]) == (7.0, 9.0, 41.0, 47.0)


def test_batched_left_padded_generation_equals_one_at_a_time(tmp_path) -> None:
    tiny.build_stock_qwen(tmp_path, script=None, seed=3)  # random answers
    model, processor = _load(tmp_path)
    image = _image()
    _, _, _, batched = _run(model, processor, image, "pr1_grounding", max_new_tokens=6)
    pre = PREPROCESSING["refcoco"](image)
    for i, expr in enumerate(EXPRESSIONS):
        one_in = generation.processor_inputs(processor, [prompts.render(processor, "pr1_grounding", expr)], pre.llm_image, "cpu",
                                             torch.float32)
        with torch.inference_mode():
            one = generation.generate(model, processor, one_in, max_new_tokens=6)
        assert one.texts[0] == batched.texts[i]
        assert one.new_tokens[0] == batched.new_tokens[i]
    # a random model's text rarely holds a box: the parse then fails and says so
    for text in batched.texts:
        parsed = parse_answer(text, (56, 56), (48, 64))
        assert parsed.status is (ParseStatus.OK if find_box(text) else ParseStatus.FAILED)


def test_the_image_processor_runs_once_per_image_with_the_same_inputs(scripted_box, monkeypatch) -> None:
    """``once_per_image`` (with ``share_vision``) gives the processor's inputs to the bit, on one image's
    sentences and on batches spanning images (an image's rows need not be adjacent)."""
    _, processor = scripted_box
    real = processor.image_processor
    processed: list[int] = []
    preprocess = type(real).preprocess

    def counting(self, images, *args, **kwargs):
        processed.append(len(images))
        return preprocess(self, images, *args, **kwargs)

    monkeypatch.setattr(type(real), "preprocess", counting)
    a = PREPROCESSING["refcoco"](_image()).llm_image
    b = PREPROCESSING["refcoco"](np.ascontiguousarray(_image()[::-1])).llm_image
    texts = [prompts.render(processor, "pr1_grounding", e) for e in EXPRESSIONS]
    for images, distinct in ((a, 1), ([a, b, a], 2), ([b, b, a], 2)):
        processed.clear()
        plain = generation.processor_inputs(processor, list(texts), images, "cpu", torch.float32)  # it rewrites the list it is given
        assert processed == [3]  # upstream's way: every copy processed
        processed.clear()
        once = generation.processor_inputs(processor, list(texts), images, "cpu", torch.float32, once_per_image=True)
        assert processed == [distinct]
        assert plain.keys() == once.keys()
        for key in plain:
            assert torch.equal(plain[key], once[key]), key
        assert processor.image_processor is real
