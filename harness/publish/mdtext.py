"""Text for a Markdown table cell, escaped only where Markdown would misread it.

A pipe would end the cell and a newline the row; ``<`` followed by a letter, ``/``, ``!`` or ``?``
could open an HTML tag. Everything else reads as typed: an arrow ``->``, ``< 0.002`` and ``a > b``
are not HTML, and escaping them as ``&gt;`` shows the entity wherever the Markdown is read raw (a
terminal, a log, a CI summary before rendering). The backslash escapes are CommonMark's.
"""

from __future__ import annotations

import re
from typing import Any

_TAG_OPEN = re.compile(r"<(?=[A-Za-z/!?])")


def cell(text: Any) -> str:
    """``text`` for a Markdown table cell."""
    return _TAG_OPEN.sub(r"\\<", str(text).replace("|", "\\|")).replace("\n", " ")
