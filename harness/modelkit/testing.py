"""Helpers for the adapters' own tests (imported by their ``tests/``, never by the engine).

- ``import_torchvision_on_cpu_torch``: torchvision's PyPI wheels are CUDA builds; with the CPU
  torch of a test environment ``import torchvision`` fails while registering fake kernels for its
  C operators (``operator torchvision::nms does not exist``). When - and only when - that exact
  failure happens, the real torchvision is imported with that one registration module skipped:
  its pure-Python transforms work, its C operators (nms, roi_align) stay unavailable.
- ``checkout_or_skip``: the upstream checkout a test needs, or a clean skip; with
  ``$HARNESS_REQUIRE_UPSTREAM=1`` (CI sets it where ``../shared/upstream`` holds the checkout) a
  missing checkout fails the test instead.
- ``load_upstream_file``: one file of a checkout loaded as a module under a private name (no
  ``sys.path`` change), for oracles that are plain functions of upstream (e.g. LISA's
  ``utils/data_processing.py get_mask_from_json``).
- ``test_device``: the device the tiny-model tests load adapters on: ``$HARNESS_TEST_DEVICE`` (``harness doctor
  --device cuda`` sets it to run them on the GPU), else ``cpu``, what CI runs.
- ``argparse_defaults``: the literal ``default=`` of every ``add_argument`` of an upstream script,
  read with ``ast`` (the scripts load models in ``main()`` and cannot be imported for this).
- ``harness.modelkit.conformance``: the pytest hooks that count and police conformance tests.
- tiny offline stand-ins of the LLaVA family (LISA, GLaMM): a LLaMA-like tokenizer with a
  32000-entry base vocabulary, a tiny CLIP vision tower saved to disk, a tiny SAM, and the
  ``CLIPImageProcessor`` of openai/clip-vit-large-patch14(-336). Nothing touches the network:
  the tokenizer is made with ``tokenizers`` (Metaspace pre-tokenizer, one token per character,
  fillers up to 32000 so that added tokens get LLaMA's ids 32000+), the CLIP tower from a
  ``CLIPVisionConfig``.
- for tiny Qwen2-VL / Qwen2.5-VL tokenizers (LENS, Seg-Zero): ``QWEN2_VL_SPECIAL_TOKENS`` and
  ``QWEN2_VL_CHAT_TEMPLATE`` (transformers does not ship the template).
"""

from __future__ import annotations

import importlib.util
import os
import string
import sys
import types
from pathlib import Path
from typing import Any

from harness.modelkit.upstream import Upstream

BASE_VOCAB = 32000

# Qwen2-VL / Qwen2.5-VL special tokens, in their order (ids 151643.. in the real vocabulary).
QWEN2_VL_SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>",
)

# The chat template of Qwen/Qwen2.5-VL-3B-Instruct and -7B-Instruct (chat_template.json), which
# LENS and Seg-Zero checkpoints keep (they are fine-tuned from them). Copied as text.
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n{% else %}"
    "{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}"
    "<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def import_torchvision_on_cpu_torch() -> None:
    """``import torchvision``; on a CPU torch, without its fake-kernel registrations (see the module docstring)."""
    try:
        import torchvision
    except RuntimeError as exc:
        if "torchvision::" not in str(exc):
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        sys.modules["torchvision._meta_registrations"] = types.ModuleType("torchvision._meta_registrations")
        import torchvision  # noqa: F401


REQUIRE_ENV = "HARNESS_REQUIRE_UPSTREAM"


def upstream_required() -> bool:
    """``$HARNESS_REQUIRE_UPSTREAM`` is set to a true value: a conformance test may not skip."""
    return os.environ.get(REQUIRE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def checkout_or_skip(upstream: Upstream) -> Path:
    """The checkout named by ``$<env>`` (not resolved); skips the test when it is unset or not such a checkout.

    With ``$HARNESS_REQUIRE_UPSTREAM`` set the test fails instead of skipping."""
    import pytest

    raw = os.environ.get(upstream.env)
    problem = None
    if not raw:
        problem = f"{upstream.env} is not set (a checkout of {upstream.repository})"
    elif not (Path(raw) / upstream.marker).is_file():
        problem = f"{upstream.env}={raw} is not a {upstream.repository} checkout ({upstream.marker} is missing)"
    if problem is not None:
        if upstream_required():
            pytest.fail(f"{problem}; {REQUIRE_ENV} is set, so a conformance test may not skip", pytrace=False)
        pytest.skip(problem)
    return Path(str(raw))


def test_device() -> str:
    """``$HARNESS_TEST_DEVICE`` (e.g. ``cuda``, ``cuda:1``), else ``cpu``."""
    return os.environ.get("HARNESS_TEST_DEVICE") or "cpu"


test_device.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test pytest should collect


def argparse_defaults(script: Path) -> dict[str, Any]:
    """``{option: default}`` of each ``parser.add_argument(...)`` with a literal default in ``script``
    (every option string of a call, e.g. ``--vision-tower``); an ``action="store_true"`` without a
    default gives False."""
    import ast

    out: dict[str, Any] = {}
    for node in ast.walk(ast.parse(script.read_text(encoding="utf-8"), filename=str(script))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_argument"):
            continue
        names = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        keywords = {k.arg: k.value for k in node.keywords if k.arg}
        try:
            if "default" in keywords:
                value = ast.literal_eval(keywords["default"])
            elif "action" in keywords and ast.literal_eval(keywords["action"]) == "store_true":
                value = False
            else:
                continue
        except ValueError:
            continue
        for name in names:
            out[name] = value
    return out


def load_upstream_file(repo: Path, relative: str, name: str) -> types.ModuleType:
    """The file ``relative`` of a checkout, executed as a module named ``name`` (not put on sys.path).

    For upstream files whose imports are all third-party (e.g. LISA's ``utils/data_processing.py``):
    the checkout's generic top-level names (``utils``, ``model``) are never imported this way."""
    path = repo / relative
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def llama_like_tokenizer(added: tuple[str, ...] = ("[SEG]",), special: tuple[str, ...] = ("<im_start>", "<im_end>"),
                         base_vocab: int = BASE_VOCAB) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for ch in ["▁", "\n", *string.printable]:
        if ch not in vocab and ch not in " \t\r\x0b\x0c":
            vocab[ch] = len(vocab)
    while len(vocab) < base_vocab:
        vocab[f"<unused{len(vocab)}>"] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>", fuse_unk=True))
    try:
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", add_prefix_space=True)
        tok.decoder = decoders.Metaspace(replacement="▁", add_prefix_space=True)
    except TypeError:  # tokenizers >= 0.19
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    tok.add_special_tokens(["<unk>", "<s>", "</s>"])  # matched in text, as LLaMA's tokenizer does
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   padding_side="right", model_max_length=2048)
    if added:
        fast.add_tokens(list(added))
    if special:
        fast.add_tokens(list(special), special_tokens=True)
    fast.pad_token = fast.unk_token
    return fast


def save_tiny_clip(directory: Path, image_size: int = 224, patch_size: int = 14, hidden: int = 32) -> Path:
    """A random CLIP vision tower and its image processor; the directory name contains "clip"
    (LLaVA's ``build_vision_tower`` accepts only names with "clip", "openai" or "laion")."""
    import torch
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    directory.mkdir(parents=True, exist_ok=True)
    cfg = CLIPVisionConfig(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2, num_attention_heads=4,
                           image_size=image_size, patch_size=patch_size, projection_dim=hidden)
    torch.manual_seed(0)
    CLIPVisionModel(cfg).save_pretrained(directory)
    CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size},
        image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711],
    ).save_pretrained(directory)
    return directory


def tiny_sam(build_sam_module: Any) -> Any:
    """SAM with a 2-block, 32-wide image encoder (prompt encoder and mask decoder as upstream builds them)."""
    return build_sam_module._build_sam(encoder_embed_dim=32, encoder_depth=2, encoder_num_heads=2,
                                       encoder_global_attn_indexes=[1], checkpoint=None)


def openai_clip_processor(size: int) -> Any:
    """CLIPImageProcessor configured as openai/clip-vit-large-patch14(-336)'s preprocessor_config.json."""
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(
        do_resize=True, size={"shortest_edge": size}, resample=3, do_center_crop=True,
        crop_size={"height": size, "width": size}, do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
        image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711],
        do_convert_rgb=True,
    )
