"""EVF-SAM's text input: the expression itself, tokenised by the checkpoint's BEiT-3 (XLM-R) tokenizer.

``utils/dataset.py`` (9935dc5): ``ValDataset`` takes each REFER sentence as ``sent["sent"].strip().lower()``;
``collate_fn`` tokenises every sentence of the batch alone (``tokenizer(prompt, return_tensors="pt")``,
special tokens added, no truncation at evaluation), pads them on the right with the tokenizer's pad id
(``pad_sequence``), and gives BEiT-3 ``~attention_masks`` as the text padding, where
``attention_masks = input_ids != pad id``. The tokenizer is loaded with ``padding_side="right",
use_fast=False`` (``eval.py``).

Upstream evaluates only REFER datasets; for any other (ReasonSeg, GroundingSuite, ...) the expression is
used as the suite gives it, as ``inference.py`` uses its ``--prompt``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# the suites' dataset names of REFER-format data, whose sentences ValDataset lower-cases
REFER_DATASETS = ("refcoco", "refcoco+", "refcocog", "refclef", "grefcoco", "refcoco-m")


def prompt(expression: str, dataset: str) -> str:
    """The text BEiT-3 is given for a query of ``dataset``."""
    if dataset in REFER_DATASETS:
        return expression.strip().lower()
    return expression


def load_tokenizer(checkpoint: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(checkpoint, padding_side="right", use_fast=False)


def token_ids(tokenizer: Any, prompts: Sequence[str]) -> tuple[Any, Any]:
    """``collate_fn``'s ``input_ids`` (N, L) and ``attention_masks`` (N, L) bool for ``prompts``."""
    import torch

    ids = [tokenizer(p, return_tensors="pt").input_ids[0] for p in prompts]
    input_ids = torch.nn.utils.rnn.pad_sequence(ids, batch_first=True, padding_value=tokenizer.pad_token_id)
    return input_ids, input_ids.ne(tokenizer.pad_token_id)
