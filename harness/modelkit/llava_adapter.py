"""The adapter side of the LLaVA + SAM family (LISA, GLaMM): options, loading and review hooks.

``LlavaSamAdapter`` holds what LISA's and GLaMM's adapters do alike; a subclass sets ``info``
and the class attributes below, implements ``predict`` and ``load_runtime`` (its model loader,
imported inside the worker) and ``review_prompt`` (the prompt ``inputs`` shows), and may
refine the options with ``check_settings``.

Options: ``variant`` (or ``<name>:VARIANT`` on the command line, the option ``arg``; the two
must agree) picks a row of ``VARIANTS`` (its ``checkpoint`` and ``protocol``), then
``DEFAULTS``, then every other option given and not None, in ``OPTIONS`` order. The adapter's
``options`` (its fingerprint) are the settings without ``NOT_FINGERPRINTED``.

Loading: ``load_runtime(checkpoint, device, upstream_repo=, dtype=, vision_tower=, use_fast=,
strict=, **{k: settings[k] for k in LOAD_OPTIONS})``. The tokenizer for ``inputs`` without
weights: ``AutoTokenizer.from_pretrained(checkpoint, model_max_length=MODEL_MAX_LENGTH,
padding_side="right", use_fast=use_fast_tokenizer)`` with the unknown token as padding, as the
upstream loaders do.

Nothing here imports torch or transformers at import time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, TypeVar

import numpy as np

from harness.adapter import Adapter
from harness.modelkit import counters, llava_sam
from harness.modelkit.digests import array_sha1 as sha1
from harness.types import RLE, Box, Query

_A = TypeVar("_A", bound="LlavaSamAdapter")


class LlavaSamAdapter(Adapter):
    """Shared base of the LISA and GLaMM adapters (see the module docstring)."""

    MODEL: ClassVar[str] = ""  # the model as named in messages, e.g. "LISA"
    VARIANTS: ClassVar[dict[str, dict[str, str]]] = {}  # name -> {"checkpoint": ..., "protocol": ...}
    DEFAULT_VARIANT: ClassVar[str] = ""
    PROTOCOLS: ClassVar[tuple[str, ...]] = ()
    OPTIONS: ClassVar[tuple[str, ...]] = ()  # every option, "variant" and "arg" first
    DEFAULTS: ClassVar[dict[str, Any]] = {}  # settings after the variant's, before the options given
    NOT_FINGERPRINTED: ClassVar[tuple[str, ...]] = ("upstream_repo", "device", "arg")
    LOAD_OPTIONS: ClassVar[tuple[str, ...]] = ()  # settings passed on to ``load_runtime`` by name
    CLIP_SIZE: ClassVar[int] = 224  # the CLIP branch's size (LISA 224, GLaMM 336)
    MODEL_MAX_LENGTH: ClassVar[int] = 512  # the tokenizer's, as upstream's loader sets it

    def __init__(self, **options: Any) -> None:
        self.settings = self.resolve_options(options)
        self.options = {k: v for k, v in self.settings.items() if k not in self.NOT_FINGERPRINTED}
        self._rt: Any = None
        self._tokenizer: Any = None

    # -- options -----------------------------------------------------------------------------

    @classmethod
    def resolve_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        adapter = cls.info.name
        unknown = sorted(set(options) - set(cls.OPTIONS))
        if unknown:
            raise TypeError(f"adapter '{adapter}' got unknown options {', '.join(unknown)}; known: {', '.join(cls.OPTIONS)}")
        if options.get("arg") and options.get("variant") and options["arg"] != options["variant"]:
            raise ValueError(f"{adapter}:{options['arg']} and variant {options['variant']!r} disagree")
        name = options.get("variant") or options.get("arg") or cls.DEFAULT_VARIANT
        if name not in cls.VARIANTS:
            raise ValueError(f"unknown {cls.MODEL} variant {name!r}; known: {', '.join(cls.VARIANTS)}")
        settings: dict[str, Any] = {"variant": name, **cls.VARIANTS[name], **cls.DEFAULTS}
        for key in cls.OPTIONS[2:]:
            if key in options and options[key] is not None:
                settings[key] = options[key]
        if settings["protocol"] not in cls.PROTOCOLS:
            raise ValueError(f"unknown protocol {settings['protocol']!r}; known: {', '.join(cls.PROTOCOLS)}")
        cls.check_settings(settings)
        return settings

    @classmethod
    def check_settings(cls, settings: dict[str, Any]) -> None:
        """A subclass's further checks and changes of the resolved settings (in place)."""

    # -- loading -----------------------------------------------------------------------------

    @classmethod
    def from_runtime(cls: type[_A], runtime: Any, **options: Any) -> _A:
        """An adapter around an already loaded runtime (``model.<Name>Runtime``; tests, notebooks)."""
        adapter = cls(**options)
        adapter._rt = runtime
        adapter._tokenizer = runtime.tokenizer
        return adapter

    def load_runtime(self, checkpoint: str, device: str, **kwargs: Any) -> Any:
        """The model's loader (e.g. ``harness_lisa.model.load_lisa``), imported when called."""
        raise NotImplementedError

    def load(self, device: str = "cpu") -> None:
        s = self.settings
        self._rt = self.load_runtime(
            s["checkpoint"], s.get("device") or device, upstream_repo=s.get("upstream_repo"), dtype=s.get("dtype"),
            vision_tower=s["vision_tower"], use_fast=bool(s["use_fast_tokenizer"]), strict=bool(s["strict_load"]),
            **{key: s[key] for key in self.LOAD_OPTIONS},
        )
        self._tokenizer = self._rt.tokenizer

    # -- the shared steps of ``predict`` -----------------------------------------------------------

    def preprocess(self, image: np.ndarray) -> llava_sam.Preprocessed:
        return llava_sam.preprocess(image, self.CLIP_SIZE)

    def runtime(self) -> Any:
        """The loaded runtime; ``predict`` before ``load`` is an error."""
        if self._rt is None:
            raise RuntimeError(f"{type(self).__name__}.predict before load()")
        return self._rt

    def encode(self, pre: llava_sam.Preprocessed, prompts: Sequence[str]) -> tuple[list[list[int]], Any, Any]:
        """The prompts' ids, SAM's image embedding (once for the image) and the CLIP tensor."""
        rt = self._rt
        ids = [llava_sam.tokenizer_image_token(p, rt.tokenizer) for p in prompts]
        embedding = rt.encode_image(pre.sam_image)
        return ids, embedding, rt.clip_tensor(pre.clip_image)

    @staticmethod
    def mask_and_box(low_res: Any, pre: llava_sam.Preprocessed) -> tuple[RLE, Box | None]:
        """One [SEG]'s low-resolution logits -> the mask at the original size and its box."""
        return llava_sam.mask_and_box(llava_sam.logits_to_mask(low_res, pre.resize_hw, pre.original_hw))

    # -- review and efficiency hooks -----------------------------------------------------------

    def review_prompt(self, query: Query) -> str:
        """The prompt ``inputs`` shows for ``query``."""
        raise NotImplementedError

    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(
                self.settings["checkpoint"], model_max_length=self.MODEL_MAX_LENGTH, padding_side="right",
                use_fast=bool(self.settings["use_fast_tokenizer"]))
            self._tokenizer.pad_token = self._tokenizer.unk_token
        return self._tokenizer

    def inputs(self, image: np.ndarray, query: Query) -> dict[str, Any]:
        """The exact prompt and digests of the preprocessed tensors, for input-diff review."""
        pre = self.preprocess(image)
        prompt = self.review_prompt(query)
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
