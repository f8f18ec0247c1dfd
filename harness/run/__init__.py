"""Stage 2, run: samples in, predictions out.

The run config, the runner, prediction on an image's samples (OOM halving, timeouts),
models in their own interpreters (remote, worker, channel) and their environments,
sharding and the merge of shard logs.

May import: data, records, score and publish (a run ends by writing results and the report),
and the shared vocabulary. Nothing outside this package imports the worker machinery
(remote, worker, channel) except the runner and the CLI.
"""
