"""A tiny random GLaMM built from the checkout's classes (through the mmcv stand-in), saved,
loaded through the adapter's real loading path and run end to end under both protocols; masks
compared with upstream's own ``model_forward(inference=True)`` (``.cuda()`` made a no-op).
Skipped without HARNESS_GLAMM_REPO."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from harness import masks
from harness.modelkit.testing import llama_like_tokenizer, save_tiny_clip, tiny_sam
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
    adapter.load("cpu")
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


def test_deterministic_matches_upstream_model_forward(tiny, monkeypatch) -> None:
    samples = _samples(40, 56, ["the cat", "Dog on the LEFT"])
    preds = tiny.predict(_image(), samples)
    assert all(p.mask["size"] == [40, 56] and p.box == masks.mask_box(p.mask) for p in preds)
    assert tiny.stats()["segmenter_images"] == 1 and tiny.stats()["forward_passes"] == 2
    upstream = _upstream(tiny._rt, _image(), tiny.conversations(samples)[0], monkeypatch)
    for i, p in enumerate(preds):
        np.testing.assert_array_equal(masks.decode(p.mask), upstream[i])


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
