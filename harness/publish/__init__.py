"""Stage 4, publish: what people read and what CI checks.

A run's last step and ``harness report`` (finish), ``harness rescore`` (rescore_cli), the HTML report (``report/``), leaderboards,
regression gates and their baselines, and reviewable input hashes (inputs).

May import: data, records, score, the run config and prediction grouping, and the shared
vocabulary; never the worker machinery (run.runner, run.remote, run.worker, run.channel).
"""
