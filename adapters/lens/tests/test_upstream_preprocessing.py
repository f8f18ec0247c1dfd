"""LENS's two preprocessing protocols and its prompts against the checkout's own dataset classes.

``refcoco``: ``eval/evaluate_res2.py ReferSegEvaluationSet.__getitem__`` (what ``eval.sh``'s RefCOCO and
GroundingSuite runs feed the model); ``reasonseg``: ``eval/evaluate_reasonseg.py ReasonSegVal.__getitem__``
(the ReasonSeg runs, with and without ``--cot``). Each reads files written here (``upstream_eval``), and
the adapter's LLM image, SAM input and rendered prompt must equal upstream's. Conformance tests: they
need $HARNESS_LENS_REPO.
"""

from __future__ import annotations

import numpy as np
import pytest
import tiny
import upstream_eval

from harness_lens import manifest, prompts
from harness_lens.preprocess import PREPROCESSING

SIZES = [(48, 64), (37, 53), (400, 581), (700, 300)]


def _image(h: int, w: int) -> np.ndarray:
    return np.random.default_rng(h * 1000 + w).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def processor():
    return tiny.build_processor()


def _rendered(processor, message) -> str:
    return processor.apply_chat_template(message, tokenize=False, add_generation_prompt=True)


@pytest.mark.parametrize("hw", SIZES)
def test_refcoco_preprocessing_and_prompt_are_evaluate_res2s(upstream_repo, tmp_path, processor, hw) -> None:
    module = upstream_eval.evaluate_res2(upstream_repo)
    image = _image(*hw)
    sentences = ["the man on the LEFT", "a dog."]
    [item] = upstream_eval.refcoco_items(module, upstream_eval.write_refcoco(tmp_path, image, [sentences]))
    pre = PREPROCESSING[manifest.VARIANTS["refcoco"].preprocessing](image)
    assert np.array_equal(np.asarray(pre.llm_image), np.asarray(item["image"]))
    np.testing.assert_array_equal(pre.sam_image, item["sam_image"].numpy())
    template = manifest.VARIANTS["refcoco"].template
    assert [prompts.render(processor, template, s) for s in sentences] == [_rendered(processor, m) for m in item["messages"]]


@pytest.mark.parametrize("variant", ["reasonseg-cot", "reasonseg-ft"])
@pytest.mark.parametrize("hw", SIZES)
def test_reasonseg_preprocessing_and_prompt_are_evaluate_reasonsegs(upstream_repo, tmp_path, processor, variant,
                                                                    hw) -> None:
    module = upstream_eval.evaluate_reasonseg(upstream_repo)
    cot = variant == "reasonseg-cot"  # eval.sh: --cot reads ReasonSeg val, without it ReasonSeg test
    image = _image(*hw)
    text = "What can hold Water? "
    root = upstream_eval.write_reasonseg(tmp_path, "val" if cot else "test", image, text)
    [item] = [module.ReasonSegVal(str(root), if_cot=cot)[0]]
    pre = PREPROCESSING[manifest.VARIANTS[variant].preprocessing](image)
    assert np.array_equal(np.asarray(pre.llm_image), np.asarray(item["image"]))
    np.testing.assert_array_equal(pre.sam_image, item["sam_image"].numpy())
    assert prompts.render(processor, manifest.VARIANTS[variant].template, text) == _rendered(processor, item["messages"][0])
