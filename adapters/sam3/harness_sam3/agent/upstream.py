"""SAM 3 Agent's loop from a checkout of facebookresearch/sam3 (never copied into this repository).

The agent (``sam3/agent/``) is imported from the checkout named by the ``upstream_repo`` option, else
by ``$HARNESS_SAM3_REPO``, and run unchanged. Only ``sam3/__init__.py`` is not run: it imports
``model_builder``, which builds upstream's own model stack (timm, ftfy, ``numpy<2``) that the agent
does not use (SAM 3 here is transformers' ``Sam3Model``). So ``sam3`` is registered as a package by
its path and ``sam3.agent.agent_core`` imported from it: ``client_llm`` (needs ``openai``),
``client_sam3`` (``sam3.model.box_ops``, ``sam3.train.masks_ops``), ``viz`` and ``helpers``
(OpenCV, matplotlib, pycocotools, iopath, torchvision) are upstream's files as they are.
"""

from __future__ import annotations

import importlib
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.modelkit.upstream import Upstream, UpstreamError, upstream_commit

from harness_sam3 import manifest

__all__ = ["UPSTREAM", "AgentCode", "UpstreamError", "load_agent", "upstream_commit"]

UPSTREAM = Upstream(
    name="SAM 3 Agent",
    repository="facebookresearch/sam3",
    env="HARNESS_SAM3_REPO",
    revision=manifest.UPSTREAM["revision"],  # the facebookresearch/sam3 commit the adapter was written against (UPSTREAM-2026.md)
    marker="sam3/agent/agent_core.py",
    top_level=("sam3",),
    isolation="SAM 3 Agent must run in its own worker process (another sam3 package is imported here)",
    import_hints=(("openai", " (sam3/agent/client_llm.py imports openai: pip install openai)"),
                  ("cv2", " (the agent's rendering needs OpenCV: pip install opencv-python-headless)")),
)

SYSTEM_PROMPT = "sam3/agent/system_prompts/system_prompt.txt"
CHECKING_PROMPT = "sam3/agent/system_prompts/system_prompt_iterative_checking.txt"


@dataclass(frozen=True)
class AgentCode:
    """What the adapter uses of the checkout: the loop, the SAM 3 service it calls, and both system prompts."""

    repo: Path
    agent_core: types.ModuleType  # agent_inference, and the names it calls (visualize)
    client_sam3: types.ModuleType  # call_sam_service (sam3_inference, overlap removal, rendering)
    system_prompt: str  # as agent_core reads it: the file's text, stripped
    checking_prompt: str


def resolve(path: str | None = None) -> Path:
    """The checkout named by the option, else by ``$HARNESS_SAM3_REPO``; UpstreamError naming what is missing."""
    repo = UPSTREAM.resolve(path)
    for relative in (SYSTEM_PROMPT, CHECKING_PROMPT, "sam3/agent/client_sam3.py"):
        if not (repo / relative).is_file():
            raise UpstreamError(f"{repo} is not a usable {UPSTREAM.repository} checkout: {relative} is missing")
    return repo


def _register_packages(repo: Path) -> None:
    """``sam3`` as a package by its path, without running its ``__init__`` (see the module docstring)."""
    folder = repo / "sam3"
    loaded = sys.modules.get("sam3")
    if loaded is not None:
        if [Path(p).resolve() for p in getattr(loaded, "__path__", [])] == [folder.resolve()]:
            return
        UPSTREAM.check_top_level(repo)  # raises: a sam3 package from elsewhere
    package = types.ModuleType("sam3")
    package.__path__ = [str(folder)]
    sys.modules["sam3"] = package


def load_agent(path: str | None = None) -> AgentCode:
    """Import the agent's modules from the checkout (once per process) and read its system prompts."""
    repo = resolve(path)
    _register_packages(repo)
    try:
        agent_core: Any = importlib.import_module("sam3.agent.agent_core")
        client_sam3: Any = importlib.import_module("sam3.agent.client_sam3")
    except ImportError as exc:
        hint = "".join(h for needle, h in UPSTREAM.import_hints if needle in str(exc))
        raise UpstreamError(f"cannot import sam3.agent from {repo}: {exc}{hint}") from exc
    return AgentCode(repo=repo, agent_core=agent_core, client_sam3=client_sam3,
                     system_prompt=(repo / SYSTEM_PROMPT).read_text().strip(),
                     checking_prompt=(repo / CHECKING_PROMPT).read_text().strip())
