"""LISA's image branches and prompts against its own validation dataset (HARNESS_LISA_REPO), no model needed.

``utils/dataset.py ValDataset`` reads a ReasonSeg-layout folder written here (PNG bytes under the
``.jpg`` name: ``cv2.imread`` reads by content) with the CLIP processor of
openai/clip-vit-large-patch14 saved beside it; its CLIP tensor, SAM tensor (``ResizeLongestSide`` on
the real torchvision, normalised and padded) and resize size must equal the adapter's, on shapes
whose rounding to 1024 is close to a half."""

from __future__ import annotations

import json

import numpy as np
import pytest
from harness.modelkit.testing import llama_like_tokenizer, openai_clip_processor
from PIL import Image

from harness_lisa import prompts
from harness_lisa.preprocess import preprocess

SHAPES = [(11, 17), (17, 11), (37, 53), (48, 64), (5, 9), (300, 200)]


@pytest.mark.parametrize("hw", SHAPES)
def test_image_branches_and_prompt_are_valdatasets(lisa_repo, tmp_path, monkeypatch, hw) -> None:
    from harness_lisa.upstream import import_module

    conversation = import_module(lisa_repo, "model.llava.conversation")
    dataset = import_module(lisa_repo, "utils.dataset")
    monkeypatch.setattr(conversation, "default_conversation", conversation.conv_templates["llava_v1"])  # train_ds.py
    h, w = hw
    image = np.random.default_rng(h * 100 + w).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    folder = tmp_path / "reason_seg" / "ReasonSeg" / "val"
    folder.mkdir(parents=True)
    Image.fromarray(image).save(folder / "a.jpg", format="PNG")
    text = "  What can hold Water? "
    (folder / "a.json").write_text(json.dumps({"text": [text], "is_sentence": True,
                                               "shapes": [{"label": "target", "points": [[0, 0], [w - 1, 0], [0, h - 1]]}]}))
    openai_clip_processor(224).save_pretrained(tmp_path / "clip")
    item = dataset.ValDataset(str(tmp_path), llama_like_tokenizer(), str(tmp_path / "clip"), "ReasonSeg|val")[0]
    _, sam_image, clip_image, conversations, _, _, resize, _, _, _ = item
    pre = preprocess(image)
    np.testing.assert_array_equal(pre.clip_image, clip_image.numpy())
    np.testing.assert_array_equal(pre.sam_image, sam_image.numpy())
    assert tuple(pre.resize_hw) == tuple(resize)
    # collate_fn's <image> expansion is the last step of the adapter's prompt
    assert [prompts.eval_prompt(text, "reasonseg", is_sentence=True)] == [
        c.replace("<image>", "<im_start><image><im_end>") for c in conversations]
