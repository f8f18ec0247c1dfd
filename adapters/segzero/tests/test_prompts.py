"""Prompts, question normalisation and the 840x840 squash, against hand-written expectations."""

from __future__ import annotations

import numpy as np
from PIL import Image

from harness_segzero import prompts

# Written out by hand from Seg-Zero 42a3345 evaluation_scripts/evaluation_visionreasoner.py lines 112-135.
EXPECTED_MULTI = (
    'Please find "the man on the left" with bboxs and points.Compare the difference between object(s) and find the most '
    "closely matched object(s).Output the thinking process in <think> </think> and final answer in <answer> </answer> tags."
    "Output the bbox(es) and point(s) inside the interested object(s) in JSON format.i.e., <think> thinking process here "
    '</think><answer>[{"bbox_2d": [10,100,200,210], "point_2d": [30,110]}, {"bbox_2d": [225,296,706,786], '
    '"point_2d": [302,410]}]</answer>'
)
# Seg-Zero 77f9ea5 evaluation_scripts/evaluation.py lines 90-111.
EXPECTED_SINGLE = (
    "Please find 'the man on the left?' with bbox and points.Compare the difference between objects and find the most "
    "closely matched one.Output the thinking process in <think> </think> and final answer in <answer> </answer> tags."
    "Output the one bbox and points of two largest inscribed circles inside the interested object in JSON format.i.e., "
    "<think> thinking process here </think><answer>{'bbox': [10,100,200,210], 'points_1': [30,110], 'points_2': [35,180]}</answer>"
)

# What the checkpoint's chat template makes of it (system turn added, one image placeholder).
EXPECTED_CHAT = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>"
    + EXPECTED_MULTI + "<|im_end|>\n<|im_start|>assistant\n"
)


def test_multi_prompt_is_upstream_text() -> None:
    assert prompts.user_text('The man on the LEFT."', "multi") == EXPECTED_MULTI


def test_single_prompt_is_upstream_text() -> None:
    # 77f9ea5 strips only "." (not ?!"), and quotes with single quotes
    assert prompts.user_text("The man on the left?.", "single") == EXPECTED_SINGLE


def test_question_normalisation() -> None:
    assert prompts.question('"Zebra on the right!"', "multi") == "zebra on the right"
    assert prompts.question("...a man?!.", "multi") == "a man"
    assert prompts.question("  spaced  ", "multi") == "  spaced  "  # upstream strips no whitespace
    assert prompts.question("Guy?", "single") == "guy?"
    assert prompts.question("", "multi") == ""


def test_chat_template_output(tiny_processor) -> None:
    resized = prompts.resize_for_model(Image.new("RGB", (100, 50)))
    conv = prompts.messages(resized, "The man on the left", "multi")
    text = tiny_processor.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
    assert text == EXPECTED_CHAT


def test_resize_squashes_to_840_bilinear() -> None:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, size=(50, 100, 3), dtype=np.uint8)
    out = prompts.resize_for_model(Image.fromarray(arr))
    assert out.size == (840, 840)
    expected = Image.fromarray(arr).resize((840, 840), Image.Resampling.BILINEAR)
    assert np.array_equal(np.asarray(out), np.asarray(expected))
    nearest = Image.fromarray(arr).resize((840, 840), Image.Resampling.NEAREST)
    assert not np.array_equal(np.asarray(out), np.asarray(nearest))
