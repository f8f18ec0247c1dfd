"""Stage 4, publish: what people read and what CI checks.

The HTML report (``report/``), leaderboards, regression gates and their baselines, paper
tables, paired comparisons of models and the notebook API (api). It only reads a run, through
records.

May import: data, score, records and the shared vocabulary. Never run or cli.
"""
