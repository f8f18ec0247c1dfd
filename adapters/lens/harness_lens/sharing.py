"""Work LENS repeats per sentence, done once per image: the Qwen ViT and the shared prefix.

Upstream (``eval/evaluate_res2.py evaluate_single``) hands the processor ``images=[img] * n``,
so the Qwen2.5-VL vision tower encodes the same image n times in generation and n times
again in the mask pass (``process_llm_input``), and both passes run the system prompt and
the image tokens through the language model once per sentence. Two savings, each an
adapter option:

``share_vision`` (``VisionEncoderCache``)
    stands in for ``model.visual.forward``: each distinct image of a call (one, or several
    in a batch spanning images) is encoded once and its features repeated for its copies;
    the features are kept for the next call that brings the same pixels (the mask pass, or
    the rest of an image's sentences).
``share_prefix`` (``generate_from_prefix``, ``mask_pass_from_prefix``)
    the longest token prefix common to an image's prompts (system prompt, image tokens
    and the template's words before the expression) runs through the language model once
    per image and pass (the prefixes of a batch's images together in one call, kept for
    the next call when the engine split an image between two batches, ``PrefixStore``);
    each sentence continues from its image's prefix's key/value cache.

Why two prefix prefills and not one: the two passes do not see the same positions.
Generation uses Qwen2.5-VL's 3-D rotary positions (``get_rope_index`` over ``input_ids``);
the mask pass calls the model with ``inputs_embeds`` and ``input_ids=None``, so
``get_rope_index`` falls back to 1-D positions from the attention mask (what LENS was
trained with). Every key of every layer differs between the two, so the mask pass cannot
continue from the generation's cache without changing the result (see the README). The
opt-in ``mask_from_cache`` (``mask_pass_from_cache``) does it anyway: the mask pass then runs
only the 65 positions the generation's cache lacks, with the generation's 3-D positions.

Batch layout with a shared prefix: row i is ``[prefix][pads][suffix_i]`` instead of
upstream's left-padded ``[pads][prefix][suffix_i]`` (across images ``[pads][prefix of its
image][pads][suffix_i]``, the prefixes right-aligned in a region as wide as the longest). Pads are masked out, and positions
are given so that every real token gets upstream's position: in generation through
``model.rope_deltas`` (HF then adds ``cache_position + rope_deltas`` to each new token), in
the mask pass explicitly from the attention mask's cumulative sum, as upstream computes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


class VisionEncoderCache:
    """Stands in for ``model.visual.forward``: each distinct image of a call encoded once, its features
    repeated for its copies.

    The rows of a call (one image per prompt) are grouped by pixels; the distinct images not kept
    from the previous call are encoded together in one call (the tower keeps images apart through
    its ``cu_seqlens``), and the call's distinct images are kept for the next call (the mask pass,
    or the rest of an image's sentences). ``share=False`` is upstream's behaviour (every copy
    encoded); the counters count the images and patches really encoded either way.
    """

    def __init__(self, visual: torch.nn.Module, counters: Any, share: bool = True) -> None:
        self._encode = visual.forward
        self._merge = int(getattr(visual, "spatial_merge_unit", 4))  # patches per output token
        self.counters = counters
        self.share = share
        self._kept: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # (grid, pixels, features)
        visual.forward = self  # instance attribute shadows the method (Module.__call__ calls self.forward)

    def clear(self) -> None:
        self._kept = []

    @staticmethod
    def _find(entries: list[tuple[torch.Tensor, torch.Tensor, Any]], grid: torch.Tensor, pixels: torch.Tensor) -> int:
        for j, (g, p, _) in enumerate(entries):
            if torch.equal(g, grid) and p.shape == pixels.shape and torch.equal(p, pixels):
                return j
        return -1

    def __call__(self, hidden_states: torch.Tensor, grid_thw: torch.Tensor) -> torch.Tensor:
        rows = [int(t * h * w) for t, h, w in grid_thw.tolist()]
        if not self.share:
            self.counters.vision_encoder_images += len(rows)
            self.counters.vision_encoder_patches += sum(rows)
            return self._encode(hidden_states, grid_thw=grid_thw)
        starts = [sum(rows[:i]) for i in range(len(rows))]
        chunks = [hidden_states[s:s + r] for s, r in zip(starts, rows)]
        distinct: list[tuple[torch.Tensor, torch.Tensor, Any]] = []  # this call's images, features filled below
        which = []  # row -> index into distinct
        for i, chunk in enumerate(chunks):
            j = self._find(distinct, grid_thw[i], chunk)
            if j < 0:
                distinct.append((grid_thw[i], chunk, None))
                j = len(distinct) - 1
            which.append(j)
        missing = []
        for j, (grid, pixels, _) in enumerate(distinct):
            k = self._find(self._kept, grid, pixels)
            if k >= 0:
                distinct[j] = (grid, pixels, self._kept[k][2])
            else:
                missing.append(j)
        if missing:
            grids = torch.stack([distinct[j][0] for j in missing])
            features = self._encode(torch.cat([distinct[j][1] for j in missing]), grid_thw=grids)
            sizes = [int(distinct[j][1].shape[0]) // self._merge for j in missing]
            for j, f in zip(missing, torch.split(features, sizes)):
                distinct[j] = (distinct[j][0].clone(), distinct[j][1].clone(), f)
            self.counters.vision_encoder_images += len(missing)
            self.counters.vision_encoder_patches += sum(int(distinct[j][1].shape[0]) for j in missing)
        self._kept = distinct
        return torch.cat([distinct[j][2] for j in which])


@dataclass
class Prefix:
    """The prompt part each image's sentences share (one per image of the call), and its cache.

    Row i of the batch continues from prefix ``groups[i]`` (its image's); the prefixes are laid out
    right-aligned in a region ``width`` wide (left-padded when the images' prefixes differ in length)."""

    lengths: list[int]  # per prefix (image): its tokens
    groups: list[int]  # per row: the index of its image's prefix
    width: int  # the prefix region of every row: the longest prefix
    max_positions: list[int]  # per prefix: its largest 3-D rotary position (generation)
    generation_cache: Any = None  # DynamicCache, one row per prefix (3-D positions)

    @property
    def length(self) -> int:
        """The prefix region's width (one image: its prefix's length)."""
        return self.width


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


def select_cache(cache: Any, rows: list[int]) -> Any:
    """A fresh DynamicCache whose row i is row ``rows[i]`` of ``cache``."""
    from transformers import DynamicCache

    out = DynamicCache()
    for layer in range(len(cache.key_cache)):
        keys = cache.key_cache[layer]
        index = torch.tensor(rows, device=keys.device)
        out.update(keys.index_select(0, index), cache.value_cache[layer].index_select(0, index), layer)
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


def _row_images(inputs: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each row's (pixel_values rows, grid) from a processor batch with one image per row."""
    grids = inputs["image_grid_thw"]
    out, start = [], 0
    for i in range(int(grids.shape[0])):
        rows = int(grids[i].prod())
        out.append((inputs["pixel_values"][start:start + rows], grids[i:i + 1]))
        start += rows
    return out


@dataclass
class KeptPrefix:
    """One image's prefix cache from the previous call, for an image the engine split between two batches."""

    grid: torch.Tensor
    pixels: torch.Tensor
    ids: list[int]
    keys: list[torch.Tensor]  # per layer (1, heads, length, dim)
    values: list[torch.Tensor]
    max_position: int


class PrefixStore:
    """The prefix caches of the last call, per pass (``3d`` generation, ``1d`` mask pass), so that an
    image whose sentences the engine split between two batches is prefilled once, not once per batch.
    An entry is used only for the same pixels and a prefix of every one of the image's new rows."""

    def __init__(self) -> None:
        self.kept: dict[str, list[KeptPrefix]] = {"3d": [], "1d": []}

    def clear(self) -> None:
        self.kept = {"3d": [], "1d": []}

    def find(self, rope: str, grid: torch.Tensor, pixels: torch.Tensor, rows: list[list[int]],
             exact: list[int] | None = None) -> KeptPrefix | None:
        for e in self.kept[rope]:
            n = len(e.ids)
            if not (torch.equal(e.grid, grid) and e.pixels.shape == pixels.shape and torch.equal(e.pixels, pixels)):
                continue
            if exact is not None and e.ids != exact:
                continue
            if all(len(r) > n and r[:n] == e.ids for r in rows):
                return e
        return None


def _group_rows(inputs: Any, prefix: Prefix) -> tuple[list[list[list[int]]], list[tuple[torch.Tensor, torch.Tensor]]]:
    """Each image's unpadded rows, and each image's (pixels, grid) (its first row's)."""
    rows = unpadded_rows(inputs["input_ids"], inputs["attention_mask"])
    images = _row_images(inputs)
    grouped = [[r for r, g in zip(rows, prefix.groups) if g == k] for k in range(len(prefix.lengths))]
    return grouped, [images[prefix.groups.index(k)] for k in range(len(prefix.lengths))]


def prefill_prefix(model: Any, inputs: Any, prefix: Prefix, rope: str, store: PrefixStore | None = None) -> Any:
    """Run every image's prefix through the language model in one batched call (left-padded to the
    longest), with the 3-D positions of generation (``rope="3d"``, Qwen2.5-VL's ``get_rope_index``)
    or the 1-D ones of the mask pass (``"1d"``: the attention mask's cumulative sum, as upstream);
    returns the key/value cache (one row per prefix, right-aligned in ``prefix.width`` columns, the
    columns before a shorter prefix zero and masked) and each prefix's largest position. Prefixes
    kept in ``store`` from the previous call are not run again; this call's are kept."""
    from transformers import DynamicCache

    device = inputs["input_ids"].device
    grouped, images = _group_rows(inputs, prefix)
    prefix_ids = [grouped[g][0][:n] for g, n in enumerate(prefix.lengths)]
    kept = [store.find(rope, images[g][1][0], images[g][0], grouped[g], prefix_ids[g]) if store else None
            for g in range(len(prefix.lengths))]
    todo = [g for g, e in enumerate(kept) if e is None]
    entries: dict[int, KeptPrefix] = {g: e for g, e in enumerate(kept) if e is not None}
    if todo:
        width = max(prefix.lengths[g] for g in todo)
        ids = torch.zeros((len(todo), width), dtype=torch.long)
        mask = torch.zeros((len(todo), width), dtype=torch.long)
        for j, g in enumerate(todo):
            ids[j, width - prefix.lengths[g]:] = torch.tensor(prefix_ids[g])
            mask[j, width - prefix.lengths[g]:] = 1
        ids, mask = ids.to(device), mask.to(device)
        pixel_values = torch.cat([images[g][0] for g in todo])
        grid = torch.cat([images[g][1] for g in todo])
        if rope == "3d":
            positions, _ = model.get_rope_index(ids, grid, None, None, mask)
        else:
            positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1).unsqueeze(0).expand(3, -1, -1)
        embeds = _embed(model, ids, pixel_values, grid)
        out = model.model(input_ids=None, inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=True,
                          return_dict=True).past_key_values
        for j, g in enumerate(todo):
            n = prefix.lengths[g]
            entries[g] = KeptPrefix(
                grid=images[g][1][0].clone(), pixels=images[g][0].clone(), ids=prefix_ids[g],
                keys=[k[j:j + 1, :, width - n:] for k in out.key_cache], values=[v[j:j + 1, :, width - n:] for v in out.value_cache],
                max_position=int(positions[:, j][:, mask[j].bool()].max()))
    if store is not None:
        store.kept[rope] = [entries[g] for g in range(len(prefix.lengths))]
    cache = DynamicCache()
    first = entries[0]
    for layer in range(len(first.keys)):
        shape = (len(prefix.lengths), first.keys[layer].shape[1], prefix.width, first.keys[layer].shape[3])
        keys = first.keys[layer].new_zeros(shape)
        values = first.values[layer].new_zeros(shape)
        for g in range(len(prefix.lengths)):
            n = prefix.lengths[g]
            keys[g:g + 1, :, prefix.width - n:] = entries[g].keys[layer]
            values[g:g + 1, :, prefix.width - n:] = entries[g].values[layer]
        cache.update(keys, values, layer)
    return cache, [entries[g].max_position for g in range(len(prefix.lengths))]


def prefix_of(model: Any, inputs: Any, groups: list[int] | None = None, generation: bool = True,
              store: PrefixStore | None = None) -> Prefix | None:
    """The shared prefix of each image's rows in a processor batch (``groups``: each row's image, by
    index; None: one image for all), or None when some image's rows share none. An image whose
    prefix ``store`` kept from the previous call keeps that prefix (when it starts all its rows)."""
    image_token = int(model.config.image_token_id)
    rows = unpadded_rows(inputs["input_ids"], inputs["attention_mask"])
    groups = list(groups) if groups is not None else [0] * len(rows)
    if sorted(set(groups)) != list(range(len(set(groups)))):
        raise ValueError(f"prefix groups must number the images 0, 1, ... in order of first row, got {groups}")
    images = _row_images(inputs)
    lengths = []
    for g in range(len(set(groups))):
        mine = [r for r, h in zip(rows, groups) if h == g]
        pixels, grid = images[groups.index(g)]
        kept = store.find("3d", grid[0], pixels, mine) if store else None
        length = len(kept.ids) if kept is not None else common_prefix_length(mine, image_token)
        if length == 0:
            return None
        lengths.append(length)
    prefix = Prefix(lengths=lengths, groups=groups, width=max(lengths), max_positions=[0] * len(lengths))
    if generation:
        prefix.generation_cache, prefix.max_positions = prefill_prefix(model, inputs, prefix, "3d", store)
    return prefix


def layout(rows: list[list[int]], prefix: Prefix, pad_id: int, device: Any) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """``[pads][prefix][pads][suffix_i]`` ids and attention mask: each row's image's prefix right-aligned in
    the prefix region (no pads before it when every image's prefix has the same length)."""
    lengths = [prefix.lengths[g] for g in prefix.groups]
    suffixes = [r[n:] for r, n in zip(rows, lengths)]
    width = prefix.width + max(len(s) for s in suffixes)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (row, n, suffix) in enumerate(zip(rows, lengths, suffixes)):
        ids[i, prefix.width - n:prefix.width] = torch.tensor(row[:n])
        mask[i, prefix.width - n:prefix.width] = 1
        if suffix:
            ids[i, width - len(suffix):] = torch.tensor(suffix)
            mask[i, width - len(suffix):] = 1
    return ids.to(device), mask.to(device), [len(s) for s in suffixes]


def generate_from_prefix(model: Any, inputs: Any, prefix: Prefix, pad_id: int, budget: dict[str, Any]) -> tuple[Any, int]:
    """Greedy generation of every row continuing from the prefix's cache; returns what ``generate``
    returns (the sequences in the ``[prefix][pads][suffix]`` layout, or its output dict) and the prompt width."""
    rows = unpadded_rows(inputs["input_ids"], inputs["attention_mask"])
    ids, mask, suffix_lengths = layout(rows, prefix, pad_id, inputs["input_ids"].device)
    width = int(ids.shape[1])
    # each row's next position after its last prompt token is its prefix's largest position + 1 + len(suffix);
    # HF gives the token in column c the position c + rope_deltas (Qwen2_5_VLForConditionalGeneration.forward)
    deltas = torch.tensor([[prefix.max_positions[g] + 1 - width + s] for g, s in zip(prefix.groups, suffix_lengths)],
                          device=ids.device)
    model.rope_deltas = deltas
    cache = select_cache(prefix.generation_cache, prefix.groups)
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


def mask_pass_from_prefix(model: Any, inputs: Any, sequences: torch.Tensor, prefix: Prefix, pad_id: int,
                          sam_images: torch.Tensor, store: PrefixStore | None = None) -> Any:
    """Upstream's second pass (``use_learnable_query=True``) with each image's prefix run once (1-D
    positions) and each row's rest (its suffix, its answer, the 64 queries) continuing from that cache."""
    cache, _ = prefill_prefix(model, inputs, prefix, "1d", store)
    attention = torch.ones_like(sequences, dtype=torch.int64)
    attention[sequences == pad_id] = 0
    region = torch.zeros_like(attention[:, :prefix.width])
    for i, g in enumerate(prefix.groups):
        region[i, prefix.width - prefix.lengths[g]:] = 1
    if not torch.equal(attention[:, :prefix.width], region):
        raise ValueError("a shared prefix holds a pad token; upstream would mask it, the prefix cache cannot")
    positions = mask_pass_positions(attention, int(model.model_num_of_query))[:, :, prefix.width:]
    _, low_res = model(input_ids=sequences[:, prefix.width:], attention_mask=attention, position_ids=positions,
                       past_key_values=select_cache(cache, prefix.groups), output_hidden_states=True, use_learnable_query=True,
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
