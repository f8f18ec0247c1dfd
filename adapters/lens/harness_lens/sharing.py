"""Work LENS repeats per sentence, done once per image: the Qwen ViT and the shared prefix.

Upstream (``eval/evaluate_res2.py evaluate_single``) hands the processor ``images=[img] * n``,
so the Qwen2.5-VL vision tower encodes the same image n times in generation and n times
again in the mask pass (``process_llm_input``), and both passes run the system prompt and
the image tokens through the language model once per sentence. Two savings, each an
adapter option:

``share_vision`` (``VisionEncoderCache``)
    stands in for ``model.visual.forward``: when every image of a call is the same, the
    first is encoded and its features repeated; the features are kept for the next call
    that brings the same pixels (the mask pass, or the rest of an image's sentences).
``share_prefix`` (``generate_from_prefix``, ``mask_pass_from_prefix``)
    the longest token prefix common to an image's prompts (system prompt, image tokens
    and the template's words before the expression) runs through the language model once
    per image and pass; each sentence continues from that prefix's key/value cache.

Why two prefix prefills and not one: the two passes do not see the same positions.
Generation uses Qwen2.5-VL's 3-D rotary positions (``get_rope_index`` over ``input_ids``);
the mask pass calls the model with ``inputs_embeds`` and ``input_ids=None``, so
``get_rope_index`` falls back to 1-D positions from the attention mask (what LENS was
trained with). Every key of every layer differs between the two, so the mask pass cannot
continue from the generation's cache without changing the result (see the README). The
opt-in ``mask_from_cache`` (``mask_pass_from_cache``) does it anyway: the mask pass then runs
only the 65 positions the generation's cache lacks, with the generation's 3-D positions.

Batch layout with a shared prefix: row i is ``[prefix][pads][suffix_i]`` instead of
upstream's left-padded ``[pads][prefix][suffix_i]``. Pads are masked out, and positions
are given so that every real token gets upstream's position: in generation through
``model.rope_deltas`` (HF then adds ``cache_position + rope_deltas`` to each new token), in
the mask pass explicitly from the attention mask's cumulative sum, as upstream computes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


class VisionEncoderCache:
    """Stands in for ``model.visual.forward``: one encoding per image, repeated for its copies.

    ``share=False`` is upstream's behaviour (every copy encoded); the counters count the
    images and patches really encoded either way.
    """

    def __init__(self, visual: torch.nn.Module, counters: Any, share: bool = True) -> None:
        self._encode = visual.forward
        self.counters = counters
        self.share = share
        self._pixels: torch.Tensor | None = None
        self._grid: torch.Tensor | None = None
        self._features: torch.Tensor | None = None
        visual.forward = self  # instance attribute shadows the method (Module.__call__ calls self.forward)

    def clear(self) -> None:
        self._pixels = self._grid = self._features = None

    def __call__(self, hidden_states: torch.Tensor, grid_thw: torch.Tensor) -> torch.Tensor:
        n = int(grid_thw.shape[0])
        rows = [int(t * h * w) for t, h, w in grid_thw.tolist()]
        first = hidden_states[: rows[0]]
        same = all(torch.equal(grid_thw[0], grid_thw[i]) for i in range(1, n)) and all(
            torch.equal(first, hidden_states[i * rows[0]:(i + 1) * rows[0]]) for i in range(1, n))
        if not self.share or not same:
            self.counters.vision_encoder_images += n
            self.counters.vision_encoder_patches += sum(rows)
            return self._encode(hidden_states, grid_thw=grid_thw)
        cached = (self._features is not None and self._grid is not None and self._pixels is not None
                  and torch.equal(self._grid, grid_thw[0]) and self._pixels.shape == first.shape
                  and torch.equal(self._pixels, first))
        if not cached:
            self._features = self._encode(first, grid_thw=grid_thw[:1])
            self._pixels, self._grid = first.clone(), grid_thw[0].clone()
            self.counters.vision_encoder_images += 1
            self.counters.vision_encoder_patches += rows[0]
        assert self._features is not None
        return self._features.repeat(n, 1)


@dataclass
class Prefix:
    """The prompt part an image's sentences share, and its key/value caches."""

    ids: torch.Tensor  # (1, P) token ids
    length: int
    max_position: int  # largest 3-D rotary position in the prefix (generation)
    generation_cache: Any = None  # DynamicCache of batch 1 (3-D positions)


def common_prefix_length(rows: list[list[int]], image_token_id: int) -> int:
    """Tokens every row starts with, leaving each row at least one token of its own (generation
    needs one new token to start from); 0 when the image tokens are not all inside it."""
    if not rows:
        return 0
    shortest = min(len(r) for r in rows)
    n = 0
    while n < shortest - 1 and all(r[n] == rows[0][n] for r in rows):
        n += 1
    if any(image_token_id in r[n:] for r in rows):
        return 0
    return n


def unpadded_rows(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[list[int]]:
    return [ids[mask.bool()].tolist() for ids, mask in zip(input_ids, attention_mask)]


def repeat_cache(cache: Any, n: int) -> Any:
    """A fresh DynamicCache holding ``cache``'s keys and values repeated n times along the batch."""
    from transformers import DynamicCache

    out = DynamicCache()
    for layer in range(len(cache.key_cache)):
        out.update(cache.key_cache[layer].repeat(n, 1, 1, 1), cache.value_cache[layer].repeat(n, 1, 1, 1), layer)
    return out


def _embed(model: Any, ids: torch.Tensor, pixel_values: torch.Tensor | None, grid: torch.Tensor | None) -> torch.Tensor:
    """Token embeddings with the image features scattered in: the first lines of upstream's
    forward (``Qwen2_5_VLForConditionalGeneration.forward`` and LENS's ``process_llm_input``)."""
    embeds = model.model.embed_tokens(ids)
    if pixel_values is not None:
        image_embeds = model.visual(pixel_values.type(model.visual.dtype), grid_thw=grid)
        mask = (ids == model.config.image_token_id).unsqueeze(-1).expand_as(embeds)
        embeds = embeds.masked_scatter(mask, image_embeds.to(embeds.device, embeds.dtype))
    return embeds


def _first_image(inputs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    grid = inputs["image_grid_thw"][:1]
    rows = int(grid[0].prod())
    return inputs["pixel_values"][:rows], grid


def prefill_prefix(model: Any, inputs: Any, length: int, rope: str) -> tuple[Any, int]:
    """Run the first ``length`` tokens of row 0 (all rows share them) through the language model
    once, with the 3-D positions of generation (``rope="3d"``) or the 1-D ones of the mask
    pass (``"1d"``); returns the key/value cache and the prefix's largest position."""
    mask0 = inputs["attention_mask"][0].bool()
    ids = inputs["input_ids"][0][mask0][:length].unsqueeze(0)
    pixel_values, grid = _first_image(inputs)
    ones = torch.ones_like(ids)
    if rope == "3d":
        positions, _ = model.get_rope_index(ids, grid, None, None, ones)
    else:
        positions = torch.arange(length, device=ids.device).view(1, 1, -1).expand(3, 1, -1)
    embeds = _embed(model, ids, pixel_values, grid)
    out = model.model(input_ids=None, inputs_embeds=embeds, attention_mask=ones, position_ids=positions, use_cache=True,
                      return_dict=True)
    return out.past_key_values, int(positions.max())


def prefix_of(model: Any, inputs: Any, generation: bool = True) -> Prefix | None:
    """The shared prefix of a processor batch (one image repeated), or None when there is none."""
    image_token = int(model.config.image_token_id)
    rows = unpadded_rows(inputs["input_ids"], inputs["attention_mask"])
    length = common_prefix_length(rows, image_token)
    if length == 0:
        return None
    ids = torch.tensor([rows[0][:length]], device=inputs["input_ids"].device)
    prefix = Prefix(ids=ids, length=length, max_position=0)
    if generation:
        prefix.generation_cache, prefix.max_position = prefill_prefix(model, inputs, length, "3d")
    return prefix


def layout(rows: list[list[int]], prefix_length: int, pad_id: int, device: Any) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """``[prefix][pads][suffix_i]`` ids and attention mask for rows that all start with the prefix."""
    suffixes = [r[prefix_length:] for r in rows]
    width = prefix_length + max(len(s) for s in suffixes)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (row, suffix) in enumerate(zip(rows, suffixes)):
        ids[i, :prefix_length] = torch.tensor(row[:prefix_length])
        mask[i, :prefix_length] = 1
        if suffix:
            ids[i, width - len(suffix):] = torch.tensor(suffix)
            mask[i, width - len(suffix):] = 1
    return ids.to(device), mask.to(device), [len(s) for s in suffixes]


def generate_from_prefix(model: Any, inputs: Any, prefix: Prefix, pad_id: int, budget: dict[str, Any]) -> tuple[Any, int]:
    """Greedy generation of every row continuing from the prefix's cache; returns what ``generate``
    returns (the sequences in the ``[prefix][pads][suffix]`` layout, or its output dict) and the prompt width."""
    rows = unpadded_rows(inputs["input_ids"], inputs["attention_mask"])
    ids, mask, suffix_lengths = layout(rows, prefix.length, pad_id, inputs["input_ids"].device)
    width = int(ids.shape[1])
    # each row's next position after its last prompt token is prefix.max_position + 1 + len(suffix);
    # HF gives the token in column c the position c + rope_deltas (Qwen2_5_VLForConditionalGeneration.forward)
    deltas = torch.tensor([[prefix.max_position + 1 - width + s] for s in suffix_lengths], device=ids.device)
    model.rope_deltas = deltas
    cache = repeat_cache(prefix.generation_cache, len(rows))
    sequences = model.generate(input_ids=ids, attention_mask=mask, past_key_values=cache, use_cache=True, do_sample=False,
                               **budget)
    return sequences, width


def mask_pass_positions(attention: torch.Tensor, num_queries: int) -> torch.Tensor:
    """Upstream's mask-pass positions (``get_rope_index`` without ``input_ids``): the cumulative sum of
    the attention mask with the queries' ones appended, minus one, 1 at masked places; 3 equal rows."""
    full = torch.cat([attention, torch.ones(attention.shape[0], num_queries, dtype=attention.dtype, device=attention.device)], 1)
    positions = full.long().cumsum(-1) - 1
    positions.masked_fill_(full == 0, 1)
    return positions.unsqueeze(0).expand(3, -1, -1)


def mask_pass_from_prefix(model: Any, inputs: Any, sequences: torch.Tensor, prefix_length: int, pad_id: int,
                          sam_images: torch.Tensor) -> Any:
    """Upstream's second pass (``use_learnable_query=True``) with the prefix run once (1-D positions)
    and each row's rest (its suffix, its answer, the 64 queries) continuing from that cache."""
    cache, _ = prefill_prefix(model, inputs, prefix_length, "1d")
    attention = torch.ones_like(sequences, dtype=torch.int64)
    attention[sequences == pad_id] = 0
    if not bool(attention[:, :prefix_length].all()):
        raise ValueError("the shared prefix holds a pad token; upstream would mask it, the prefix cache cannot")
    positions = mask_pass_positions(attention, int(model.model_num_of_query))[:, :, prefix_length:]
    n = int(sequences.shape[0])
    _, low_res = model(input_ids=sequences[:, prefix_length:], attention_mask=attention, position_ids=positions,
                       past_key_values=repeat_cache(cache, n), output_hidden_states=True, use_learnable_query=True,
                       sam_images=sam_images, use_cache=False)
    return low_res


def query_positions(sequences: torch.Tensor, prompt_length: int, rope_deltas: torch.Tensor, pad_id: int,
                    num_queries: int) -> torch.Tensor:
    """Positions of the mask pass's new tokens when it continues from the generation's cache, in the
    generation's 3-D convention: the last column (the one token generation never fed back) at HF's
    ``column + rope_deltas``, and the queries right after the row's last real token, as
    ``get_rope_index`` places text that follows it (the row's later pads, masked, take no position).

    A row's prompt ends at position ``prompt_length - 1 + delta`` (HF's delta is the prompt's largest
    position + 1 - its width, on either padding side), and generated column c is at ``c + delta``.
    Returns (3, n, 1 + num_queries): text positions are equal in the three rotary sections."""
    n, width = int(sequences.shape[0]), int(sequences.shape[1])
    columns = torch.arange(width, device=sequences.device).expand(n, -1)
    real = (sequences != pad_id) & (columns >= prompt_length)
    last_column = torch.where(real, columns, torch.full_like(columns, prompt_length - 1)).amax(1, keepdim=True)
    deltas = rope_deltas.to(sequences.device).view(n, 1)
    queries = last_column + deltas + 1 + torch.arange(num_queries, device=sequences.device)
    positions = torch.cat([torch.full((n, 1), width - 1, device=sequences.device) + deltas, queries], 1)
    return positions.unsqueeze(0).expand(3, -1, -1)


def mask_pass_from_cache(model: Any, generated: Any, pad_id: int, sam_images: torch.Tensor) -> Any:
    """Upstream's second pass (``use_learnable_query=True``) continuing from the generation's cache.

    The cache holds every column of the generated sequences but the last (generation stops after
    choosing it); the pass feeds that column and the 64 learnable queries, under upstream's
    mask-pass attention mask (1 except at pad tokens, then the queries' ones), so a row's later pads
    and the batch layout's pads are masked as in upstream's pass. Only the queries' hidden states
    reach SAM (``get_sam_embedding`` reads the last 64). What differs from upstream is the positions:
    the cached keys carry generation's 3-D positions, not the 1-D ones of upstream's pass (README)."""
    sequences = generated.sequences
    cache = generated.cache
    if cache is None or generated.rope_deltas is None:
        raise ValueError("mask_pass_from_cache needs the generation's cache: generate(..., keep_cache=True)")
    width = int(sequences.shape[1])
    if cache.get_seq_length() != width - 1:
        raise ValueError(f"the generation's cache holds {cache.get_seq_length()} columns, expected {width - 1} "
                         "(every generated column but the last)")
    attention = torch.ones_like(sequences, dtype=torch.int64)
    attention[sequences == pad_id] = 0
    num_queries = int(model.model_num_of_query)
    positions = query_positions(sequences, generated.prompt_length, generated.rope_deltas, pad_id, num_queries)
    _, low_res = model(input_ids=sequences[:, -1:], attention_mask=attention, position_ids=positions, past_key_values=cache,
                       output_hidden_states=True, use_learnable_query=True, sam_images=sam_images, use_cache=False)
    return low_res
