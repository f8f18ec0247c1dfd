"""Named evaluation protocols: each paper's own way of scoring a suite, as a labelled variant of it.

The harness scores every model under one protocol, ``lisa`` (the LISA reference: one sample per
sentence, ReasonSeg's ``text[0]``, ignore excluded, an empty union IoU 1, a failure IoU 0; the suite
files' conventions). The official evaluation scripts of other models differ in ways that move their
published numbers (UPSTREAM-2026.md 1.4); ``--protocol NAME`` reproduces one of them on request. A
protocol rewrites the suite definition (its conventions, its splits and what a sample is) before
anything is read, so its runs have their own suite fingerprint (never mixed with ``lisa`` runs in one
run directory), its results carry its name (``suite.protocol`` in results.json), the report and the
leaderboard label every row with it, and ``gate``, ``compare`` and ``table`` refuse to compare rows of
two protocols.

A suite file may name the protocol it follows itself (``protocol: NAME``, the default ``lisa``); the
protocol named on the command line is applied to a ``lisa`` suite only.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.errors import HarnessError

DEFAULT = "lisa"


class ProtocolError(HarnessError):
    """An unknown protocol, or one that does not apply to the suite."""


Rewrite = Callable[[dict[str, Any], str], None]  # (the suite's raw definition, where) -> changed in place


@dataclass(frozen=True)
class Protocol:
    name: str
    summary: str  # one line: what differs from lisa
    source: str  # the upstream code it follows
    formats: tuple[str, ...]  # the source formats it applies to
    conventions: Mapping[str, Any] = field(default_factory=dict)  # by source format: overrides of the suite's conventions
    rewrite: Rewrite | None = None  # changes to splits or sample units, by source format
    published: tuple[Mapping[str, Any], ...] = ()  # published numbers of this protocol (added to the suite's)

    def apply(self, raw: Mapping[str, Any], where: str) -> dict[str, Any]:
        """The suite definition ``raw`` under this protocol (a new mapping; ``raw`` is not changed)."""
        out = copy.deepcopy(dict(raw))
        # The Hub copy `harness data fetch` downloads is read by another reader (its own format and splits), which a
        # protocol's rewrite of the suite's own source does not reach: under a protocol the suite reads its own files.
        out.pop("fetch", None)
        fmt = str((out.get("source") or {}).get("format"))
        if fmt not in self.formats:
            raise ProtocolError(f"{where}: protocol {self.name!r} applies to suites of format {', '.join(self.formats)}, "
                                f"not {fmt!r} ({self.summary})")
        changes = self.conventions.get(fmt) or {}
        out["conventions"] = {**(out.get("conventions") or {}), **changes}
        if self.rewrite is not None:
            self.rewrite(out, where)
        splits = set(out.get("splits") or {})
        out["published"] = [p for p in [*(out.get("published") or []), *self.published] if p.get("split") in splits]
        out["protocol"] = self.name
        return out


def _sa2va_test_splits(raw: dict[str, Any], where: str) -> None:
    """Sa2VA's run_all_evals.py asks REFER for split "test": testA ∪ testB for RefCOCO and RefCOCO+ (unc),
    umd test for RefCOCOg. One split per dataset, named ``{dataset}_test``; val splits are not evaluated."""
    source = raw["source"]
    given = source.get("splits") or {}
    out_source: dict[str, Any] = {}
    out_splits: dict[str, Any] = {}
    for name, spec in given.items():
        if not str(spec.get("split", name)).startswith("test"):
            continue
        dataset = spec.get("dataset", source.get("dataset", "refcoco"))
        key = f"{dataset}_test"
        merged = out_source.setdefault(key, {**spec, "split": "test"})
        if merged.get("split_by") != spec.get("split_by"):
            raise ProtocolError(f"{where}: splits {key} mix splitBy {merged.get('split_by')} and {spec.get('split_by')}")
        counts = (raw.get("splits") or {}).get(name, {}).get("counts")
        entry = out_splits.setdefault(key, {"description": f"{dataset} {spec.get('split_by', '')} test (testA ∪ testB where "
                                                           "there are both; Sa2VA's run_all_evals.py)", "parts": []})
        entry["parts"].append(counts)
    if not out_source:
        raise ProtocolError(f"{where}: protocol 'sa2va-runner' evaluates the test splits, and this suite has none")
    for entry in out_splits.values():  # official counts add up where every part has them (disjoint image sets)
        parts = entry.pop("parts")
        if parts and all(isinstance(p, Mapping) for p in parts):
            entry["counts"] = {k: (None if any(p.get(k) is None for p in parts) else sum(int(p[k]) for p in parts))
                               for k in ("images", "objects", "expressions")}
    source["splits"] = out_source
    raw["splits"] = out_splits
    raw["default_splits"] = list(out_splits)


def _restate_expressions(raw: dict[str, Any], rule: str) -> None:
    """The official ``expressions`` count of each split under a protocol that changes what a sample is:
    ``objects`` (one sample per object: the objects count) or ``unknown`` (a draw of sentences: neither the
    expressions nor the objects that keep a sentence have a published count)."""
    for entry in (raw.get("splits") or {}).values():
        counts = entry.get("counts") if isinstance(entry, Mapping) else None
        if isinstance(counts, Mapping):
            entry["counts"] = {**counts, "expressions": counts.get("objects")} if rule == "objects" else \
                {**counts, "objects": None, "expressions": None}


def _per_object(raw: dict[str, Any], where: str) -> None:
    if raw["source"].get("format") == "refer":
        raw["conventions"]["sample_unit"] = "object"
        _restate_expressions(raw, "objects")


def _merged_per_object(raw: dict[str, Any], where: str) -> None:
    if raw["source"].get("format") == "refer":
        _restate_expressions(raw, "objects")


GLAMM_PER_IMAGE = 3  # ReferSegmDataset(num_classes_per_sample=3)
GLAMM_SEED = 0


def _glamm_draw(raw: dict[str, Any], where: str) -> None:
    raw["source"]["per_image"] = GLAMM_PER_IMAGE
    raw["source"]["draw_seed"] = GLAMM_SEED
    _restate_expressions(raw, "unknown")


_CARD = "model card; split not stated (run_all_evals.py's test assumed, unconfirmed)"
_SA2VA_ROWS = tuple(
    {"model": model, "split": split, "metric": "ciou", "value": value, "source": f"ByteDance/{card} {_CARD}"}
    for model, card, values in (
        ("Sa2VA-Qwen2.5-VL-3B", "Sa2VA-Qwen2_5-VL-3B", (79.6, 74.0, 77.1)),
        ("Sa2VA-Qwen3-VL-4B", "Sa2VA-Qwen3-VL-4B", (81.7, 77.4, 80.0)),
        ("Sa2VA-InternVL3-8B", "Sa2VA-InternVL3-8B", (83.3, 78.9, 81.8)),
        ("Sa2VA-InternVL3-14B", "Sa2VA-InternVL3-14B", (83.6, 79.9, 83.6)),
    )
    for split, value in zip(("refcoco_test", "refcoco+_test", "refcocog_test"), values)
)
_UNIPIXEL_ROWS = tuple(
    {"model": model, "split": "val", "metric": metric, "value": value,
     "source": f"PolyU-ChenLab/UniPixel README (5c8e941), co-trained {model[-2:]}"}
    for model, giou, ciou in (("UniPixel-3B", 64.0, 56.2), ("UniPixel-7B", 60.5, 58.7))
    for metric, value in (("giou", giou), ("ciou", ciou))
)
_REFCOCO_SPLITS = ("refcoco_val", "refcoco_testA", "refcoco_testB", "refcoco+_val", "refcoco+_testA", "refcoco+_testB",
                   "refcocog_val", "refcocog_test")
_UNIPIXEL_ROWS += tuple(
    {"model": model, "split": split, "metric": "ciou", "value": value,
     "source": f"PolyU-ChenLab/UniPixel README (5c8e941) 'UniPixel on Public Benchmarks', co-trained {model[-2:]}; metric unnamed "
               "there (eval_refcoco.py prints cIoU and gIoU; cIoU assumed, unconfirmed)"}
    for model, values in (("UniPixel-3B", (80.5, 82.6, 76.9, 74.3, 78.9, 68.4, 76.3, 77.0)),
                          ("UniPixel-7B", (80.8, 83.0, 77.4, 75.3, 80.1, 70.0, 76.4, 77.1)))
    for split, value in zip(_REFCOCO_SPLITS, values)
)

PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (
    Protocol(DEFAULT, "the LISA reference: the suite as its file defines it", "dvlab-research/LISA utils/dataset.py, train_ds.py",
             formats=("refer", "reasonseg", "gseval", "grefcoco", "refcoco_m", "hf", "mmr", "saco", "shapes")),
    Protocol("sa2va-runner", "RefCOCO/RefCOCO+ 'test' = testA ∪ testB, RefCOCOg umd test; val not evaluated",
             "bytedance/Sa2VA 9832e1a projects/sa2va/evaluation/run_all_evals.py with REFER getRefIds(split='test')",
             formats=("refer",), rewrite=_sa2va_test_splits, published=_SA2VA_ROWS),
    Protocol("unipixel", "every ReasonSeg text is a sample (not text[0]); an exception is an all-zero mask, scored as empty; "
             "RefCOCO polygons merged (union), not summed",
             "PolyU-ChenLab/UniPixel 5c8e941 unipixel/eval/infer_seg.py",
             formats=("reasonseg", "refer"),
             # RefCOCO: UniPixel merges an object's polygons (frPyObjects + merge, a union), where LISA sums them.
             conventions={"reasonseg": {"sample_unit": "sentence", "failure": "as_empty"},
                          "refer": {"failure": "as_empty", "gt_overlap": "binarise"}},
             published=_UNIPIXEL_ROWS),
    Protocol("visionreasoner-object", "one sample per object (its first sentence); ReasonSeg's ignore region as foreground",
             "JIA-Lab-research/VisionReasoner c013132 evaluation/calculate_iou_with_bbox_nonobj.py on Ricky06662's HF copies",
             formats=("refer", "reasonseg"), conventions={"reasonseg": {"ignore": "foreground"}}, rewrite=_per_object),
    Protocol("himtok", "RefCOCO: one sample per object, its sentences merged into one ('Meet all the descriptions: 1. s1. "
             "2. s2. '), polygons merged (gt > 0.5); ignore pixels forced into the prediction (true positives); "
             "per-sample I/(U+1e-10)",
             "yayafengzi/LMM-HiMTok 67e7ecf eval/evaluate_referseg.py (--text-mode all), eval/evaluate_reasonseg.py "
             "(--text-mode first), eval/seg_dataset.py, eval/predict.py update_metrics",
             formats=("refer", "reasonseg"),
             conventions={"refer": {"sample_unit": "object_merged", "gt_overlap": "binarise", "ignore": "true_positive",
                                    "giou_eps": 1e-10},
                          "reasonseg": {"sample_unit": "first_text", "ignore": "true_positive", "giou_eps": 1e-10}},
             rewrite=_merged_per_object),
    Protocol("glamm-3", f"at most {GLAMM_PER_IMAGE} sentences per image, drawn with np.random.choice (seed {GLAMM_SEED} per "
             "image; GLaMM's own draw is unseeded), the rest not evaluated",
             "mbzuai-oryx/groundingLMM e74865f dataset/segm_datasets/RefCOCO_Segm_ds.py ReferSegmDataset "
             "(num_classes_per_sample=3), eval/referring_seg/infer_and_evaluate.py",
             formats=("refer",), rewrite=_glamm_draw),
)}


def of_summary(suite: Mapping[str, Any]) -> str:
    """The protocol of a stored suite summary (results.json's or a baseline's ``suite``): written for every
    protocol but the default."""
    return str(suite.get("protocol") or DEFAULT)


def protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise ProtocolError(f"unknown protocol {name!r}; known: {', '.join(PROTOCOLS)} (see docs/protocols.md)")
    return PROTOCOLS[name]


def apply_protocol(raw: Mapping[str, Any], name: str | None, where: str) -> Mapping[str, Any]:
    """``raw`` (a suite definition) under protocol ``name``; unchanged for None or the suite's own protocol."""
    own = str(raw.get("protocol") or DEFAULT)
    if name is None or name == own:
        return raw
    if own != DEFAULT:
        raise ProtocolError(f"{where} follows protocol {own!r} already; protocol {name!r} applies to a {DEFAULT!r} suite")
    chosen = protocol(name)
    return raw if chosen.name == DEFAULT else chosen.apply(raw, where)
