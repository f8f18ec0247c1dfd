"""LISA's prompts, as its evaluation builds them (dvlab-research/LISA 3cb2d43).

``utils/dataset.py ValDataset.__getitem__`` (lines 368-411): the RefCOCO sentences are read as
``sent["sent"].strip().lower()`` and stripped once more; ReasonSeg's query is only stripped.
Each sentence becomes its own one-turn conversation of template ``llava_v1``
(``model/llava/conversation.py conv_llava_v1``, ``SeparatorStyle.TWO``)::

    USER:      <image>\\n What is {sent} in this image? Please output segmentation mask.
               (ReasonSeg long queries, ``is_sentence``: <image>\\n {sent} Please output segmentation mask.)
    ASSISTANT: [SEG].

``collate_fn`` (lines 69-78) then replaces ``<image>`` by ``<im_start><image><im_end>``
(``use_mm_start_end`` is True). So the exact string of a RefCOCO sentence is::

    A chat between a curious human and an artificial intelligence assistant. The assistant gives
    helpful, detailed, and polite answers to the human's questions. USER: <im_start><image><im_end>
    \\n What is {sent} in this image? Please output segmentation mask. ASSISTANT: [SEG].</s>

(one line; note the space after ``\\n``). The generate variant asks the same question and
leaves the answer empty (``chat.py``: ``conv.append_message(conv.roles[1], "")``), so the
prompt ends with ``ASSISTANT:``.

The conversation and the tokens are ``harness.modelkit.llava_prompts`` (shared with GLaMM);
``tests/test_prompts.py`` checks the prompts against the checkout's ``conv_templates`` when
``HARNESS_LISA_REPO`` names one.
"""

from __future__ import annotations

from harness.modelkit.llava_prompts import (  # noqa: F401  (conv_llava_v1 and the tokens, part of this module's API)
    IM_END_TOKEN,
    IM_START_TOKEN,
    IMAGE_TOKEN,
    ROLES,
    SEG_TOKEN,
    SEP,
    SEP2,
    SYSTEM,
    conversation,
    expand_image_token,
)

# utils/dataset.py ValDataset.__getitem__
QUESTION = IMAGE_TOKEN + "\n What is {} in this image? Please output segmentation mask."
QUESTION_SENTENCE = IMAGE_TOKEN + "\n {} Please output segmentation mask."
ANSWER = "[SEG]."


def normalise(expression: str, dataset: str) -> str:
    """The text LISA's loader puts into the question.

    REFER datasets: ``sent.strip().lower()`` then ``.strip()``; ReasonSeg (``dataset ==
    "reasonseg"``): ``.strip()`` only (``get_mask_from_json`` keeps the case).
    """
    if dataset == "reasonseg":
        return expression.strip()
    return expression.strip().lower().strip()


def question(text: str, is_sentence: bool = False) -> str:
    """The user turn for one (already normalised) expression, ``<image>`` not yet expanded."""
    return (QUESTION_SENTENCE if is_sentence else QUESTION).format(text)


def eval_prompt(expression: str, dataset: str = "refcoco", is_sentence: bool = False, answer: str | None = ANSWER) -> str:
    """The full prompt of one sample: teacher-forced (``answer="[SEG]."``) or for generation (``answer=None``)."""
    text = normalise(expression, dataset)
    return expand_image_token(conversation([(question(text, is_sentence), answer or "")]))
