"""Loading LISA as ``chat.py`` does, and its inference path, on any device.

Loading (``chat.py`` lines 70-150, bf16 path): the checkpoint's own tokenizer
(``model_max_length=512, padding_side="right", use_fast=False``, pad = unk), the ``[SEG]`` id
(checked, see ``harness.modelkit.llava_sam``), ``LISAForCausalLM.from_pretrained(version, low_cpu_mem_usage=True,
vision_tower=..., seg_token_idx=..., torch_dtype=...)``, eos/bos/pad ids copied to the config,
``initialize_vision_modules`` (CLIP from ``vision_tower``), then the whole model in bf16 on the
GPU. A checkpoint that leaves any weight missing stops the load (``strict``): LISA with
unloaded weights scores near zero without an error (LISA issues #56, #103).

Inference: ``LISAForCausalLM.model_forward(inference=True)`` and ``evaluate`` hard-code
``.cuda()``; the same computation is written here with the model's own modules so that it
runs on any device, and so that SAM's image encoder runs once per image:

teacher forcing (``model_forward``, ``model/LISA.py`` lines 169-284)
    ``seg_token_mask = input_ids[:, 1:] == seg`` with one ``False`` appended and 255
    (= image tokens - 1) prepended; ``LlavaLlamaForCausalLM.forward`` on all sentences of the
    image at once (CLIP image expanded to the batch, right padding); the last hidden state
    (``hidden_states`` is the last layer in eval mode) through ``text_hidden_fcs[0]``; the
    vectors at the mask (the position before each ``[SEG]``) into SAM's prompt encoder as
    ``text_embeds``; the mask decoder with ``multimask_output=False``.
generation (``evaluate``, lines 286-356)
    ``generate(images=clip, input_ids=..., max_new_tokens, num_beams=1,
    output_hidden_states=True, return_dict_in_generate=True)``, with ``use_cache=False``
    (LisaModel sets ``config.use_cache = False``) and ``do_sample=False`` written out; the
    last step's hidden states cover the whole sequence; the mask ``[255 x False] +
    (sequences[:, 1:] == seg)``.

``tests/test_tiny_end_to_end.py`` checks both against upstream's own ``model_forward`` and
``evaluate`` on a tiny random model (``.cuda()`` made a no-op for the comparison).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from harness.modelkit import llava_sam
from harness.modelkit.llava_sam import LlavaSamRuntime, WeightsNotLoaded, check_weights_loaded, resolve_dtype, set_special_token_ids

from harness_lisa import manifest
from harness_lisa.upstream import import_module, resolve_upstream, upstream_commit

__all__ = ["DEFAULT_VISION_TOWER", "LisaRuntime", "WeightsNotLoaded", "load_lisa", "resolve_dtype"]

DEFAULT_VISION_TOWER = manifest.VISION_TOWER


@dataclass
class LisaRuntime(LlavaSamRuntime):
    """A loaded LISA model with the pieces its inference needs (image branches and SAM's decoder:
    ``harness.modelkit.llava_sam.LlavaSamRuntime``)."""

    CAUSAL_LM: ClassVar[str] = "LISAForCausalLM"
    SAM_ATTR: ClassVar[str] = "visual_model"
    SAM_EMBEDDINGS: ClassVar[str] = "get_visual_embs"

    # -- the [SEG] embeddings and SAM's decoder --------------------------------------

    def _seg_embeddings(self, hidden: torch.Tensor, seg_token_mask: torch.Tensor) -> torch.Tensor:
        if seg_token_mask.shape != hidden.shape[:2]:
            raise RuntimeError(f"[SEG] mask {tuple(seg_token_mask.shape)} does not match hidden states {tuple(hidden.shape)}")
        fcs = self.model.get_model().text_hidden_fcs
        if len(fcs) != 1:
            raise RuntimeError(f"expected one text_hidden_fcs, got {len(fcs)}")
        last_hidden_state = torch.stack([fcs[0](hidden)], dim=-1).sum(dim=-1)
        return last_hidden_state[seg_token_mask]

    # -- the two protocols -----------------------------------------------------------

    @torch.no_grad()
    def teacher_forced(self, image_embedding: torch.Tensor, clip: torch.Tensor, id_lists: list[list[int]]) -> list[torch.Tensor]:
        """One forward over all sentences of one image; one (1, 256, 256) logit map per sentence."""
        input_ids, attention = llava_sam.pad_right(id_lists, self.tokenizer.pad_token_id)
        input_ids, attention = input_ids.to(self.device), attention.to(self.device)
        n = input_ids.shape[0]
        seg = input_ids[:, 1:] == self.seg_token_idx
        seg = torch.cat([seg, torch.zeros((n, 1), dtype=torch.bool, device=self.device)], dim=1)
        seg = torch.cat([torch.zeros((n, self.image_tokens - 1), dtype=torch.bool, device=self.device), seg], dim=1)
        counts = seg.sum(-1).tolist()
        if any(c != 1 for c in counts):
            raise RuntimeError(f"every teacher-forced prompt must hold exactly one [SEG], got counts {counts}")
        out = self._llava_forward(images=clip.expand(n, -1, -1, -1).contiguous(), attention_mask=attention,
                                  input_ids=input_ids, output_hidden_states=True)
        low_res = self.decode_masks(self._seg_embeddings(out.hidden_states, seg), image_embedding)
        return [low_res[i] for i in range(n)]

    @torch.no_grad()
    def generate(self, image_embedding: torch.Tensor, clip: torch.Tensor, ids: list[int],
                 max_new_tokens: int) -> tuple[list[int], torch.Tensor | None]:
        """Greedy generation; the new token ids and the first [SEG]'s logits (None without [SEG])."""
        input_ids = torch.tensor([ids], dtype=torch.long, device=self.device)
        outputs = self.model.generate(
            images=clip, input_ids=input_ids, max_new_tokens=max_new_tokens, num_beams=1, do_sample=False,
            use_cache=False, output_hidden_states=True, return_dict_in_generate=True,
        )
        self.counters.forward_passes += len(outputs.hidden_states)
        sequences = outputs.sequences
        new_ids = [int(t) for t in sequences[0, input_ids.shape[1]:].tolist()]
        self.counters.generated_tokens += len(new_ids)
        seg = sequences[:, 1:] == self.seg_token_idx
        seg = torch.cat([torch.zeros((1, self.image_tokens - 1), dtype=torch.bool, device=self.device), seg], dim=1)
        if not bool(seg.any()):
            return new_ids, None
        hidden = outputs.hidden_states[-1]
        if isinstance(hidden, (tuple, list)):  # a transformers that returns every layer: take the last
            hidden = hidden[-1]
        embeddings = self._seg_embeddings(hidden, seg)
        return new_ids, self.decode_masks(embeddings[:1], image_embedding)[0]


def load_lisa(checkpoint: str, device: str, *, upstream_repo: str | None = None, dtype: str | None = None,
              vision_tower: str = DEFAULT_VISION_TOWER, model_max_length: int = 512, use_fast: bool = False,
              strict: bool = True) -> LisaRuntime:
    """Load tokenizer and model from a hub id or directory as ``chat.py`` does (bf16 path)."""
    from transformers import AutoTokenizer

    repo = resolve_upstream(upstream_repo)
    lisa = import_module(repo, "model.LISA")
    tokenizer = AutoTokenizer.from_pretrained(checkpoint, cache_dir=None, model_max_length=model_max_length,
                                              padding_side="right", use_fast=use_fast)
    tokenizer.pad_token = tokenizer.unk_token
    seg_token_idx = llava_sam.special_token_id(tokenizer, "[SEG]")
    torch_dtype = resolve_dtype(dtype, device)
    model, info = lisa.LISAForCausalLM.from_pretrained(
        checkpoint, low_cpu_mem_usage=True, vision_tower=vision_tower, seg_token_idx=seg_token_idx,
        torch_dtype=torch_dtype, output_loading_info=True,
    )
    check_weights_loaded(checkpoint, info, strict, "LISA")
    set_special_token_ids(model, tokenizer)
    model.get_model().initialize_vision_modules(model.get_model().config)
    model.get_model().get_vision_tower().to(dtype=torch_dtype)
    model = model.to(dtype=torch_dtype).to(device)
    model.get_model().get_vision_tower().to(device=device)
    model.eval()
    return LisaRuntime(model=model, tokenizer=tokenizer, seg_token_idx=seg_token_idx, device=torch.device(device),
                       dtype=torch_dtype, upstream_commit=upstream_commit(repo))
