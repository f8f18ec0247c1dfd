"""Stage 3, score: predictions against ground truth.

Per-sample scores from RLE (scoring), the dataset metrics with their conventions and
bootstrap intervals (metrics), results.json from the logs (results) and its schema, the
scoring version a log was scored under (version) and deriving stored scores again (rescore).

May import: data, records and the shared vocabulary. Never run or publish.
"""
