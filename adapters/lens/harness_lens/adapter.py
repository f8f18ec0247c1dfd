"""The LENS adapter: upstream's evaluation path, the sentences of one or several images per batch.

Per ``predict`` call (all samples share the image), or per ``predict_many`` call (the adapter is
``multi_image``: the engine sends up to ``--batch-size`` samples spanning images, all of them in
one batch, each image's shared work still done once):

1. preprocess both branches once (``preprocess.PREPROCESSING[variant]``);
2. render each sentence's chat with the checkpoint's template (``prompts``);
3. one left-padded processor call and greedy generation (``generation``), continuing from the
   key/value cache of the prompts' shared prefix (``sharing``, ``share_prefix``);
4. upstream's second pass (``use_learnable_query=True``) on the generated sequences with the
   SAM image, where SAM's image encoder (``model.SamImageEncoder``) and the Qwen ViT
   (``sharing.VisionEncoderCache``) run once per image, and each image's prefix once per pass
   (with ``mask_from_cache`` the pass continues from the generation's cache instead);
5. per sentence: 256x256 logits -> bilinear to the original size -> ``> 0`` -> RLE
   (``postprocess``), and the box, reasoning and answer read from the text (``parse``).

With ``batching: ref`` steps 2-4 run once per ref instead (``evaluate_res2.py``'s
``evaluate_single``), the ref read from the sample id.

Options (run config ``options:``): ``variant`` (``refcoco`` default, ``refcoco-demo``,
``refcoco-upstream``, ``reasonseg-cot``, ``reasonseg-ft``; see ``manifest.VARIANTS``), and to
override a variant's parts ``checkpoint`` (hub id or path), ``template``, ``preprocessing``,
``max_length``, ``max_new_tokens``; ``upstream_repo`` (else ``$HARNESS_LENS_REPO``),
``device``, ``dtype``, ``attn_implementation``, ``batching`` (``image`` default, ``ref``),
``padding_side`` (``left`` default, ``tokenizer``: the checkpoint's own), the savings
``reuse_sam_embedding``, ``share_vision``, ``share_prefix`` (each default true),
``mask_from_cache`` (default false: the mask pass continues from the generation's cache, with
generation's 3-D positions, so not upstream's results to the last bits; see the README),
``strict_load`` (default true), ``sam_config`` / ``sam_overrides`` (build SAM2 from another
config; tests only). The adapter reads only a sample's id and expression.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from harness.adapter import Adapter, AdapterInfo
from harness.modelkit import counters
from harness.modelkit.digests import array_sha1 as _sha1
from harness.modelkit.prepared import PreparedImages
from harness.types import Prediction, Query

from harness_lens import manifest, prompts
from harness_lens.parse import parse_answer
from harness_lens.preprocess import PREPROCESSING, Preprocessed, Preprocessing

_SETTINGS = ("checkpoint", "template", "preprocessing", "max_length", "max_new_tokens")
_OTHER = ("variant", "upstream_repo", "device", "dtype", "attn_implementation", "reuse_sam_embedding", "strict_load",
          "sam_config", "sam_overrides", "batching", "padding_side", "share_vision", "share_prefix", "mask_from_cache")
BATCHING = ("image", "ref")
PADDING_SIDES = ("left", "tokenizer")
# options that change no output: kept out of the run's fingerprint
_NOT_FINGERPRINTED = ("upstream_repo", "device")


def resolve_options(options: dict[str, Any]) -> dict[str, Any]:
    """The variant's settings with the explicit overrides applied, checked."""
    unknown = sorted(set(options) - set(_SETTINGS) - set(_OTHER))
    if unknown:
        raise TypeError(f"adapter 'lens' got unknown options {', '.join(unknown)}; known: {', '.join(_SETTINGS + _OTHER)}")
    name = options.get("variant", manifest.DEFAULT_VARIANT)
    if name not in manifest.VARIANTS:
        raise ValueError(f"unknown LENS variant {name!r}; known: {', '.join(manifest.VARIANTS)}")
    settings = {"variant": name, **manifest.VARIANTS[name].settings()}
    for key in _SETTINGS:
        if key in options:
            settings[key] = options[key]
    if "max_new_tokens" in options and options["max_new_tokens"] and "max_length" not in options:
        settings["max_length"] = None  # max_new_tokens replaces the variant's max_length
    if settings["template"] not in prompts.TEMPLATES:
        raise ValueError(f"unknown template {settings['template']!r}; known: {', '.join(prompts.TEMPLATES)}")
    if settings["preprocessing"] not in PREPROCESSING:
        raise ValueError(f"unknown preprocessing {settings['preprocessing']!r}; known: {', '.join(PREPROCESSING)}")
    if not settings["max_length"] and not settings["max_new_tokens"]:
        raise ValueError("set max_length (upstream: 768, prompt included) or max_new_tokens")
    for key in _OTHER[1:]:
        if key in options:
            settings[key] = options[key]
    for key, default in (("reuse_sam_embedding", True), ("strict_load", True), ("batching", "image"),
                         ("padding_side", "left"), ("share_vision", True), ("share_prefix", True),
                         ("mask_from_cache", False)):
        settings.setdefault(key, default)
    if settings["batching"] not in BATCHING:
        raise ValueError(f"unknown batching {settings['batching']!r}; known: {', '.join(BATCHING)}")
    if settings["padding_side"] not in PADDING_SIDES:
        raise ValueError(f"unknown padding_side {settings['padding_side']!r}; known: {', '.join(PADDING_SIDES)}")
    if settings["share_prefix"] and settings["padding_side"] != "left":
        raise ValueError("share_prefix lays each batch out as [prefix][pads][sentence] and so needs padding_side: left; "
                         "set share_prefix: false to pad on the tokenizer's side")
    return settings


def ref_key(sample_id: str) -> str:
    """The referred object a sample belongs to: its id without the sentence, for the REFER reader's
    ``<dataset>/<splitBy>/<split>/<ref_id>/<sent_id>``; any other id is its own group."""
    parts = sample_id.split("/")
    return "/".join(parts[:-1]) if len(parts) == 5 else sample_id


def groups(samples: Sequence[Query], batching: str) -> list[list[int]]:
    """Indices of the samples run together: all of them (``image``), or one list per ref in order of
    first appearance (``ref``, as ``evaluate_res2.py`` iterates refs)."""
    if batching == "image":
        return [list(range(len(samples)))]
    by_ref: dict[str, list[int]] = {}
    for i, sample in enumerate(samples):
        by_ref.setdefault(ref_key(sample.id), []).append(i)
    return list(by_ref.values())


class LensAdapter(Adapter):
    """LENS behind the harness's adapter interface (see the module docstring)."""

    info: ClassVar[AdapterInfo] = AdapterInfo(
        name=manifest.NAME,
        description=manifest.DESCRIPTION,
        outputs=manifest.OUTPUTS,
        box_space="pixel",
        version=manifest.VERSION,
        checkpoints=tuple(manifest.CHECKPOINTS),
    )
    multi_image = True  # predict_many puts several images' sentences into one batch (batching: image)
    # The resizes for SAM and the LLM and the image's key (~25 ms of one core for 640x480) are done by the
    # engine's decode-ahead thread while the model runs the batch before (the same functions, so the same values).
    prepares_images = True

    def __init__(self, **options: Any) -> None:
        self.settings = resolve_options(options)
        self.options = {k: v for k, v in self.settings.items() if k not in _NOT_FINGERPRINTED}
        self.preprocessing: Preprocessing = PREPROCESSING[self.settings["preprocessing"]]
        # batching: ref (upstream's protocol) must see each image's sentences together, as upstream's refs:
        # the engine then keeps every batch within one image (a batch across images could split a ref)
        self.multi_image = self.settings["batching"] == "image"
        self._lens: Any = None
        self._processor: Any = None
        self._prefixes: Any = None  # sharing.PrefixStore: the last call's prefix caches (share_prefix)
        self._ready = PreparedImages()  # what prepare_image did ahead, by image array

    # -- loading -------------------------------------------------------------------------

    def load(self, device: str = "cpu") -> None:
        from harness_lens.model import load_lens

        s = self.settings
        self._lens = load_lens(
            s["checkpoint"], s.get("device") or device, upstream_repo=s.get("upstream_repo"), dtype=s.get("dtype"),
            attn=s.get("attn_implementation"), reuse_sam_embedding=bool(s["reuse_sam_embedding"]),
            share_vision=bool(s["share_vision"]),
            strict=bool(s["strict_load"]), sam_config=s.get("sam_config") or "sam2_hiera_l.yaml",
            sam_overrides=s.get("sam_overrides"),
        )
        self._processor = self._lens.processor
        from harness_lens.sharing import PrefixStore

        self._prefixes = PrefixStore()

    def processor(self) -> Any:
        """The checkpoint's processor (loaded alone, without weights, when the model is not)."""
        if self._processor is None:
            from harness_lens.model import load_processor

            self._processor = load_processor(self.settings["checkpoint"])
        return self._processor

    # -- prediction ----------------------------------------------------------------------

    def prepare_image(self, image: np.ndarray) -> None:
        self._ready.put(image, self._prepare(image))

    def _prepare(self, image: np.ndarray) -> tuple[Preprocessed, str]:
        return self.preprocessing(image), _sha1(image)

    def _prepared(self, image: np.ndarray) -> tuple[Preprocessed, str]:
        """This image's preprocessing and key: done ahead by ``prepare_image``, else now."""
        got = self._ready.get(image)
        return got if got is not None else self._prepare(image)

    def _key(self, image: np.ndarray) -> str:
        """The image's key (its SAM embedding is reused by it): from ``prepare_image`` when done ahead."""
        got = self._ready.get(image)
        return got[1] if got is not None else _sha1(image)

    def predict(self, image: np.ndarray, samples: Sequence[Query]) -> list[Prediction]:
        if self._lens is None:
            raise RuntimeError("LensAdapter.predict before load()")
        if not samples:
            return []
        pre, _ = self._prepared(image)
        preds: list[Prediction | None] = [None] * len(samples)
        for indices in groups(samples, self.settings["batching"]):
            (batch,) = self._predict_parts([(image, pre, [samples[i].expression for i in indices])])
            for i, pred in zip(indices, batch):
                preds[i] = pred
        self._ready.done_with([image])
        return [p for p in preds if p is not None]

    def predict_many(self, items: Sequence[tuple[np.ndarray, Sequence[Query]]]) -> list[list[Prediction]]:
        """Several images' sentences in one batch (``batching: image``): one generation and one mask pass
        for all of them, each image's prefix, ViT and SAM encodes done once. ``batching: ref`` (upstream's
        protocol) runs each image as ``predict`` does."""
        if self._lens is None:
            raise RuntimeError("LensAdapter.predict_many before load()")
        if self.settings["batching"] != "image":
            return [self.predict(image, samples) for image, samples in items]
        parts = [(image, self._prepared(image)[0], [q.expression for q in samples]) for image, samples in items if samples]
        results = iter(self._predict_parts(parts)) if parts else iter(())
        out = [next(results) if samples else [] for _, samples in items]
        self._ready.done_with([image for image, _ in items])
        return out

    def _predict_parts(self, parts: list[tuple[np.ndarray, Preprocessed, list[str]]]) -> list[list[Prediction]]:
        """One generation and one mask pass for the sentences of one or more images (``evaluate_single``
        on their concatenation); one list of predictions per part."""
        from harness_lens.postprocess import logits_to_rle

        gen, low_res, inputs = self._run_parts(parts)
        out, row = [], 0
        for _, pre, expressions in parts:
            llm_hw = self._llm_hw(inputs, row)
            preds = []
            for i in range(row, row + len(expressions)):
                parsed = parse_answer(gen.texts[i], llm_hw, pre.original_hw)
                preds.append(Prediction(
                    mask=logits_to_rle(low_res[i], pre.original_hw), box=parsed.box, text=gen.texts[i],
                    reasoning=parsed.reasoning, answer=parsed.answer, parse_status=parsed.status,
                ))
            out.append(preds)
            row += len(expressions)
        return out

    def _run_parts(self, parts: list[tuple[np.ndarray, Preprocessed, list[str]]]) -> tuple[Any, list[Any], Any]:
        """The generation (``generation.Generated``), the 256x256 mask logits per sentence and the processor's inputs,
        for rows spanning one or more images (part by part, in order)."""
        import torch

        from harness_lens import sharing
        from harness_lens.generation import generate, mask_pass_inputs, processor_inputs
        from harness_lens.model import checkpoint_padding_side

        lens, s = self._lens, self.settings
        tokenizer = lens.processor.tokenizer
        side = "left" if s["padding_side"] == "left" else checkpoint_padding_side(tokenizer)
        texts = [prompts.render(lens.processor, s["template"], e) for _, _, exprs in parts for e in exprs]
        row_part = [k for k, (_, _, exprs) in enumerate(parts) for _ in exprs]
        with torch.inference_mode():
            llm_images = [parts[k][1].llm_image for k in row_part]
            inputs = processor_inputs(lens.processor, texts, llm_images if len(parts) > 1 else parts[0][1].llm_image,
                                      lens.device, lens.dtype, side, once_per_image=bool(s["share_vision"]))
            budgets = None
            if len(parts) > 1 and not s["max_new_tokens"]:
                # each row's budget as its image's own batch would have it: max_length minus that batch's width
                lengths = inputs["attention_mask"].sum(1).tolist()
                widths = {k: max(int(n) for n, j in zip(lengths, row_part) if j == k) for k in range(len(parts))}
                budgets = [max(1, int(s["max_length"]) - widths[k]) for k in row_part]
            prefix = None
            if s["share_prefix"]:
                lens.meter.stage("prefill")
                prefix = sharing.prefix_of(lens.model, inputs, row_part, store=self._prefixes)
            lens.meter.stage("generate")
            gen = generate(lens.model, lens.processor, inputs, s["max_length"], s["max_new_tokens"], prefix=prefix,
                           keep_cache=bool(s["mask_from_cache"]), row_budgets=budgets)
            lens.counters.generated_tokens += sum(gen.new_tokens)
            sam_images = torch.stack([torch.from_numpy(parts[k][1].sam_image) for k in row_part]).to(lens.device)
            keys = [(self.preprocessing.name, self._key(image)) for image, _, _ in parts]
            lens.encoder.expect(keys[0] if len(parts) == 1 else [keys[k] for k in row_part])
            lens.meter.stage("mask")
            try:
                if s["mask_from_cache"]:
                    low_res = sharing.mask_pass_from_cache(lens.model, gen, int(tokenizer.pad_token_id), sam_images)
                elif prefix is not None:
                    low_res = sharing.mask_pass_from_prefix(lens.model, inputs, gen.sequences, prefix,
                                                            int(tokenizer.pad_token_id), sam_images, store=self._prefixes)
                else:
                    second = mask_pass_inputs(gen, tokenizer.pad_token_id, sam_images)
                    _, low_res = lens.model(output_hidden_states=True, use_learnable_query=True, **second)
            finally:
                lens.meter.stage("generate")
        return gen, low_res, inputs

    def _llm_hw(self, inputs: Any, row: int = 0) -> tuple[int, int]:
        """(h, w) of row ``row``'s image as the language model saw it: the processor's patch grid x patch size.

        For ``refcoco`` this equals ``smart_resize(h, w, 28, max_pixels=1e6)`` (the processor does
        not resize again); for ``reasonseg`` the processor resizes the 640-longest image once more.
        """
        _, gh, gw = (int(v) for v in inputs["image_grid_thw"][row].tolist())
        patch = int(getattr(self.processor().image_processor, "patch_size", 14))
        return gh * patch, gw * patch

    # -- review and efficiency hooks -----------------------------------------------------

    def inputs(self, image: np.ndarray, sample: Query) -> dict[str, Any]:
        """The exact prompt and digests of the preprocessed tensors, for input-diff review."""
        processor = self.processor()
        pre: Preprocessed = self.preprocessing(image)
        prompt = prompts.render(processor, self.settings["template"], sample.expression)
        enc = processor(text=[prompt], images=[pre.llm_image], padding=True, return_tensors="np")
        llm = np.asarray(pre.llm_image)
        return {
            "prompt": prompt,
            "template": self.settings["template"],
            "preprocessing": self.preprocessing.name,
            "llm_image_hw": [int(llm.shape[0]), int(llm.shape[1])],
            "llm_image_sha1": _sha1(llm),
            "pixel_values_sha1": _sha1(np.asarray(enc["pixel_values"], dtype=np.float32)),
            "image_grid_thw": [int(v) for v in np.asarray(enc["image_grid_thw"])[0]],
            "input_ids_sha1": _sha1(np.asarray(enc["input_ids"], dtype=np.int64)),
            "prompt_tokens": int(np.asarray(enc["input_ids"]).shape[1]),
            "sam_image_sha1": _sha1(pre.sam_image),
        }

    def stats(self) -> dict[str, float]:
        if self._lens is None:
            return {}
        out = counters.stats(self._lens.counters, self._lens.device)
        out["sequences_per_forward"] = out["llm_sequences"] / out["forward_passes"] if out["forward_passes"] else 0.0
        return out

