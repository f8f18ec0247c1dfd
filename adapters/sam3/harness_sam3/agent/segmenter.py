"""SAM 3 for the agent sessions in flight: each image encoded once, prompts from all sessions in one forward.

Upstream's ``client_sam3.sam3_inference`` calls ``processor.set_image(image)`` then
``processor.set_text_prompt(state=state, prompt=text)`` and reads ``state["masks"]`` (N x 1 x H x W
bool), ``state["boxes"]`` (N x 4 xyxy pixels) and ``state["scores"]``. ``SessionProcessor`` is that
processor for one session: its ``set_text_prompt`` hands the prompt to the ``Segmenter`` and waits.
The ``Segmenter`` runs on the thread that called ``predict_many`` (the model is used from that one
thread only): it takes every prompt waiting at that moment (up to ``max_batch``), encodes the images
it has not encoded yet in this call, and runs one forward of transformers' ``Sam3Model`` over all of
them (each row its image's cached vision features), then applies upstream's keep rule and mask
threshold to each row (``harness_sam3.adapter.kept_instances``).

Batching changes the float results in their last bits (about 1e-9 on CPU in float32), as any batch
size does; a mask pixel can differ only where its probability is that close to the 0.5 threshold.
``sam_batch: 1`` runs each prompt alone.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness_sam3.adapter import Sam3Base, kept_instances
from harness_sam3.agent.llm import Cancelled


class SegmenterError(Exception):
    """SAM 3 failed on a batch of prompts (the sessions that asked fail, with this reason)."""


@dataclass
class _Ask:
    image: int
    prompt: str
    answer: Future[dict[str, Any]] = field(default_factory=Future)


_DONE = object()  # a session finished: the serving loop counts these


class Segmenter:
    """SAM 3 for the sessions of one ``predict_many`` call (module docstring)."""

    def __init__(self, sam: Sam3Base, images: list[np.ndarray], max_batch: int, counters: dict[str, float],
                 lock: threading.Lock) -> None:
        self.sam = sam
        self.images = images
        self.max_batch = max(1, int(max_batch))
        self.counters = counters
        self.lock = lock  # guards counters, which session threads update too
        self._asks: queue.Queue[Any] = queue.Queue()
        self._vision: dict[int, tuple[tuple[Any, ...], tuple[Any, ...]]] = {}  # image -> (FPN maps, position encodings)
        self._cancelled: BaseException | None = None

    # ----------------------------------------------------------------- session threads
    def segment(self, image: int, prompt: str) -> dict[str, Any]:
        """Upstream's ``state`` keys for ``prompt`` on image ``image``; blocks until the serving loop answered."""
        if self._cancelled is not None:
            raise Cancelled(str(self._cancelled))
        ask = _Ask(image, prompt)
        self._asks.put(ask)
        return ask.answer.result()

    def finished(self) -> None:
        """A session is over (whatever its outcome): the serving loop stops after the last."""
        self._asks.put(_DONE)

    # ----------------------------------------------------------------- the predict_many thread
    def serve(self, sessions: int) -> None:
        """Answer prompts until ``sessions`` sessions have finished."""
        left = sessions
        while left:
            item = self._asks.get()
            batch: list[_Ask] = []
            while True:
                if item is _DONE:
                    left -= 1
                else:
                    batch.append(item)
                if len(batch) >= self.max_batch:
                    break
                try:
                    item = self._asks.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._run(batch)

    def cancel(self, reason: BaseException) -> None:
        """Fail every waiting and later prompt (the call is being abandoned)."""
        self._cancelled = reason
        while True:
            try:
                item = self._asks.get_nowait()
            except queue.Empty:
                return
            if item is not _DONE:
                item.answer.set_exception(Cancelled(str(reason)))

    def _run(self, batch: list[_Ask]) -> None:
        try:
            states = self._forward(batch)
        except Exception as exc:  # the sessions that asked fail with it; the others go on
            error = SegmenterError(f"SAM 3 failed on {len(batch)} prompt(s): {type(exc).__name__}: {exc}")
            for ask in batch:
                ask.answer.set_exception(error)
            return
        for ask, state in zip(batch, states):
            ask.answer.set_result(state)

    def _encode(self, indices: list[int]) -> None:
        """Vision features of images not yet encoded in this call, ``max_batch`` images per forward."""
        import torch

        for start in range(0, len(indices), self.max_batch):
            chunk = indices[start : start + self.max_batch]
            pixels = torch.cat([self.sam._pixels(self.images[i]) for i in chunk])
            out = self.sam.model.get_vision_features(pixel_values=pixels)
            for row, i in enumerate(chunk):
                self._vision[i] = (tuple(h[row : row + 1] for h in out.fpn_hidden_states),
                                   tuple(p[row : row + 1] for p in out.fpn_position_encoding))
            with self.lock:
                self.counters["images_encoded_by_segmenter"] += len(chunk)

    def _forward(self, batch: list[_Ask]) -> list[dict[str, Any]]:
        import torch
        from transformers.models.sam3.modeling_sam3 import Sam3VisionEncoderOutput

        with torch.inference_mode():
            self._encode([i for i in dict.fromkeys(a.image for a in batch) if i not in self._vision])
            levels = range(len(self._vision[batch[0].image][0]))
            vision = Sam3VisionEncoderOutput(
                fpn_hidden_states=tuple(torch.cat([self._vision[a.image][0][k] for a in batch]) for k in levels),
                fpn_position_encoding=tuple(torch.cat([self._vision[a.image][1][k] for a in batch]) for k in levels))
            text = self.sam._text([a.prompt for a in batch])
            outputs = self.sam.model(vision_embeds=vision, input_ids=text["input_ids"], attention_mask=text["attention_mask"])
            states = []
            for row, ask in enumerate(batch):
                height, width = self.images[ask.image].shape[:2]
                probs, boxes, scores = kept_instances(outputs, row, height, width, float(self.sam.options["score_threshold"]))
                masks = (probs > float(self.sam.options["mask_threshold"])).unsqueeze(1)
                states.append({"masks": masks, "masks_logits": probs.unsqueeze(1), "boxes": boxes, "scores": scores})
        with self.lock:
            self.counters["forward_passes"] += len(batch)
            self.counters["sam_batches"] += 1
            self.counters["instances_kept"] += sum(int(s["scores"].numel()) for s in states)
        return states


class SessionProcessor:
    """The ``sam3_processor`` upstream's ``call_sam_service`` is given, for one session on one image."""

    def __init__(self, segmenter: Segmenter, image: int) -> None:
        self.segmenter = segmenter
        self.image = image

    def set_image(self, image: Any, state: dict[str, Any] | None = None) -> dict[str, Any]:
        """Upstream opens the session's image file (the PNG of the engine's pixels); its size must be theirs."""
        height, width = self.segmenter.images[self.image].shape[:2]
        if tuple(image.size) != (width, height):
            raise SegmenterError(f"the agent opened an image of {image.size[0]}x{image.size[1]} pixels for one of "
                                 f"{width}x{height}")
        state = {} if state is None else state
        state.update(original_height=height, original_width=width)
        return state

    def set_text_prompt(self, prompt: str, state: dict[str, Any]) -> dict[str, Any]:
        state.update(self.segmenter.segment(self.image, prompt))
        return state
