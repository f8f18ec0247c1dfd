"""EVF-SAM loaded from a checkout of hustvl/EVF-SAM (its code is imported, never copied) and its evaluation forward.

The checkout is named by the option ``upstream_repo`` or ``$HARNESS_EVFSAM_REPO``. Its model classes
(``model/evf_sam.py EvfSamModel`` for SAM-H, ``model/evf_sam2.py EvfSam2Model`` for SAM-2) are loaded
as ``eval.py`` loads them: ``from_pretrained(checkpoint, low_cpu_mem_usage=True, torch_dtype=...)``,
fp16 by default (``--precision fp16``); the tokenizer with ``padding_side="right", use_fast=False``.

Masks come from upstream's own evaluation forward, ``model(..., inference=True)``, given the batch that
``utils/dataset.py collate_fn`` makes (``harness_evfsam.preprocess``, ``harness_evfsam.text``): SAM's
image encoder (SAM-H: image by image; SAM-2: the batch), BEiT-3 over every sentence of the batch with
its image (right-padded, the padding masked), the [CLS] state projected into SAM's prompt encoder, the
mask decoder per image, and upstream's post-processing to the original size (SAM-H: bilinear to
1024, crop to the resized region, bilinear to the original size; SAM-2: bilinear to the original
size). The mask is ``logits > 0`` (``eval.py validate``). Several images go into one forward: the
``offset`` of ``collate_fn`` tells each image's sentences.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from harness.modelkit.upstream import Upstream, UpstreamError, upstream_commit

from harness_evfsam import manifest, text
from harness_evfsam.preprocess import Prepared

UPSTREAM = Upstream(
    name="EVF-SAM",
    repository="hustvl/EVF-SAM",
    env="HARNESS_EVFSAM_REPO",
    revision="9935dc5",  # the commit the adapter was written against (UPSTREAM-2026.md)
    marker="model/evf_sam.py",
    top_level=("model",),
    isolation="EVF-SAM must run in its own worker process (its top-level package 'model' is also LISA's and GLaMM's)",
    import_hints=(("torchscale", " (BEiT-3 needs torchscale: pip install -r adapters/evfsam/requirements.txt)"),
                  ("hydra", " (the SAM-2 head needs hydra-core)")),
)
MODEL_MODULES = {"ori": ("model.evf_sam", "EvfSamModel"), "sam2": ("model.evf_sam2", "EvfSam2Model")}
DTYPES = ("float16", "bfloat16", "float32")


class CheckoutMismatch(UpstreamError):
    """The checkout's era is not the one the checkpoint was released for (README note 1)."""


def resolve_upstream(path: str | os.PathLike[str] | None = None) -> Path:
    return UPSTREAM.resolve(path)


def era_of(repo: Path) -> str:
    """``multitask`` for a checkout at or after 9d00853 (it has the file that commit added), else ``original``."""
    return "multitask" if (repo / manifest.MULTITASK_MARKER).is_file() else "original"


def check_era(checkpoint: str, repo: Path) -> str:
    """The checkout's era; raises when a released checkpoint needs the other one."""
    era = era_of(repo)
    for name, known in manifest.MODELS.items():
        if known.hub_id == checkpoint and known.era is not None and known.era != era:
            needed = (f"a checkout before {manifest.MULTITASK_COMMIT}" if known.era == "original"
                      else f"a checkout at or after {manifest.MULTITASK_COMMIT}")
            has = "has" if era == "multitask" else "lacks"
            raise CheckoutMismatch(
                f"{checkpoint} ({name}) needs {needed} of {UPSTREAM.repository} (its README, note 1: that commit changed "
                f"the SAM-2 head's mask decoding and input); {repo} {has} {manifest.MULTITASK_MARKER}, so it is the "
                f"'{era}' era (e.g. `git checkout 781bee0` for the original checkpoints, `main` for -multitask)")
    return era


def import_model_module(repo: Path, model_type: str) -> ModuleType:
    if model_type not in MODEL_MODULES:
        raise ValueError(f"unknown EVF-SAM model_type {model_type!r}; known: {', '.join(MODEL_MODULES)}")
    module = UPSTREAM.import_module(repo, MODEL_MODULES[model_type][0])
    where = Path(module.__file__ or "").resolve()
    if repo.resolve() not in where.parents:
        raise UpstreamError(f"{module.__name__} was imported from {where}, not from {repo}")
    return module


def torch_dtype(name: str) -> Any:
    import torch

    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; known: {', '.join(DTYPES)}")
    return getattr(torch, name)


@contextlib.contextmanager
def architecture_overrides(module: ModuleType, spec: dict[str, Any] | None) -> Iterator[None]:
    """While the model is built, smaller parts than the checkpoint's config names (for tiny test models).

    ``beit3``: attributes set on the BEiT-3 ``EncoderConfig`` (``encoder_embed_dim``, ``encoder_layers``, ...);
    ``sam``: keyword arguments of ``segment_anything.build_sam._build_sam`` in place of SAM-H's;
    ``sam2``: Hydra overrides added to ``build_sam2``'s. None (the default) changes nothing."""
    if not spec:
        yield
        return
    unknown = sorted(set(spec) - {"beit3", "sam", "sam2"})
    if unknown:
        raise ValueError(f"unknown architecture overrides {', '.join(unknown)}; known: beit3, sam, sam2")
    replaced: dict[str, Any] = {}

    def replace(name: str, value: Any) -> None:
        replaced[name] = getattr(module, name)
        setattr(module, name, value)

    if "beit3" in spec:
        for name in ("_get_base_config", "_get_large_config"):
            replace(name, _with_attributes(getattr(module, name), dict(spec["beit3"])))
    if "sam" in spec:
        if not hasattr(module, "build_sam_vit_h"):
            raise ValueError("the 'sam' override is for the SAM-H head (model_type ori)")
        build = importlib.import_module("model.segment_anything.build_sam")
        sam = dict(spec["sam"])
        replace("build_sam_vit_h", lambda checkpoint=None: build._build_sam(checkpoint=checkpoint, **sam))
    if "sam2" in spec:
        if not hasattr(module, "build_sam2"):
            raise ValueError("the 'sam2' override is for the SAM-2 head (model_type sam2)")
        replace("build_sam2", _with_hydra_overrides(module.build_sam2, list(spec["sam2"])))
    try:
        yield
    finally:
        for name, value in replaced.items():
            setattr(module, name, value)


def _with_attributes(make_config: Any, attributes: dict[str, Any]) -> Any:
    @functools.wraps(make_config)
    def made(*args: Any, **kwargs: Any) -> Any:
        config = make_config(*args, **kwargs)
        for key, value in attributes.items():
            if not hasattr(config, key):
                raise ValueError(f"BEiT-3 EncoderConfig has no attribute {key!r}")
            setattr(config, key, value)
        return config

    return made


def _with_hydra_overrides(build_sam2: Any, overrides: list[str]) -> Any:
    @functools.wraps(build_sam2)
    def build(*args: Any, hydra_overrides_extra: Sequence[str] = (), **kwargs: Any) -> Any:
        return build_sam2(*args, hydra_overrides_extra=[*hydra_overrides_extra, *overrides], **kwargs)

    return build


@dataclass
class Loaded:
    model: Any
    tokenizer: Any
    model_type: str
    era: str
    device: str
    dtype: Any
    upstream_commit: str | None


def load(checkpoint: str, model_type: str, device: str, dtype: str, upstream_repo: str | None = None,
         architecture: dict[str, Any] | None = None) -> Loaded:
    repo = resolve_upstream(upstream_repo)
    era = check_era(checkpoint, repo)
    module = import_model_module(repo, model_type)
    cls = getattr(module, MODEL_MODULES[model_type][1])
    tokenizer = text.load_tokenizer(checkpoint)
    with architecture_overrides(module, architecture):
        model, info = cls.from_pretrained(checkpoint, low_cpu_mem_usage=True, torch_dtype=torch_dtype(dtype),
                                          output_loading_info=True)
    missing = list(info.get("missing_keys") or [])
    if missing:
        shown = ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else "")
        raise UpstreamError(f"{checkpoint}: {len(missing)} weights of {cls.__name__} are not in the checkpoint ({shown}): "
                            f"is it an EVF-SAM checkpoint of model_type {model_type!r}?")
    model = model.to(device).eval()
    return Loaded(model, tokenizer, model_type, era, str(device), torch_dtype(dtype), upstream_commit(repo))


@dataclass(frozen=True)
class OriginalSize:
    """What upstream's forward reads of an image's label map (``label_list``): its ``.shape``, the original (h, w)."""

    shape: tuple[int, int]


@contextlib.contextmanager
def cuda_cache_kept(device: str) -> Iterator[None]:
    """Upstream's SAM-H forward (``get_visual_embs``) calls ``torch.cuda.empty_cache()`` before and after each
    image, so the allocator gives its memory back and reserves it again for every image: slow, and no value
    depends on it. On a CUDA device the call is a no-op while the forward runs."""
    if not str(device).startswith("cuda"):
        yield
        return
    import torch

    original = torch.cuda.empty_cache
    torch.cuda.empty_cache = lambda: None
    try:
        yield
    finally:
        torch.cuda.empty_cache = original


def segment(loaded: Loaded, images: Sequence[Prepared], prompts: Sequence[Sequence[str]]) -> list[Any]:
    """Upstream's evaluation forward on one batch: per image, its prompts' masks, an (n, h, w) bool numpy array."""
    import torch

    if len(images) != len(prompts) or any(len(p) == 0 for p in prompts):
        raise ValueError("segment needs one non-empty list of prompts per image")
    device, dtype = loaded.device, loaded.dtype
    input_ids, attention = text.token_ids(loaded.tokenizer, [p for group in prompts for p in group])
    counts = [0]
    for group in prompts:
        counts.append(counts[-1] + len(group))
    with torch.inference_mode(), cuda_cache_kept(device):
        out = loaded.model(
            images=torch.stack([p.sam for p in images]).to(device=device, dtype=dtype),
            images_evf=torch.stack([p.beit for p in images]).to(device=device, dtype=dtype),
            input_ids=input_ids.to(device), attention_masks=attention.to(device),
            offset=torch.tensor(counts, dtype=torch.long, device=device),
            masks_list=[], label_list=[OriginalSize(p.original) for p in images],
            resize_list=[p.resize for p in images], inference=True,
        )
        return [(logits > 0).cpu().numpy() for logits in out["pred_masks"]]
