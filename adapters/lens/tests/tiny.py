"""Tiny random stand-ins for LENS's parts, built from configs on the spot (no download).

- a byte-level BPE tokenizer trained on a few sentences, with Qwen2-VL's special tokens and
  its chat template, wrapped as a ``Qwen2TokenizerFast``;
- a ``Qwen2VLImageProcessor`` from keyword arguments (Qwen2.5-VL's values);
- a ``Qwen2_5_VLProcessor`` combining them, saved like a checkpoint's processor;
- a Qwen2.5-VL config with 64-wide, 2-layer text and vision towers; with the upstream
  checkout, LENS's ``SAMR1Config`` of the same shape and a tiny SAM2 (Hiera-T layout with
  blocks [1, 1, 2, 1], one of them global, and 16 channels; the neck and mask decoder keep SAM2's 256 channels,
  which LENS's 256-wide projection needs).

``SCRIPT`` makes the random model's greedy output fixed and meaningful through the
checkpoint's ``generation_config.sequence_bias``: whole answer strings are added to the
vocabulary as single tokens and biased so that greedy decoding emits them, then the end
token. The adapter runs exactly as with a real checkpoint; only the weights are random.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.modelkit.testing import QWEN2_VL_CHAT_TEMPLATE, QWEN2_VL_SPECIAL_TOKENS

# Qwen2-VL's special tokens (a list, as the tokenizer builders take them); the chat template is
# Qwen/Qwen2.5-VL-3B-Instruct's, which LENS checkpoints keep (harness.modelkit.testing).
SPECIAL_TOKENS = list(QWEN2_VL_SPECIAL_TOKENS)

CORPUS = [
    "You are a helpful assistant. Output the bounding box of the man on the left in the image.",
    'Locate "the red car", report the bbox coordinates in JSON format. Compare the difference between objects.',
    "<think>thinking process here</think><answer>answer here</answer> bbox_2d 0123456789 [ ] ( ) , . : { } \"",
    "system user assistant person woman dog cat left right middle front back small large blue red green",
]

# Answer strings the scripted model emits (one vocabulary token each).
BOX_ANSWER = "[10, 20, 30, 40]"
COT_THINK = "<think>The woman on the right holds the umbrella.</think>"
COT_ANSWER = '<answer>{"bbox_2d": [12, 8, 44, 50]}</answer>'
QWEN_BOX_ANSWER = "<|box_start|>(7,9),(41,47)<|box_end|>"  # the Qwen grounding form; box tokens are special


def build_tokenizer(extra_tokens: list[str] | None = None) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AddedToken, Qwen2TokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(CORPUS, trainer)
    tok = Qwen2TokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token=None,
                             bos_token=None, additional_special_tokens=SPECIAL_TOKENS[1:], errors="replace")
    if extra_tokens:
        tok.add_tokens([AddedToken(t, normalized=False, special=False) for t in extra_tokens])
    tok.chat_template = QWEN2_VL_CHAT_TEMPLATE
    return tok


def build_processor(extra_tokens: list[str] | None = None) -> Any:
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor

    image_processor = Qwen2VLImageProcessor(
        min_pixels=3136, max_pixels=12845056, patch_size=14, temporal_patch_size=2, merge_size=2,
        image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711],
    )
    tokenizer = build_tokenizer(extra_tokens)
    return Qwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tokenizer, chat_template=QWEN2_VL_CHAT_TEMPLATE)


def text_config(tokenizer: Any, hidden: int = 64) -> dict[str, Any]:
    """Qwen2.5-VL config fields for a 2-layer, ``hidden``-wide model over ``tokenizer``'s vocabulary."""
    ids = tokenizer.convert_tokens_to_ids
    return dict(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048, rope_theta=1000000.0,
        rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]}, tie_word_embeddings=True,
        bos_token_id=ids("<|endoftext|>"), eos_token_id=ids("<|im_end|>"), pad_token_id=ids("<|endoftext|>"),
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
        vision_token_id=ids("<|vision_pad|>"),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=hidden,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                           fullatt_block_indexes=[1], tokens_per_second=2, in_channels=3, in_chans=3, hidden_act="silu"),
    )


def scripted_generation_config(tokenizer: Any, script: list[str] | None) -> Any:
    """Greedy decoding forced (by sequence_bias) to emit the ``script`` tokens, then the end token.

    Without a script, the vision placeholder tokens are suppressed, so that a random model
    cannot emit image tokens (which a real model never does)."""
    from transformers import GenerationConfig

    ids = tokenizer.convert_tokens_to_ids
    end = ids("<|im_end|>")
    cfg = GenerationConfig(bos_token_id=ids("<|endoftext|>"), eos_token_id=[end, ids("<|endoftext|>")],
                           pad_token_id=ids("<|endoftext|>"))
    placeholders = [ids(t) for t in ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>")]
    if not script:
        cfg.suppress_tokens = placeholders
        return cfg
    toks = [ids(t) for t in script]
    bias: list[list[Any]] = [[[toks[0]], 1000.0]]
    for prev, nxt in zip(toks, [*toks[1:], end]):
        bias.append([[prev, nxt], 3000.0])
    cfg.sequence_bias = bias
    return cfg


def tiny_sam_overrides() -> list[str]:
    """Hydra overrides shrinking SAM2 Hiera-T to blocks [1, 1, 2, 1], one of them global, and 16 channels."""
    return [
        "++model.image_encoder.trunk.embed_dim=16",
        "++model.image_encoder.trunk.num_heads=1",
        "++model.image_encoder.trunk.stages=[1,1,2,1]",
        "++model.image_encoder.trunk.global_att_blocks=[3]",
        "++model.image_encoder.neck.backbone_channel_list=[128,64,32,16]",
        "++model.memory_attention.num_layers=1",
    ]


TINY_SAM_CONFIG = "sam2_hiera_t.yaml"


def save_processor(directory: Path, processor: Any) -> None:
    processor.save_pretrained(directory)


def build_stock_qwen(directory: Path, script: list[str] | None = None, seed: int = 0) -> tuple[Any, Any]:
    """A tiny random stock ``Qwen2_5_VLForConditionalGeneration`` and its processor, saved to ``directory``."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    processor = build_processor(script)
    torch.manual_seed(seed)
    config = Qwen2_5_VLConfig(**text_config(processor.tokenizer))
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    model.generation_config = scripted_generation_config(processor.tokenizer, script)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return model, processor


def build_lens_checkpoint(directory: Path, samr1: Any, script: list[str] | None = None, seed: int = 0,
                          num_of_query: int = 64) -> None:
    """A tiny random LENS checkpoint (upstream ``SAMR1ForConditionalGeneration_qwen2p5``) in ``directory``.

    ``samr1`` is the imported upstream module ``src.open_r1.trainer.samr1``.
    """
    import torch

    from harness_lens.model import sam_builder

    processor = build_processor(script)
    torch.manual_seed(seed)
    config = samr1.SAMR1Config(num_of_query=num_of_query, if_use_qwen_connector=True, **text_config(processor.tokenizer))
    with sam_builder(samr1, TINY_SAM_CONFIG, tiny_sam_overrides()):
        model = samr1.SAMR1ForConditionalGeneration_qwen2p5(config)
    model.generation_config = scripted_generation_config(processor.tokenizer, script)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
