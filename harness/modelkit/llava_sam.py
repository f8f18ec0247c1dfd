"""The LLaVA + SAM family (LISA, GLaMM): image branches, ``<image>`` tokens, ``[SEG]`` id, masks.

Both models share these steps to the line (GLaMM's code derives from LISA's); what differs is a
parameter: the CLIP size (LISA 224, GLaMM 336), the number of image tokens (256 vs 576) and so
the ``[SEG]`` mask offset, which the adapters pass in. Each adapter's tests check these
functions against its own checkout and against transformers.

Image branches (the image arrives as RGB; upstream: ``cv2.imread`` then ``cv2.COLOR_BGR2RGB``):

CLIP (``CLIPImageProcessor`` of ``openai/clip-vit-large-patch14`` (224) or ``...-336``, called
on the uint8 array): resize so that the shortest side is ``size`` (the other side
``int(size * long / short)``, truncated), PIL bicubic on uint8; centre crop ``size`` x ``size``
with ``top = (h - size) // 2``, ``left = (w - size) // 2``; ``x * (1/255)`` (float64, cast to
float32); ``(x - mean) / std`` in float32 with OpenAI CLIP's mean and std.

SAM (``segment_anything/utils/transforms.py ResizeLongestSide(1024).apply_image`` and the
datasets' ``preprocess``): the longer side scaled to 1024 with ``int(x + 0.5)`` rounding of both
sides; ``torchvision.transforms.functional.resize`` of a PIL image, i.e. PIL bilinear on uint8;
``(x - pixel_mean) / pixel_std`` in float32; zero padding at the bottom and right to 1024x1024.
The resized (h, w) is what the mask post-processing crops back to.

Masks (``segment_anything/modeling/sam.py Sam.postprocess_masks``):
``F.interpolate(masks.float(), (1024, 1024), bilinear, align_corners=False)``, crop to the
resized image's ``[:h, :w]`` (the rest was padding), ``F.interpolate(..., original_size,
bilinear, align_corners=False)``; the evaluations then threshold ``> 0``. The box is the mask's
tight box (``harness.masks.mask_box``; None for an empty mask).

Tokens: ``tokenizer_image_token`` gives the ids of ``model/llava/mm_utils.py tokenizer_image_token``
(the same in LISA's and GLaMM's checkouts), written here from its behaviour (each
``<image>``-separated chunk tokenised on its own, the chunks joined by ``IMAGE_TOKEN_INDEX`` = -200,
one BOS kept) and tested against the checkout's function. Padding is the collate
functions': ``pad_sequence(batch_first=True, padding_value=pad_token_id)`` (right side) and
``attention_mask = input_ids != pad_token_id``.

The ``[SEG]`` id: upstream takes ``tokenizer("[SEG]", add_special_tokens=False).input_ids[0]``,
which can return 29871 ("▁") with some tokenizer versions (LISA issue #55, GLaMM issue #73) and
then silently segments nothing. Here the id comes from ``convert_tokens_to_ids`` and must be an
added token (>= 32000, LLaMA's base vocabulary, and not the unknown id) that converts back to
``[SEG]``; anything else is a wrong tokenizer and stops the load.

torch is imported inside the functions that need it: the numpy parts work without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from PIL import Image

from harness import masks
from harness.modelkit.counters import WorkCounters
from harness.types import RLE, Box

if TYPE_CHECKING:
    import torch

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)
SAM_SIZE = 1024
IMAGE_TOKEN_INDEX = -200
LLAMA_BASE_VOCAB = 32000

# -- image branches ---------------------------------------------------------------------


def check_image(image: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (h, w, 3) uint8 RGB image, got shape {image.shape} dtype {image.dtype}")


def clip_resize_shape(height: int, width: int, shortest: int) -> tuple[int, int]:
    """transformers ``get_resize_output_image_size(size=shortest, default_to_square=False)``: (h, w)."""
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = shortest, int(shortest * long / short)
    return (new_long, new_short) if width <= height else (new_short, new_long)


def clip_preprocess(image: np.ndarray, size: int) -> np.ndarray:
    """(h, w, 3) uint8 RGB -> (3, size, size) float32, as ``CLIPImageProcessor.preprocess``."""
    check_image(image)
    h, w = image.shape[:2]
    nh, nw = clip_resize_shape(h, w, size)
    resized = np.asarray(Image.fromarray(image).resize((nw, nh), Image.Resampling.BICUBIC))
    top, left = (nh - size) // 2, (nw - size) // 2
    crop = resized[top:top + size, left:left + size]
    x = (crop * (1 / 255)).astype(np.float32)  # uint8 * python float: float64, then float32 (transformers rescale)
    mean = np.asarray(OPENAI_CLIP_MEAN, dtype=np.float32)
    std = np.asarray(OPENAI_CLIP_STD, dtype=np.float32)
    x = (x - mean) / std
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def sam_resize_shape(height: int, width: int, long_side: int = SAM_SIZE) -> tuple[int, int]:
    """``ResizeLongestSide.get_preprocess_shape``: (h, w) with the longer side ``long_side``."""
    scale = long_side * 1.0 / max(height, width)
    newh, neww = height * scale, width * scale
    return int(newh + 0.5), int(neww + 0.5)


def sam_resize(image: np.ndarray, long_side: int = SAM_SIZE) -> np.ndarray:
    """``ResizeLongestSide.apply_image``: ``torchvision...resize(to_pil_image(image), (h, w))`` = PIL bilinear."""
    nh, nw = sam_resize_shape(image.shape[0], image.shape[1], long_side)
    return np.asarray(Image.fromarray(image).resize((nw, nh), Image.Resampling.BILINEAR))


def sam_normalise_pad(resized: np.ndarray, size: int = SAM_SIZE) -> np.ndarray:
    """(h, w, 3) uint8 -> (3, size, size) float32: ``(x - mean) / std``, zero-padded bottom/right."""
    chw = np.ascontiguousarray(resized.transpose(2, 0, 1)).astype(np.float32)
    mean = np.asarray(SAM_PIXEL_MEAN, dtype=np.float32)[:, None, None]
    std = np.asarray(SAM_PIXEL_STD, dtype=np.float32)[:, None, None]
    x = (chw - mean) / std
    out = np.zeros((3, size, size), dtype=np.float32)
    out[:, : x.shape[1], : x.shape[2]] = x
    return out


@dataclass(frozen=True)
class Preprocessed:
    clip_image: np.ndarray  # (3, clip, clip) float32
    sam_image: np.ndarray  # (3, 1024, 1024) float32
    resize_hw: tuple[int, int]  # the SAM input's unpadded size
    original_hw: tuple[int, int]


def preprocess(image: np.ndarray, clip_size: int) -> Preprocessed:
    """Both image branches of one image: CLIP at ``clip_size``, SAM resized and padded to 1024."""
    check_image(image)
    resized = sam_resize(image)
    return Preprocessed(
        clip_image=clip_preprocess(image, clip_size),
        sam_image=sam_normalise_pad(resized),
        resize_hw=(int(resized.shape[0]), int(resized.shape[1])),
        original_hw=(int(image.shape[0]), int(image.shape[1])),
    )


# -- masks --------------------------------------------------------------------------------


def postprocess_masks(low_res: torch.Tensor, input_size: tuple[int, int], original_size: tuple[int, int],
                      img_size: int = SAM_SIZE) -> torch.Tensor:
    """(B, C, 256, 256) logits -> (B, C, H, W) float32 logits, as ``Sam.postprocess_masks``."""
    import torch.nn.functional as F

    x = F.interpolate(low_res.float(), (img_size, img_size), mode="bilinear", align_corners=False)
    x = x[..., : input_size[0], : input_size[1]]
    return F.interpolate(x, tuple(original_size), mode="bilinear", align_corners=False)


def logits_to_mask(low_res: torch.Tensor, input_size: tuple[int, int], original_size: tuple[int, int]) -> np.ndarray:
    """The (H, W) bool mask of one (1, 256, 256) or (256, 256) logit map: upsampled logits > 0."""
    x = low_res
    while x.dim() < 4:
        x = x.unsqueeze(0)
    if x.shape[0] != 1 or x.shape[1] != 1:
        raise ValueError(f"expected the logits of one mask, got shape {tuple(low_res.shape)}")
    return (postprocess_masks(x, input_size, original_size)[0, 0] > 0).cpu().numpy()


def mask_and_box(mask: np.ndarray) -> tuple[RLE, Box | None]:
    rle = masks.encode(mask)
    return rle, masks.mask_box(rle)


# -- tokens -------------------------------------------------------------------------------


class TokenizerError(RuntimeError):
    """The tokenizer does not carry the special tokens the checkpoint was trained with."""


def special_token_id(tokenizer: Any, token: str, min_id: int = LLAMA_BASE_VOCAB) -> int:
    """The id of an added token, checked: >= ``min_id``, not unk, and round-trips to ``token``."""
    idx = tokenizer.convert_tokens_to_ids(token)
    unk = getattr(tokenizer, "unk_token_id", None)
    back = tokenizer.convert_ids_to_tokens(idx) if isinstance(idx, int) else None
    problems = []
    if not isinstance(idx, int):
        problems.append(f"convert_tokens_to_ids returned {idx!r}")
    else:
        if unk is not None and idx == unk:
            problems.append(f"it is the unknown token ({unk})")
        if idx < min_id:
            problems.append(f"its id {idx} is below {min_id} (an added token of a LLaMA tokenizer is >= {min_id})")
        if back != token:
            problems.append(f"id {idx} converts back to {back!r}")
    if problems:
        name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
        raise TokenizerError(
            f"tokenizer {name!r} has no usable {token} token: {'; '.join(problems)}. "
            "Load the tokenizer saved with the checkpoint (its added_tokens.json defines the token)."
        )
    return int(idx)


def tokenizer_image_token(prompt: str, tokenizer: Any, image_token_index: int = IMAGE_TOKEN_INDEX) -> list[int]:
    """The ids of a prompt with ``<image>`` placeholders, as LLaVA's ``mm_utils.tokenizer_image_token`` gives them.

    Each piece of text between placeholders is tokenised on its own (so each would carry the
    tokenizer's BOS); every placeholder becomes one ``image_token_index``. When the first piece
    starts with BOS, that BOS is kept once at the front and the leading BOS of *every* piece is
    dropped (upstream drops the first id of each piece then, BOS or not); otherwise every piece
    is kept whole. Returns a list (upstream can wrap it in a LongTensor). Checked against the
    checkout's function in the LISA and GLaMM adapters' tests."""
    pieces = [list(tokenizer(text).input_ids) for text in prompt.split("<image>")]
    bos = tokenizer.bos_token_id
    starts_with_bos = bool(pieces[0]) and pieces[0][0] == bos
    ids: list[int] = [bos] if starts_with_bos else []
    skip = 1 if starts_with_bos else 0
    for index, piece in enumerate(pieces):
        if index:
            ids.append(image_token_index)
        ids += piece[skip:]
    return ids


def pad_right(sequences: Sequence[Sequence[int]], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The collate functions' right padding with the pad id, attention mask = ids != pad id."""
    import torch

    seqs = [torch.tensor(list(s), dtype=torch.long) for s in sequences]
    input_ids = torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True, padding_value=pad_token_id)
    return input_ids, input_ids.ne(pad_token_id)


# -- loading and the shared part of the runtime -------------------------------------------


class WeightsNotLoaded(RuntimeError):
    """The checkpoint did not provide every weight of the model."""


def resolve_dtype(dtype: str | None, device: str) -> torch.dtype:
    """bf16 on a GPU (upstream's precision), fp32 elsewhere, unless named."""
    import torch

    dtypes = {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float32": torch.float32, "fp32": torch.float32,
              "float16": torch.float16, "fp16": torch.float16}
    if dtype:
        if dtype not in dtypes:
            raise ValueError(f"unknown dtype {dtype!r}; known: {', '.join(dtypes)}")
        return dtypes[dtype]
    return torch.bfloat16 if str(device).startswith("cuda") else torch.float32


def check_weights_loaded(checkpoint: str, info: dict[str, Any], strict: bool, model_name: str) -> None:
    """With ``strict``, stop when ``from_pretrained(output_loading_info=True)`` left weights missing."""
    missing = list(info.get("missing_keys") or [])
    if strict and missing:
        shown = ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else "")
        raise WeightsNotLoaded(f"{checkpoint}: {len(missing)} weights missing from the checkpoint ({shown}); "
                               f"{model_name} would run with random weights (set strict_load: false to allow)")


def set_special_token_ids(model: Any, tokenizer: Any) -> None:
    """eos/bos/pad ids copied from the tokenizer to the model's config, as the upstream loaders do."""
    model.config.eos_token_id = tokenizer.eos_token_id
    model.config.bos_token_id = tokenizer.bos_token_id
    model.config.pad_token_id = tokenizer.pad_token_id


@dataclass
class LlavaSamRuntime:
    """A loaded LLaVA + SAM model with the pieces its inference needs; subclasses name the
    upstream class and attributes (``CAUSAL_LM``, ``SAM_ATTR``, ``SAM_EMBEDDINGS``) and add the
    model's protocols."""

    model: Any
    tokenizer: Any
    seg_token_idx: int
    device: torch.device
    dtype: torch.dtype
    upstream_commit: str | None = None
    counters: WorkCounters = field(default_factory=WorkCounters)

    CAUSAL_LM: ClassVar[str] = ""  # the upstream model class, e.g. "LISAForCausalLM"
    SAM_ATTR: ClassVar[str] = ""  # SAM as an attribute of ``model.get_model()``, e.g. "visual_model"
    SAM_EMBEDDINGS: ClassVar[str] = ""  # the model's method for SAM's image embedding, e.g. "get_visual_embs"

    @property
    def image_tokens(self) -> int:
        """How many embeddings replace the one ``<image>`` id (256 for CLIP ViT-L/14 at 224, 576 at 336)."""
        return int(self.model.get_model().get_vision_tower().num_patches)

    def _llava_forward(self, **kwargs: Any) -> Any:
        # ``super().forward`` inside the upstream class: LlavaLlamaForCausalLM.forward
        cls = next(c for c in type(self.model).__mro__ if c.__name__ == self.CAUSAL_LM)
        self.counters.forward_passes += 1
        return super(cls, self.model).forward(**kwargs)  # type: ignore[arg-type]

    def clip_tensor(self, clip_image: np.ndarray) -> torch.Tensor:
        import torch

        return torch.from_numpy(clip_image)[None].to(device=self.device, dtype=self.dtype)

    def encode_image(self, sam_image: np.ndarray) -> torch.Tensor:
        """SAM's image embedding (1, 256, 64, 64), computed once for the image."""
        import torch

        x = torch.from_numpy(sam_image)[None].to(device=self.device, dtype=self.dtype)
        self.counters.segmenter_images += 1
        return getattr(self.model, self.SAM_EMBEDDINGS)(x)

    def decode_masks(self, pred_embeddings: torch.Tensor, image_embedding: torch.Tensor) -> torch.Tensor:
        """(k, 256) [SEG] vectors -> (k, 1, 256, 256) low-resolution logits for one image."""
        sam = getattr(self.model.get_model(), self.SAM_ATTR)
        sparse, dense = sam.prompt_encoder(points=None, boxes=None, masks=None, text_embeds=pred_embeddings.unsqueeze(1))
        sparse = sparse.to(pred_embeddings.dtype)
        low_res, _ = sam.mask_decoder(
            image_embeddings=image_embedding[:1], image_pe=sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=False,
        )
        return low_res
