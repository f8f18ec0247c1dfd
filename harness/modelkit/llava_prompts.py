"""LLaVA's ``llava_v1`` conversation, as the LLaVA + SAM family (LISA, GLaMM) builds its prompts.

``model/llava/conversation.py conv_llava_v1`` (``SeparatorStyle.TWO``; the same in LISA's and
GLaMM's checkouts): the system message, then per turn ``USER: {question} ASSISTANT: {answer}</s>``
(separators " " and "</s>" alternating); an empty message renders as its role and a colon with
nothing after it (the generation prompt ends with ``ASSISTANT:``). The collate functions (and
LISA's ``chat.py``) with ``use_mm_start_end`` then replace ``<image>`` by
``<im_start><image><im_end>``.

The strings are written out here (upstream's ``conversation.py`` is imported only with the
whole model package); each adapter's tests check its prompts against its checkout's
``conv_templates``.
"""

from __future__ import annotations

from collections.abc import Sequence

# conv_llava_v1 (model/llava/conversation.py)
SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)
ROLES = ("USER", "ASSISTANT")
SEP = " "
SEP2 = "</s>"

# utils/utils.py
IMAGE_TOKEN = "<image>"
IM_START_TOKEN = "<im_start>"
IM_END_TOKEN = "<im_end>"
SEG_TOKEN = "[SEG]"


def conversation(turns: Sequence[tuple[str, str]]) -> str:
    """``Conversation.get_prompt`` of ``conv_llava_v1`` (``SeparatorStyle.TWO``).

    ``turns`` are (user, assistant) pairs; an empty assistant message renders as
    ``ASSISTANT:`` with nothing after it (the generation prompt).
    """
    seps = (SEP, SEP2)
    ret = SYSTEM + seps[0]
    i = 0
    for user, assistant in turns:
        for role, message in ((ROLES[0], user), (ROLES[1], assistant)):
            if message:
                ret += role + ": " + message + seps[i % 2]
            else:
                ret += role + ":"
            i += 1
    return ret


def expand_image_token(prompt: str) -> str:
    """``collate_fn`` / ``chat.py`` with ``use_mm_start_end``: ``<image>`` -> ``<im_start><image><im_end>``."""
    return prompt.replace(IMAGE_TOKEN, IM_START_TOKEN + IMAGE_TOKEN + IM_END_TOKEN)
