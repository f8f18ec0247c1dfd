"""The GLaMM adapter: the harness's deterministic per-sentence protocol, or GLaMM's own.

Per ``predict`` call (all samples share the image): both image branches once (CLIP 336, SAM
1024 padded; ``preprocess``), SAM's image encoder once, then

- ``deterministic`` (default): one conversation per sentence with a fixed question and answer
  (``prompts.deterministic_prompt``), every sentence scored;
- ``glamm`` (variants ``*-glamm-protocol``, option ``seed``): GLaMM's evaluation protocol, up to
  three of the image's sentences drawn with seeded ``np.random.choice``, random question and
  answer templates, one multi-turn conversation (``prompts.draw``). Sentences not drawn come
  back with status ``not_drawn`` (``PredictionStatus.NOT_DRAWN``, the reason in ``error``): no
  mask, not a failure, kept out of ``n``, the failure count and every metric, so the numbers
  are over the drawn sentences, as GLaMM's, under the default conventions. It needs every
  sentence of an image in one ``predict`` call:
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
from harness.adapter import AdapterInfo
from harness.modelkit.llava_adapter import LlavaSamAdapter
from harness.types import Prediction, PredictionStatus, Query

from harness_glamm import __version__, preprocess, prompts
from harness_glamm.manifest import CHECKPOINTS, DEFAULT_VARIANT, PROTOCOLS, VARIANTS

NOT_DRAWN = "not drawn"


class GlammAdapter(LlavaSamAdapter):
    """GLaMM (mbzuai-oryx/groundingLMM) behind the harness's adapter interface (see the module docstring)."""

    info: ClassVar[AdapterInfo] = AdapterInfo(
        name="glamm",
        description="GLaMM: LLaVA (CLIP-336) + [SEG] token + SAM ViT-H; teacher-forced, deterministic or GLaMM's protocol",
        outputs=("mask", "box"),
        box_space="pixel",
        version=__version__,
        checkpoints=tuple(CHECKPOINTS.values()),
    )
    MODEL = "GLaMM"
    VARIANTS = VARIANTS
    DEFAULT_VARIANT = DEFAULT_VARIANT
    PROTOCOLS = PROTOCOLS
    OPTIONS = ("variant", "arg", "checkpoint", "protocol", "seed", "question_template", "answer_template", "upstream_repo",
               "vision_tower", "device", "dtype", "strict_load", "use_fast_tokenizer", "mmcv")
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "seed": 0, "question_template": prompts.DEFAULT_QUESTION, "answer_template": prompts.DEFAULT_ANSWER,
        "vision_tower": "openai/clip-vit-large-patch14-336", "strict_load": True, "use_fast_tokenizer": False, "mmcv": "shim",
    }
    LOAD_OPTIONS = ("mmcv",)
    CLIP_SIZE = preprocess.CLIP_SIZE
    MODEL_MAX_LENGTH = 1536

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._templates: prompts.Templates | None = None

    @classmethod
    def check_settings(cls, settings: dict[str, Any]) -> None:
        if "{class_name}" not in settings["question_template"] or "[SEG]" not in settings["answer_template"]:
            raise ValueError("question_template needs {class_name} and answer_template needs [SEG]")
        if settings["protocol"] == "glamm":  # the templates are drawn from upstream's lists
            settings.pop("question_template")
            settings.pop("answer_template")
        else:
            settings.pop("seed")

    def load_runtime(self, checkpoint: str, device: str, **kwargs: Any) -> Any:
        from harness_glamm.model import load_glamm

        return load_glamm(checkpoint, device, **kwargs)

    # -- prompts ---------------------------------------------------------------------------

    def templates(self) -> prompts.Templates:
        if self._templates is None:
            from harness_glamm.upstream import resolve_upstream

            self._templates = prompts.load_templates(resolve_upstream(self.settings.get("upstream_repo")))
        return self._templates

    def conversations(self, samples: Sequence[Query]) -> tuple[list[str], list[list[int]]]:
        """The prompts of one image and, per prompt, the indices of the samples its [SEG]s answer."""
        if self.settings["protocol"] == "deterministic":
            s = self.settings
            return ([prompts.deterministic_prompt(x.expression, s["question_template"], s["answer_template"]) for x in samples],
                    [[i] for i in range(len(samples))])
        key = Path(samples[0].image).name
        d = prompts.draw(len(samples), self.templates(), int(self.settings["seed"]), key)
        return [d.prompt([x.expression for x in samples])], [list(d.indices)]

    def review_prompt(self, sample: Query) -> str:
        """Under GLaMM's protocol the prompt depends on the image's other sentences; this is the
        prompt the sample would get alone (its own draw of templates)."""
        texts, _ = self.conversations([sample])
        return texts[0]

    # -- prediction --------------------------------------------------------------------------

    def predict(self, image: np.ndarray, samples: Sequence[Query]) -> list[Prediction]:
        rt = self.runtime()
        if not samples:
            return []
        pre = self.preprocess(image)
        texts, owners = self.conversations(samples)
        ids, embedding, clip = self.encode(pre, texts)
        logits = rt.teacher_forced(embedding, clip, ids)
        preds: list[Prediction | None] = [None] * len(samples)
        for row, (conv_logits, idx) in enumerate(zip(logits, owners)):
            if len(conv_logits) != len(idx):
                raise RuntimeError(f"conversation {row} has {len(conv_logits)} [SEG] tokens for {len(idx)} sentences")
            for low_res, i in zip(conv_logits, idx):
                rle, box = self.mask_and_box(low_res, pre)
                preds[i] = Prediction(mask=rle, box=box)
        seed = self.settings.get("seed")
        return [p if p is not None else Prediction(
            mask=None, status=PredictionStatus.NOT_DRAWN,
            error=f"{NOT_DRAWN}: GLaMM's protocol scores up to {prompts.SENTENCES_PER_IMAGE} sentences per image (seed {seed})")
            for p in preds]


resolve_options = GlammAdapter.resolve_options
