"""A tiny random Sa2VA-Qwen2.5-VL checkpoint, built on the spot from the checkout's remote code (no download).

A real Sa2VA checkpoint is a directory holding the repository's ``projects/sa2va/hf/models_qwen2_5_vl/``
files beside its weights, loaded with ``trust_remote_code=True``. The tiny one is the same: those
files copied from ``$HARNESS_SA2VA_REPO`` into a temporary directory (never into this repository), a
``Sa2VAChatConfigQwen`` with 2-layer, 64-wide Qwen2.5-VL towers, a byte-level BPE tokenizer with
Qwen's special tokens and ``[SEG]``, Qwen2.5-VL's processor, and random weights.

SAM2: the remote ``SAM2`` class builds SAM2-L's Hiera trunk itself; ``tiny_image_encoder`` builds the
same classes (Hiera, FpnNeck, ImageEncoder from the remote ``sam2.py``) with 16 channels and blocks
[1, 1, 2, 1], and ``small_sam2`` patches ``SAM2.build_image_encoder`` while a model is built. The
object-score head is biased so that the object is always present (else random masks are all -1024).

How the random model answers (greedy generation inside ``predict_forward`` uses the inner
Qwen2.5-VL's own generation config, so the answer is fixed by the weights): every token embedding
has 1 in dimension 0, ``[SEG]``'s also 1 in dimension 1, others 0 there, and no layer writes those
two dimensions (their rows of ``o_proj``/``down_proj`` are zero; the rest is scaled up so that the
context moves the hidden states). The output head reads only them: ``[SEG]``'s row is e0, the end
token's 10·e1 (``answers_seg=True``). So the model says ``[SEG]`` after the prompt and the end token
after ``[SEG]``: the text is ``[SEG]<|im_end|>``, and the mask comes from the random, image- and
question-dependent hidden state at ``[SEG]``. With ``answers_seg=False`` the end token's row is e0:
the model says nothing and draws no mask.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.modelkit.testing import QWEN2_VL_CHAT_TEMPLATE, QWEN2_VL_SPECIAL_TOKENS

# the remote code of each Qwen variant in the checkout (a Hub checkpoint ships the same files)
HF_CODE = {"qwen2_5_vl": "projects/sa2va/hf/models_qwen2_5_vl", "qwen3vl": "projects/sa2va/hf/models_qwen3vl"}
CORPUS = [
    "You are a helpful assistant. Please segment the red car in this image.",
    "Sure, it is [SEG]. man woman dog left right the a an zebra apple person umbrella small large blue red green",
]


def build_tokenizer() -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AddedToken, Qwen2TokenizerFast

    special = list(QWEN2_VL_SPECIAL_TOKENS)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=330, special_tokens=special, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(CORPUS, trainer)
    tok = Qwen2TokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token=None,
                             bos_token=None, additional_special_tokens=special[1:], errors="replace")
    tok.add_tokens([AddedToken("[SEG]", normalized=False, special=True)])
    tok.chat_template = QWEN2_VL_CHAT_TEMPLATE
    return tok


def build_processor(variant: str = "qwen2_5_vl") -> Any:
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen3VLProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    if variant == "qwen3vl":  # Qwen3-VL: 16-pixel patches, mean/std 0.5
        values = dict(patch_size=16, temporal_patch_size=2, merge_size=2, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
        return Qwen3VLProcessor(image_processor=Qwen2VLImageProcessor(min_pixels=4096, max_pixels=16777216, **values),
                                video_processor=Qwen3VLVideoProcessor(**values), tokenizer=build_tokenizer(),
                                chat_template=QWEN2_VL_CHAT_TEMPLATE)
    values = dict(min_pixels=3136, max_pixels=12845056, patch_size=14, temporal_patch_size=2, merge_size=2,
                  image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711])
    return Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(**values), video_processor=Qwen2VLVideoProcessor(**values),
                               tokenizer=build_tokenizer(), chat_template=QWEN2_VL_CHAT_TEMPLATE)


def config_fields(tokenizer: Any, variant: str = "qwen2_5_vl", hidden: int = 64) -> dict[str, Any]:
    ids = tokenizer.convert_tokens_to_ids
    if variant == "qwen3vl":
        text3 = dict(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, head_dim=hidden // 4, max_position_embeddings=4096,
                     rope_theta=5000000.0, tie_word_embeddings=False,
                     rope_scaling={"rope_type": "default", "mrope_section": [2, 3, 3], "mrope_interleaved": True},
                     bos_token_id=ids("<|endoftext|>"), eos_token_id=ids("<|im_end|>"), pad_token_id=ids("<|endoftext|>"))
        return dict(
            text_config=text3, tie_word_embeddings=False,
            image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
            vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
            vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=hidden, patch_size=16,
                               spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=2304,
                               deepstack_visual_indexes=[1], in_channels=3, hidden_act="gelu_pytorch_tanh"),
            template="qwen_chat",
            auto_map={"AutoConfig": "configuration_sa2va_chat.Sa2VAChatConfigQwen",
                      "AutoModel": "modeling_sa2va_qwen.Sa2VAChatModelQwen"},
        )
    text = dict(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096, rope_theta=1000000.0,
                rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]}, tie_word_embeddings=False,
                bos_token_id=ids("<|endoftext|>"), eos_token_id=ids("<|im_end|>"), pad_token_id=ids("<|endoftext|>"))
    return dict(
        text_config=text, **text,
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=hidden,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                           fullatt_block_indexes=[1], tokens_per_second=2, in_channels=3, in_chans=3, hidden_act="silu"),
        template="qwen_chat",
        auto_map={"AutoConfig": "configuration_sa2va_chat.Sa2VAChatConfigQwen",
                  "AutoModel": "modeling_sa2va_qwen.Sa2VAChatModelQwen"},
    )


def tiny_image_encoder(sam2_module: Any) -> Any:
    """The remote SAM2's image encoder classes at Hiera-T-like tiny sizes (16 channels, blocks [1, 1, 2, 1])."""
    trunk = sam2_module.Hiera(embed_dim=16, num_heads=1, stages=[1, 1, 2, 1], global_att_blocks=[3],
                              window_pos_embed_bkg_spatial_size=[7, 7], window_spec=[8, 4, 16, 8])
    position = sam2_module.PositionEmbeddingSine(num_pos_feats=256, normalize=True, scale=None, temperature=10000)
    neck = sam2_module.FpnNeck(d_model=256, position_encoding=position, backbone_channel_list=[128, 64, 32, 16],
                               fpn_top_down_levels=[2, 3], fpn_interp_model="nearest")
    return sam2_module.ImageEncoder(scalp=1, trunk=trunk, neck=neck)


@contextlib.contextmanager
def small_sam2(sam2_module: Any) -> Iterator[None]:
    original = sam2_module.SAM2.build_image_encoder
    sam2_module.SAM2.build_image_encoder = lambda self: tiny_image_encoder(sam2_module)
    try:
        yield
    finally:
        sam2_module.SAM2.build_image_encoder = original


def remote_modules(directory: Path) -> tuple[Any, Any]:
    """The checkpoint's remote modules as transformers loads them: (modeling_sa2va_qwen, sam2)."""
    import sys

    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    cls = get_class_from_dynamic_module("modeling_sa2va_qwen.Sa2VAChatModelQwen", str(directory))
    modeling = sys.modules[cls.__module__]
    return modeling, sys.modules[cls.__module__.rsplit(".", 1)[0] + ".sam2"]


def build_checkpoint(directory: Path, repo: Path, answers_seg: bool = True, seed: int = 0,
                     variant: str = "qwen2_5_vl") -> Path:
    """A tiny random Sa2VA checkpoint (``variant`` ``qwen2_5_vl`` or ``qwen3vl``) in ``directory``
    (whose name should contain "qwen")."""
    import torch

    directory.mkdir(parents=True, exist_ok=True)
    for source in (repo / HF_CODE[variant]).glob("*.py"):
        shutil.copy(source, directory / source.name)
    processor = build_processor(variant)
    tok = processor.tokenizer
    modeling, sam2_module = remote_modules(directory)
    config = modeling.Sa2VAChatConfigQwen(**config_fields(tok, variant))
    torch.manual_seed(seed)
    with small_sam2(sam2_module):
        model = modeling.Sa2VAChatModelQwen(config).eval()
    lm = model.model
    seg, end = tok.convert_tokens_to_ids("[SEG]"), tok.convert_tokens_to_ids("<|im_end|>")
    with torch.no_grad():
        emb = lm.get_input_embeddings().weight
        emb[:, 0] = 1.0
        emb[:, 1] = 0.0
        emb[seg, 1] = 1.0
        for layer in lm.model.language_model.layers:
            for proj in (layer.self_attn.o_proj, layer.mlp.down_proj):
                proj.weight.mul_(20.0)
                proj.weight[:2] = 0.0
        head = lm.lm_head.weight
        head.zero_()
        if answers_seg:
            head[seg, 0] = 1.0
            head[end, 1] = 10.0
        else:
            head[end, 0] = 1.0
        score = model.grounding_encoder.sam2_model.sam_mask_decoder.pred_obj_score_head
        (score if isinstance(score, torch.nn.Linear) else score.layers[-1]).bias.fill_(20.0)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


@contextlib.contextmanager
def cuda_calls_on_cpu(sam2_module: Any) -> Iterator[None]:
    """Run the remote SAM2 on a CPU-only torch (tests only).

    The remote ``sam2.py`` is written for CUDA: it moves tensors with ``.cuda()`` and puts
    ``torch.device("cuda")`` into its inference state, and relies on ``torch.autocast("cuda", bf16)``
    to mix its bf16 weights with float activations. On the tests' CPU build those raise; here
    ``Tensor.cuda`` returns the tensor itself, ``init_state``'s devices are the CPU, and an autocast
    asked for "cuda" is off: the tests run the model in float32 (``float32_on_cpu``; bf16 convolutions
    on a CPU take minutes at SAM2's 1024x1024). Upstream's computation is otherwise unchanged, and the
    tests run both the adapter and upstream's own ``predict_forward`` under the same shim.
    """
    import torch

    original_autocast = torch.autocast

    def autocast(device_type: str, *args: Any, **kwargs: Any) -> Any:
        if device_type == "cuda":
            return original_autocast("cpu", enabled=False)
        return original_autocast(device_type, *args, **kwargs)

    original_cuda = torch.Tensor.cuda
    predictor = sam2_module.SAM2VideoPredictor
    original_init = predictor.init_state

    def init_state(self: Any, *args: Any, **kwargs: Any) -> Any:
        state = original_init(self, *args, **kwargs)
        state["device"] = state["storage_device"] = torch.device("cpu")
        return state

    torch.Tensor.cuda = lambda self, *args, **kwargs: self  # type: ignore[method-assign]
    predictor.init_state = init_state
    torch.autocast = autocast  # type: ignore[misc,assignment]
    try:
        yield
    finally:
        torch.autocast = original_autocast  # type: ignore[misc]
        torch.Tensor.cuda = original_cuda  # type: ignore[method-assign]
        predictor.init_state = original_init


def float32_on_cpu(model: Any) -> Any:
    """The remote model's fixed bf16 cast of SAM2's input (``self.torch_dtype``) made float32, for a
    float32 model on the CPU (tests only; applied to upstream's model and the adapter's alike)."""
    import torch

    model.torch_dtype = torch.float32
    return model
