"""Conformance with Seg-Zero's own scripts (HARNESS_SEGZERO_REPO): prompts, question normalisation,
resize, generation length and answer parsing are read from (or run from) the checkout's
``inference_scripts/`` and ``evaluation_scripts/``, and each model name's defaults pair the
checkpoint with the prompt that the upstream script running that checkpoint uses."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import upstream_scripts as up
from harness.answer import AnswerParseError
from PIL import Image

from harness_segzero import parsing, prompts
from harness_segzero.adapter import SegZeroAdapter, SegZeroReasonSegAdapter, SegZeroSingleAdapter, VisionReasonerAdapter

SINGLE_SCRIPTS = ("inference_scripts/infer.py", "evaluation_scripts/evaluation.py")
MULTI_SCRIPTS = ("inference_scripts/infer_multi_object.py", "evaluation_scripts/evaluation_visionreasoner.py")
TEXTS = ("The man on the LEFT.", 'Zebra on the right!"', "...a man?!.", "  spaced  ", "Guy?", "")


@pytest.mark.parametrize("script", [*SINGLE_SCRIPTS, "evaluation_scripts/evaluation_visionreasoner.py"])
def test_user_text_is_what_the_script_formats(segzero_repo: Path, script: str) -> None:
    """The whole user text, question normalisation included, from the script's own format expression."""
    style = "single" if script in SINGLE_SCRIPTS else "multi"
    module = up.tree(segzero_repo, script)
    for text in TEXTS:
        assert prompts.user_text(text, style) == up.user_text(module, text), (script, text)


def test_multi_object_demo_strips_less_than_the_evaluation(segzero_repo: Path) -> None:
    """``infer_multi_object.py`` (the demo) has the evaluation's template but strips only "." from the
    question; the adapter follows ``evaluation_visionreasoner.py`` (what the published numbers ran)."""
    demo = up.tree(segzero_repo, "inference_scripts/infer_multi_object.py")
    assert up.assigned(demo, "QUESTION_TEMPLATE") == prompts.MULTI_TEMPLATE
    assert prompts.user_text("A man.", "multi") == up.user_text(demo, "A man.")
    assert prompts.user_text('A man?"', "multi") != up.user_text(demo, 'A man?"')


@pytest.mark.parametrize("script", SINGLE_SCRIPTS + MULTI_SCRIPTS)
def test_resize_and_generation_are_the_scripts(segzero_repo: Path, script: str) -> None:
    module = up.tree(segzero_repo, script)
    assert up.assigned(module, "resize_size") == prompts.RESIZE
    [call] = {c for c in up.resize_calls(module) if "resize_size" in c}
    assert call.endswith(".resize((resize_size, resize_size), PILImage.BILINEAR)"), call
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, size=(50, 100, 3), dtype=np.uint8))
    expected = image.resize((up.assigned(module, "resize_size"),) * 2, getattr(Image, call.rsplit(".", 1)[1].rstrip(")")))
    assert np.array_equal(np.asarray(prompts.resize_for_model(image)), np.asarray(expected))
    generate = up.call_keywords(module, "generate")
    assert generate["use_cache"] is True and generate["do_sample"] is False
    if script in SINGLE_SCRIPTS:  # Seg-Zero's checkpoints; VisionReasoner's length is its own repository's (2048)
        assert generate["max_new_tokens"] == SegZeroAdapter().options["max_new_tokens"]


SINGLE_ANSWERS = (
    "<think>t</think><answer>{'bbox': [10,100,200,210], 'points_1': [30,110], 'points_2': [35,180]}</answer>",
    '<think>t</think><answer>{"bbox": [10,100,200,210], "points_1": [30,110], "points_2": [35,180]}</answer>',
    '<think>t</think><answer>{"bbox": "1234", "points_1": "12", "points_2": "345"}</answer>',
    '<think>t</think><answer>{"bbox": ["10", "20", "30", "40"], "points_1": [10.9, 2], "points_2": [3, 4]}</answer>',
    '<think>t</think> text {"bbox_x": [1, 2, 3, 4], "points_a": [1, 2], "points_b": [3, 4], "points_c": [5, 6]}',
    '<think>t</think><answer>{"bbox": [1, 2, 3], "points_1": [1, 2], "points_2": [3, 4]}</answer>',
    '<think>t</think><answer>{"bbox": "12a4", "points_1": [1, 2], "points_2": [3, 4]}</answer>',
    "<think>t</think><answer>no json</answer>",
)
MULTI_ANSWERS = (
    '<think>t</think><answer>[{"bbox_2d": [10,100,200,210], "point_2d": [30,110]}]</answer>',
    '<think>t</think><answer>\n[{"bbox_2d": [1.5,2,3,4], "point_2d": [5,6]}, {"bbox_2d": [7,8,9,10], "point_2d": [1,1]}]\n</answer>',
    "<think>t</think><answer>[]</answer>",
    '<think>t</think><answer>[{"bbox_2d": [1,2,3], "point_2d": [5,6]}]</answer>',
    '<think>t</think><answer>[{"bbox_2d": [1,2,3,4]}]</answer>',
    "<think>t</think><answer>[{bad json}]</answer>",
    "<think>t</think> no answer tags",
)


def _upstream_parse(fn, text: str, xf: float, yf: float):
    try:
        boxes, points, _ = fn(text, xf, yf)
    except Exception:  # upstream's failure: the sample becomes a reasoning error
        return None
    return boxes, points


@pytest.mark.parametrize("style", ["single", "multi"])
def test_parsers_agree_with_upstream_extract_bbox_points_think(segzero_repo: Path, style: str) -> None:
    """The adapter's parser against the script's own ``extract_bbox_points_think`` (run from the checkout)."""
    script = "evaluation_scripts/evaluation.py" if style == "single" else "evaluation_scripts/evaluation_visionreasoner.py"
    fn = up.function(up.tree(segzero_repo, script), "extract_bbox_points_think", re=re, json=json)
    ours = parsing.parse_single if style == "single" else parsing.parse_multi
    for text in SINGLE_ANSWERS if style == "single" else MULTI_ANSWERS:
        for xf, yf in ((1.0, 1.0), (640 / 840, 480 / 840), (1.37, 0.51)):
            expected = _upstream_parse(fn, text, xf, yf)
            try:
                parsed = ours(text, xf, yf)
            except AnswerParseError:
                assert expected is None, (text, xf, yf)
                continue
            assert expected is not None, (text, xf, yf)
            got_boxes = [list(p.box) for p in parsed.prompts]
            got_points = [[list(pt) for pt in p.points] for p in parsed.prompts]
            if style == "single":
                assert (got_boxes[0], got_points[0]) == (expected[0], expected[1]), text
            else:
                assert got_boxes == expected[0] and [pts[0] for pts in got_points] == expected[1], text


def test_each_default_is_a_pairing_upstream_runs(segzero_repo: Path) -> None:
    """Checkpoint + prompt + SAM of each model name = what the upstream script running that checkpoint uses."""
    infer, evaluation = up.tree(segzero_repo, "inference_scripts/infer.py"), up.tree(segzero_repo, "evaluation_scripts/evaluation.py")
    single = up.assigned(evaluation, "QUESTION_TEMPLATE")
    multi = up.assigned(up.tree(segzero_repo, "evaluation_scripts/evaluation_visionreasoner.py"), "QUESTION_TEMPLATE")
    assert single != multi

    def template_of(adapter) -> str:
        return prompts.SINGLE_TEMPLATE if adapter.options["prompt"] == "single" else prompts.MULTI_TEMPLATE

    # segzero: infer.py and evaluation.py run Seg-Zero-7B (their default) with the single-object prompt
    for module in (infer, evaluation):
        assert SegZeroAdapter().options["model_path"] == up.argparse_default(module, "--reasoning_model_path")
        assert SegZeroAdapter().options["sam_model"] == up.argparse_default(module, "--segmentation_model_path")
        assert template_of(SegZeroAdapter()) == up.assigned(module, "QUESTION_TEMPLATE") == single
    assert SegZeroSingleAdapter().options == SegZeroAdapter().options  # the older name, the same pairing
    # segzero-reasonseg: eval_reasonseg.sh runs evaluation.py with Seg-Zero-7B-Best-on-ReasonSegTest
    sh = "evaluation_scripts/eval_reasonseg.sh"
    assert up.shell_python_scripts(segzero_repo, sh) == ["evaluation_scripts/evaluation.py", "evaluation_scripts/calculate_iou.py"]
    reasonseg = SegZeroReasonSegAdapter()
    assert reasonseg.options["model_path"] == up.shell_variable(segzero_repo, sh, "REASONING_MODEL_PATH")
    assert reasonseg.options["sam_model"] == up.shell_variable(segzero_repo, sh, "SEGMENTATION_MODEL_PATH")
    assert template_of(reasonseg) == single
    # visionreasoner: eval_reasonseg_visionreasoner.sh runs evaluation_visionreasoner.py (multi-object prompt)
    # with pretrained_models/VisionReasoner-7B, i.e. the hub's Ricky06662/VisionReasoner-7B downloaded there
    sh = "evaluation_scripts/eval_reasonseg_visionreasoner.sh"
    assert up.shell_python_scripts(segzero_repo, sh)[0] == "evaluation_scripts/evaluation_visionreasoner.py"
    vr = VisionReasonerAdapter()
    assert vr.options["model_path"].split("/")[-1] == up.shell_variable(segzero_repo, sh, "REASONING_MODEL_PATH").split("/")[-1]
    assert vr.options["sam_model"] == up.shell_variable(segzero_repo, sh, "SEGMENTATION_MODEL_PATH")
    assert template_of(vr) == multi
    assert up.assigned(up.tree(segzero_repo, "inference_scripts/infer_multi_object.py"), "QUESTION_TEMPLATE") == multi
