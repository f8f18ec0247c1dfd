"""`python -m harness` is the `harness` command (also under torchrun)."""

import sys

from harness.cli import main

sys.exit(main())
