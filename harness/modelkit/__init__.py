"""Helpers shared by model adapters (``adapters/<name>``), installed with the engine into every
adapter's environment.

Nothing here is imported by the engine core (``harness list``, scoring, reporting, gating), and
this package's ``__init__`` imports nothing: torch, transformers and tokenizers are imported
inside the functions that need them, so the numpy parts work without torch.

- ``upstream``: find a model's upstream checkout and import from it inside the worker only;
- ``llava_sam``: the LLaVA + SAM family (LISA, GLaMM): CLIP and SAM preprocessing, SAM's mask
  post-processing, ``<image>`` tokenisation and the checked ``[SEG]`` id, dtype choice;
- ``llava_prompts``: that family's ``llava_v1`` conversation and its image and ``[SEG]`` tokens;
- ``llava_adapter``: ``LlavaSamAdapter``, the shared part of the LISA and GLaMM adapters
  (options and variants, loading, the shared steps of ``predict``, ``inputs``, ``tokenizer``, ``stats``);
- ``counters``: cumulative per-adapter counters for ``Adapter.stats``;
- ``testing``: helpers for adapters' own tests (torchvision on a CPU torch, tiny tokenizers).
"""
