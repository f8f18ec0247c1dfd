"""Stage 2, run: samples in, predictions out.

The run config, the runner, prediction on an image's samples (OOM halving, timeouts),
models in their own interpreters (remote, worker, channel) and their environments,
sharding and the merge of shard logs, rescoring, and what each model is shown (inputs).

May import: data, score, records and publish (a run ends by writing results and the report),
and the shared vocabulary. Never cli. Nothing outside this package imports the worker machinery
(remote, worker, channel) except the runner and the CLI.
"""
