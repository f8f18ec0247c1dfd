"""SAM 3 on a tiny random model: image + expression -> processor -> Sam3Model -> selection -> mask.

The expected instances come from upstream's own ``sam3_image_processor.py`` post-processing
(HARNESS_SAM3_REPO): these are conformance tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from harness import masks
from harness.modelkit.testing import test_device
from harness.registry import adapter_class
from harness.types import ParseStatus, Query

from harness_sam3.adapter import Sam3Adapter, Sam3UnionAdapter

H, W = 90, 130


def sample(expr: str, i: int = 0) -> Query:
    return Query(id=f"t/val/0/{i}", image="unused.jpg", expression=expr, dataset="t", split="val")


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(2).integers(0, 256, size=(H, W, 3), dtype=np.uint8)


def load(path: str, **options) -> Sam3Adapter:
    cls = Sam3UnionAdapter if options.pop("union", False) else Sam3Adapter
    adapter = cls(model_path=path, **options)
    adapter.load(test_device())
    return adapter


def _upstream_processor_module(repo):
    """``sam3/model/sam3_image_processor.py`` from the checkout ($HARNESS_SAM3_REPO).

    The ``sam3`` and ``sam3.model`` packages are registered by path without running their
    ``__init__`` (which builds the whole model stack: ``model_builder``); the processor module and
    what it imports (``box_ops``, ``data_misc``, torchvision's v2 transforms) are upstream's files."""
    import importlib
    import sys
    import types

    for name, folder in (("sam3", repo / "sam3"), ("sam3.model", repo / "sam3" / "model")):
        loaded = sys.modules.get(name)
        if loaded is None or list(getattr(loaded, "__path__", [])) != [str(folder)]:
            package = types.ModuleType(name)
            package.__path__ = [str(folder)]
            sys.modules[name] = package
    return importlib.import_module("sam3.model.sam3_image_processor")


def reference(adapter: Sam3Adapter, image: np.ndarray, expr: str, threshold: float, repo):
    """Upstream's own post-processing: ``Sam3Processor._forward_grounding`` of the checkout, run on the
    model's raw outputs (transformers' Sam3Model, mapped to the original's output names and box
    format with the checkout's ``box_ops``): kept instances' masks (> 0.5 after sigmoid), scores, boxes."""
    module = _upstream_processor_module(repo)
    box_ops = module.box_ops
    with torch.no_grad():
        px = adapter.processor(images=[image], return_tensors="pt")["pixel_values"]
        text = adapter.processor(text=expr, return_tensors="pt")
        out = adapter.model(pixel_values=px, input_ids=text["input_ids"], attention_mask=text["attention_mask"])

    class Model:  # the original's forward_grounding outputs, from the same network's forward
        def forward_grounding(self, **_):
            return {"pred_boxes": box_ops.box_xyxy_to_cxcywh(out.pred_boxes), "pred_logits": out.pred_logits[..., None],
                    "pred_masks": out.pred_masks, "presence_logit_dec": out.presence_logits.reshape(-1, 1)}

    processor = module.Sam3Processor.__new__(module.Sam3Processor)  # no __init__: it builds CUDA tensors
    processor.model, processor.device, processor.find_stage = Model(), "cpu", None
    processor.confidence_threshold = threshold
    state = processor._forward_grounding({"backbone_out": None, "geometric_prompt": None,
                                          "original_height": H, "original_width": W})
    return state["masks"][:, 0].numpy(), state["scores"].numpy(), state["boxes"].numpy()


def test_default_threshold_random_model_gives_an_empty_mask(tiny_path, image, sam3_repo) -> None:
    adapter = load(tiny_path)
    inst, _, _ = reference(adapter, image, "the man on the left", 0.5, sam3_repo)
    (p,) = adapter.predict(image, [sample("the man on the left")])
    assert p.mask["size"] == [H, W] and p.parse_status is ParseStatus.NONE and not p.failed
    assert len(inst) == 0  # random scores sit near 0.25: nothing passes 0.5 -> SAM 3's "no target"
    assert masks.area(p.mask) == 0 and p.box is None
    assert adapter.stats()["instances_kept"] == 0


def test_top1_is_the_highest_scoring_instance(tiny_path, image, sam3_repo) -> None:
    adapter = load(tiny_path, score_threshold=0.0)
    inst, scores, boxes = reference(adapter, image, "a red car", 0.0, sam3_repo)
    best = int(np.argmax(scores))
    (p,) = adapter.predict(image, [sample("a red car")])
    assert np.array_equal(masks.decode(p.mask), inst[best])
    assert p.box == pytest.approx(tuple(boxes[best]), abs=1e-3)


def test_union_is_the_or_of_kept_instances(tiny_path, image, sam3_repo) -> None:
    adapter = load(tiny_path, union=True, score_threshold=0.0)
    inst, _, boxes = reference(adapter, image, "two dogs", 0.0, sam3_repo)
    (p,) = adapter.predict(image, [sample("two dogs")])
    assert np.array_equal(masks.decode(p.mask), inst.any(axis=0))
    assert p.box == pytest.approx((boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max()), abs=1e-3)


@pytest.mark.parametrize("union", [False, True])
def test_every_kept_instance_is_returned_as_upstream_keeps_it(tiny_path, image, sam3_repo, union) -> None:
    """Whatever the mode, the prediction carries each kept instance: upstream's mask, score and box, in its order."""
    adapter = load(tiny_path, union=union, score_threshold=0.0)
    inst, scores, boxes = reference(adapter, image, "two dogs", 0.0, sam3_repo)
    (p,) = adapter.predict(image, [sample("two dogs")])
    assert p.instances is not None and len(p.instances) == len(inst) > 1
    for got, m, score, box in zip(p.instances, inst, scores, boxes):
        assert np.array_equal(masks.decode(got.mask), m)
        assert got.score == pytest.approx(float(score), abs=1e-6) and got.box == pytest.approx(tuple(box), abs=1e-3)
    assert adapter.stats()["instances_kept"] == len(inst)
    none = load(tiny_path).predict(image, [sample("the man on the left")])[0]  # nothing passes 0.5: no instance
    assert none.instances == ()


def test_threshold_between_scores_keeps_only_the_higher(tiny_path, image, sam3_repo) -> None:
    probe = load(tiny_path, score_threshold=0.0)
    _, scores, _ = reference(probe, image, "zebra", 0.0, sam3_repo)
    cut = float(np.sort(scores)[-2] + np.sort(scores)[-1]) / 2  # only the best instance is above
    union = load(tiny_path, union=True, score_threshold=cut)
    top1 = load(tiny_path, score_threshold=0.0)
    assert union.predict(image, [sample("zebra")])[0].mask == top1.predict(image, [sample("zebra")])[0].mask
    assert union.stats()["instances_kept"] == 1


def test_image_encoded_once_per_image_and_counters(tiny_path, image, sam3_repo) -> None:
    adapter = load(tiny_path, score_threshold=0.0)
    preds = adapter.predict(image, [sample("the man on the left"), sample("a red car", 1), sample("zebra", 2)])
    assert len(preds) == 3
    stats = adapter.stats()
    assert stats["images_encoded_by_segmenter"] == 1 and stats["forward_passes"] == 3
    assert stats["tokens_generated"] == 0 and stats["peak_gpu_memory_mb"] == 0
    # the cached vision features give what a full forward gives
    inst, scores, _ = reference(adapter, image, "a red car", 0.0, sam3_repo)
    assert np.array_equal(masks.decode(preds[1].mask), inst[int(np.argmax(scores))])


def test_inputs_are_recorded(tiny_path, image) -> None:
    adapter = load(tiny_path)
    info = adapter.inputs(image, sample("The man on the left."))
    assert info["prompt"] == "The man on the left."  # the expression itself, unchanged
    assert info["pixel_values_shape"] == [1, 3, 112, 112]
    assert info["input_ids"][0] == adapter.processor.tokenizer.bos_token_id and len(info["input_ids"]) == 32


def test_variants_and_registry() -> None:
    assert Sam3Adapter().options == {"model_path": "facebook/sam3", "mode": "top1", "score_threshold": 0.5,
                                     "mask_threshold": 0.5, "dtype": "auto"}
    assert Sam3UnionAdapter().options["mode"] == "union"
    assert adapter_class("sam3") is Sam3Adapter and adapter_class("sam3-union") is Sam3UnionAdapter
    with pytest.raises(ValueError, match="mode"):
        Sam3Adapter(mode="all")
    with pytest.raises(TypeError, match="unknown options"):
        Sam3Adapter(threshold=0.3)


def test_several_images_per_call_give_what_one_image_calls_give(tiny_path, image) -> None:
    adapter = load(tiny_path, score_threshold=0.0)
    assert adapter.multi_image
    other = np.ascontiguousarray(image[::-1])
    first, second = [sample("the man on the left"), sample("a red car", 1)], [sample("zebra", 2)]
    one_by_one = [adapter.predict(image, first), adapter.predict(other, second)]
    together = adapter.predict_many([(image, first), (other, second)])
    assert [[(p.mask, p.box) for p in preds] for preds in together] == [[(p.mask, p.box) for p in preds] for preds in one_by_one]
    assert adapter.stats()["images_encoded_by_segmenter"] == 4  # once per image and call, never per expression


def test_default_thresholds_are_upstreams(sam3_repo) -> None:
    """The default score threshold is ``Sam3Processor``'s ``confidence_threshold`` default in the checkout; the mask
    threshold is the ``> 0.5`` on sigmoid probabilities that its ``_forward_grounding`` applies."""
    import inspect

    module = _upstream_processor_module(sam3_repo)
    default = inspect.signature(module.Sam3Processor.__init__).parameters["confidence_threshold"].default
    assert Sam3Adapter().options["score_threshold"] == default
    source = inspect.getsource(module.Sam3Processor._forward_grounding)
    assert f'state["masks"] = out_masks > {Sam3Adapter().options["mask_threshold"]}' in source


@pytest.mark.parametrize("hw", [(H, W), (37, 53), (300, 200)])
def test_pixel_values_are_upstreams_transform(tiny_path, sam3_repo, hw) -> None:
    """What the adapter feeds the model equals upstream's ``Sam3Processor`` transform (uint8 -> resize to the
    square resolution -> [0, 1] -> normalise with 0.5/0.5), built by the checkout's own ``__init__`` at the
    checkpoint's resolution, within float rounding."""
    module = _upstream_processor_module(sam3_repo)
    adapter = load(tiny_path)
    image = np.random.default_rng(sum(hw)).integers(0, 256, size=(*hw, 3), dtype=np.uint8)
    ours = adapter.processor(images=[image], return_tensors="pt")["pixel_values"][0]
    upstream = module.Sam3Processor(model=None, resolution=int(ours.shape[-1]), device="cpu")
    expected = upstream.transform(module.v2.functional.to_image(image))
    assert ours.shape == expected.shape
    assert (ours - expected).abs().max().item() < 1e-6


def test_default_checkpoint_is_the_one_upstream_downloads(sam3_repo) -> None:
    """``model_builder.py`` (read, not imported: it builds the model stack) downloads ``SAM3_MODEL_ID``."""
    import ast

    tree = ast.parse((sam3_repo / "sam3" / "model_builder.py").read_text(encoding="utf-8"))
    [model_id] = {ast.literal_eval(n.value) for n in ast.walk(tree) if isinstance(n, ast.Assign)
                  and any(isinstance(t, ast.Name) and t.id == "SAM3_MODEL_ID" for t in n.targets)}
    assert Sam3Adapter().options["model_path"] == model_id
