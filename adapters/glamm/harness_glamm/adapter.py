"""The GLaMM adapter: the harness's deterministic per-sentence protocol, or GLaMM's own.

Per ``predict`` call (all samples share the image): both image branches once (CLIP 336, SAM
1024 padded; ``preprocess``), SAM's image encoder once, then

- ``deterministic`` (default): one conversation per sentence with a fixed question and answer
  (``prompts.deterministic_prompt``), every sentence scored;
- ``glamm`` (variants ``*-glamm-protocol``, option ``seed``): GLaMM's evaluation protocol, up to
  three of the image's sentences drawn with seeded ``np.random.choice``, random question and
  answer templates, one multi-turn conversation (``prompts.draw``). Sentences not drawn are
  returned as failed predictions whose error starts with ``not drawn``: score such a run with
  the suite convention ``failure: drop`` to compare with GLaMM's published numbers (they come
  from the drawn sentences only). It needs every sentence of an image in one ``predict`` call:
  set the run's ``batch_size`` above the largest number of sentences of an image (e.g. 64).

Masks: ``Sam.postprocess_masks`` then ``> 0`` at the original size; the box is the mask's.

Options: ``variant`` (or ``glamm:VARIANT``), ``checkpoint``, ``protocol``, ``seed``,
``question_template`` / ``answer_template`` (deterministic protocol), ``upstream_repo`` (else
``$HARNESS_GLAMM_REPO``), ``vision_tower``, ``device``, ``dtype`` (bf16 on GPU, fp32 on CPU),
``strict_load``, ``use_fast_tokenizer``, ``mmcv`` (``shim`` default: the adapter's stand-in for
mmcv's RoIAlign and friends; ``installed``: a real mmcv 1.x).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from harness.adapter import Adapter, AdapterInfo
from harness.modelkit import counters, llava_sam
from harness.modelkit.digests import array_sha1 as sha1
from harness.types import Prediction, Sample

from harness_glamm import __version__, prompts
from harness_glamm.preprocess import preprocess

CHECKPOINTS = {
    "refseg": "MBZUAI/GLaMM-RefSeg",  # fine-tuned on RefCOCO/+/g: the referring-segmentation rows
    "grand": "MBZUAI/GLaMM-GranD-Pretrained",  # pretrained on GranD only: the zero-shot row
}
PROTOCOLS = ("deterministic", "glamm")
VARIANTS: dict[str, dict[str, str]] = {
    **{name: {"checkpoint": ckpt, "protocol": "deterministic"} for name, ckpt in CHECKPOINTS.items()},
    **{f"{name}-glamm-protocol": {"checkpoint": ckpt, "protocol": "glamm"} for name, ckpt in CHECKPOINTS.items()},
}
DEFAULT_VARIANT = "refseg"
NOT_DRAWN = "not drawn"

_OPTIONS = ("variant", "arg", "checkpoint", "protocol", "seed", "question_template", "answer_template", "upstream_repo",
            "vision_tower", "device", "dtype", "strict_load", "use_fast_tokenizer", "mmcv")
_NOT_FINGERPRINTED = ("upstream_repo", "device", "arg")


def resolve_options(options: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise TypeError(f"adapter 'glamm' got unknown options {', '.join(unknown)}; known: {', '.join(_OPTIONS)}")
    if options.get("arg") and options.get("variant") and options["arg"] != options["variant"]:
        raise ValueError(f"glamm:{options['arg']} and variant {options['variant']!r} disagree")
    name = options.get("variant") or options.get("arg") or DEFAULT_VARIANT
    if name not in VARIANTS:
        raise ValueError(f"unknown GLaMM variant {name!r}; known: {', '.join(VARIANTS)}")
    settings: dict[str, Any] = {"variant": name, **VARIANTS[name], "seed": 0, "question_template": prompts.DEFAULT_QUESTION,
                                "answer_template": prompts.DEFAULT_ANSWER, "vision_tower": "openai/clip-vit-large-patch14-336",
                                "strict_load": True, "use_fast_tokenizer": False, "mmcv": "shim"}
    for key in _OPTIONS[2:]:
        if key in options and options[key] is not None:
            settings[key] = options[key]
    if settings["protocol"] not in PROTOCOLS:
        raise ValueError(f"unknown protocol {settings['protocol']!r}; known: {', '.join(PROTOCOLS)}")
    if "{class_name}" not in settings["question_template"] or "[SEG]" not in settings["answer_template"]:
        raise ValueError("question_template needs {class_name} and answer_template needs [SEG]")
    if settings["protocol"] == "glamm":  # the templates are drawn from upstream's lists
        settings.pop("question_template")
        settings.pop("answer_template")
    else:
        settings.pop("seed")
    return settings


class GlammAdapter(Adapter):
    """GLaMM (mbzuai-oryx/groundingLMM) behind the harness's adapter interface (see the module docstring)."""

    info: ClassVar[AdapterInfo] = AdapterInfo(
        name="glamm",
        description="GLaMM: LLaVA (CLIP-336) + [SEG] token + SAM ViT-H; teacher-forced, deterministic or GLaMM's protocol",
        outputs=("mask", "box"),
        box_space="pixel",
        version=__version__,
        checkpoints=tuple(CHECKPOINTS.values()),
    )

    def __init__(self, **options: Any) -> None:
        self.settings = resolve_options(options)
        self.options = {k: v for k, v in self.settings.items() if k not in _NOT_FINGERPRINTED}
        self._rt: Any = None
        self._tokenizer: Any = None
        self._templates: prompts.Templates | None = None

    @classmethod
    def from_runtime(cls, runtime: Any, **options: Any) -> GlammAdapter:
        """An adapter around an already loaded ``model.GlammRuntime`` (tests, notebooks)."""
        adapter = cls(**options)
        adapter._rt = runtime
        adapter._tokenizer = runtime.tokenizer
        return adapter

    def load(self, device: str = "cpu") -> None:
        from harness_glamm.model import load_glamm

        s = self.settings
        self._rt = load_glamm(
            s["checkpoint"], s.get("device") or device, upstream_repo=s.get("upstream_repo"), dtype=s.get("dtype"),
            vision_tower=s["vision_tower"], use_fast=bool(s["use_fast_tokenizer"]), strict=bool(s["strict_load"]),
            mmcv=s["mmcv"],
        )
        self._tokenizer = self._rt.tokenizer

    # -- prompts ---------------------------------------------------------------------------

    def templates(self) -> prompts.Templates:
        if self._templates is None:
            from harness_glamm.upstream import resolve_upstream

            self._templates = prompts.load_templates(resolve_upstream(self.settings.get("upstream_repo")))
        return self._templates

    def conversations(self, samples: Sequence[Sample]) -> tuple[list[str], list[list[int]]]:
        """The prompts of one image and, per prompt, the indices of the samples its [SEG]s answer."""
        if self.settings["protocol"] == "deterministic":
            s = self.settings
            return ([prompts.deterministic_prompt(x.expression, s["question_template"], s["answer_template"]) for x in samples],
                    [[i] for i in range(len(samples))])
        key = Path(samples[0].image).name
        d = prompts.draw(len(samples), self.templates(), int(self.settings["seed"]), key)
        return [d.prompt([x.expression for x in samples])], [list(d.indices)]

    # -- prediction --------------------------------------------------------------------------

    def predict(self, image: np.ndarray, samples: Sequence[Sample]) -> list[Prediction]:
        if self._rt is None:
            raise RuntimeError("GlammAdapter.predict before load()")
        if not samples:
            return []
        rt = self._rt
        pre = preprocess(image)
        texts, owners = self.conversations(samples)
        ids = [llava_sam.tokenizer_image_token(t, rt.tokenizer) for t in texts]
        embedding = rt.encode_image(pre.sam_image)
        logits = rt.teacher_forced(embedding, rt.clip_tensor(pre.clip_image), ids)
        preds: list[Prediction | None] = [None] * len(samples)
        for row, (conv_logits, idx) in enumerate(zip(logits, owners)):
            if len(conv_logits) != len(idx):
                raise RuntimeError(f"conversation {row} has {len(conv_logits)} [SEG] tokens for {len(idx)} sentences")
            for low_res, i in zip(conv_logits, idx):
                rle, box = llava_sam.mask_and_box(llava_sam.logits_to_mask(low_res, pre.resize_hw, pre.original_hw))
                preds[i] = Prediction(mask=rle, box=box)
        seed = self.settings.get("seed")
        return [p if p is not None else Prediction(
            mask=None, error=f"{NOT_DRAWN}: GLaMM's protocol scores up to {prompts.SENTENCES_PER_IMAGE} sentences per image "
                             f"(seed {seed}); score with failure: drop") for p in preds]

    # -- review and efficiency hooks -----------------------------------------------------------

    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(
                self.settings["checkpoint"], model_max_length=1536, padding_side="right",
                use_fast=bool(self.settings["use_fast_tokenizer"]))
            self._tokenizer.pad_token = self._tokenizer.unk_token
        return self._tokenizer

    def inputs(self, image: np.ndarray, sample: Sample) -> dict[str, Any]:
        """The exact prompt and digests of the preprocessed tensors, for input-diff review.

        Under GLaMM's protocol the prompt depends on the image's other sentences; this shows the
        prompt the sample would get alone (its own draw of templates)."""
        pre = preprocess(image)
        texts, _ = self.conversations([sample])
        ids = llava_sam.tokenizer_image_token(texts[0], self.tokenizer())
        return {
            "prompt": texts[0],
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
