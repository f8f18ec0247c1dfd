"""The generation half of LENS: prompt batch -> greedy generation -> the new tokens' text.

As upstream (``eval/evaluate_res2.py RefCOCOEvaluator.evaluate_single``): one processor call
for all sentences of the image (``padding=True``, the same image repeated), inputs moved to
the device with floating tensors cast to the model's dtype, ``model.generate(max_length=768,
use_cache=True, do_sample=False)``; everything else comes from the checkpoint's
``generation_config.json`` exactly as for upstream's call. Two deliberate differences:
padding is forced to the left (upstream inherits the checkpoint's side, and right padding
breaks batched generation), and only the new tokens are decoded (upstream decodes prompt
and answer together, ``skip_special_tokens=True``, then searches the box in all of it).

This module works with any Qwen2.5-VL model, LENS or stock, so the tests run it on a tiny
random ``Qwen2_5_VLForConditionalGeneration`` without the LENS checkout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

UPSTREAM_MAX_LENGTH = 768


@dataclass
class Generated:
    inputs: Any  # the processor's BatchFeature, on the device (reused by the mask pass)
    sequences: torch.Tensor  # (n, prompt + new) token ids, left-padded prompt
    prompt_length: int
    texts: list[str]  # decoded new tokens, skip_special_tokens=True
    new_tokens: list[int]  # per sentence: new tokens up to and including the first end token
    cache: Any = None  # the generation's key/value cache (``keep_cache``): every column but the last
    rope_deltas: torch.Tensor | None = None  # (n, 1): column c of a row has the 3-D text position c + delta


def processor_inputs(processor: Any, prompts: list[str], llm_image: Image.Image | list[Image.Image], device: str | torch.device,
                     dtype: torch.dtype, padding_side: str = "left", once_per_image: bool = False) -> Any:
    """``processor(text=prompts, images=[img] * n, padding=True, return_tensors="pt")``, padded on
    ``padding_side`` (left unless reproducing upstream, which pads on the checkpoint's side); a list
    gives each prompt its own image (a batch spanning several images).

    ``once_per_image``: the image processor (resize, normalise, patchify: ~14 ms of one CPU core for
    a 640x480 image, ~80 ms for RefCOCO's 7 copies, while a GPU waits) runs once per distinct image
    and its rows are repeated for the prompts that share it. It processes each image on its own, so
    the inputs are the same to the bit (tests/test_generation_tiny.py)."""
    processor.tokenizer.padding_side = padding_side
    images = list(llm_image) if isinstance(llm_image, list) else [llm_image] * len(prompts)
    if once_per_image and len({id(im) for im in images}) < len(images):
        real = processor.image_processor
        processor.image_processor = _OncePerImage(real)
        try:
            inputs = processor(text=prompts, images=images, padding=True, return_tensors="pt")
        finally:
            processor.image_processor = real
    else:
        inputs = processor(text=prompts, images=images, padding=True, return_tensors="pt")
    return inputs.to(device=device, dtype=dtype)


class _OncePerImage:
    """An image processor that processes each distinct image (by identity) once and repeats its
    patch rows and grid for every prompt given it; everything else is the real processor's."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def __getattr__(self, name: str) -> Any:  # merge_size, temporal_patch_size, ...: the processor reads them
        return getattr(self._real, name)

    def __call__(self, images: list[Image.Image], **kwargs: Any) -> Any:
        from transformers import BatchFeature

        distinct = list({id(im): im for im in images}.values())
        got = self._real(images=distinct, **kwargs)
        pixels, grids = got["pixel_values"], got["image_grid_thw"]
        starts, at = [], 0
        for t, h, w in (tuple(int(v) for v in g) for g in grids):
            starts.append((at, at + t * h * w))
            at += t * h * w
        where = {id(im): k for k, im in enumerate(distinct)}
        rows = [r for im in images for r in range(*starts[where[id(im)]])]
        order = [where[id(im)] for im in images]
        # A list of indices selects rows alike from a tensor or an array: the values are copied, not recomputed.
        return BatchFeature(data={**got, "pixel_values": pixels[rows], "image_grid_thw": grids[order]})


def _end_ids(model: Any) -> set[int]:
    eos = getattr(model.generation_config, "eos_token_id", None)
    if eos is None:
        return set()
    return {int(eos)} if isinstance(eos, int) else {int(e) for e in eos}


def count_new_tokens(new: torch.Tensor, end_ids: set[int]) -> list[int]:
    """Tokens each sentence really generated: up to and including its first end token."""
    counts = []
    for row in new.tolist():
        n = len(row)
        for i, tok in enumerate(row):
            if tok in end_ids:
                n = i + 1
                break
        counts.append(n)
    return counts


def generate(model: Any, processor: Any, inputs: Any, max_length: int | None = UPSTREAM_MAX_LENGTH,
             max_new_tokens: int | None = None, prefix: Any = None, keep_cache: bool = False,
             row_budgets: list[int] | None = None) -> Generated:
    """Greedy generation; ``max_new_tokens`` (as ``demo.py``) replaces ``max_length`` when given.

    With a ``sharing.Prefix`` the rows continue from its key/value cache (``[prefix][pads][suffix]``
    layout, as wide as the left-padded batch, so ``max_length`` means the same). ``keep_cache``
    returns the generation's key/value cache and rotary deltas too (``return_dict_in_generate``
    changes nothing else), for a mask pass that continues from them.

    ``row_budgets`` (a batch spanning images, under ``max_length``): each row's new-token budget as its
    image's own batch would have it (``max_length`` minus that batch's width). Generation runs to the
    largest and each row is cut at its own, its later tokens replaced by pads: greedy decoding of a row
    depends on nothing after it, so the kept tokens are those the row's own batch would generate."""
    if row_budgets is not None and not max_new_tokens:
        budget: dict[str, Any] = {"max_new_tokens": max(row_budgets)}
    elif max_new_tokens:
        budget = {"max_new_tokens": max_new_tokens}
    else:
        budget = {"max_length": int(max_length or UPSTREAM_MAX_LENGTH)}
    if keep_cache:
        budget["return_dict_in_generate"] = True
    if prefix is not None:
        from harness_lens.sharing import generate_from_prefix

        out, prompt_length = generate_from_prefix(model, inputs, prefix, int(processor.tokenizer.pad_token_id), budget)
    else:
        out = model.generate(**inputs, use_cache=True, do_sample=False, **budget)
        prompt_length = int(inputs["input_ids"].shape[1])
    cache = deltas = None
    if keep_cache:
        # the deltas HF used for every decoding step (set by the prefill, or by generate_from_prefix)
        out, cache, deltas = out.sequences, out.past_key_values, model.rope_deltas.clone()
    if row_budgets is not None and not max_new_tokens:
        for i, allowed in enumerate(row_budgets):
            out[i, prompt_length + allowed:] = int(processor.tokenizer.pad_token_id)
    new = out[:, prompt_length:]
    texts = processor.batch_decode(new, skip_special_tokens=True)
    counts = count_new_tokens(new, _end_ids(model))
    if row_budgets is not None and not max_new_tokens:  # a cut row ends at its budget (its pads are no end token)
        counts = [min(c, allowed) for c, allowed in zip(counts, row_budgets)]
    return Generated(inputs, out, prompt_length, texts, counts, cache, deltas)


def mask_pass_inputs(generated: Generated, pad_token_id: int, sam_images: torch.Tensor) -> dict[str, Any]:
    """Upstream's second-pass inputs: the generated sequences, attention 1 except at pad tokens,
    the processor's image tensors, and each sentence's SAM image (n, 3, 1024, 1024)."""
    sequences = generated.sequences
    attention = torch.ones_like(sequences, dtype=torch.int64)
    attention[sequences == pad_token_id] = 0
    inputs = dict(generated.inputs)
    inputs.update(input_ids=sequences, attention_mask=attention, sam_images=sam_images)
    return inputs
