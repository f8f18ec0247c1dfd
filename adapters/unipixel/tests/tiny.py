"""A tiny random UniPixel checkpoint built from configs on the spot (no download).

- a byte-level BPE tokenizer trained on a few sentences, with Qwen2-VL's special tokens, UniPixel's
  ``<|ref|>``, ``<|seg|>``, ``<|mem|>`` and Qwen2.5-VL's chat template (``Qwen2TokenizerFast``);
- the fast Qwen2-VL image processor and the Qwen2-VL video processor with Qwen2.5-VL's values;
- upstream's ``PixelQwen2_5_VLForConditionalGeneration`` with 2-layer, 64-wide text and vision
  towers and a tiny SAM 2.1 (the Hiera-T config shrunk by Hydra overrides: blocks [1, 1, 2, 1], one
  global, 16 channels; 256x256 input), random weights, saved with ``save_pretrained``.

How the random model answers. UniPixel draws a mask when the *raw* logits at a position pick
``<|seg|>`` (its forward tests ``logits[0, -1].argmax() == seg_token_id``, before any logits
processor). In the tiny checkpoint every token embedding has 1 in its first dimension, which no
layer writes to (that row of ``o_proj`` and ``down_proj`` is zero; the rest is scaled up so that the
context moves the last position's state), and the output head is zero but for the weight of that
dimension in ``<|seg|>``'s row (``draws_masks=True``): the raw argmax is then ``<|seg|>`` at every
position, and the mask is drawn from the random, image- and question-dependent hidden state of the
last prompt position, as a trained UniPixel draws it when it is about to say ``<|seg|>``
(SAM2's object-score head is biased so that the object is always present, else most random masks
would be empty). With
``draws_masks=False`` the head is all zero (argmax: token 0, ``<|endoftext|>``) and the model never
draws one. ``generation_config.sequence_bias`` scripts the greedy text: ``script`` tokens, then the
end token.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.modelkit.testing import QWEN2_VL_CHAT_TEMPLATE, QWEN2_VL_SPECIAL_TOKENS

UNIPIXEL_TOKENS = ["<|ref|>", "<|seg|>", "<|mem|>"]
CORPUS = [
    "You are a helpful assistant. Please segment the red car in this image.",
    "Please provide the segmentation mask. What is the object that can hold water? man woman dog left right",
    "Sure, it is <|seg|>. the a an zebra apple person umbrella small large blue red green front back 0123456789",
]
SAM2_CONFIG = "configs/sam2.1_hiera_t"
SAM2_IMAGE_SIZE = 256
SAM2_OVERRIDES = [
    "++model.image_encoder.trunk.embed_dim=16",
    "++model.image_encoder.trunk.num_heads=1",
    "++model.image_encoder.trunk.stages=[1,1,2,1]",
    "++model.image_encoder.trunk.global_att_blocks=[3]",
    "++model.image_encoder.neck.backbone_channel_list=[128,64,32,16]",
    "++model.memory_attention.num_layers=1",
]


def build_tokenizer(extra_tokens: list[str] | None = None) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AddedToken, Qwen2TokenizerFast

    special = [*QWEN2_VL_SPECIAL_TOKENS, *UNIPIXEL_TOKENS]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=360, special_tokens=special, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(CORPUS, trainer)
    tok = Qwen2TokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token=None,
                             bos_token=None, additional_special_tokens=[t for t in special if t != "<|endoftext|>"],
                             errors="replace")
    new = [t for t in extra_tokens or [] if t not in tok.get_vocab()]
    if new:  # a scripted answer word is one token
        tok.add_tokens([AddedToken(t, normalized=False, special=False) for t in new])
    tok.chat_template = QWEN2_VL_CHAT_TEMPLATE
    return tok


def build_processor(extra_tokens: list[str] | None = None) -> Any:
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessorFast
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    values = dict(min_pixels=3136, max_pixels=12845056, patch_size=14, temporal_patch_size=2, merge_size=2,
                  image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711])
    return Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessorFast(**values),
                               video_processor=Qwen2VLVideoProcessor(**values),
                               tokenizer=build_tokenizer(extra_tokens), chat_template=QWEN2_VL_CHAT_TEMPLATE)


def config_fields(tokenizer: Any, hidden: int = 64) -> dict[str, Any]:
    ids = tokenizer.convert_tokens_to_ids
    return dict(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096, rope_theta=1000000.0,
        rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]}, tie_word_embeddings=False,
        bos_token_id=ids("<|endoftext|>"), eos_token_id=ids("<|im_end|>"), pad_token_id=ids("<|endoftext|>"),
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
        vision_token_id=ids("<|vision_pad|>"),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=hidden,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                           fullatt_block_indexes=[1], tokens_per_second=2, in_channels=3, in_chans=3, hidden_act="silu"),
        sam2_config=SAM2_CONFIG, sam2_image_size=SAM2_IMAGE_SIZE, sam2_hidden_tokens=2, sam2_batch_mode=False,
        sam2_enable_decoder=True, sam2_inference_mode=True, sam2_checkpoint=None, sample_objects=-1,
        ref_token_id=ids("<|ref|>"), seg_token_id=ids("<|seg|>"), mem_token_id=ids("<|mem|>"),
    )


def generation_config(tokenizer: Any, script: list[str]) -> Any:
    from transformers import GenerationConfig

    ids = tokenizer.convert_tokens_to_ids
    end = ids("<|im_end|>")
    cfg = GenerationConfig(bos_token_id=ids("<|endoftext|>"), eos_token_id=[end, ids("<|endoftext|>")],
                           pad_token_id=ids("<|endoftext|>"))
    toks = [ids(t) for t in script]
    bias: list[list[Any]] = [[[toks[0]], 1000.0]]
    for prev, nxt in zip(toks, [*toks[1:], end]):
        bias.append([[prev, nxt], 3000.0])
    cfg.sequence_bias = bias
    return cfg


def build_checkpoint(directory: Path, qwen2_5_vl: Any, draws_masks: bool = True, script: list[str] | None = None,
                     seed: int = 0) -> Path:
    """A tiny random UniPixel checkpoint in ``directory``; ``qwen2_5_vl`` is upstream's ``unipixel.model.qwen2_5_vl``."""
    import torch

    from harness_unipixel.model import sam2_overrides

    script = script or ["<|seg|>"]
    processor = build_processor(script)
    torch.manual_seed(seed)
    config = qwen2_5_vl.PixelQwen2_5_VLConfig(**config_fields(processor.tokenizer))
    with sam2_overrides(qwen2_5_vl, SAM2_OVERRIDES):
        model = qwen2_5_vl.PixelQwen2_5_VLForConditionalGeneration(config).eval()
    with torch.no_grad():
        model.get_input_embeddings().weight[:, 0] = 1.0
        for layer in model.model.language_model.layers:
            for proj in (layer.self_attn.o_proj, layer.mlp.down_proj):
                proj.weight.mul_(20.0)  # context matters: the last position's state differs by question
                proj.weight[0] = 0.0  # and the first dimension stays the embedding's 1
        model.lm_head.weight.zero_()
        if draws_masks:
            model.lm_head.weight[config.seg_token_id, 0] = 1.0
        # the <|seg|> hidden state reaches SAM2 through seg_head: scaled up so that masks differ by question
        model.seg_head[-1].weight.mul_(30.0)
        # SAM2 replaces the mask of an object it scores as absent by -1024 everywhere: a random object
        # score would make most masks empty, so the tiny SAM2 always sees its object
        head = model.sam2.sam_mask_decoder.pred_obj_score_head
        (head if isinstance(head, torch.nn.Linear) else head.layers[-1]).bias.fill_(20.0)
    model.generation_config = generation_config(processor.tokenizer, script)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory
