"""LENS (hustvl/LENS) as a harness adapter: ``harness_lens.adapter.LensAdapter``.

Importing this package imports neither torch nor the upstream checkout; ``load`` does.
"""

__version__ = "0.1.0"
