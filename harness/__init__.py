"""harness: a neutral referee for text-prompted image segmentation models."""

__version__ = "0.1.0"
