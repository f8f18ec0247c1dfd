"""Against upstream's own code on a tiny random UniPixel (needs $HARNESS_UNIPIXEL_REPO; skipped without it).

Upstream's side is ``unipixel/eval/infer_seg.py`` itself: its ``EvalDataset`` builds the question and
every tensor from an image file (its module-level ``processor`` set as the script's ``__main__`` sets
it), and the model is built by upstream's ``build_model``. The script's main loop is not importable (it
sits under ``if __name__ == '__main__'``), so its three model lines are repeated here as written:
``model.generate(**data, do_sample=False, temperature=None, top_k=None, top_p=None,
repetition_penalty=None, max_new_tokens=512)``, then the first of ``model.seg``.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch
from conftest import make_image, save_png
from harness import masks
from harness.modelkit.testing import test_device
from harness.types import ParseStatus, Query
from PIL import Image
from test_prompts import CASES
from tiny import SAM2_IMAGE_SIZE, SAM2_OVERRIDES

from harness_unipixel import preprocess
from harness_unipixel.adapter import UniPixelAdapter
from harness_unipixel.model import import_upstream, load_processor, model_inputs, sam2_overrides
from harness_unipixel.prompts import question

pytestmark = pytest.mark.slow

# every suite's sentence shapes: RefCOCO phrases with and without articles, capitals and dots,
# ReasonSeg's long sentences (upstream's "sentence" type) and short ones (its "query" type)
PHRASES = [e for e, expected in CASES if expected] + ["girl in a white shirt holding an umbrella", "Zebra"]
SENTENCES = ["What part of the car would you use to see behind you while driving?",
             "the thing that can hold water in this picture."]
SIZES = [(48, 64), (480, 640), (333, 500), (900, 120)]


def upstream_item(upstream_repo: Path, infer_seg: ModuleType, processor: Any, path: Path, text: str,
                  kind: str = "query", size: int = SAM2_IMAGE_SIZE) -> dict[str, Any]:
    """``EvalDataset(...)[0]`` for one image file and one sample of ``kind`` (``query`` or ``sentence``)."""
    transforms = import_upstream(upstream_repo, "unipixel.utils.transforms")
    infer_seg.processor = processor  # the global infer_seg.py's __main__ sets
    anno = {"frames": [str(path)], "vid": path.stem, "data_type": "seg_image",
            "samples": [{"qid": 0, "type": kind, "query": text}]}
    dataset = infer_seg.EvalDataset([anno], transforms.get_sam2_transform(size), 16)
    return dataset[0]


def decoded(path: Path) -> np.ndarray:
    """The harness's decode of the file (RGB uint8), what an adapter is given."""
    return np.asarray(Image.open(path).convert("RGB"))


def test_questions_equal_upstream(upstream_repo: Path, infer_seg: ModuleType, tiny_checkpoint: Path,
                                  tmp_path: Path) -> None:
    processor = load_processor(str(tiny_checkpoint), str(upstream_repo))
    path = save_png(make_image(48, 64), tmp_path, "img")
    for text in PHRASES:
        assert question(text) == upstream_item(upstream_repo, infer_seg, processor, path, text)["question"], text
    for text in SENTENCES:
        got = upstream_item(upstream_repo, infer_seg, processor, path, text, kind="sentence")["question"]
        assert question(text, is_sentence=True) == got, text


@pytest.mark.parametrize(("height", "width"), SIZES)
def test_preprocessing_equals_upstream_bit_for_bit(upstream_repo: Path, infer_seg: ModuleType, tiny_checkpoint: Path,
                                                   tmp_path: Path, height: int, width: int) -> None:
    processor = load_processor(str(tiny_checkpoint), str(upstream_repo))
    path = save_png(make_image(height, width, seed=height), tmp_path, "img")
    text = "The man on the left."
    ref = upstream_item(upstream_repo, infer_seg, processor, path, text)
    pre = preprocess.preprocess(decoded(path), SAM2_IMAGE_SIZE)
    ours = model_inputs(processor, question(text), pre)
    assert set(ours.keys()) == {k for k in ref if k not in ("frames", "frame_size", "question", "raw_frames", "anno")}
    for key in ours:
        assert ours[key].dtype == ref[key].dtype, key
        assert torch.equal(ours[key], ref[key]), key
    assert ours["video_grid_thw"][0, 0].item() == 1  # one temporal patch: the frame twice
    assert pre.sam_frames.dtype == ref["frames"][0].dtype == torch.float32
    assert torch.equal(pre.sam_frames, ref["frames"][0])
    assert tuple(ref["frame_size"][0]) == pre.frame_size == (height, width)
    h, w = pre.llm_frames[0].height, pre.llm_frames[0].width
    assert h % 28 == 0 and w % 28 == 0 and preprocess.MIN_PIXELS <= h * w <= preprocess.max_pixels()


def upstream_run(model: Any, processor: Any, item: dict[str, Any]) -> tuple[str, torch.Tensor | None]:
    """infer_seg.py's main loop for one item: generate, decode, first mask (None where upstream would fail)."""
    data = dict(item)
    for key in ("anno", "question", "raw_frames"):
        data.pop(key)
    data["frames"] = [data["frames"][0].to(next(model.sam2.parameters()).dtype)]
    output_ids = model.generate(**data, do_sample=False, temperature=None, top_k=None, top_p=None,
                                repetition_penalty=None, max_new_tokens=512)
    output_ids = output_ids[0, data["input_ids"].size(1):]
    if output_ids[-1] == processor.tokenizer.eos_token_id:
        output_ids = output_ids[:-1]
    response = processor.decode(output_ids, clean_up_tokenization_spaces=False)
    return response, (model.seg[0][0][0].bool() if len(model.seg) >= 1 else None)


@pytest.fixture(scope="module")
def upstream_model(upstream_repo: Path, qwen2_5_vl: ModuleType, tiny_checkpoint: Path) -> tuple[Any, Any]:
    builder = import_upstream(upstream_repo, "unipixel.model.builder")
    with sam2_overrides(qwen2_5_vl, SAM2_OVERRIDES):
        return builder.build_model(str(tiny_checkpoint), attn_implementation="sdpa", device="cpu", dtype="float32")


def test_masks_equal_upstream_end_to_end(upstream_repo: Path, infer_seg: ModuleType, tiny_checkpoint: Path,
                                         upstream_model: tuple[Any, Any], tmp_path: Path) -> None:
    model, processor = upstream_model
    adapter = UniPixelAdapter(checkpoint=str(tiny_checkpoint), upstream_repo=str(upstream_repo), sam2_overrides=SAM2_OVERRIDES)
    adapter.load(test_device())
    texts = [("The red car.", False), ("a man on the left", False), ("an umbrella", False), (SENTENCES[0], True)]
    distinct = set()
    for k, (height, width) in enumerate([(48, 64), (120, 90)]):
        path = save_png(make_image(height, width, seed=k + 7), tmp_path, f"img{k}")
        queries = [Query(id=f"t/{k}/{i}", image=str(path), expression=t, dataset="t", split="val",
                         meta={"is_sentence": s}) for i, (t, s) in enumerate(texts)]
        preds = adapter.predict(decoded(path), queries)
        assert len(preds) == len(texts)
        for (text, is_sentence), pred in zip(texts, preds):
            item = upstream_item(upstream_repo, infer_seg, processor, path, text, "sentence" if is_sentence else "query")
            response, mask = upstream_run(model, processor, item)
            assert mask is not None and pred.mask is not None and pred.error is None
            ours = masks.decode(pred.mask)
            assert ours.shape == (height, width)
            assert np.array_equal(ours, mask.numpy()), (text, int((ours != mask.numpy()).sum()))
            assert pred.text == response == "<|seg|>" and pred.parse_status == ParseStatus.OK
            assert 0 < ours.sum() < ours.size  # a real mask, neither empty nor full
            distinct.add(ours.tobytes())
    assert len(distinct) > 2  # the masks depend on the image and the question
    stats = adapter.stats()
    assert stats["sentences"] == 8 and stats["images_preprocessed"] == 2 and stats["failed"] == 0
    # the ViT and SAM2's image encoder ran once per image (upstream: once per sentence, and SAM2 once per mask drawn)
    assert stats["vision_encoder_images"] == 2 and stats["segmenter_images"] == 2


def test_sharing_changes_nothing(upstream_repo: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    """share_vision / share_sam2 on (default) and off give the same texts and masks, bit for bit."""
    path = save_png(make_image(72, 96, seed=11), tmp_path, "img")
    queries = [Query(id=f"t/{i}", image=str(path), expression=t, dataset="t", split="val")
               for i, t in enumerate(["The red car.", "a man on the left", "the dog"])]
    results = {}
    for share in (True, False):
        adapter = UniPixelAdapter(checkpoint=str(tiny_checkpoint), upstream_repo=str(upstream_repo),
                                  sam2_overrides=SAM2_OVERRIDES, share_vision=share, share_sam2=share)
        adapter.load(test_device())
        preds = adapter.predict(decoded(path), queries)
        results[share] = ([p.text for p in preds], [masks.decode(p.mask) for p in preds], adapter.stats())
    (texts_on, masks_on, stats_on), (texts_off, masks_off, stats_off) = results[True], results[False]
    assert texts_on == texts_off
    assert all(np.array_equal(a, b) for a, b in zip(masks_on, masks_off))
    assert stats_on["vision_encoder_images"] == 1 and stats_off["vision_encoder_images"] == 3
    assert stats_on["segmenter_images"] == 1 and stats_off["segmenter_images"] >= 3  # one per mask drawn


def test_no_mask_is_a_failure_and_upstream_variant_is_zero(upstream_repo: Path, infer_seg: ModuleType,
                                                            qwen2_5_vl: ModuleType, tiny_checkpoint_no_seg: Path,
                                                            tmp_path: Path) -> None:
    builder = import_upstream(upstream_repo, "unipixel.model.builder")
    with sam2_overrides(qwen2_5_vl, SAM2_OVERRIDES):
        model, processor = builder.build_model(str(tiny_checkpoint_no_seg), attn_implementation="sdpa", device="cpu",
                                               dtype="float32")
    path = save_png(make_image(40, 56), tmp_path, "img")
    response, mask = upstream_run(model, processor, upstream_item(upstream_repo, infer_seg, processor, path, "the dog"))
    assert mask is None and response == "no"  # infer_seg.py: assert len(model.seg) >= 1 fails -> all-zero mask
    query = Query(id="t/0", image=str(path), expression="the dog", dataset="t", split="val")
    for failure in ("record", "zero-mask"):
        adapter = UniPixelAdapter(checkpoint=str(tiny_checkpoint_no_seg), upstream_repo=str(upstream_repo),
                                  sam2_overrides=SAM2_OVERRIDES, failure=failure)
        adapter.load(test_device())
        (pred,) = adapter.predict(decoded(path), [query])
        assert pred.text == "no" and pred.parse_status == ParseStatus.FAILED
        if failure == "record":
            assert pred.mask is None and pred.error is not None and "no mask" in pred.error
        else:
            assert pred.error is None and pred.mask is not None
            assert masks.decode(pred.mask).shape == (40, 56) and not masks.decode(pred.mask).any()
        assert adapter.stats()["no_mask"] == 1


def test_inputs_without_weights(upstream_repo: Path, tiny_checkpoint: Path) -> None:
    adapter = UniPixelAdapter(checkpoint=str(tiny_checkpoint), upstream_repo=str(upstream_repo),
                              sam2_image_size=SAM2_IMAGE_SIZE)
    image = make_image(60, 80)
    got = adapter.inputs(image, Query(id="t/0", image="x", expression="The red car.", dataset="t", split="val"))
    assert got["question"] == "Please segment the red car in this image."
    assert "<|video_pad|>" in got["prompt"] and got["prompt"].endswith("<|im_start|>assistant\n")
    assert got["video_grid_thw"][0] == 1 and got["sam2_image_size"] == SAM2_IMAGE_SIZE
    again = adapter.inputs(image, Query(id="t/1", image="x", expression="red car", dataset="t", split="val"))
    assert again["input_ids_sha1"] == got["input_ids_sha1"]  # "The red car." and "red car" ask the same question
    assert again["pixel_values_videos_sha1"] == got["pixel_values_videos_sha1"]
