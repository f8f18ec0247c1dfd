"""Loading GLaMM as its referring-segmentation evaluation does, and its inference path, on any device.

Loading (``eval/referring_seg/infer_and_evaluate.py`` with ``--pretrained``, as
``run_evaluation.sh`` calls it): the checkpoint's tokenizer (``model_max_length=1536,
padding_side="right", use_fast=False``, pad = unk; ``--pretrained`` adds no tokens), the
``[SEG]`` and ``<bbox>`` ids (checked, see ``harness.modelkit.llava_sam``), ``GLaMMForCausalLM.from_pretrained(
version, torch_dtype=bf16, low_cpu_mem_usage=True, **model_args)`` with upstream's
``model_args`` (``vision_pretrained`` is None here: upstream builds SAM from
``sam_vit_h_4b8939.pth`` and then overwrites every SAM weight with the checkpoint's, so the file
changes nothing), eos/bos/pad ids to the config, ``initialize_vision_modules`` (CLIP-336 from
``vision_tower``), ``resize_token_embeddings(len(tokenizer))``; the whole model in bf16. The
zero-initialised LoRA (r=8) that upstream wraps around the model before evaluating is a no-op
and is not applied. A checkpoint that leaves weights missing stops the load (``strict``).

Inference (``GLaMMForCausalLM.model_forward(inference=True)``, ``model/GLaMM.py``, which
hard-codes ``.cuda()``), written with the model's own modules: per conversation one
``LlavaLlamaForCausalLM.forward`` (``_inference_path`` runs the rows of a batch one at a
time, with the batch's right padding); ``seg_token_mask = [575 x False] + (input_ids[:, 1:] ==
seg) + [False]`` (``_create_seg_token_mask``); ``text_hidden_fcs[0]`` of the last hidden state at
the mask; SAM's prompt encoder (``text_embeds``) and mask decoder (``multimask_output=False``)
on the image's embedding, computed once per image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from harness.modelkit import llava_sam
from harness.modelkit.llava_sam import LlavaSamRuntime, WeightsNotLoaded, check_weights_loaded, resolve_dtype, set_special_token_ids

from harness_glamm import manifest
from harness_glamm.upstream import import_module, resolve_upstream, upstream_commit

__all__ = ["DEFAULT_VISION_TOWER", "GlammRuntime", "WeightsNotLoaded", "load_glamm", "model_args", "resolve_dtype"]

DEFAULT_VISION_TOWER = manifest.VISION_TOWER


def model_args(seg_token_idx: int, bbox_token_idx: int, vision_tower: str) -> dict[str, Any]:
    """``initialize_model``'s keyword arguments with ``infer_and_evaluate.py``'s defaults."""
    return {
        "train_mask_decoder": True, "out_dim": 256, "ce_loss_weight": 1.0, "dice_loss_weight": 0.5,
        "bce_loss_weight": 2.0, "seg_token_idx": seg_token_idx, "vision_pretrained": None,
        "vision_tower": vision_tower, "use_mm_start_end": True, "mm_vision_select_layer": -2,
        "pretrain_mm_mlp_adapter": "", "tune_mm_mlp_adapter": False, "freeze_mm_mlp_adapter": False,
        "mm_use_im_start_end": True, "with_region": True, "bbox_token_idx": bbox_token_idx,
        "num_level_reg_features": 4,
    }


@dataclass
class GlammRuntime(LlavaSamRuntime):
    """A loaded GLaMM model (image branches and SAM's decoder, ``_generate_and_postprocess_masks``:
    ``harness.modelkit.llava_sam.LlavaSamRuntime``) and its teacher-forced inference."""

    CAUSAL_LM: ClassVar[str] = "GLaMMForCausalLM"
    SAM_ATTR: ClassVar[str] = "grounding_encoder"
    SAM_EMBEDDINGS: ClassVar[str] = "get_grounding_encoder_embs"

    @torch.no_grad()
    def teacher_forced(self, image_embedding: torch.Tensor, clip: torch.Tensor, id_lists: list[list[int]]) -> list[list[torch.Tensor]]:
        """Per conversation, the (1, 256, 256) logits of each of its [SEG] tokens, in order."""
        input_ids, attention = llava_sam.pad_right(id_lists, self.tokenizer.pad_token_id)
        input_ids, attention = input_ids.to(self.device), attention.to(self.device)
        n = input_ids.shape[0]
        seg = input_ids[:, 1:] == self.seg_token_idx
        seg = torch.cat([torch.zeros((n, self.image_tokens - 1), dtype=torch.bool, device=self.device), seg,
                         torch.zeros((n, 1), dtype=torch.bool, device=self.device)], dim=1)
        counts = seg.sum(-1).tolist()
        if any(c < 1 for c in counts):
            raise RuntimeError(f"every teacher-forced conversation needs a [SEG], got counts {counts}")
        hidden = []
        for i in range(n):  # _inference_path: one row at a time
            out = self._llava_forward(images=clip, attention_mask=attention[i:i + 1], input_ids=input_ids[i:i + 1],
                                      output_hidden_states=True)
            hidden.append(out.hidden_states)
        hidden_states = torch.cat(hidden, dim=0)
        if seg.shape != hidden_states.shape[:2]:
            raise RuntimeError(f"[SEG] mask {tuple(seg.shape)} does not match hidden states {tuple(hidden_states.shape)}")
        fcs = self.model.get_model().text_hidden_fcs
        last_hidden_state = torch.stack([fcs[0](hidden_states)], dim=-1).sum(dim=-1)
        low_res = self.decode_masks(last_hidden_state[seg], image_embedding)
        out_list, k = [], 0
        for c in counts:
            out_list.append([low_res[k + j] for j in range(c)])
            k += c
        return out_list


def load_glamm(checkpoint: str, device: str, *, upstream_repo: str | None = None, dtype: str | None = None,
               vision_tower: str = DEFAULT_VISION_TOWER, model_max_length: int = 1536, use_fast: bool = False,
               strict: bool = True, mmcv: str = "shim") -> GlammRuntime:
    from transformers import AutoTokenizer

    repo = resolve_upstream(upstream_repo)
    glamm = import_module(repo, "model.GLaMM", mmcv=mmcv)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint, model_max_length=model_max_length, padding_side="right",
                                              use_fast=use_fast)
    tokenizer.pad_token = tokenizer.unk_token
    seg_token_idx = llava_sam.special_token_id(tokenizer, "[SEG]")
    bbox_token_idx = llava_sam.special_token_id(tokenizer, "<bbox>")
    torch_dtype = resolve_dtype(dtype, device)
    model, info = glamm.GLaMMForCausalLM.from_pretrained(
        checkpoint, torch_dtype=torch_dtype, low_cpu_mem_usage=True, output_loading_info=True,
        **model_args(seg_token_idx, bbox_token_idx, vision_tower),
    )
    check_weights_loaded(checkpoint, info, strict, "GLaMM")
    set_special_token_ids(model, tokenizer)
    model.get_model().initialize_vision_modules(model.get_model().config)
    model.get_model().get_vision_tower().to(dtype=torch_dtype)
    model.resize_token_embeddings(len(tokenizer))
    model = model.to(dtype=torch_dtype).to(device)
    model.eval()
    return GlammRuntime(model=model, tokenizer=tokenizer, seg_token_idx=seg_token_idx, device=torch.device(device),
                        dtype=torch_dtype, upstream_commit=upstream_commit(repo))
