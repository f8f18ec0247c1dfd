"""Between run and score, records: the run directory on disk.

Append-only prediction logs and the run directory (store), the manifest with its
fingerprints and compatibility check, and the writer and shard locks. The run stage writes
them; score and publish read them.

May import: data, score and the shared vocabulary. Never publish, run or cli.
"""
