"""Loading LENS from an upstream checkout, and the SAM image-encoder wrapper that reuses embeddings.

LENS's model class is not on PyPI: it lives in hustvl/LENS under the top-level package
``src`` (``src/open_r1/trainer/samr1.py``, ``SAMR1ForConditionalGeneration_qwen2p5``), whose
vendored SAM2 initialises Hydra's global state when imported and whose YAML targets
hard-code ``src.``. So the checkout's root goes on ``sys.path`` only in the process that
loads the model (the adapter's worker), only when ``load`` runs, and the import refuses
to proceed when another ``src`` package or another Hydra initialisation is already there.
Nothing of the checkout is copied into this repository.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from harness.modelkit.counters import WorkCounters
from harness.modelkit.upstream import Upstream, UpstreamError, upstream_commit

from harness_lens.sharing import VisionEncoderCache

UPSTREAM = Upstream(
    name="LENS",
    repository="hustvl/LENS",
    env="HARNESS_LENS_REPO",
    revision="28cf510",  # the hustvl/LENS commit the adapter was written against (UPSTREAM.md)
    marker="src/open_r1/trainer/samr1.py",
    top_level=("src",),
    isolation="LENS must run in its own worker process",
)
UPSTREAM_MODULE = "src.open_r1.trainer.samr1"
UPSTREAM_CLASS = "SAMR1ForConditionalGeneration_qwen2p5"
SAM_CONFIG = "sam2_hiera_l.yaml"  # what samr1.py builds


def resolve_upstream(path: str | os.PathLike[str] | None) -> Path:
    """The checkout named by the ``upstream_repo`` option, else by ``$HARNESS_LENS_REPO``."""
    return UPSTREAM.resolve(path)


def _check_hydra(repo: Path) -> None:
    """LENS's vendored SAM2 initialises Hydra on import: refuse when something else already did."""
    if "src" in sys.modules:
        return
    with contextlib.suppress(ImportError):
        from hydra.core.global_hydra import GlobalHydra

        if GlobalHydra.instance().is_initialized():
            raise UpstreamError(
                "Hydra is already initialised in this process (another SAM2 package?); LENS's vendored SAM2 "
                "initialises it on import, so LENS must run in its own worker process"
            )


def import_upstream(repo: Path) -> ModuleType:
    """Import ``src.open_r1.trainer.samr1`` from the checkout (once per process)."""
    module = UPSTREAM.import_module(repo, UPSTREAM_MODULE, prepare=_check_hydra)
    if Path(module.__file__ or "").resolve().parent.parent.parent != (repo / "src").resolve():
        raise UpstreamError(f"{UPSTREAM_MODULE} was imported from {module.__file__}, not from {repo}")
    return module


def flash_attention_available() -> bool:
    return importlib.util.find_spec("flash_attn") is not None


def choose_precision(device: str, dtype: str | None = None, attn: str | None = None) -> tuple[torch.dtype, str]:
    """bf16 with flash-attention 2 (upstream) or sdpa on GPU; fp32 with sdpa on CPU."""
    on_gpu = device.startswith("cuda")
    names = {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16,
             "float32": torch.float32, "fp32": torch.float32}
    if dtype is not None and dtype not in names:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(names)}")
    torch_dtype = names[dtype] if dtype else (torch.bfloat16 if on_gpu else torch.float32)
    if attn is None:
        attn = "flash_attention_2" if on_gpu and flash_attention_available() else "sdpa"
    return torch_dtype, attn


@contextlib.contextmanager
def sam_builder(samr1: ModuleType, config: str, overrides: list[str]) -> Iterator[None]:
    """While constructing the model, build SAM2 from ``config`` with Hydra ``overrides``.

    ``samr1.py`` hard-codes ``build_sam2("sam2_hiera_l.yaml", ...)``; the defaults change
    nothing. The tests use this to build a tiny SAM2 (same code, small dimensions).
    """
    if config == SAM_CONFIG and not overrides:
        yield
        return
    original = samr1.build_sam2

    @functools.wraps(original)
    def build(_config_file: str, *args: Any, hydra_overrides_extra: list[str] | None = None, **kwargs: Any) -> Any:
        return original(config, *args, hydra_overrides_extra=[*(hydra_overrides_extra or []), *overrides], **kwargs)

    samr1.build_sam2 = build
    try:
        yield
    finally:
        samr1.build_sam2 = original


@dataclass
class Counters(WorkCounters):
    """Cumulative work done, for ``Adapter.stats``: ``generated_tokens`` counts new tokens up to and
    including the end token; ``forward_passes`` the batched calls of the language model's decoder
    (prefix prefills, prefill, each decoding step, mask pass). Token counts are positions the
    decoder computed, padding included (the hardware computes pads too)."""

    vision_encoder_images: int = 0  # images through the Qwen ViT (really encoded)
    vision_encoder_patches: int = 0  # their 14x14 patches (the ViT's tokens)
    prefill_tokens: int = 0  # decoder positions of prompt prefills (shared prefixes included)
    decode_steps: int = 0  # decoder positions of decoding steps (one per sequence per step)
    decode_passes: int = 0  # decoding steps as batched calls (each reads all the weights once)
    mask_pass_tokens: int = 0  # decoder positions of the mask pass (its prefix, sentences, 64 queries)
    llm_sequences: int = 0  # sequences summed over decoder calls (/ forward_passes = sequences per forward)


class WorkMeter:
    """Counts the decoder's work by stage from a forward pre-hook on ``model.model``.

    The adapter names the stage: ``generate`` (the first decoder call after ``stage("generate")``
    is the prompt's prefill, the next ones decoding steps), ``prefill`` (a shared prefix) or
    ``mask`` (the mask pass and its prefix).
    """

    def __init__(self, decoder: torch.nn.Module, counters: Counters) -> None:
        self.counters = counters
        self._stage = "generate"
        self._first = True
        decoder.register_forward_pre_hook(self._hook, with_kwargs=True)

    def stage(self, name: str) -> None:
        self._stage, self._first = name, True

    def _hook(self, module: torch.nn.Module, args: Any, kwargs: dict[str, Any]) -> None:
        embeds = kwargs.get("inputs_embeds")
        if embeds is None:
            return
        batch, length = int(embeds.shape[0]), int(embeds.shape[1])
        c = self.counters
        c.forward_passes += 1
        c.llm_sequences += batch
        if self._stage == "mask":
            c.mask_pass_tokens += batch * length
        elif self._stage == "prefill" or self._first:
            c.prefill_tokens += batch * length
        else:
            c.decode_steps += batch * length
            c.decode_passes += 1
        if self._stage == "generate":
            self._first = False


def _take(obj: Any, rows: list[int]) -> Any:
    """A fresh copy of a backbone output holding rows ``rows`` of every tensor (batch first)."""
    if isinstance(obj, torch.Tensor):
        return obj.index_select(0, torch.tensor(rows, device=obj.device))
    if isinstance(obj, dict):
        return {k: _take(v, rows) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_take(v, rows) for v in obj)
    return obj


def _cat(objs: list[Any]) -> Any:
    """Backbone outputs concatenated along the batch."""
    first = objs[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(objs)
    if isinstance(first, dict):
        return {k: _cat([o[k] for o in objs]) for k in first}
    if isinstance(first, (list, tuple)):
        return type(first)(_cat([o[i] for o in objs]) for i in range(len(first)))
    return first


class SamImageEncoder:
    """Stands in for ``model.sam.forward_image``: one encoding per distinct image, repeated for its sentences.

    Upstream's mask pass feeds the same 1024x1024 image once per sentence and SAM2 encodes
    each copy. With ``reuse`` this encodes each distinct image of the batch once (the distinct
    ones together, in one call) and repeats the features for its rows. The adapter names each
    row's image (``expect``: one key for the whole batch, or one per row); then the encodings
    are kept for the next call that brings the same images. Without a key, rows are grouped
    by equal pixels and nothing is kept. The rest of upstream's forward runs unchanged on the
    repeated features. ``reuse=False`` is upstream's behaviour (for checking, and the counters).
    """

    def __init__(self, sam: torch.nn.Module, counters: Counters, reuse: bool = True) -> None:
        self._encode = sam.forward_image
        self.counters = counters
        self.reuse = reuse
        self._kept: dict[Any, Any] = {}
        self._expected: Any = None
        sam.forward_image = self  # instance attribute shadows the method

    def expect(self, key: Any) -> None:
        """The identity of the image(s) the next call will encode: one key for every row, a list with one
        per row (a batch spanning images), or None (group by pixels, keep nothing across calls)."""
        self._expected = key

    def clear(self) -> None:
        self._kept = {}

    def _row_keys(self, img_batch: torch.Tensor) -> tuple[list[Any], bool]:
        """Each row's image identity, and whether those identities are the adapter's (worth keeping)."""
        n = int(img_batch.shape[0])
        if isinstance(self._expected, list) and len(self._expected) == n:
            return list(self._expected), True
        firsts: list[int] = []
        keys: list[Any] = []
        for i in range(n):
            j = next((f for f in firsts if torch.equal(img_batch[f], img_batch[i])), None)
            if j is None:
                firsts.append(i)
                j = i
            keys.append(("row", j))
        if self._expected is not None and not isinstance(self._expected, list) and len(firsts) == 1:
            return [self._expected] * n, True
        return keys, False

    def __call__(self, img_batch: torch.Tensor) -> Any:
        n = int(img_batch.shape[0])
        if not self.reuse:
            self.counters.segmenter_images += n
            return self._encode(img_batch)
        keys, keep = self._row_keys(img_batch)
        distinct = list(dict.fromkeys(keys))
        found = {k: self._kept[k] for k in distinct if keep and k in self._kept}
        missing = [k for k in distinct if k not in found]
        if missing:
            out = self._encode(img_batch[[keys.index(k) for k in missing]])
            self.counters.segmenter_images += len(missing)
            found.update({k: _take(out, [i]) for i, k in enumerate(missing)})
        self._kept = found if keep else {}
        return _cat([found[k] for k in keys])


@dataclass
class LoadedLens:
    model: Any
    processor: Any
    encoder: SamImageEncoder
    vision: VisionEncoderCache
    meter: WorkMeter
    counters: Counters
    device: str
    dtype: torch.dtype
    attn_implementation: str
    upstream: Path
    upstream_commit: str | None


def checkpoint_padding_side(tokenizer: Any) -> str:
    """The padding side the checkpoint's tokenizer comes with (its ``tokenizer_config.json``, else the
    class default): what upstream, which never sets one, pads with."""
    return str(tokenizer.init_kwargs.get("padding_side") or type(tokenizer).padding_side)


def load_processor(checkpoint: str) -> Any:
    """The checkpoint's processor with left padding forced (batched generation needs it); the
    checkpoint's own side stays readable through ``checkpoint_padding_side``."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(checkpoint)
    processor.tokenizer.padding_side = "left"
    return processor


def load_lens(
    checkpoint: str, device: str, upstream_repo: str | None = None, dtype: str | None = None, attn: str | None = None,
    reuse_sam_embedding: bool = True, share_vision: bool = True, strict: bool = True, sam_config: str = SAM_CONFIG,
    sam_overrides: list[str] | None = None,
) -> LoadedLens:
    """Import the upstream class from the checkout, load the checkpoint as upstream does, wrap SAM."""
    repo = resolve_upstream(upstream_repo)
    samr1 = import_upstream(repo)
    cls = getattr(samr1, UPSTREAM_CLASS)
    torch_dtype, attn_impl = choose_precision(device, dtype, attn)
    with sam_builder(samr1, sam_config, list(sam_overrides or [])):
        model, info = cls.from_pretrained(checkpoint, torch_dtype=torch_dtype, attn_implementation=attn_impl,
                                          output_loading_info=True)
    missing = list(info.get("missing_keys") or [])
    if missing and strict:
        shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
        raise RuntimeError(
            f"{checkpoint}: {len(missing)} weights are missing from the checkpoint and would be random ({shown}); "
            "a LENS checkpoint carries the language model, the queries, the connector and SAM (sam.*). "
            "Set the option strict_load: false to load it anyway."
        )
    model.to(device).eval()
    counters = Counters()
    encoder = SamImageEncoder(model.sam, counters, reuse=reuse_sam_embedding)
    vision = VisionEncoderCache(model.visual, counters, share=share_vision)
    meter = WorkMeter(model.model, counters)
    return LoadedLens(model, load_processor(checkpoint), encoder, vision, meter, counters, device, torch_dtype, attn_impl, repo,
                      upstream_commit(repo))
