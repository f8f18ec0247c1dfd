"""SAM 3 adapters for the harness (transformers Sam3Model; the expression is the text prompt)."""

__version__ = "0.1.0"
