"""GLaMM's prompts: the harness's deterministic per-sentence protocol and GLaMM's own.

Both use conversation template ``llava_v1`` (``model/llava/conversation.py conv_llava_v1``,
``SeparatorStyle.TWO``; ``harness.modelkit.llava_prompts``, shared with LISA), the first user
turn prefixed with ``The <image> provides an overview of the picture.\\n``
(``ReferSegmDataset.begin_str``), ``<image>`` expanded to ``<im_start><image><im_end>``
(``custom_collate_fn``), and the sentence as ``create_conversations`` puts it in:
``label.strip()``, then ``.lower()`` inside the template.

``deterministic`` (the harness default): one sentence per conversation, the fixed question
``What is {class_name} in this image? Please output segmentation mask.`` (``SEG_QUESTIONS[3]``,
the same wording as LISA's evaluation question) and the fixed answer ``[SEG].``
(``ANSWER_LIST[4]``, LISA's teacher-forced answer), so that every sentence is scored and two
runs give the same numbers. The exact string::

    A chat between a curious human and an artificial intelligence assistant. The assistant gives
    helpful, detailed, and polite answers to the human's questions. USER: The <im_start><image>
    <im_end> provides an overview of the picture.\\nWhat is {sent} in this image? Please output
    segmentation mask. ASSISTANT: [SEG].</s>

(one line, no space after ``\\n``).

``glamm`` (``eval/referring_seg/infer_and_evaluate.py`` with ``ReferSegmDataset``): per image, up
to three of its sentences drawn with ``np.random.choice(range(n), size=3, replace=False)`` (all
of them when fewer than three), each with a question drawn by ``random.choice(SEG_QUESTIONS)``
and an answer by ``random.choice(ANSWER_LIST)``, all in one multi-turn conversation (one
forward pass, one ``[SEG]`` per turn). Upstream never seeds these draws; here they come from a
generator seeded with ``(seed, image file name)`` so a run is repeatable and independent of
sharding. The template lists are read from the checkout's ``dataset/utils/utils.py``.
"""

from __future__ import annotations

import importlib.util
import random
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from harness.modelkit import llava_prompts
from harness.modelkit.llava_prompts import IM_END_TOKEN, IM_START_TOKEN, IMAGE_TOKEN, ROLES, SEP, SEP2, SYSTEM  # noqa: F401  (API)

BEGIN_STR = f"The {IMAGE_TOKEN} provides an overview of the picture.\n"  # ReferSegmDataset.begin_str

DEFAULT_QUESTION = "What is {class_name} in this image? Please output segmentation mask."  # SEG_QUESTIONS[3]
DEFAULT_ANSWER = "[SEG]."  # ANSWER_LIST[4]
SENTENCES_PER_IMAGE = 3  # ReferSegmDataset(num_classes_per_sample=3)


def question(sentence: str, template: str = DEFAULT_QUESTION) -> str:
    """``create_conversations``: ``template.format(class_name=label.lower())`` with ``label = sent.strip()``."""
    return template.format(class_name=sentence.strip().lower())


def conversation(turns: Sequence[tuple[str, str]]) -> str:
    """``Conversation.get_prompt`` of ``conv_llava_v1``; ``BEGIN_STR`` before the first question,
    ``<image>`` expanded. An empty answer renders as ``ASSISTANT:``."""
    turns = [(BEGIN_STR + user if k == 0 else user, assistant) for k, (user, assistant) in enumerate(turns)]
    return llava_prompts.expand_image_token(llava_prompts.conversation(turns))


def deterministic_prompt(sentence: str, template: str = DEFAULT_QUESTION, answer: str = DEFAULT_ANSWER) -> str:
    return conversation([(question(sentence, template), answer)])


@dataclass(frozen=True)
class Templates:
    questions: tuple[str, ...]
    answers: tuple[str, ...]


def load_templates(repo: Path) -> Templates:
    """``SEG_QUESTIONS`` and ``ANSWER_LIST`` from the checkout's ``dataset/utils/utils.py``
    (loaded from the file, without importing the ``dataset`` package)."""
    path = repo / "dataset" / "utils" / "utils.py"
    spec = importlib.util.spec_from_file_location("_glamm_dataset_utils", path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return Templates(tuple(module.SEG_QUESTIONS), tuple(module.ANSWER_LIST))


@dataclass(frozen=True)
class Draw:
    """GLaMM's protocol for one image: which sentences (indices into the image's list, in draw
    order), and the question and answer of each turn."""

    indices: tuple[int, ...]
    questions: tuple[str, ...]
    answers: tuple[str, ...]

    def prompt(self, sentences: Sequence[str]) -> str:
        turns = [(question(sentences[i], q), a) for i, q, a in zip(self.indices, self.questions, self.answers)]
        return conversation(turns)


def image_seed(seed: int, image_key: str) -> int:
    return zlib.crc32(f"{seed}:{image_key}".encode()) & 0x7FFFFFFF


def draw(n_sentences: int, templates: Templates, seed: int, image_key: str) -> Draw:
    """``ReferSegmDataset.__getitem__`` + ``create_conversations``, with seeded generators:
    ``np.random.choice`` for the sentences, then per sentence ``random.choice`` of a question
    and of an answer (in that order, as upstream interleaves them)."""
    s = image_seed(seed, image_key)
    if n_sentences >= SENTENCES_PER_IMAGE:
        indices = tuple(int(i) for i in np.random.RandomState(s).choice(list(range(n_sentences)), size=SENTENCES_PER_IMAGE,
                                                                        replace=False))
    else:
        indices = tuple(range(n_sentences))
    rng = random.Random(s)
    qs, ans = [], []
    for _ in indices:
        qs.append(rng.choice(templates.questions))
        ans.append(rng.choice(templates.answers))
    return Draw(indices, tuple(qs), tuple(ans))
