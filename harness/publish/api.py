"""A stored run for notebooks: ``harness.load_run(path)``.

    run = harness.load_run("runs/shapes")
    run.results()        # one row per model x split: every metric of results.json
    run.samples()        # one row per model x split x sample: scores, slices, parsed outputs
    run.slices()         # one row per model x split x slice: n, cIoU, gIoU and intervals
    run.reasoning()      # one row per model x split of text models: answer format, reasoning length, box vs mask
    run.compare()        # paired differences of every pair of models (harness compare)
    run.compare(other)   # ... across two runs of the same suite fingerprint and conventions

Tables are pandas DataFrames (pandas is imported when a table is asked for). The run is read
through harness/records/reader.py, so every number is verified against the stored scores (a
results.json that says otherwise, a stale scoring version, a score breaking its invariants: all
refused, naming the file and the fix); the samples' slices need the samples themselves,
which are loaded as ``harness report`` loads them (the built-in shapes suite needs no data; a real
suite needs its data root, from the run's manifest or ``data_root=``). ``harness compare`` and
``harness table`` use the same functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.errors import HarnessError
from harness.records import logline
from harness.records.reader import StoredRun
from harness.score.paired import PairScores
from harness.score.reasoning import facts_of
from harness.score.slices import SliceSet, assign, load_slices
from harness.types import Sample

if TYPE_CHECKING:
    import pandas as pd

    from harness.data.suites import Suite

# The score and prediction fields that samples() keeps (the masks stay in the logs).
_SCORE_FIELDS = ("iou", "intersection", "union", "gt_area", "pred_area", "gt_empty", "pred_empty", "failed", "parse_failed",
                 "counted_in_ciou", "box_iou")
_PREDICTION_FIELDS = ("parse_status", "answer", "reasoning", "text", "box", "error", "seconds", "reasoning_words", "box_mask_iou")


class Run:
    """A run directory, read lazily: results.json at once, logs and samples when first needed."""

    def __init__(self, path: str | Path, data_root: str | Path | None = None) -> None:
        self.path = Path(path)
        self.stored = StoredRun(self.path, data_root)
        self.doc: dict[str, Any] = dict(self.stored.results())  # verified against the logs, or refused
        self.data_root = self.stored.data_root
        self._scores: dict[tuple[str, str], PairScores] = {}
        self._records: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._membership: dict[str, dict[str, dict[str, np.ndarray]]] = {}

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}: {self.suite_name}, models {', '.join(self.models)})"

    @property
    def run_id(self) -> str:
        return str(self.doc.get("run_id") or self.path.name)

    @property
    def suite_name(self) -> str:
        return str(self.doc["suite"].get("name"))

    @property
    def fingerprint(self) -> str:
        return str(self.doc["suite"].get("fingerprint"))

    @property
    def conventions(self) -> dict[str, Any]:
        return dict(self.doc["conventions"])

    @property
    def eps(self) -> float:
        return float(self.conventions.get("ciou_eps", 1e-10))

    @property
    def models(self) -> list[str]:
        return list(self.doc["results"])

    def splits(self, model: str) -> list[str]:
        return list(self.doc["results"].get(model, {}))

    def records(self, model: str, split: str) -> list[dict[str, Any]]:
        """The log of one model x split, the last record of each id (as on resume), without the masks."""
        key = (model, split)
        if key not in self._records:
            by_id: dict[str, dict[str, Any]] = {}
            for r in self.stored.records(model, split):
                facts = facts_of(r, f"{self.stored.log_path(model, split)}")  # needs the mask, which is not kept
                row = logline.without_mask(r)
                row["prediction"].update(reasoning_words=facts.words, box_mask_iou=facts.box_mask_iou)
                by_id[row["id"]] = row
            self._records[key] = list(by_id.values())
        return self._records[key]

    def scores(self, model: str, split: str) -> PairScores:
        """Per-sample scores sorted by id, the shape the paired bootstrap takes."""
        key = (model, split)
        if key not in self._scores:
            self._scores[key] = self.stored.pair_scores(model, split)
        return self._scores[key]

    @property
    def suite(self) -> Suite:
        return self.stored.suite

    @cached_property
    def _samples(self) -> dict[str, list[Sample]]:
        return self.stored.load_samples()

    def split_samples(self, split: str) -> list[Sample]:
        samples = self._samples
        if split not in samples:
            raise HarnessError(f"{self.path}: split {split!r} is not in the run (it has {', '.join(samples)})")
        return samples[split]

    @cached_property
    def slice_definitions(self) -> SliceSet:
        return load_slices(self.suite)

    def membership(self, split: str) -> dict[str, dict[str, set[str]]]:
        """family -> slice -> the ids of the split's samples in it."""
        if split not in self._membership:
            samples = self.split_samples(split)
            self._membership[split] = assign(samples, self.slice_definitions)
        samples = self.split_samples(split)
        return {f: {label: {samples[i].id for i in np.flatnonzero(m)} for label, m in by.items()}
                for f, by in self._membership[split].items()}

    # --- tables -----------------------------------------------------------------------------

    def results(self) -> pd.DataFrame:
        """One row per model x split: every metric of results.json (percent), intervals as _lo/_hi columns."""
        import pandas as pd

        rows = []
        for model, by_split in self.doc["results"].items():
            for split, res in by_split.items():
                row: dict[str, Any] = {"model": model, "split": split}
                for k, v in res.items():
                    if k.endswith("_ci95") and isinstance(v, list):
                        row[k[:-5] + "_lo"], row[k[:-5] + "_hi"] = v
                    else:
                        row[k] = v
                rows.append(row)
        return pd.DataFrame(rows)

    def slices(self) -> pd.DataFrame:
        """One row per model x split x slice (results.json "slices"): n, cIoU, gIoU, intervals where n >= min_n."""
        import pandas as pd

        rows = []
        for model, by_split in (self.doc.get("slices") or {}).get("results", {}).items():
            for split, by_family in by_split.items():
                for family, by_label in by_family.items():
                    for label, res in by_label.items():
                        row: dict[str, Any] = {"model": model, "split": split, "family": family, "slice": label}
                        for k, v in res.items():
                            if k.endswith("_ci95"):
                                row[k[:-5] + "_lo"], row[k[:-5] + "_hi"] = v
                            else:
                                row[k] = v
                        rows.append(row)
        cols = ["model", "split", "family", "slice", "n", "ciou", "ciou_lo", "ciou_hi", "giou", "giou_lo", "giou_hi"]
        frame = pd.DataFrame(rows)
        return frame.reindex(columns=list(dict.fromkeys([*cols, *frame.columns])))

    def reasoning(self) -> pd.DataFrame:
        """One row per model x split of the models that write text (results.json "reasoning"; by_agreement
        flattened to agree_*, disagree_* and no_box_* columns, reasoning_words to reasoning_words_*)."""
        import pandas as pd

        rows = []
        for model, by_split in (self.doc.get("reasoning") or {}).get("results", {}).items():
            for split, res in by_split.items():
                nested = ("by_agreement", "reasoning_words", "largest_disagreements")
                row: dict[str, Any] = {"model": model, "split": split, **{k: v for k, v in res.items() if k not in nested}}
                row.update({f"reasoning_words_{k}": v for k, v in (res.get("reasoning_words") or {}).items()})
                for group, sub in (res.get("by_agreement") or {}).items():
                    row.update({f"{group}_{k}": v for k, v in sub.items() if k in ("n", "ciou", "giou")})
                rows.append(row)
        return pd.DataFrame(rows)

    def samples(self, with_slices: bool = True) -> pd.DataFrame:
        """One row per model x split x sample: the score, the parsed outputs (no masks), and one column
        per slice family ("slice:<family>": the sample's slice; a family whose slices overlap, such
        as expression_kind, gets a boolean column per slice, "slice:<family>:<slice>")."""
        import pandas as pd

        rows = []
        for model in self.models:
            for split in self.splits(model):
                labels = self._sample_slices(split) if with_slices else {}
                for r in self.records(model, split):
                    score, pred = r.get("score") or {}, r.get("prediction") or {}
                    row: dict[str, Any] = {"model": model, "split": split, "id": r["id"], "expression": r.get("expression")}
                    row.update({k: score.get(k) for k in _SCORE_FIELDS})
                    row.update({k: pred.get(k) for k in _PREDICTION_FIELDS})
                    row.update(labels.get(r["id"], {}))
                    rows.append(row)
        return pd.DataFrame(rows)

    def _sample_slices(self, split: str) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {s.id: {} for s in self.split_samples(split)}
        for family, by_label in self.membership(split).items():
            # Only word lists overlap (an expression may be spatial and comparative); other families are exclusive.
            if any(f.name == family and f.by == "word_lists" for f in self.slice_definitions.families):
                for label, ids in by_label.items():
                    for i, cols in out.items():
                        cols[f"slice:{family}:{label}"] = i in ids
            else:
                for label, ids in by_label.items():
                    for i in ids:
                        out[i][f"slice:{family}"] = label
        return out

    def compare(self, other: Run | str | Path | None = None, models: Sequence[str] | None = None, rounds: int = 1000,
                with_slices: bool = True) -> pd.DataFrame:
        """Paired differences (second minus first) of cIoU and gIoU for every pair of models, per split and
        per slice, with paired-bootstrap 95% intervals and p-values: what ``harness compare`` prints."""
        import pandas as pd

        from harness.publish.compare import paired_differences

        runs = [self] if other is None else [self, other if isinstance(other, Run) else Run(other)]
        comparison = paired_differences(runs, models=models, rounds=rounds, with_slices=with_slices)
        return pd.DataFrame([d.to_row() for d in comparison.rows])


def load_run(path: str | Path, data_root: str | Path | None = None) -> Run:
    """A stored run directory for notebooks (see this module's docstring)."""
    return Run(path, data_root)
