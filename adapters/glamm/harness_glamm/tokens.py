"""Token ids: the prompt with its image placeholder, padding, and the checked ``[SEG]`` id.

``tokenizer_image_token`` is ``model/llava/mm_utils.py tokenizer_image_token`` (the same in
GLaMM's and LISA's checkouts) line for line
(each ``<image>``-separated chunk tokenised on its own, the chunks joined by
``IMAGE_TOKEN_INDEX`` = -200, one BOS kept); ``tests/test_tokens.py`` compares it with the
checkout's function. Padding is ``collate_fn``'s: ``pad_sequence(batch_first=True,
padding_value=pad_token_id)`` (right side) and ``attention_mask = input_ids != pad_token_id``
(``dataset/dataset.py custom_collate_fn``).

The ``[SEG]`` id: upstream takes ``tokenizer("[SEG]", add_special_tokens=False).input_ids[0]``,
which can return 29871 ("▁") with some tokenizer versions (LISA issue #55, GLaMM issue #73) and
then silently segments nothing. Here the id comes from ``convert_tokens_to_ids`` and must be an added token
(>= 32000, LLaMA's base vocabulary, and not the unknown id) that converts back to ``[SEG]``;
anything else is a wrong tokenizer and stops the load.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

IMAGE_TOKEN_INDEX = -200
LLAMA_BASE_VOCAB = 32000


class TokenizerError(RuntimeError):
    """The tokenizer does not carry the special tokens the checkpoint was trained with."""


def special_token_id(tokenizer: Any, token: str, min_id: int = LLAMA_BASE_VOCAB) -> int:
    """The id of an added token, checked: >= ``min_id``, not unk, and round-trips to ``token``."""
    idx = tokenizer.convert_tokens_to_ids(token)
    unk = getattr(tokenizer, "unk_token_id", None)
    back = tokenizer.convert_ids_to_tokens(idx) if isinstance(idx, int) else None
    problems = []
    if not isinstance(idx, int):
        problems.append(f"convert_tokens_to_ids returned {idx!r}")
    else:
        if unk is not None and idx == unk:
            problems.append(f"it is the unknown token ({unk})")
        if idx < min_id:
            problems.append(f"its id {idx} is below {min_id} (an added token of a LLaMA tokenizer is >= {min_id})")
        if back != token:
            problems.append(f"id {idx} converts back to {back!r}")
    if problems:
        name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
        raise TokenizerError(
            f"tokenizer {name!r} has no usable {token} token: {'; '.join(problems)}. "
            "Load the tokenizer saved with the checkpoint (its added_tokens.json defines the token)."
        )
    return int(idx)


def tokenizer_image_token(prompt: str, tokenizer: Any, image_token_index: int = IMAGE_TOKEN_INDEX) -> list[int]:
    """``mm_utils.tokenizer_image_token`` (returns a list; upstream wraps it in a LongTensor)."""
    prompt_chunks = [tokenizer(chunk).input_ids for chunk in prompt.split("<image>")]

    def insert_separator(x: list[Any], sep: list[int]) -> list[Any]:
        return [ele for sublist in zip(x, [sep] * len(x)) for ele in sublist][:-1]

    input_ids: list[int] = []
    offset = 0
    if len(prompt_chunks) > 0 and len(prompt_chunks[0]) > 0 and prompt_chunks[0][0] == tokenizer.bos_token_id:
        offset = 1
        input_ids.append(prompt_chunks[0][0])
    for x in insert_separator(prompt_chunks, [image_token_index] * (offset + 1)):
        input_ids.extend(x[offset:])
    return input_ids


def pad_right(sequences: Sequence[Sequence[int]], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``collate_fn``: right padding with the pad id, attention mask = ids != pad id."""
    seqs = [torch.tensor(list(s), dtype=torch.long) for s in sequences]
    input_ids = torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True, padding_value=pad_token_id)
    return input_ids, input_ids.ne(pad_token_id)
