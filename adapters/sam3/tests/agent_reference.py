"""Upstream's own SAM 3 Agent, for the conformance tests: ``agent_inference`` with upstream's
``client_llm.send_generate_request`` (the openai client, against the stand-in server) and upstream's
``client_sam3.call_sam_service`` with upstream's ``Sam3Processor`` (its transform, keep rule,
upsampling and mask threshold) over the tiny network. The network is transformers' ``Sam3Model``
behind the methods upstream's processor calls (``backbone.forward_image``, ``backbone.forward_text``,
``forward_grounding``), its outputs mapped to the original's names and box format with the checkout's
``box_ops`` (as tests/test_sam3.py's reference does)."""

from __future__ import annotations

import functools
import importlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


class _Backbone:
    def __init__(self, processor: Any) -> None:
        self.processor = processor

    def forward_image(self, image: Any) -> dict[str, Any]:
        return {"pixel_values": image}

    def forward_text(self, prompts: list[str], device: str = "cpu") -> dict[str, Any]:
        text = self.processor(text=prompts, return_tensors="pt")
        return {"input_ids": text["input_ids"], "attention_mask": text["attention_mask"]}


class NetworkAsUpstreamModel:
    """The tiny transformers network with the interface upstream's Sam3Processor calls."""

    inst_interactive_predictor = None

    def __init__(self, model: Any, processor: Any, box_ops: Any) -> None:
        self.model, self.box_ops = model, box_ops
        self.backbone = _Backbone(processor)

    def _get_dummy_prompt(self) -> None:
        return None

    def forward_grounding(self, backbone_out: dict[str, Any], **_: Any) -> dict[str, Any]:
        out = self.model(pixel_values=backbone_out["pixel_values"], input_ids=backbone_out["input_ids"],
                         attention_mask=backbone_out["attention_mask"])
        return {"pred_boxes": self.box_ops.box_xyxy_to_cxcywh(out.pred_boxes), "pred_logits": out.pred_logits[..., None],
                "pred_masks": out.pred_masks, "presence_logit_dec": out.presence_logits.reshape(-1, 1)}


def upstream_agent(repo: Path, model: Any, processor: Any, url: str, llm_model: str, resolution: int,
                   threshold: float = 0.5) -> Any:
    """``run(image_path, query, output_dir) -> (messages, final_outputs)``: upstream's loop, upstream's clients."""
    from harness_sam3.agent.upstream import load_agent

    code = load_agent(str(repo))
    client_llm = importlib.import_module("sam3.agent.client_llm")
    processor_module = importlib.import_module("sam3.model.sam3_image_processor")
    upstream_processor = processor_module.Sam3Processor(
        NetworkAsUpstreamModel(model, processor, processor_module.box_ops), resolution=resolution, device="cpu",
        confidence_threshold=threshold)
    ask = functools.partial(client_llm.send_generate_request, server_url=url, model=llm_model, api_key="EMPTY")
    segment = functools.partial(code.client_sam3.call_sam_service, sam3_processor=upstream_processor)

    def run(image_path: str, query: str, output_dir: str) -> tuple[Any, dict[str, Any]]:
        import torch

        with torch.inference_mode():
            messages, final, _ = code.agent_core.agent_inference(image_path, query, send_generate_request=ask,
                                                                 call_sam_service=segment, output_dir=output_dir)
        return messages, final

    return run


def save_png(image: np.ndarray, path: Path) -> str:
    """The image file the reference agent is given: the same PNG the adapter writes for its sessions."""
    Image.fromarray(image).save(path, compress_level=1)
    return str(path)
