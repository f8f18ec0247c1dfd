"""Tiny random EVF-SAM checkpoints built with upstream's own classes, and a tiny XLM-R tokenizer. No download.

The model classes (``EvfSamModel``, ``EvfSam2Model``) come from the checkout; only their parts are made
small (``harness_evfsam.model.architecture_overrides``): BEiT-3 two layers 32 wide at the real 224 input,
SAM-H's image encoder two blocks 32 wide at the real 1024 input (prompt encoder and mask decoder as
upstream builds them), SAM-2's Hiera one block per stage from 8 channels with a 32-wide neck. The
tokenizer is the checkpoints' kind: ``XLMRobertaTokenizer`` on a sentencepiece model trained here on a
few sentences (pad id 1, as ``EvfConfig`` expects).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch

from harness_evfsam.model import architecture_overrides, import_model_module

SENTENCES = [
    "the man on the left", "a red car", "zebra top left", "two dogs on the grass", "the broccoli closest to the bottle",
    "a pizza with a yellow sign on top of it", "woman in white shirt", "left umbrella", "the bigger elephant",
]
TINY_BEIT3 = {"encoder_embed_dim": 32, "encoder_attention_heads": 2, "encoder_ffn_embed_dim": 64, "encoder_layers": 2}
TINY_SAM = {"encoder_embed_dim": 32, "encoder_depth": 2, "encoder_num_heads": 2, "encoder_global_attn_indexes": []}
TINY_SAM2 = [
    "++model.image_encoder.trunk.embed_dim=8", "++model.image_encoder.trunk.num_heads=1",
    "++model.image_encoder.trunk.stages=[1,1,2,1]", "++model.image_encoder.trunk.global_att_blocks=[3]",
    "++model.image_encoder.neck.backbone_channel_list=[64,32,16,8]", "++model.image_encoder.neck.d_model=32",
    "++model.image_encoder.neck.position_encoding.num_pos_feats=32",
    # SAM2Base takes its hidden width (the prompt encoder's and mask decoder's) from the memory attention
    "++model.memory_attention.d_model=32", "++model.memory_attention.num_layers=1", "++model.memory_attention.layer.d_model=32",
    "++model.memory_attention.layer.dim_feedforward=64", "++model.memory_attention.layer.self_attention.embedding_dim=32",
    "++model.memory_attention.layer.cross_attention.embedding_dim=32",
]
ARCHITECTURE: dict[str, dict[str, Any]] = {"ori": {"beit3": TINY_BEIT3, "sam": TINY_SAM},
                                           "sam2": {"beit3": TINY_BEIT3, "sam2": TINY_SAM2}}
# EvfConfig fields of each head: sam_scale picks the builder upstream calls (overridden above); out_dim is
# SAM's prompt width (SAM-H: 256, fixed in its builder; the tiny SAM-2: its neck's 32)
CONFIG = {"ori": {"sam_scale": "huge", "out_dim": 256}, "sam2": {"sam_scale": "large", "out_dim": 32}}
# seeds whose random masks cover part of a test image (neither almost empty nor almost full)
SEED = {"ori": 0, "sam2": 1}


def save_tokenizer(directory: Path) -> Path:
    import sentencepiece as spm
    from transformers import XLMRobertaTokenizer

    corpus = directory / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES * 4) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(directory / "spm"), vocab_size=64,
                                   character_coverage=1.0, hard_vocab_limit=False, minloglevel=2)
    tokenizer = XLMRobertaTokenizer(vocab_file=str(directory / "spm.model"))
    out = directory / "saved"
    tokenizer.save_pretrained(out)
    return out


def build_model(repo: Path, model_type: str, seed: int | None = None) -> Any:
    """A random upstream model of ``model_type`` with the tiny parts, in eval mode."""
    module = import_model_module(repo, model_type)
    config_module = importlib.import_module("model.configuration_evf")
    config = config_module.EvfConfig(hidden_size=TINY_BEIT3["encoder_embed_dim"], mm_extractor_scale="large",
                                     **CONFIG[model_type])
    cls = module.EvfSamModel if model_type == "ori" else module.EvfSam2Model
    torch.manual_seed(SEED[model_type] if seed is None else seed)
    with architecture_overrides(module, ARCHITECTURE[model_type]):
        model = cls(config)
    return model.eval()


def save_checkpoint(directory: Path, repo: Path, model_type: str, tokenizer_dir: Path, seed: int | None = None) -> Path:
    from transformers import AutoTokenizer

    build_model(repo, model_type, seed).save_pretrained(directory)
    AutoTokenizer.from_pretrained(str(tokenizer_dir), use_fast=False).save_pretrained(directory)
    return directory
