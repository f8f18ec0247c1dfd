"""Against upstream's own code on a tiny random Sa2VA-Qwen2.5-VL (needs $HARNESS_SA2VA_REPO; skipped without it).

Upstream's side: the questions from ``RESDataset.get_questions`` (``projects/sa2va/evaluation/dataset/RES.py``,
loaded from its file: the package's ``__init__`` imports mmengine for the video datasets); the model
loaded as ``sa2va_eval_refcoco.py`` loads it and its own ``predict_forward``; the script's v2 answer
rule, which sits inline in its ``main()``, is repeated here as written (masks kept only when drawn and
``[SEG]`` is in the cleaned text, OR-ed).
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from conftest import make_image
from harness import masks
from harness.modelkit.testing import test_device
from harness.types import ParseStatus, PredictionStatus, Query
from PIL import Image
from tiny import cuda_calls_on_cpu, float32_on_cpu, remote_modules, small_sam2

from harness_sa2va.adapter import Sa2VAAdapter
from harness_sa2va.prompts import question

pytestmark = pytest.mark.slow

SENTENCES = ["The red car.", "a man on the left", "an umbrella", "the dog", "A zebra", "girl in white shirt"]


def res_module(repo: Path) -> ModuleType:
    if str(repo) not in sys.path:
        sys.path.insert(0, str(repo))
    path = repo / "projects/sa2va/evaluation/dataset/RES.py"
    spec = importlib.util.spec_from_file_location("sa2va_upstream_RES", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_questions_equal_upstream(upstream_repo: Path) -> None:
    res = res_module(upstream_repo)
    for reasoning, prompt in ((False, "default"), (True, "reasoning")):
        dataset = SimpleNamespace(reasoning=reasoning)
        expected = res.RESDataset.get_questions(dataset, {"sampled_sents": SENTENCES})
        assert [question(s, prompt) for s in SENTENCES] == expected


def load_as_upstream(checkpoint: Path) -> tuple[Any, Any, Any]:
    """sa2va_eval_refcoco.py's loading, on the CPU: float32 instead of bf16 (``tiny.float32_on_cpu``),
    no ``.cuda()``, flash attention off."""
    from transformers import AutoModel, AutoProcessor, AutoTokenizer

    model = AutoModel.from_pretrained(str(checkpoint), torch_dtype=torch.float32, low_cpu_mem_usage=True,
                                      use_flash_attn=False, trust_remote_code=True).eval()
    float32_on_cpu(model)
    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint), trust_remote_code=True)
    processor = AutoProcessor.from_pretrained(str(checkpoint), trust_remote_code=True) if "qwen" in str(
        checkpoint).lower() else None
    return model, tokenizer, processor


def v2_mask(pred: dict[str, Any]) -> np.ndarray | None:
    """The script's rule: None without masks or without [SEG] in the cleaned text, else the OR of the masks."""
    pred_mask, pred_text = pred["prediction_masks"], pred["prediction"]
    if len(pred_mask) == 0:
        return None
    cleaned = pred_text.replace("<|im_end|>", "").replace("<|end|>", "").strip()
    if "[SEG]" not in cleaned:
        return None
    final = pred_mask[0]
    for m in pred_mask[1:]:
        final = final | m
    return final[0]


@pytest.fixture(scope="module")
def small_sam2_patched(tiny_checkpoint: Path, tiny_checkpoint_qwen3: Path, tiny_checkpoint_silent: Path) -> Any:
    """Both checkpoints' remote SAM2 classes build the tiny image encoder while models load (the weights
    saved are the tiny one's; SAM2-L's trunk would not match them), and run on the CPU."""
    with contextlib.ExitStack() as stack:
        for ckpt in (tiny_checkpoint, tiny_checkpoint_qwen3, tiny_checkpoint_silent):
            _, sam2_module = remote_modules(ckpt)
            stack.enter_context(small_sam2(sam2_module))
            stack.enter_context(cuda_calls_on_cpu(sam2_module))
        yield


def cpu_adapter(checkpoint: Path, **options: Any) -> Sa2VAAdapter:
    adapter = Sa2VAAdapter(checkpoint=str(checkpoint), dtype="float32", **options)
    adapter.load(test_device())
    float32_on_cpu(adapter._loaded.model)
    return adapter


@pytest.mark.parametrize("variant", ["qwen2_5_vl", "qwen3vl"])
def test_masks_equal_upstream_end_to_end(variant: str, request: pytest.FixtureRequest, small_sam2_patched: Any) -> None:
    checkpoint = request.getfixturevalue("tiny_checkpoint" if variant == "qwen2_5_vl" else "tiny_checkpoint_qwen3")
    model, tokenizer, processor = load_as_upstream(checkpoint)
    assert type(model.model).__name__ == ("Qwen2_5_VLForConditionalGeneration" if variant == "qwen2_5_vl"
                                          else "Qwen3VLForConditionalGeneration")
    adapter = cpu_adapter(checkpoint)
    distinct = set()
    for k, (height, width, sentences) in enumerate([(48, 64, SENTENCES[:2]), (90, 70, SENTENCES[2:3])]):
        image = make_image(height, width, seed=k + 3)
        queries = [Query(id=f"t/{k}/{i}", image="x.png", expression=s, dataset="t", split="val")
                   for i, s in enumerate(sentences)]
        preds = adapter.predict(image, queries)
        for query, pred in zip(queries, preds):
            ref = model.predict_forward(image=Image.fromarray(image).convert("RGB"), text=question(query.expression),
                                        tokenizer=tokenizer, processor=processor)
            expected = v2_mask(ref)
            assert expected is not None and pred.mask is not None
            ours = masks.decode(pred.mask)
            assert ours.shape == (height, width)
            assert np.array_equal(ours, expected), (query.expression, int((ours != expected).sum()))
            assert pred.text == ref["prediction"] == "[SEG]<|im_end|>"
            assert pred.parse_status == ParseStatus.OK and pred.answer == "[SEG]"
            assert 0 < ours.sum() < ours.size
            distinct.add(ours.tobytes())
    assert len(distinct) >= 2  # the masks depend on the image


def test_no_seg_is_an_empty_mask_or_not_drawn(tiny_checkpoint_silent: Path, small_sam2_patched: Any) -> None:
    model, tokenizer, processor = load_as_upstream(tiny_checkpoint_silent)
    image = make_image(40, 56)
    ref = model.predict_forward(image=Image.fromarray(image), text=question("the dog"), tokenizer=tokenizer,
                                processor=processor)
    assert v2_mask(ref) is None  # the script stores None: scored as an all-zero mask (v2), skipped (v1)
    query = Query(id="t/0", image="x.png", expression="the dog", dataset="t", split="val")
    v2 = cpu_adapter(tiny_checkpoint_silent)
    (pred,) = v2.predict(image, [query])
    assert pred.text == ref["prediction"] and pred.parse_status == ParseStatus.FAILED
    assert pred.status == PredictionStatus.PREDICTED and pred.mask is not None
    assert masks.decode(pred.mask).shape == (40, 56) and not masks.decode(pred.mask).any()
    v1 = cpu_adapter(tiny_checkpoint_silent, answer_rule="sa2va-v1-skip")
    (pred,) = v1.predict(image, [query])
    assert pred.status == PredictionStatus.NOT_DRAWN and pred.mask is None and "sa2va-v1-skip" in (pred.error or "")
    assert v1.stats()["not_drawn"] == 1
