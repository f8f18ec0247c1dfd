"""A tiny random SAM 3 (ViT backbone, FPN, CLIP text encoder, DETR encoder/decoder, mask decoder)
built from ``Sam3Config`` with small widths, and a ``Sam3Processor`` with a byte-level BPE CLIP
tokenizer trained on a few strings. No download."""

from __future__ import annotations

from pathlib import Path

import torch

SIZE = 112  # 8 x 8 patches of 14 pixels (upstream: 1008 = 72 x 14)


def build_processor():  # -> Sam3Processor
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import CLIPTokenizerFast, Sam3ImageProcessor, Sam3Processor

    tok = Tokenizer(models.BPE(unk_token="<|endoftext|>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<|startoftext|>", "<|endoftext|>"])
    tok.train_from_iterator(["the man on the left", "a red car", "two dogs on the grass", "zebra"], trainer)
    bos, eos = tok.token_to_id("<|startoftext|>"), tok.token_to_id("<|endoftext|>")
    tok.post_processor = processors.TemplateProcessing(single="<|startoftext|> $A <|endoftext|>",
                                                       special_tokens=[("<|startoftext|>", bos), ("<|endoftext|>", eos)])
    fast = CLIPTokenizerFast(tokenizer_object=tok, bos_token="<|startoftext|>", eos_token="<|endoftext|>",
                             pad_token="<|endoftext|>", unk_token="<|endoftext|>")
    return Sam3Processor(image_processor=Sam3ImageProcessor(size={"height": SIZE, "width": SIZE}), tokenizer=fast)


def build_model(tokenizer, seed: int = 0):  # -> Sam3Model
    from transformers import Sam3Config, Sam3Model

    small = {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}
    config = Sam3Config(
        vision_config={"backbone_config": {"model_type": "sam3_vit_model", **small, "num_hidden_layers": 2, "image_size": SIZE,
                                           "patch_size": 14, "window_size": 4, "global_attn_indexes": [1], "pretrain_image_size": 56},
                       "fpn_hidden_size": 32, "backbone_feature_sizes": [[32, 32], [16, 16], [8, 8]]},
        text_config={"vocab_size": len(tokenizer), **small, "projection_dim": 32, "num_hidden_layers": 2,
                     "max_position_embeddings": 32, "bos_token_id": tokenizer.bos_token_id,
                     "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id},
        geometry_encoder_config={**small, "num_layers": 1},
        detr_encoder_config={**small, "num_layers": 1},
        detr_decoder_config={**small, "num_layers": 1, "num_queries": 10},
        mask_decoder_config={"hidden_size": 32, "num_attention_heads": 2},
    )
    torch.manual_seed(seed)
    return Sam3Model(config).eval()


def make_confident(model) -> None:  # Sam3Model, in place
    """Spread the random model's scores over (0, 1) (they sit near 0.25), so that upstream's 0.5 threshold keeps
    some instances and not others, as a trained model's do: the class-score projections scaled up, the presence
    head's output biased towards "present"; and the mask logits (about 1e-4 at random) scaled to a few units, so
    that pixels sit far from the 0.5 threshold, as a trained model's do."""
    with torch.no_grad():
        model.mask_decoder.mask_embedder.layers[2].weight.mul_(3e4)
        model.mask_decoder.mask_embedder.layers[2].bias.mul_(3e4)
        model.dot_product_scoring.query_proj.weight.mul_(30)
        model.dot_product_scoring.text_proj.weight.mul_(30)
        model.detr_decoder.presence_head.layer3.bias.fill_(4.0)


def save_tiny_sam3(root: Path, confident: bool = False) -> str:
    processor = build_processor()
    model = build_model(processor.tokenizer)
    if confident:
        make_confident(model)
    model.save_pretrained(root)
    processor.save_pretrained(root)
    return str(root)
