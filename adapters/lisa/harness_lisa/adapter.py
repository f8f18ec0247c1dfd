"""The LISA adapter: LISA's evaluation protocol by default, generation as a named variant.

Per ``predict`` call (all samples share the image):

1. both image branches once (``preprocess``): CLIP 224 (shortest side, centre crop) and SAM
   (longest side 1024, padded); SAM's image encoder runs once for the image;
2. per sentence, LISA's eval prompt (``prompts.eval_prompt``): the sentence normalised as
   LISA's loader does, the ``llava_v1`` question, and
   - ``teacher_forced`` (default, ``train_ds.py --eval_only``): the answer ``[SEG].`` given, one
     forward pass over all sentences of the image, the mask from the hidden state before
     ``[SEG]``; no text is produced (parse status ``none``);
   - ``generate`` (``chat.py``): greedy generation with the answer left open, the generated text
     recorded, the first ``[SEG]``'s mask; no ``[SEG]`` gives an empty mask and parse status
     ``failed``;
3. logits -> ``Sam.postprocess_masks`` -> ``> 0`` at the original size; the box is the mask's.

Variants (option ``variant``, or ``lisa:VARIANT`` on the command line): see ``VARIANTS``.
Other options: ``checkpoint`` (hub id or directory, overrides the variant's), ``protocol``,
``max_new_tokens`` (generate; ``chat.py`` uses 512), ``upstream_repo`` (else
``$HARNESS_LISA_REPO``), ``vision_tower`` (CLIP, hub id or directory), ``device``, ``dtype``
(default bf16 on GPU, fp32 on CPU), ``strict_load`` (default true), ``use_fast_tokenizer``
(default false, as upstream).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from harness import masks
from harness.adapter import Adapter, AdapterInfo
from harness.modelkit import counters, llava_sam
from harness.modelkit.digests import array_sha1 as sha1
from harness.types import ParseStatus, Prediction, Sample

from harness_lisa import __version__, prompts
from harness_lisa.preprocess import Preprocessed, preprocess

CHECKPOINTS = {
    "7b": "xinlai/LISA-7B-v1",
    "7b-explanatory": "xinlai/LISA-7B-v1-explanatory",
    "13b": "xinlai/LISA-13B-llama2-v1",
    "13b-explanatory": "xinlai/LISA-13B-llama2-v1-explanatory",
}
PROTOCOLS = ("teacher_forced", "generate")
# "<size>" = teacher forcing (LISA's evaluation), "<size>-generate" = chat.py's generation
VARIANTS: dict[str, dict[str, str]] = {
    **{name: {"checkpoint": ckpt, "protocol": "teacher_forced"} for name, ckpt in CHECKPOINTS.items()},
    **{f"{name}-generate": {"checkpoint": ckpt, "protocol": "generate"} for name, ckpt in CHECKPOINTS.items()},
}
DEFAULT_VARIANT = "7b"
MAX_NEW_TOKENS = 512  # chat.py

_OPTIONS = ("variant", "arg", "checkpoint", "protocol", "max_new_tokens", "upstream_repo", "vision_tower", "device",
            "dtype", "strict_load", "use_fast_tokenizer")
_NOT_FINGERPRINTED = ("upstream_repo", "device", "arg")


def resolve_options(options: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise TypeError(f"adapter 'lisa' got unknown options {', '.join(unknown)}; known: {', '.join(_OPTIONS)}")
    if options.get("arg") and options.get("variant") and options["arg"] != options["variant"]:
        raise ValueError(f"lisa:{options['arg']} and variant {options['variant']!r} disagree")
    name = options.get("variant") or options.get("arg") or DEFAULT_VARIANT
    if name not in VARIANTS:
        raise ValueError(f"unknown LISA variant {name!r}; known: {', '.join(VARIANTS)}")
    settings: dict[str, Any] = {"variant": name, **VARIANTS[name], "max_new_tokens": MAX_NEW_TOKENS,
                                "vision_tower": "openai/clip-vit-large-patch14", "strict_load": True,
                                "use_fast_tokenizer": False}
    for key in _OPTIONS[2:]:
        if key in options and options[key] is not None:
            settings[key] = options[key]
    if settings["protocol"] not in PROTOCOLS:
        raise ValueError(f"unknown protocol {settings['protocol']!r}; known: {', '.join(PROTOCOLS)}")
    return settings


class LisaAdapter(Adapter):
    """LISA (dvlab-research/LISA) behind the harness's adapter interface (see the module docstring)."""

    info: ClassVar[AdapterInfo] = AdapterInfo(
        name="lisa",
        description="LISA: LLaVA + [SEG] token + SAM ViT-H; LISA's teacher-forced evaluation (or chat.py generation)",
        outputs=("mask", "box", "text"),
        box_space="pixel",
        version=__version__,
        checkpoints=tuple(CHECKPOINTS.values()),
    )

    def __init__(self, **options: Any) -> None:
        self.settings = resolve_options(options)
        self.options = {k: v for k, v in self.settings.items() if k not in _NOT_FINGERPRINTED}
        self._rt: Any = None
        self._tokenizer: Any = None

    @classmethod
    def from_runtime(cls, runtime: Any, **options: Any) -> LisaAdapter:
        """An adapter around an already loaded ``model.LisaRuntime`` (tests, notebooks)."""
        adapter = cls(**options)
        adapter._rt = runtime
        adapter._tokenizer = runtime.tokenizer
        return adapter

    def load(self, device: str = "cpu") -> None:
        from harness_lisa.model import load_lisa

        s = self.settings
        self._rt = load_lisa(
            s["checkpoint"], s.get("device") or device, upstream_repo=s.get("upstream_repo"), dtype=s.get("dtype"),
            vision_tower=s["vision_tower"], use_fast=bool(s["use_fast_tokenizer"]), strict=bool(s["strict_load"]),
        )
        self._tokenizer = self._rt.tokenizer

    # -- prompts -------------------------------------------------------------------------

    @property
    def generating(self) -> bool:
        return self.settings["protocol"] == "generate"

    def prompt(self, sample: Sample) -> str:
        answer = None if self.generating else prompts.ANSWER
        return prompts.eval_prompt(sample.expression, sample.dataset, bool(sample.meta.get("is_sentence", False)), answer)

    # -- prediction ----------------------------------------------------------------------

    def predict(self, image: np.ndarray, samples: Sequence[Sample]) -> list[Prediction]:
        if self._rt is None:
            raise RuntimeError("LisaAdapter.predict before load()")
        if not samples:
            return []
        rt = self._rt
        pre: Preprocessed = preprocess(image)
        ids = [llava_sam.tokenizer_image_token(self.prompt(s), rt.tokenizer) for s in samples]
        embedding = rt.encode_image(pre.sam_image)
        clip = rt.clip_tensor(pre.clip_image)
        h, w = pre.original_hw
        preds: list[Prediction] = []
        if not self.generating:
            for low_res in rt.teacher_forced(embedding, clip, ids):
                rle, box = llava_sam.mask_and_box(llava_sam.logits_to_mask(low_res, pre.resize_hw, pre.original_hw))
                preds.append(Prediction(mask=rle, box=box))
            return preds
        for sample_ids in ids:
            new_ids, low_res = rt.generate(embedding, clip, sample_ids, int(self.settings["max_new_tokens"]))
            text = self.decode(new_ids)
            if low_res is None:
                preds.append(Prediction(mask=masks.empty(h, w), text=text, answer=text,
                                        parse_status=ParseStatus.FAILED))
                continue
            rle, box = llava_sam.mask_and_box(llava_sam.logits_to_mask(low_res, pre.resize_hw, pre.original_hw))
            preds.append(Prediction(mask=rle, box=box, text=text, answer=text, parse_status=ParseStatus.OK))
        return preds

    def decode(self, new_ids: list[int]) -> str:
        """The generated answer: new tokens only, special tokens kept ([SEG] may be one), EOS dropped."""
        eos = self._rt.tokenizer.eos_token_id
        if new_ids and new_ids[-1] == eos:
            new_ids = new_ids[:-1]
        return str(self._rt.tokenizer.decode(new_ids, skip_special_tokens=False)).strip()

    # -- review and efficiency hooks -----------------------------------------------------

    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(
                self.settings["checkpoint"], model_max_length=512, padding_side="right",
                use_fast=bool(self.settings["use_fast_tokenizer"]))
            self._tokenizer.pad_token = self._tokenizer.unk_token
        return self._tokenizer

    def inputs(self, image: np.ndarray, sample: Sample) -> dict[str, Any]:
        """The exact prompt and digests of the preprocessed tensors, for input-diff review."""
        pre = preprocess(image)
        prompt = self.prompt(sample)
        ids = llava_sam.tokenizer_image_token(prompt, self.tokenizer())
        return {
            "prompt": prompt,
            "protocol": self.settings["protocol"],
            "input_ids_sha1": sha1(np.asarray(ids, dtype=np.int64)),
            "prompt_tokens": len(ids),
            "clip_image_sha1": sha1(pre.clip_image),
            "sam_image_sha1": sha1(pre.sam_image),
            "sam_resize_hw": list(pre.resize_hw),
        }

    def stats(self) -> dict[str, float]:
        if self._rt is None:
            return {}
        return counters.stats(self._rt.counters, self._rt.device)
