"""Tiny random instances of the real architectures, built from configs (no download).

- a byte-level BPE tokenizer trained on a few strings, with Qwen2.5-VL's special tokens, wrapped
  in ``Qwen2TokenizerFast`` and a ``Qwen2_5_VLProcessor`` whose chat template is Qwen2.5-VL's;
- ``Qwen2_5_VLForConditionalGeneration`` with a 2-block vision tower and a 2-layer, 64-wide
  language model;
- SAM2 (Hiera trunk, FPN neck, prompt encoder, mask decoder) from sam2's own Hydra config
  ``configs/sam2/sam2_hiera_t.yaml`` with the widths overridden down.

``script_answer`` wires the language model so that greedy decoding writes one chosen text: the
blocks' output projections are zeroed, so the last position's hidden state is the embedding of
the last prompt token, which the LM head maps to a token holding the text, whose embedding it
maps to ``<|im_end|>``. The vision tower, attention and generation loop still all run.
"""

from __future__ import annotations

from pathlib import Path

import torch
from harness.modelkit.testing import QWEN2_VL_CHAT_TEMPLATE, QWEN2_VL_SPECIAL_TOKENS

# Qwen2.5-VL's special tokens (a list, as the tokenizer builders take them); the chat template is
# Qwen2.5-VL-7B-Instruct's (harness.modelkit.testing).
SPECIAL_TOKENS = list(QWEN2_VL_SPECIAL_TOKENS)

# Texts the scripted model can be made to write (each becomes one added, non-special token).
SCRIPTS = {
    "one": '<think> The man on the left wears red. </think><answer>[{"bbox_2d": [84,168,420,672], "point_2d": [252,420]}]</answer>',
    "two": ('<think> Two dogs match. </think><answer>[{"bbox_2d": [0,0,420,420], "point_2d": [210,210]}, '
            '{"bbox_2d": [500,500,800,820], "point_2d": [650,660]}]</answer>'),
    "none": "<think> Nothing matches. </think><answer>[]</answer>",
    "outside": '<think> Far away. </think><answer>[{"bbox_2d": [-50,700,1200,1000], "point_2d": [900,900]}]</answer>',
    "no_tag": "The man on the left, at [84,168,420,672].",
    "bad_json": '<think> ok </think><answer>[{"bbox_2d": [84,168,420,672], "point_2d": [252,420]</answer>',
    "no_point": '<think> ok </think><answer>[{"bbox_2d": [84,168,420,672]}]</answer>',
    "single": '<think> One man. </think><answer>{"bbox": [84,168,420,672], "points_1": [252,420], "points_2": [300,500]}</answer>',
}

# Small widths for SAM2; stages [1, 1, 2, 1] keep the global-attention block off a pooling block.
SAM_CONFIG = "configs/sam2/sam2_hiera_t.yaml"
SAM_OVERRIDES = [
    "++model.image_encoder.trunk.embed_dim=8",
    "++model.image_encoder.trunk.num_heads=1",
    "++model.image_encoder.trunk.stages=[1,1,2,1]",
    "++model.image_encoder.trunk.global_att_blocks=[3]",
    "++model.image_encoder.neck.d_model=32",
    "++model.image_encoder.neck.backbone_channel_list=[64,32,16,8]",
    "++model.image_encoder.neck.position_encoding.num_pos_feats=32",
    "++model.memory_attention.d_model=32",
    "++model.memory_attention.num_layers=1",
    "++model.memory_attention.layer.d_model=32",
    "++model.memory_attention.layer.dim_feedforward=32",
    "++model.memory_attention.layer.self_attention.embedding_dim=32",
    "++model.memory_attention.layer.cross_attention.embedding_dim=32",
    "++model.memory_attention.layer.cross_attention.kv_in_dim=16",
    "++model.memory_encoder.fuser.layer.dim=32",
    "++model.memory_encoder.out_dim=16",
    "++model.memory_encoder.position_encoding.num_pos_feats=16",
]


def build_tokenizer():  # -> Qwen2TokenizerFast
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AddedToken, Qwen2TokenizerFast

    from harness_segzero import prompts

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [prompts.MULTI_TEMPLATE, prompts.SINGLE_TEMPLATE, prompts.MULTI_ANSWER_EXAMPLE, "system\nYou are a helpful assistant.",
              "user\nassistant\n", "the man on the left wears red. two dogs. nothing matches.", *SCRIPTS.values()]
    trainer = trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=SPECIAL_TOKENS)
    tok.train_from_iterator(corpus, trainer)
    fast = Qwen2TokenizerFast(tokenizer_object=tok, unk_token=None, bos_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.add_tokens([AddedToken(text, normalized=False, special=False) for text in SCRIPTS.values()])
    return fast


def build_processor():  # -> Qwen2_5_VLProcessor
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor

    image_processor = Qwen2VLImageProcessor(min_pixels=3136, max_pixels=12845056, patch_size=14, temporal_patch_size=2, merge_size=2)
    return Qwen2_5_VLProcessor(image_processor=image_processor, tokenizer=build_tokenizer(), chat_template=QWEN2_VL_CHAT_TEMPLATE)


def build_qwen(tokenizer, seed: int = 0):  # -> Qwen2_5_VLForConditionalGeneration
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    config = Qwen2_5_VLConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=8192, max_window_layers=2, tie_word_embeddings=False,
        rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]},
        vision_config={"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 64,
                       "fullatt_block_indexes": [1], "window_size": 112, "patch_size": 14, "spatial_merge_size": 2,
                       "temporal_patch_size": 2},
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"], bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    return model


def script_answer(model, tokenizer, last_prompt_token: int, script: str) -> None:
    """Wire ``model`` (in place) so that greedy decoding writes ``SCRIPTS[script]`` then stops."""
    answer = tokenizer.convert_tokens_to_ids(SCRIPTS[script])
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        emb = model.model.embed_tokens.weight
        head = model.lm_head.weight
        emb[last_prompt_token].zero_()
        emb[last_prompt_token, 0] = 1.0
        emb[answer].zero_()
        emb[answer, 1] = 1.0
        head[:, :2] = 0.0
        head[answer, 0] = 10.0
        head[eos, 1] = 10.0


def build_sam2(seed: int = 0):  # -> SAM2Base
    from sam2.build_sam import build_sam2 as build

    torch.manual_seed(seed)
    return build(SAM_CONFIG, None, device="cpu", hydra_overrides_extra=list(SAM_OVERRIDES))


def save_tiny_checkpoints(root: Path) -> dict[str, str]:
    """Save a tiny Qwen2.5-VL (+ processor) and a tiny SAM2 checkpoint; return the adapter options."""
    processor = build_processor()
    model = build_qwen(processor.tokenizer)
    qwen_dir = root / "qwen"
    model.save_pretrained(qwen_dir)
    processor.save_pretrained(qwen_dir)
    sam_path = root / "sam2_tiny.pt"
    torch.save({"model": build_sam2().state_dict()}, sam_path)
    return {"model_path": str(qwen_dir), "sam_config": SAM_CONFIG, "sam_checkpoint": str(sam_path),
            "sam_hydra_overrides": list(SAM_OVERRIDES)}
