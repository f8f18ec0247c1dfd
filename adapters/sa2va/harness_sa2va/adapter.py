"""The Sa2VA adapter: ``projects/sa2va/evaluation/sa2va_eval_refcoco.py`` (bytedance/Sa2VA 9832e1a) per sentence.

Per sentence, as upstream: the question ``<image>\\n Please segment {sentence} in this image.``
(``prompts``; the sentence as the suite gives it), then the checkpoint's own
``model.predict_forward(image=<PIL RGB>, text=question, tokenizer=..., processor=...)`` (remote code:
its preprocessing, greedy generation with ``max_new_tokens=2048``, the [SEG] hidden states through
SAM2-L, masks at the original size with ``sigmoid > 0.5``), and the answer rule of the v2 script
(``answer``): the union of the masks when the text says ``[SEG]``, else an empty mask marked
``parse_status: failed`` (``answer_rule: sa2va-v2``, the default), or, as the v1 script did, the
sentence left out (``answer_rule: sa2va-v1-skip``, a named non-default protocol variant: the
prediction is ``not_drawn`` and results count it as ``n_not_drawn``).

``predict_forward`` takes one image and one text, so nothing is batched; per image the adapter
converts the array to a PIL image once, and the model encodes the image again for each sentence
(Qwen ViT and SAM2, as upstream does).

Models: ``sa2va-qwen2.5vl-3b``, ``sa2va-qwen2.5vl-7b``, ``sa2va-qwen3vl-4b``, ``sa2va-internvl3-2b``,
``sa2va-internvl3-8b``, ``sa2va-internvl3-14b`` (``manifest.MODELS``); ``sa2va`` with the option
``checkpoint`` (``model_path``) for any other. Options: ``checkpoint``/``model_path``, ``device``,
``dtype`` (``bfloat16``: the remote code casts SAM2's input to bf16 whatever the model's dtype),
``use_flash_attn`` (default: when flash-attn is installed and the device is CUDA; upstream: true),
``use_processor`` (default upstream's rule: when the checkpoint's path names "qwen"), ``prompt``
(``default``, ``reasoning``), ``answer_rule`` (``sa2va-v2``, ``sa2va-v1-skip``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from harness import masks
from harness.adapter import Adapter, AdapterInfo
from harness.types import ParseStatus, Prediction, PredictionStatus, Query

from harness_sa2va import answer, manifest, prompts

_KNOWN = ("checkpoint", "model_path", "device", "dtype", "use_flash_attn", "use_processor", "prompt", "answer_rule")
_NOT_FINGERPRINTED = ("device", "use_flash_attn")


def resolve_options(options: dict[str, Any], default_checkpoint: str | None) -> dict[str, Any]:
    unknown = sorted(set(options) - set(_KNOWN))
    if unknown:
        raise TypeError(f"adapter 'sa2va' got unknown options {', '.join(unknown)}; known: {', '.join(_KNOWN)}")
    opts = dict(options)
    if "model_path" in opts:
        if "checkpoint" in opts and opts["checkpoint"] != opts["model_path"]:
            raise ValueError("set checkpoint or model_path, not both")
        opts["checkpoint"] = opts.pop("model_path")
    settings = {"checkpoint": default_checkpoint, "dtype": "bfloat16", "prompt": "default", "answer_rule": "sa2va-v2",
                **opts}
    if not settings["checkpoint"]:
        raise ValueError(f"adapter 'sa2va' needs the option checkpoint (or a model name: {', '.join(manifest.MODELS)})")
    if settings["answer_rule"] not in answer.ANSWER_RULES:
        raise ValueError(f"unknown answer_rule {settings['answer_rule']!r}; known: {', '.join(answer.ANSWER_RULES)}")
    prompts.question("x", settings["prompt"])  # checks the prompt's name
    return settings


class Sa2VAAdapter(Adapter):
    """Sa2VA behind the harness's adapter interface (see the module docstring)."""

    info: ClassVar[AdapterInfo] = AdapterInfo(name="sa2va", description=manifest.DESCRIPTION, outputs=manifest.OUTPUTS,
                                              version=manifest.VERSION, checkpoints=tuple(manifest.MODELS.values()))
    DEFAULT_CHECKPOINT: ClassVar[str | None] = None

    def __init__(self, **options: Any) -> None:
        self.settings = resolve_options(options, self.DEFAULT_CHECKPOINT)
        self.options = {k: v for k, v in self.settings.items() if k not in _NOT_FINGERPRINTED}
        self._loaded: Any = None
        self.counters = {"sentences": 0, "no_seg": 0, "not_drawn": 0}

    def load(self, device: str = "cpu") -> None:
        from harness_sa2va.model import load

        s = self.settings
        self._loaded = load(s["checkpoint"], s.get("device") or device, dtype=s["dtype"],
                            use_flash_attn=s.get("use_flash_attn"), use_processor=s.get("use_processor"))

    def question(self, query: Query) -> str:
        return prompts.question(query.expression, self.settings["prompt"])

    def predict(self, image: np.ndarray, queries: Sequence[Query]) -> list[Prediction]:
        if self._loaded is None:
            raise RuntimeError("Sa2VAAdapter.predict before load()")
        from PIL import Image

        from harness_sa2va.model import predict_forward

        pil = Image.fromarray(np.ascontiguousarray(image)).convert("RGB")
        h, w = int(image.shape[0]), int(image.shape[1])
        out = []
        for query in queries:
            start = time.perf_counter()
            self.counters["sentences"] += 1
            text, drawn = predict_forward(self._loaded, pil, self.question(query))
            got = answer.read(text, drawn)
            seconds = time.perf_counter() - start
            if got.mask is not None:
                out.append(Prediction(mask=masks.encode(got.mask), text=text, reasoning=got.reasoning, answer=got.answer,
                                      parse_status=ParseStatus.OK, seconds=seconds))
                continue
            self.counters["no_seg"] += 1
            if self.settings["answer_rule"] == "sa2va-v1-skip":
                self.counters["not_drawn"] += 1
                out.append(Prediction(mask=None, text=text, reasoning=got.reasoning, answer=got.answer,
                                      parse_status=ParseStatus.FAILED, status=PredictionStatus.NOT_DRAWN,
                                      error=f"not drawn: sa2va-v1-skip drops an answer without a mask ({got.reason})",
                                      seconds=seconds))
                continue
            out.append(Prediction(mask=masks.empty(h, w), text=text, reasoning=got.reasoning, answer=got.answer,
                                  parse_status=ParseStatus.FAILED, seconds=seconds))
        return out

    def inputs(self, image: np.ndarray, query: Query) -> dict[str, Any]:
        got = super().inputs(image, query)
        got["question"] = self.question(query)
        return got

    def stats(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.counters.items()}


def _named(model: str) -> type[Sa2VAAdapter]:
    checkpoint = manifest.MODELS[model]
    return type(model, (Sa2VAAdapter,), {
        "info": AdapterInfo(name=model, description=f"{manifest.DESCRIPTION}; {checkpoint}", outputs=manifest.OUTPUTS,
                            version=manifest.VERSION, checkpoints=(checkpoint,)),
        "DEFAULT_CHECKPOINT": checkpoint, "__module__": __name__,
        "__doc__": f"Sa2VA with {checkpoint}.",
    })


Sa2VAQwen25VL3B = _named("sa2va-qwen2.5vl-3b")
Sa2VAQwen25VL7B = _named("sa2va-qwen2.5vl-7b")
Sa2VAQwen3VL4B = _named("sa2va-qwen3vl-4b")
Sa2VAInternVL3_2B = _named("sa2va-internvl3-2b")
Sa2VAInternVL3_8B = _named("sa2va-internvl3-8b")
Sa2VAInternVL3_14B = _named("sa2va-internvl3-14b")
