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
from harness.adapter import AdapterInfo
from harness.modelkit.llava_adapter import LlavaSamAdapter
from harness.types import ParseStatus, Prediction, Query

from harness_lisa import __version__, preprocess, prompts
from harness_lisa.manifest import CHECKPOINTS, DEFAULT_VARIANT, PROTOCOLS, VARIANTS

MAX_NEW_TOKENS = 512  # chat.py


class LisaAdapter(LlavaSamAdapter):
    """LISA (dvlab-research/LISA) behind the harness's adapter interface (see the module docstring)."""

    info: ClassVar[AdapterInfo] = AdapterInfo(
        name="lisa",
        description="LISA: LLaVA + [SEG] token + SAM ViT-H; LISA's teacher-forced evaluation (or chat.py generation)",
        outputs=("mask", "box", "text"),
        box_space="pixel",
        version=__version__,
        checkpoints=tuple(CHECKPOINTS.values()),
    )
    MODEL = "LISA"
    VARIANTS = VARIANTS
    DEFAULT_VARIANT = DEFAULT_VARIANT
    PROTOCOLS = PROTOCOLS
    OPTIONS = ("variant", "arg", "checkpoint", "protocol", "max_new_tokens", "upstream_repo", "vision_tower", "device",
               "dtype", "strict_load", "use_fast_tokenizer")
    DEFAULTS: ClassVar[dict[str, Any]] = {"max_new_tokens": MAX_NEW_TOKENS, "vision_tower": "openai/clip-vit-large-patch14",
                                          "strict_load": True, "use_fast_tokenizer": False}
    CLIP_SIZE = preprocess.CLIP_SIZE
    MODEL_MAX_LENGTH = 512

    def load_runtime(self, checkpoint: str, device: str, **kwargs: Any) -> Any:
        from harness_lisa.model import load_lisa

        return load_lisa(checkpoint, device, **kwargs)

    # -- prompts -------------------------------------------------------------------------

    @property
    def generating(self) -> bool:
        return self.settings["protocol"] == "generate"

    def prompt(self, sample: Query) -> str:
        answer = None if self.generating else prompts.ANSWER
        return prompts.eval_prompt(sample.expression, sample.dataset, bool(sample.meta.get("is_sentence", False)), answer)

    def review_prompt(self, sample: Query) -> str:
        return self.prompt(sample)

    # -- prediction ----------------------------------------------------------------------

    def predict(self, image: np.ndarray, samples: Sequence[Query]) -> list[Prediction]:
        rt = self.runtime()
        if not samples:
            return []
        pre = self.preprocess(image)
        ids, embedding, clip = self.encode(pre, [self.prompt(s) for s in samples])
        h, w = pre.original_hw
        preds: list[Prediction] = []
        if not self.generating:
            for low_res in rt.teacher_forced(embedding, clip, ids):
                rle, box = self.mask_and_box(low_res, pre)
                preds.append(Prediction(mask=rle, box=box))
            return preds
        for sample_ids in ids:
            new_ids, low_res = rt.generate(embedding, clip, sample_ids, int(self.settings["max_new_tokens"]))
            text = self.decode(new_ids)
            if low_res is None:
                preds.append(Prediction(mask=masks.empty(h, w), text=text, answer=text,
                                        parse_status=ParseStatus.FAILED))
                continue
            rle, box = self.mask_and_box(low_res, pre)
            preds.append(Prediction(mask=rle, box=box, text=text, answer=text, parse_status=ParseStatus.OK))
        return preds

    def decode(self, new_ids: list[int]) -> str:
        """The generated answer: new tokens only, special tokens kept ([SEG] may be one), EOS dropped."""
        eos = self._rt.tokenizer.eos_token_id
        if new_ids and new_ids[-1] == eos:
            new_ids = new_ids[:-1]
        return str(self._rt.tokenizer.decode(new_ids, skip_special_tokens=False)).strip()


resolve_options = LisaAdapter.resolve_options
