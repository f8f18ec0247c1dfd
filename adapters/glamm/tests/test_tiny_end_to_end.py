"""A tiny random GLaMM built from the checkout's classes (through the mmcv stand-in), saved,
loaded through the adapter's real loading path and run end to end under both protocols; masks
compared with upstream's own ``model_forward(inference=True)`` (``.cuda()`` made a no-op). For the
deterministic protocol upstream's inputs come from upstream's own evaluation code
(``ReferSegmDataset`` + ``custom_collate_fn``, as ``eval/referring_seg/infer_and_evaluate.py`` runs
them). Conformance tests: they need HARNESS_GLAMM_REPO."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch
from harness import masks
from harness.modelkit.testing import llama_like_tokenizer, save_tiny_clip, test_device, tiny_sam
from harness.types import Query

from harness_glamm.adapter import NOT_DRAWN, GlammAdapter
from harness_glamm.preprocess import preprocess

pytestmark = pytest.mark.slow
SPECIAL = ("<im_start>", "<im_end>", "<bbox>", "<point>", "[SEG]", "<p>", "</p>")


@pytest.fixture(scope="module")
def tiny(glamm_repo, tmp_path_factory):
    from harness_glamm.upstream import import_module

    glamm = import_module(glamm_repo, "model.GLaMM")
    build_sam = import_module(glamm_repo, "model.SAM.build_sam")
    arch = import_module(glamm_repo, "model.llava.llava_with_region_arch")
    llava = import_module(glamm_repo, "model.llava.model.language_model.llava_llama")
    patch = pytest.MonkeyPatch()
    patch.setattr(glamm, "build_sam_vit_h", lambda checkpoint=None: tiny_sam(build_sam))
    # the region encoder is 1024 wide upstream (~300M parameters); 64 keeps its structure
    patch.setattr(arch, "MLVLROIQueryModule", functools.partial(arch.MLVLROIQueryModule, embed_dims=64))
    root = tmp_path_factory.mktemp("glamm")
    clip_dir = save_tiny_clip(root / "tiny-clip-336", image_size=336)
    tok = llama_like_tokenizer(added=(), special=SPECIAL)
    config = llava.LlavaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                               num_attention_heads=4, max_position_embeddings=2048, pad_token_id=0, bos_token_id=1,
                               eos_token_id=2)
    config.vision_tower = config.mm_vision_tower = str(clip_dir)
    config.mm_hidden_size, config.mm_vision_select_layer, config.mm_use_im_start_end = 32, -2, True
    config.mm_vision_select_feature = "patch"
    config.num_level_reg_features = 4  # read by llava_with_region_arch; the released config.json files carry it
    torch.manual_seed(0)
    model = glamm.GLaMMForCausalLM(config, seg_token_idx=32004, vision_module=str(clip_dir), out_dim=256,
                                   train_mask_decoder=True)
    ckpt = root / "tiny-glamm"
    model.save_pretrained(ckpt)
    tok.save_pretrained(ckpt)
    adapter = GlammAdapter(checkpoint=str(ckpt), upstream_repo=str(glamm_repo), vision_tower=str(clip_dir),
                           use_fast_tokenizer=True)
    adapter.load(test_device())
    yield adapter
    patch.undo()


def _samples(h, w, texts, image="COCO_1.jpg"):
    return [Query(id=f"t/{i}", image=image, expression=t, dataset="refcoco", split="val") for i, t in enumerate(texts)]


def _image():
    return np.random.default_rng(0).integers(0, 256, size=(40, 56, 3), dtype=np.uint8)


def _upstream(rt, image, prompts_, monkeypatch):
    from harness.modelkit import llava_sam as tokens

    monkeypatch.setattr(torch.Tensor, "cuda", lambda self, *a, **k: self)
    pre = preprocess(image)
    ids, att = tokens.pad_right([tokens.tokenizer_image_token(p, rt.tokenizer) for p in prompts_], rt.tokenizer.pad_token_id)
    n = ids.shape[0]
    with torch.no_grad():
        out = rt.model(global_enc_images=torch.from_numpy(pre.clip_image)[None],
                       grounding_enc_images=torch.from_numpy(pre.sam_image)[None], bboxes=None, input_ids=ids, labels=None,
                       attention_masks=att, offset=torch.tensor([0, n]), masks_list=[torch.zeros(3, 40, 56)],
                       label_list=[torch.ones(40, 56) * 255], resize_list=[pre.resize_hw], inference=True)
    return (out["pred_masks"][0] > 0).numpy()


def _upstream_refer_batches(glamm_repo, root, image: np.ndarray, texts: list[str], tokenizer, clip_dir, monkeypatch):
    """What GLaMM's ``eval/referring_seg/infer_and_evaluate.py`` feeds the model, one batch per image.

    ``ReferSegmDataset(validation=True, inference=True)`` reads a RefCOCO (unc) val tree written
    here: one image file per text (the same pixels, PNG bytes under a ``.jpg`` name: ``cv2.imread``
    reads by content), one ref of one sentence each, so each conversation holds one sentence, as the
    harness's deterministic protocol asks. Its question and answer are drawn by upstream's
    ``random.choice`` from its lists narrowed to the protocol's fixed pair (``SEG_QUESTIONS[3]``,
    ``ANSWER_LIST[4]``); ``custom_collate_fn`` (val batch size 1) batches each item."""
    import json
    import pickle
    import re

    from PIL import Image

    from harness_glamm.upstream import import_module

    conversation = import_module(glamm_repo, "model.llava.conversation")
    segm = import_module(glamm_repo, "dataset.segm_datasets.RefCOCO_Segm_ds")
    dataset = import_module(glamm_repo, "dataset.dataset")
    script = (glamm_repo / "eval" / "referring_seg" / "infer_and_evaluate.py").read_text()
    image_size = int(re.search(r'"--image_size", default=(\d+)', script).group(1))
    # infer_and_evaluate.py: conversation_lib.default_conversation = conv_templates[args.conv_type] (llava_v1)
    monkeypatch.setattr(conversation, "default_conversation", conversation.conv_templates["llava_v1"])
    h, w = image.shape[:2]
    data = root / "Refer_Segm" / "refcoco"
    data.mkdir(parents=True)
    names = [f"COCO_train2014_{i + 1:012d}.jpg" for i in range(len(texts))]
    images = [{"id": i + 1, "height": h, "width": w, "file_name": n} for i, n in enumerate(names)]
    anns = [{"id": 10 + i, "image_id": i + 1, "category_id": 1, "iscrowd": 0, "bbox": [2, 3, 20, 15], "area": 300,
             "segmentation": [[2, 3, 22, 3, 22, 18, 2, 18]]} for i in range(len(texts))]
    refs = [{"ref_id": 10 + i, "ann_id": 10 + i, "image_id": i + 1, "category_id": 1, "split": "val",
             "sentences": [{"sent": t, "raw": t, "sent_id": i, "tokens": t.split()}], "sent_ids": [i]}
            for i, t in enumerate(texts)]
    (data / "instances.json").write_text(json.dumps({"images": images, "annotations": anns,
                                                     "categories": [{"id": 1, "name": "thing"}]}))
    with open(data / "refs(unc).p", "wb") as f:
        pickle.dump(refs, f)
    ds = segm.ReferSegmDataset(str(root), tokenizer, str(clip_dir), image_size=image_size, refer_segm_data="refcoco",
                               validation=True, split="val", inference=True)
    ds._set_len(len(ds.refer_segm_data["refcoco"]["images"]))
    for info in ds.refer_segm_data["refcoco"]["images"]:  # where upstream's load_images looks for each file
        Path(info["file_name"]).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(info["file_name"], format="PNG")
    ds.question_templates = [ds.question_templates[3]]
    ds.answer_list = [ds.answer_list[4]]
    return [dataset.custom_collate_fn([ds[i]], tokenizer=tokenizer, use_mm_start_end=True, inference=True)
            for i in range(len(ds))]


def test_deterministic_matches_upstream_evaluation(tiny, glamm_repo, tmp_path, monkeypatch) -> None:
    from harness.modelkit import llava_sam as tokens

    image = _image()
    texts = ["the cat", "Dog on the LEFT ", "sky"]
    samples = _samples(40, 56, texts)
    before = tiny.stats()
    preds = tiny.predict(image, samples)
    assert all(p.mask["size"] == [40, 56] and p.box == masks.mask_box(p.mask) for p in preds)
    stats = {k: v - before.get(k, 0) for k, v in tiny.stats().items()}
    assert stats["segmenter_images"] == 1 and stats["forward_passes"] == 3
    rt = tiny._rt
    batches = _upstream_refer_batches(glamm_repo, tmp_path, image, texts, rt.tokenizer, tiny.settings["vision_tower"],
                                      monkeypatch)
    ours, _ = tiny.conversations(samples)
    pre = preprocess(image)
    monkeypatch.setattr(torch.Tensor, "cuda", lambda self, *a, **k: self)
    for i, (batch, p) in enumerate(zip(batches, preds)):
        # the adapter's inputs equal upstream's: conversation, ids, padding, both image branches
        assert batch["conversation_list"] == [ours[i]]
        ids = torch.tensor([tokens.tokenizer_image_token(ours[i], rt.tokenizer)])
        assert torch.equal(ids, batch["input_ids"]) and bool(batch["attention_masks"].all())
        np.testing.assert_array_equal(pre.clip_image, batch["global_enc_images"][0].numpy())
        np.testing.assert_array_equal(pre.sam_image, batch["grounding_enc_images"][0].numpy())
        assert tuple(pre.resize_hw) == tuple(batch["resize_list"][0])
        # evaluate_model_performance: model(**data_batch) (fp32 on CPU here), pred_masks[0] > 0
        with torch.no_grad():
            out = rt.model(**batch)
        np.testing.assert_array_equal(masks.decode(p.mask), (out["pred_masks"][0][0] > 0).numpy())


def test_glamm_protocol_one_chat_three_masks(tiny, monkeypatch) -> None:
    proto = GlammAdapter.from_runtime(tiny._rt, variant="refseg-glamm-protocol", upstream_repo=tiny.settings["upstream_repo"], seed=1)
    samples = _samples(40, 56, [f"object {i}" for i in range(5)])
    preds = proto.predict(_image(), samples)
    drawn = [i for i, p in enumerate(preds) if p.mask is not None]
    assert len(drawn) == 3
    undrawn = [p for p in preds if p.mask is None]
    assert len(undrawn) == 2 and all(p.not_drawn and not p.failed and p.error.startswith(NOT_DRAWN) for p in undrawn)
    assert all(p.status.value == "predicted" for p in preds if p.mask is not None)
    [conversation], [indices] = proto.conversations(samples)
    assert conversation.count("[SEG]") == 3 and sorted(indices) == drawn
    upstream = _upstream(tiny._rt, _image(), [conversation], monkeypatch)  # 3 masks from one row
    for k, i in enumerate(indices):
        np.testing.assert_array_equal(masks.decode(preds[i].mask), upstream[k])
