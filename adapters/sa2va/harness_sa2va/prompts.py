"""Sa2VA's question for a referring expression, as ``projects/sa2va/evaluation/dataset/RES.py`` (9832e1a,
``RESDataset.get_questions``) writes it: the sentence as stored, unchanged, in
``<image>\\n Please segment {sentence} in this image.`` (``predict_forward`` then removes ``<image>``
and puts the image first in the chat). With ``reasoning=True`` (the dataset's flag; no runner of
``run_all_evals.py`` sets it) the question asks for ``<think>``/``<answer>`` tags.
"""

from __future__ import annotations

PROMPTS = ("default", "reasoning")
QUESTION = "<image>\n Please segment {} in this image."
REASONING_QUESTION = (
    "<image>\n Please segment {} in this image. You should first think about the reasoning process in the mind and then "
    "provides the user with the answer. Please respond with segmentation mask in both the thinking process and the answer. "
    "The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> tags, respectively, "
    "i.e., <think> reasoning process here </think> <answer> segmentation here </answer>."
)


def question(sentence: str, prompt: str = "default") -> str:
    if prompt not in PROMPTS:
        raise ValueError(f"unknown Sa2VA prompt {prompt!r}; known: {', '.join(PROMPTS)}")
    return (REASONING_QUESTION if prompt == "reasoning" else QUESTION).format(sentence)
