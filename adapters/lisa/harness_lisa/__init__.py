"""LISA (dvlab-research/LISA) as a harness adapter; the model code comes from a checkout (HARNESS_LISA_REPO)."""

__version__ = "1.0.0"
