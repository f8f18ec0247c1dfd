"""UniPixel's question for a referring expression, as ``unipixel/eval/infer_seg.py`` (5c8e941) asks it.

A phrase (RefCOCO/+/g, and ReasonSeg texts with ``is_sentence: false``; upstream's sample type
``query``) is normalised, then put into ``Please segment the {query} in this image.``:

1. every "." at either end is removed (``str.strip(".")``: "The red car." -> "The red car");
2. the first character is lower-cased (only the first: "The Red car" -> "the Red car");
3. a leading "the ", then a leading "an ", then a leading "a " is removed, each checked once in that
   order on what the step before left ("the a dog" -> "dog", "an the dog" -> "the dog"), and only in
   lower case with its space ("then" and "Another" are kept).

Spaces are not stripped ("a dog " keeps its trailing space). An empty expression (or one of dots
only) has no first character: upstream raises there, and so does ``question``.

A long ReasonSeg text (``is_sentence: true``; upstream's type ``sentence``) is kept as written and
followed by `` Please provide the segmentation mask.``
"""

from __future__ import annotations

ARTICLES = ("the ", "an ", "a ")  # removed in this order, each at most once
QUERY_TEMPLATE = "Please segment the {query} in this {media}."
SENTENCE_TEMPLATE = "{query} Please provide the segmentation mask."


def normalise_query(expression: str) -> str:
    """The phrase as UniPixel puts it into its question (see the module docstring)."""
    text = expression.strip(".")
    if not text:
        raise ValueError(f"UniPixel cannot ask about an empty expression ({expression!r})")
    text = text[:1].lower() + text[1:]
    for article in ARTICLES:
        text = text.removeprefix(article)
    return text


def question(expression: str, is_sentence: bool = False, media: str = "image") -> str:
    """The user text UniPixel is given for ``expression`` (a phrase, or a ReasonSeg sentence)."""
    if is_sentence:
        return SENTENCE_TEMPLATE.format(query=expression)
    return QUERY_TEMPLATE.format(query=normalise_query(expression), media=media)
