"""Stage 3, score: predictions against ground truth.

Per-sample scores from RLE (scoring), the dataset metrics with their conventions and
bootstrap intervals (metrics, paired), slices, the facts of a model's reasoning (reasoning),
the schema of results.json (schema) and the scoring version a log was scored under (version).

May import: data and the shared vocabulary. Never records, publish, run or cli.
"""
