"""The EVF-SAM adapter: hustvl/EVF-SAM ``eval.py`` (9935dc5) per sentence, several images per forward.

Models (``manifest.MODELS``): ``evf-sam`` (``YxZhang/evf-sam``, SAM-H), ``evf-sam2`` (``YxZhang/evf-sam2``,
SAM-2-L), ``evf-sam-multitask``, ``evf-sam2-multitask``; ``evfsam`` takes any checkpoint with the options
``checkpoint`` and ``model_type``. No language model: the sentence (lower-cased for REFER data, as
``ValDataset``) and the image at 224 go through BEiT-3, whose [CLS] state prompts SAM.

Per image, on the CPU (``preprocess``; done ahead in the engine's decode-ahead thread, ``prepares_images``):
BEiT-3's 224 x 224 input and SAM's 1024 x 1024 input, as the checkout's ``ValDataset`` makes them for the
head (SAM-2's input depends on the checkout's era: ``preprocess.sam_input_for``). Per call, on the device
(``model.segment``): upstream's own evaluation forward on a ``collate_fn`` batch spanning every image
of the call, each image encoded by SAM once for all its sentences; the mask is ``logits > 0`` at the
original size.

Options: ``checkpoint``, ``model_type`` (``ori`` | ``sam2``), ``upstream_repo`` (else
``$HARNESS_EVFSAM_REPO``), ``device``, ``dtype`` (``float16`` on CUDA as ``eval.py --precision fp16``,
``float32`` on the CPU), ``architecture`` (smaller parts for tiny test models: ``model.architecture_overrides``).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from harness import masks
from harness.adapter import Adapter, AdapterInfo
from harness.errors import HarnessError
from harness.modelkit.counters import update_peak_gpu_memory_mb
from harness.modelkit.prepared import PreparedImages
from harness.types import ParseStatus, Prediction, Query

from harness_evfsam import manifest, preprocess, text

_KNOWN = ("checkpoint", "model_type", "upstream_repo", "device", "dtype", "architecture")
_NOT_FINGERPRINTED = ("upstream_repo", "device")


def resolve_options(options: dict[str, Any], default: manifest.Checkpoint | None) -> dict[str, Any]:
    unknown = sorted(set(options) - set(_KNOWN))
    if unknown:
        raise TypeError(f"adapter 'evfsam' got unknown options {', '.join(unknown)}; known: {', '.join(_KNOWN)}")
    settings = {"checkpoint": default.hub_id if default else None, "model_type": default.model_type if default else None,
                **options}
    if not settings["checkpoint"]:
        raise ValueError(f"adapter 'evfsam' needs the option checkpoint (or a model name: {', '.join(manifest.MODELS)})")
    if settings["model_type"] not in manifest.MODEL_TYPES:
        raise ValueError(f"adapter 'evfsam' needs model_type {' or '.join(manifest.MODEL_TYPES)} "
                         f"(upstream's --model_type), got {settings['model_type']!r}")
    if settings.get("dtype") is not None and settings["dtype"] not in ("float16", "bfloat16", "float32"):
        raise ValueError(f"unknown dtype {settings['dtype']!r}; known: float16, bfloat16, float32")
    return settings


def _sha256(tensor: Any) -> str:
    return hashlib.sha256(np.ascontiguousarray(tensor.detach().cpu().numpy()).tobytes()).hexdigest()


class EvfSamAdapter(Adapter):
    """EVF-SAM behind the harness's adapter interface (see the module docstring)."""

    info: ClassVar[AdapterInfo] = AdapterInfo(name="evfsam", description=manifest.DESCRIPTION, outputs=manifest.OUTPUTS,
                                              version=manifest.VERSION,
                                              checkpoints=tuple(c.hub_id for c in manifest.MODELS.values()))
    DEFAULT: ClassVar[manifest.Checkpoint | None] = None
    MANIFEST: ClassVar[dict[str, Any]] = manifest.manifest()
    multi_image: ClassVar[bool] = True  # predict_many: every image of the call in one upstream forward
    prepares_images: ClassVar[bool] = True  # the PIL resizes (~10-20 ms per image) happen off the model's thread

    def __init__(self, **options: Any) -> None:
        self.settings = resolve_options(options, self.DEFAULT)
        self.options = {k: v for k, v in self.settings.items() if k not in _NOT_FINGERPRINTED}
        self._loaded: Any = None
        self._tokenizer: Any = None
        self._sam_input: str | None = None
        self._ready = PreparedImages()
        self._counters = {"sentences": 0.0, "images_encoded_by_segmenter": 0.0, "forward_calls": 0.0,
                          "peak_gpu_memory_mb": 0.0}

    # -- checks and loading ----------------------------------------------------------------

    def check(self) -> None:
        from harness_evfsam.model import UpstreamError, check_era, resolve_upstream

        try:
            check_era(self.settings["checkpoint"], resolve_upstream(self.settings.get("upstream_repo")))
        except UpstreamError as exc:
            raise HarnessError(f"{self.info.name}: {exc}") from None
        checkpoint = str(self.settings["checkpoint"])
        if checkpoint.startswith(("/", "./", "../", "~")) and not Path(checkpoint).expanduser().is_dir():
            raise HarnessError(f"{self.info.name}: checkpoint {checkpoint} is not a directory")

    def load(self, device: str = "cpu") -> None:
        from harness_evfsam.model import load

        s = self.settings
        device = s.get("device") or device
        dtype = s.get("dtype") or ("float16" if str(device).startswith("cuda") else "float32")
        self._loaded = load(s["checkpoint"], s["model_type"], device, dtype, upstream_repo=s.get("upstream_repo"),
                            architecture=s.get("architecture"))
        self._tokenizer = self._loaded.tokenizer
        self._sam_input = preprocess.sam_input_for(s["model_type"], self._loaded.era)

    def sam_input(self) -> str:
        """SAM's input for this head and the checkout's era (``preprocess.sam_input_for``)."""
        if self._sam_input is None:
            from harness_evfsam.model import era_of, resolve_upstream

            model_type = self.settings["model_type"]
            era = era_of(resolve_upstream(self.settings.get("upstream_repo"))) if model_type == "sam2" else None
            self._sam_input = preprocess.sam_input_for(model_type, era)
        return self._sam_input

    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            self._tokenizer = text.load_tokenizer(self.settings["checkpoint"])
        return self._tokenizer

    # -- prediction ------------------------------------------------------------------------

    def prompt(self, query: Query) -> str:
        return text.prompt(query.expression, query.dataset)

    def prepare_image(self, image: np.ndarray) -> None:
        self._ready.put(image, preprocess.prepare(image, self.sam_input()))

    def _prepared(self, image: np.ndarray) -> preprocess.Prepared:
        got = self._ready.get(image)
        return got if got is not None else preprocess.prepare(image, self.sam_input())

    def predict(self, image: np.ndarray, queries: Sequence[Query]) -> list[Prediction]:
        return self.predict_many([(image, queries)])[0]

    def predict_many(self, items: Sequence[tuple[np.ndarray, Sequence[Query]]]) -> list[list[Prediction]]:
        """One upstream forward for every image of the call and all their sentences."""
        if self._loaded is None:
            raise RuntimeError("EvfSamAdapter.predict before load()")
        from harness_evfsam.model import segment

        start = time.perf_counter()
        used = [(image, queries) for image, queries in items if queries]
        drawn = iter(segment(self._loaded, [self._prepared(image) for image, _ in used],
                             [[self.prompt(q) for q in queries] for _, queries in used])) if used else iter(())
        self._ready.done_with([image for image, _ in items])
        n = sum(len(queries) for _, queries in used)
        self._counters["sentences"] += n
        self._counters["images_encoded_by_segmenter"] += len(used)
        self._counters["forward_calls"] += 1 if used else 0
        update_peak_gpu_memory_mb(self._counters, self._loaded.device)
        seconds = (time.perf_counter() - start) / max(1, n)
        out: list[list[Prediction]] = []
        for _, queries in items:
            if not queries:
                out.append([])
                continue
            image_masks = next(drawn)
            out.append([Prediction(mask=masks.encode(m), parse_status=ParseStatus.NONE, seconds=seconds) for m in image_masks])
        return out

    def inputs(self, image: np.ndarray, query: Query) -> dict[str, Any]:
        """The prompt, its token ids and digests of the two pixel tensors, without weights."""
        pre = preprocess.prepare(image, self.sam_input())
        input_ids, _ = text.token_ids(self.tokenizer(), [self.prompt(query)])
        return {"prompt": self.prompt(query), "input_ids": input_ids[0].tolist(), "sam_input": self.sam_input(),
                "sam_resize": list(pre.resize), "sam_pixels_sha256": _sha256(pre.sam),
                "beit_pixels_sha256": _sha256(pre.beit)}

    def config(self) -> dict[str, Any]:
        """The options, and the SAM input the checkout's era gives (a SAM-2 run on the other era differs)."""
        from harness_evfsam.model import UpstreamError

        got = super().config()
        try:
            got["sam_input"] = self.sam_input()
        except UpstreamError:
            pass  # no checkout: load() and check() say so
        return got

    def stats(self) -> dict[str, float]:
        """Cumulative counters; no language model, so nothing is generated."""
        return dict(self._counters)


def _named(model: str) -> type[EvfSamAdapter]:
    known = manifest.MODELS[model]
    return type(model, (EvfSamAdapter,), {
        "info": AdapterInfo(name=model, description=f"{manifest.DESCRIPTION}; {known.hub_id}", outputs=manifest.OUTPUTS,
                            version=manifest.VERSION, checkpoints=(known.hub_id,)),
        "DEFAULT": known, "__module__": __name__, "__doc__": f"EVF-SAM with {known.hub_id} ({known.note}).",
    })


EvfSam = _named("evf-sam")
EvfSam2 = _named("evf-sam2")
EvfSamMultitask = _named("evf-sam-multitask")
EvfSam2Multitask = _named("evf-sam2-multitask")
