"""GLaMM (mbzuai-oryx/groundingLMM) as a harness adapter; the model code comes from a checkout (HARNESS_GLAMM_REPO)."""

__version__ = "1.0.0"
