"""A tiny random LISA built from the checkout's classes, saved, loaded through the adapter's
real loading path, and run end to end; its masks are compared with upstream's own
``model_forward(inference=True)`` and ``evaluate`` (whose hard-coded ``.cuda()`` is made a
no-op for the comparison). Upstream's inputs come from upstream's own code: ``train_ds.py``'s
validation path (``utils/dataset.py ValDataset`` reading a ReasonSeg-layout folder written here,
``collate_fn`` with ``conv_type="llava_v1"``: conversation template, ``<im_start>`` expansion,
``tokenizer_image_token``, right padding, attention mask, CLIP and SAM preprocessing) and
``chat.py``'s (the ``conv_templates`` prompt, ``ResizeLongestSide``). Conformance tests: they
need HARNESS_LISA_REPO."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from harness import masks
from harness.modelkit.testing import llama_like_tokenizer, save_tiny_clip, test_device, tiny_sam
from harness.types import ParseStatus, Query

from harness_lisa.adapter import LisaAdapter
from harness_lisa.preprocess import preprocess

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny(lisa_repo, tmp_path_factory):
    from harness_lisa.upstream import import_module

    lisa = import_module(lisa_repo, "model.LISA")
    build_sam = import_module(lisa_repo, "model.segment_anything.build_sam")
    llava = import_module(lisa_repo, "model.llava.model.language_model.llava_llama")
    patch = pytest.MonkeyPatch()
    patch.setattr(lisa, "build_sam_vit_h", lambda checkpoint=None: tiny_sam(build_sam))  # ViT-H is 630M parameters
    root = tmp_path_factory.mktemp("lisa")
    clip_dir = save_tiny_clip(root / "tiny-clip-vit")
    tok = llama_like_tokenizer()
    config = llava.LlavaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                               num_attention_heads=4, max_position_embeddings=2048, pad_token_id=0, bos_token_id=1,
                               eos_token_id=2)
    config.train_mask_decoder, config.out_dim = True, 256
    config.vision_tower = config.mm_vision_tower = str(clip_dir)
    config.mm_hidden_size, config.mm_vision_select_layer, config.mm_use_im_start_end = 32, -2, True
    torch.manual_seed(0)
    model = lisa.LISAForCausalLM(config, seg_token_idx=tok.convert_tokens_to_ids("[SEG]"))
    ckpt = root / "tiny-lisa"
    model.save_pretrained(ckpt)
    tok.save_pretrained(ckpt)
    adapter = LisaAdapter(checkpoint=str(ckpt), upstream_repo=str(lisa_repo), vision_tower=str(clip_dir),
                          use_fast_tokenizer=True)
    adapter.load(test_device())
    yield adapter
    patch.undo()


def _samples(h: int, w: int, texts: list[str]) -> list[Query]:
    return [Query(id=f"t/{i}", image="x.jpg", expression=t, dataset="refcoco", split="val") for i, t in enumerate(texts)]


def _image(h: int = 48, w: int = 64) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _upstream_val_batch(lisa_repo, root, image: np.ndarray, texts: list[str], is_sentence: bool, tokenizer, clip_dir,
                        monkeypatch):
    """What LISA's ``train_ds.py`` validation feeds ``model_forward`` for ReasonSeg images holding ``texts``.

    One image file per text (ValDataset reads one query per ReasonSeg image), written losslessly
    (PNG bytes under a ``.jpg`` name: ``cv2.imread`` reads by content) so that upstream decodes the
    very pixels the adapter is given; ``collate_fn`` batches them as the validation loader does."""
    import json

    from PIL import Image

    from harness_lisa.upstream import import_module

    conversation = import_module(lisa_repo, "model.llava.conversation")
    dataset = import_module(lisa_repo, "utils.dataset")
    base = root / "data"
    folder = base / "reason_seg" / "ReasonSeg" / "val"
    folder.mkdir(parents=True)
    h, w = image.shape[:2]
    for i, text in enumerate(texts):
        Image.fromarray(image).save(folder / f"{i:03d}.jpg", format="PNG")
        anno = {"text": [text], "is_sentence": is_sentence,
                "shapes": [{"label": "target", "points": [[1, 1], [w // 2, 1], [w // 2, h // 2]]}]}
        (folder / f"{i:03d}.json").write_text(json.dumps(anno))
    # train_ds.py: conversation_lib.default_conversation = conv_templates[args.conv_type] (llava_v1)
    monkeypatch.setattr(conversation, "default_conversation", conversation.conv_templates["llava_v1"])
    val = dataset.ValDataset(str(base), tokenizer, str(clip_dir), "ReasonSeg|val", image_size=1024)
    val.images = sorted(val.images)  # glob order; the texts' order here
    items = [val[i] for i in range(len(val))]

    def collate(chosen):
        return dataset.collate_fn(chosen, tokenizer=tokenizer, conv_type="llava_v1", use_mm_start_end=True)

    return {**collate(items), "items": items, "collate": collate}


@pytest.mark.parametrize("is_sentence", [False, True])
def test_teacher_forced_end_to_end_matches_upstream_validation(tiny, lisa_repo, tmp_path, monkeypatch,
                                                               is_sentence) -> None:
    from harness.modelkit import llava_sam as tokens

    image = _image()
    texts = ["the red car", "A dog on the LEFT", "sky "]
    samples = [Query(id=f"t/{i}", image="x.jpg", expression=t, dataset="reasonseg", split="val",
                     meta={"is_sentence": is_sentence}) for i, t in enumerate(texts)]
    before = tiny.stats()
    preds = tiny.predict(image, samples)
    assert len(preds) == 3
    for p in preds:
        assert p.mask is not None and p.mask["size"] == [48, 64]
        assert p.box == masks.mask_box(p.mask) and p.parse_status is ParseStatus.NONE
    stats = {k: v - before.get(k, 0) for k, v in tiny.stats().items()}
    assert stats["segmenter_images"] == 1 and stats["forward_passes"] == 1 and stats["generated_tokens"] == 0

    rt = tiny._rt
    batch = _upstream_val_batch(lisa_repo, tmp_path, image, texts, is_sentence, rt.tokenizer,
                                tiny.settings["vision_tower"], monkeypatch)
    # the adapter's inputs, one by one, equal upstream's
    assert [tiny.prompt(s) for s in samples] == batch["conversation_list"]
    ours_ids, ours_att = tokens.pad_right([tokens.tokenizer_image_token(tiny.prompt(s), rt.tokenizer) for s in samples],
                                          rt.tokenizer.pad_token_id)
    assert torch.equal(ours_ids, batch["input_ids"]) and torch.equal(ours_att, batch["attention_masks"])
    pre = preprocess(image)
    for k in range(3):
        np.testing.assert_array_equal(pre.clip_image, batch["images_clip"][k].numpy())
        np.testing.assert_array_equal(pre.sam_image, batch["images"][k].numpy())
        assert tuple(pre.resize_hw) == tuple(batch["resize_list"][k])

    # upstream's forward on upstream's inputs gives the adapter's masks; validation batches one image
    # (train_ds.py: val_loader batch_size=1), so each ReasonSeg image goes through collate_fn on its own
    monkeypatch.setattr(torch.Tensor, "cuda", lambda self, *a, **k: self)
    for i, p in enumerate(preds):
        one = batch["collate"]([batch["items"][i]])
        with torch.no_grad():
            out = rt.model(images=one["images"], images_clip=one["images_clip"], input_ids=one["input_ids"],
                           labels=one["labels"], attention_masks=one["attention_masks"], offset=one["offset"],
                           masks_list=one["masks_list"], label_list=one["label_list"], resize_list=one["resize_list"],
                           inference=True)
        np.testing.assert_array_equal(masks.decode(p.mask), (out["pred_masks"][0][0] > 0).numpy())


def _force_next_token(model, token_id: int) -> None:
    """Replace the LM head by one that always prefers ``token_id`` (a test-only steering)."""
    head = torch.nn.Linear(model.lm_head.in_features, model.lm_head.out_features, bias=True)
    head.weight.data.zero_()
    head.bias.data.zero_()
    head.bias.data[token_id] = 10.0
    model.lm_head = head


def _chat_inputs(lisa_repo, image: np.ndarray, prompt: str, tokenizer, clip_dir):
    """The tensors LISA's ``chat.py`` builds for ``model.evaluate``: its CLIP call, ``ResizeLongestSide(1024)``
    and its own ``preprocess`` (compiled from the checkout's source: ``chat.py`` itself runs an input() loop),
    and the checkout's ``tokenizer_image_token`` on the full prompt."""
    import ast

    import torch.nn.functional as F
    from transformers import CLIPImageProcessor

    from harness_lisa.upstream import import_module

    transforms = import_module(lisa_repo, "model.segment_anything.utils.transforms")
    mm_utils = import_module(lisa_repo, "model.llava.mm_utils")
    tree = ast.parse((lisa_repo / "chat.py").read_text())
    [node] = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "preprocess"]
    namespace = {"torch": torch, "F": F}
    exec(compile(ast.Module(body=[node], type_ignores=[]), "<LISA chat.py preprocess>", "exec"), namespace)
    image_clip = CLIPImageProcessor.from_pretrained(clip_dir).preprocess(image, return_tensors="pt")["pixel_values"][0][None]
    resized = transforms.ResizeLongestSide(1024).apply_image(image)
    sam = namespace["preprocess"](torch.from_numpy(resized).permute(2, 0, 1).contiguous())[None].float()
    ids = mm_utils.tokenizer_image_token(prompt, tokenizer, return_tensors="pt")[None]
    return image_clip, sam, ids, [resized.shape[:2]]


def test_generate_variant_matches_upstream_evaluate(tiny, lisa_repo, monkeypatch) -> None:
    rt = tiny._rt
    gen = LisaAdapter.from_runtime(rt, protocol="generate", max_new_tokens=3)
    _force_next_token(rt.model, rt.seg_token_idx)
    image = _image()
    samples = _samples(48, 64, ["the red car"])
    [pred] = gen.predict(image, samples)
    assert pred.text == "[SEG][SEG][SEG]" and pred.parse_status is ParseStatus.OK
    assert pred.box == masks.mask_box(pred.mask)

    monkeypatch.setattr(torch.Tensor, "cuda", lambda self, *a, **k: self)
    rt.model.generation_config.use_cache = False  # what LisaModel's config.use_cache = False gives the released checkpoints
    image_clip, sam, ids, resize_list = _chat_inputs(lisa_repo, image, gen.prompt(samples[0]), rt.tokenizer,
                                                     tiny.settings["vision_tower"])
    output_ids, pred_masks = rt.model.evaluate(image_clip, sam, ids, resize_list, [(48, 64)], max_new_tokens=3,
                                               tokenizer=rt.tokenizer)
    assert output_ids[0, ids.shape[1]:].tolist() == [rt.seg_token_idx] * 3
    np.testing.assert_array_equal(masks.decode(pred.mask), (pred_masks[0][0] > 0).numpy())


def test_generate_without_seg_gives_empty_mask(tiny) -> None:
    rt = tiny._rt
    gen = LisaAdapter.from_runtime(rt, protocol="generate", max_new_tokens=2)
    _force_next_token(rt.model, rt.tokenizer.convert_tokens_to_ids("a"))
    [pred] = gen.predict(_image(), _samples(48, 64, ["x"]))
    assert pred.text == "aa" and pred.parse_status is ParseStatus.FAILED
    assert pred.mask is not None and masks.area(pred.mask) == 0 and pred.box is None


def test_inputs_hook_is_deterministic(tiny) -> None:
    s = _samples(48, 64, ["the red car"])[0]
    a, b = tiny.inputs(_image(), s), tiny.inputs(_image(), s)
    assert a == b and a["prompt"].endswith("ASSISTANT: [SEG].</s>") and a["sam_resize_hw"] == [768, 1024]
