"""``python tests/harness_cli.py ARGS...``: ``harness ARGS...`` with torchvision importable on the tests' CPU torch
(conftest.py's reason), for the tests that run the harness as its own process."""

import sys

from harness.modelkit.testing import import_torchvision_on_cpu_torch

import_torchvision_on_cpu_torch()

from harness.cli import main  # noqa: E402  (after the torchvision set-up)

sys.exit(main(sys.argv[1:]))
