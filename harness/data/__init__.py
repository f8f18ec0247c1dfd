"""Stage 1, data: what a run is scored against.

Suites (YAML specifications and their conventions), the readers of each on-disk format
(``sources/``), a suite's samples, image loading, the restricted unpickler and the YAML
reader, and ``harness data check|layout``.

May import: the shared vocabulary at the top of ``harness`` (types, errors, masks, answer,
resources, files, adapter, registry). Never score, records, publish, run or cli
(tests/test_layering.py holds the order).
"""
