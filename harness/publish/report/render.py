"""Render a run directory into one self-contained HTML report: ``RUN/report/index.html``.

The report is read by people deciding which model is better, often long after the run, on
another machine, or attached to a ticket; so it is a single file (CSS inlined, figures and
thumbnails as data URIs, no external URLs) and it states the conventions every number was
computed with. Everything that comes from models or datasets (names, expressions, chains of
thought, errors) is escaped by Jinja's autoescape and never marked safe: a model that writes
``<script>`` into its reasoning must not be able to run it in a reviewer's browser.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from harness.data.suites import AVERAGE
from harness.files import write_text_atomic
from harness.publish.colours import model_colours
from harness.publish.report import gallery, plots
from harness.publish.report import pairwise as pairs_section
from harness.publish.report import reasoning as reasoning_section
from harness.publish.report import sections as analysis
from harness.publish.standing import failed_text, is_clean, partial_text, standing_text
from harness.records.reader import StoredRun
from harness.records.results import reference_models
from harness.records.score_index import IndexEntry
from harness.records.score_index import pair_scores as scores_of
from harness.resources import resource_dir
from harness.score.paired import DEFAULT_ROUNDS
from harness.types import Sample

LEADERBOARD_METRICS = (("ciou", "cIoU"), ("giou", "gIoU"))
# A suite scored on instances (SA-Co/Gold) leads with its own metrics, each with the suite's average column.
INSTANCE_LEADERBOARD_METRICS = (("cgf1", "cgF1"), ("pmf1", "pmF1 (positive micro F1)"), ("il_mcc", "IL_MCC"))
KIND = {"il_mcc": "coef"}  # a coefficient in [-1, 1], two decimals; everything else a percentage
TABLE_NOTES = {"il_mcc": "IL_MCC is a correlation coefficient (-1 to 1), not a percentage, as SA-Co publishes it.",
               "cgf1": "cgF1 = 100 x pmF1 x IL_MCC, averaged over IoU 0.50:0.95 (SA-Co's CGF1Evaluator, oracle over its "
                       "annotators); 'average' is the plain mean of the subsets, as the SAM 3 README's Average column.",
               "ciou": ""}
# (results.json key, column label, kind): "int" counts, "pct" percentages.
DETAIL_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("n", "n", "int"),
    ("n_failed", "failed", "int"),
    ("ciou", "cIoU", "pct"),
    ("giou", "gIoU", "pct"),
    *((f"prec@{t}", f"Prec@{t}", "pct") for t in ("0.5", "0.6", "0.7", "0.8", "0.9")),
    ("box_acc@0.5", "box Acc@0.5", "pct"),
    ("box_miou", "box mIoU", "pct"),
    ("n_acc", "N-acc", "pct"),
    ("t_acc", "T-acc", "pct"),
    ("fp_rate", "FP on absent", "pct"),
    ("exist_acc", "exist acc", "pct"),
    ("parse_failure_rate", "parse fail %", "pct"),
)
# SA-Co's instance metrics (harness/score/cgf1.py): columns of the details table only where a result has them.
INSTANCE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("n_cgf1", "n cgF1", "int"),
    ("cgf1", "cgF1", "pct"),
    ("cgf1@0.5", "cgF1@0.5", "pct"),
    ("cgf1@0.75", "cgF1@0.75", "pct"),
    ("pmf1", "pmF1", "pct"),
    ("il_mcc", "IL_MCC", "coef"),
    ("il_precision", "IL prec", "pct"),
    ("il_recall", "IL rec", "pct"),
    ("il_fpr", "IL FPR", "pct"),
    ("positive_macro_f1", "pos. macro F1", "pct"),
)
# The details table's column groups (a header row above the columns): counts, then what each metric measures.
DETAIL_GROUPS = {"n": "count", "n_failed": "count", "ciou": "mask", "giou": "mask",
                 **{f"prec@{t}": "mask precision" for t in ("0.5", "0.6", "0.7", "0.8", "0.9")},
                 "box_acc@0.5": "box", "box_miou": "box", "n_acc": "no-target", "t_acc": "no-target", "fp_rate": "no-target",
                 "exist_acc": "no-target", "parse_failure_rate": "answer", **{k: "instances (SA-Co)" for k, _, _ in INSTANCE_COLUMNS}}
DASH = "–"
# Counts stated under a split's details table, where non-zero: (results.json key, label, why it matters).
DETAIL_COUNTS: tuple[tuple[str, str, str], ...] = (
    ("n_not_drawn", "not drawn", "samples the model's protocol deliberately left out; not in n, not failed"),
    ("n_targeted_empty_gt", "targeted, empty GT",
     "samples the dataset gives a target whose ground truth has no pixel, scored by targeted_empty_union"),
)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _fmt(value: Any, kind: str = "pct") -> str:
    if _missing(value):
        return DASH
    if kind == "int":
        return str(int(value))
    return f"{float(value):.2f}" if kind == "coef" else f"{float(value):.1f}"


def _ordered(first: Sequence[str], *more: Sequence[str]) -> list[str]:
    """Names in manifest order, then any only found elsewhere (results.json), without repeats."""
    out = list(dict.fromkeys(first))
    for names in more:
        out += [n for n in names if n not in out]
    return out


def _leaderboards(
    results: Mapping[str, Mapping[str, Mapping[str, Any]]],
    published: Sequence[Mapping[str, Any]],
    models: Sequence[str],
    splits: Sequence[str],
    status: Mapping[str, Mapping[str, str]],
    average: Mapping[str, Any] | None = None,
    reference: frozenset[str] = frozenset(),
) -> tuple[list[dict[str, Any]], list[str]]:
    """One models x splits table per metric, plus the published rows and their sources. A run of a suite scored
    on instances leads with cgF1, pmF1 and IL_MCC, with a column for the suite's ``average`` (results.json)."""
    # Plain look-ups, not pandas: importing it (with pyarrow) was a quarter of the 100k report's memory.
    pub = [{k: p.get(k) for k in ("model", "split", "metric", "value", "source")} for p in published]
    sources = list(dict.fromkeys(str(p["source"]) for p in pub if not _missing(p["source"])))
    averaged: Mapping[str, Mapping[str, Any]] = (average or {}).get("results") or {}
    instance_run = any("cgf1" in (res or {}) for by in results.values() for res in by.values())
    metrics = [*(INSTANCE_LEADERBOARD_METRICS if instance_run else ()), *LEADERBOARD_METRICS]

    def outcome(m: str, s: str) -> Mapping[str, Any]:
        if s not in splits:  # the average column
            return averaged.get(m) or {}
        return results.get(m, {}).get(s) or {}

    def clean(m: str, s: str) -> bool:
        if s not in splits:  # the average of complete splits only
            return bool(average) and all(is_clean(results.get(m, {}).get(x) or {}) for x in (average or {}).get("splits") or [])
        return is_clean(outcome(m, s))

    tables = []
    for key, label in metrics:
        kind = KIND.get(key, "pct")
        instance_metric = key in {k for k, _ in INSTANCE_LEADERBOARD_METRICS}
        columns = [*splits, AVERAGE] if averaged and instance_metric else list(splits)
        # Bold goes to the best complete number of a model only: a partial or failing one is never shown as best,
        # nor a reference line's (an oracle is a bound, not a contender).
        best: dict[str, float] = {}
        for s in columns:
            for m in (m for m in models if m not in reference):
                x: Any = outcome(m, s).get(key)
                if not _missing(x) and clean(m, s):
                    best[s] = max(best.get(s, float(x)), float(x))
        table_rows: list[dict[str, Any]] = []
        for m in models:
            cells = []
            for s in columns:
                res = outcome(m, s)
                v: Any = res.get(key)
                ci = res.get(f"{key}_ci95")
                n_in: Any = res.get("n_cgf1" if instance_metric else f"n_{key}")
                ci_text = (f"[{_fmt(ci[0], kind)}, {_fmt(ci[1], kind)}]" if isinstance(ci, (list, tuple)) and len(ci) == 2 else "")
                done = "done" if not _missing(v) else "missing"
                cells.append(
                    {
                        "value": _fmt(v, kind),
                        "ci": ci_text,
                        "n": "" if _missing(n_in) else f"n={int(n_in)}",
                        "status": done if s not in splits else status.get(m, {}).get(s, done),
                        "partial": "" if s not in splits else partial_text(res),
                        "failed": "" if s not in splits else failed_text(res),
                        "best": not _missing(v) and float(v) == best.get(s),
                    }
                )
            values = [float(res[key]) for s in columns if not _missing((res := outcome(m, s)).get(key))]
            table_rows.append({"label": m, "published": False, "reference": m in reference, "cells": cells,
                               "complete": all(c["status"] == "done" and not c["partial"] and not c["failed"] for c in cells),
                               "mean": sum(values) / len(values) if values else None})
        # The models first, then the reference lines; each band by its mean over the columns, complete rows first.
        table_rows.sort(key=lambda r: (bool(r["reference"]), not r["complete"], r["mean"] is None, -(r["mean"] or 0.0)))
        mine = [p for p in pub if p["metric"] == key and p["split"] in columns]
        for model in dict.fromkeys(p["model"] for p in mine):
            cells = []
            for s in columns:
                hit = next((p for p in mine if p["model"] == model and p["split"] == s), None)
                if hit is None:
                    cells.append({"value": DASH, "source": "", "ref": None})
                else:
                    src = str(hit["source"])
                    cells.append({"value": _fmt(hit["value"], kind), "source": src, "ref": sources.index(src) + 1})
            table_rows.append({"label": f"(published) {model}", "published": True, "cells": cells})
        tables.append({"key": key, "label": label, "splits": columns, "rows": table_rows, "note": TABLE_NOTES.get(key, "")})
    return tables, sources


def _standing(results: Mapping[str, Mapping[str, Mapping[str, Any]]], manifest: Mapping[str, Any],
              models: Sequence[str], splits: Sequence[str]) -> list[str]:
    """For the header: every model x split that is partial or has failures, and every model that could not run."""
    lines = [f"{m} / {s}: {text}" for m in models for s in splits
             if (text := standing_text(results.get(m, {}).get(s) or {}))]
    return lines + [f"{m}: {entry['error']}" for m, entry in (manifest.get("models") or {}).items() if entry.get("error")]


def _details(results: Mapping[str, Mapping[str, Mapping[str, Any]]], models: Sequence[str], split: str) -> dict[str, Any]:
    """Every metric of every model on one split (a dash where it does not apply)."""
    data = {m: dict(results[m][split]) for m in models if split in results.get(m, {})}
    # A column no model of the split has (box metrics without boxes, no-target metrics without such samples) is left out.
    columns = DETAIL_COLUMNS + (INSTANCE_COLUMNS if any("n_cgf1" in d for d in data.values()) else ())
    shown = [c for c in columns if any(not _missing(data.get(m, {}).get(c[0])) for m in models)]
    rows = [{"model": m, "cells": [_fmt(data.get(m, {}).get(k), kind) for k, _, kind in shown]} for m in models]
    notes = [f"{m}: {label}: {int(data[m][key])} ({why})" for m in models if m in data
             for key, label, why in DETAIL_COUNTS if data[m].get(key)]
    groups: list[dict[str, Any]] = []
    for key, _, _ in shown:  # consecutive columns of one group share its header cell
        name = DETAIL_GROUPS.get(key, "")
        if groups and groups[-1]["name"] == name:
            groups[-1]["span"] += 1
        else:
            groups.append({"name": name, "span": 1})
    return {"split": split, "columns": [label for _, label, _ in shown], "groups": groups, "rows": rows, "notes": notes}


def _efficiency(manifest: Mapping[str, Any]) -> list[dict[str, str]]:
    """Per model x split (x rank) the cost counters the model reported, with samples/s when known."""
    rows = []
    for model, entry in (manifest.get("models") or {}).items():
        for split, ranks in (entry.get("efficiency") or {}).items():
            for rank, counters in ranks.items():
                shown = {k: (f"{v:,.0f}" if float(v).is_integer() else f"{v:,.2f}") for k, v in counters.items()}
                if counters.get("samples") and counters.get("predict_seconds"):
                    shown["samples/s"] = f"{counters['samples'] / counters['predict_seconds']:,.2f}"
                rows.append({"model": model, "split": split, "rank": rank,
                             "counters": ", ".join(f"{k} {v}" for k, v in shown.items()) or "–"})
    return rows


MAX_FAILURE_ROWS = 500


def _failures(entries: Mapping[str, Mapping[str, Mapping[str, IndexEntry]]]) -> dict[str, Any]:
    """Every failed sample with its reason (the first MAX_FAILURE_ROWS rows, and the total)."""
    rows = [
        {"model": model, "split": split, "id": e.id, "error": e.error or "no mask"}
        for model, by_split in entries.items()
        for split, latest in by_split.items()
        for e in latest.values()
        if e.failed
    ]
    return {"total": len(rows), "rows": rows[:MAX_FAILURE_ROWS]}


def _picked_records(
    picks: Mapping[str, Iterable[gallery.Key]], run: StoredRun, entries: Mapping[str, Mapping[str, Mapping[str, IndexEntry]]],
) -> dict[gallery.Key, dict[str, dict[str, Any]]]:
    """The full records of the gallery's samples only, read by offset: (split, id) -> model -> record."""
    keys = {k for ks in picks.values() for k in ks}
    out: dict[gallery.Key, dict[str, dict[str, Any]]] = {}
    for model, by_split in entries.items():
        for split, latest in by_split.items():
            chosen = [latest[sid] for s, sid in sorted(keys) if s == split and sid in latest]
            for rec in run.index(model, split).read(chosen):
                out.setdefault((split, str(rec["id"])), {})[model] = rec
    return out


def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(str(resource_dir("reports") / "templates")),
        autoescape=select_autoescape(enabled_extensions=("html", "j2"), default_for_string=True, default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_report(
    run: StoredRun | Path,
    samples: Mapping[str, Mapping[str, Sample]] | None = None,
    gallery_per_category: int = 6,
    doc: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``RUN/report/index.html`` from a stored run: its manifest, its results and its logs.

    ``run`` is read through harness/records/reader.py; ``doc`` is the results just derived by the
    caller (``harness report``), else the run's results.json, verified. ``samples`` (split -> sample
    id -> Sample) supplies images and ground-truth masks for the gallery; without it the gallery is
    text only. Only gallery samples' masks are decoded, so rendering cost is dominated by reading
    the logs, not by their size in pixels. The logs are read through their score indexes; only the
    gallery's records are parsed whole.
    """
    if not isinstance(run, StoredRun):
        run = StoredRun(run)
    run_dir = run.root
    notes: list[str] = []
    manifest: dict[str, Any] = run.manifest
    doc = dict(doc) if doc is not None else dict(run.results())
    results: dict[str, dict[str, dict[str, Any]]] = doc.get("results") or {}
    conventions: dict[str, Any] = doc.get("conventions") or {}
    models = _ordered(list(manifest.get("models") or {}), list(results))
    splits = _ordered(list(manifest.get("splits") or []), [s for by in results.values() for s in by])
    status: dict[str, dict[str, str]] = manifest.get("status") or {}
    wanted = set(run.asked())

    # One read of each log's score index (no masks); only the gallery's records are read whole.
    entries: dict[str, dict[str, dict[str, IndexEntry]]] = {}
    for model in models:
        for split in splits:
            if not run.dir.holds(run.log_path(model, split)):
                notes.append(f"Model {model!r} / split {split!r}: the name leads outside the run directory; log not read.")
                continue
            if (model, split) in wanted:  # the model x splits the run was asked for, nothing else
                entries.setdefault(model, {})[split] = run.entries(model, split)

    reference = reference_models(doc)  # empty, full, oracles: reference lines, never "best"
    leaderboards, sources = _leaderboards(results, doc.get("published") or [], models, splits, status, doc.get("average"), reference)
    colours = model_colours(models, reference)  # one colour per model, in every plot
    draw = plots.FigureWriter(run.dir.report_path.parent / "figures")
    figures = []
    for split in splits:
        columns = {m: plots.ScoreColumns.of_rows([e.row for e in entries[m][split].values()])
                   for m in models if entries.get(m, {}).get(split)}
        drawn = [(plots.metric_bars(split, models, {m: results.get(m, {}).get(split, {}) for m in models}, colours), "metrics",
                  f"cIoU and gIoU per model on {split}"),
                 (plots.iou_histogram(split, columns, colours), "iou-histogram", f"per-sample IoU per model on {split}"),
                 (plots.precision_plot(split, columns, conventions, colours), "precision", f"precision per IoU threshold on {split}")]
        figures.append({"split": split, "images": [draw(fig, f"{split}-{name}", alt) for fig, name, alt in drawn if fig is not None]})

    by_sample: dict[gallery.Key, dict[str, IndexEntry]] = {}
    for model, by_split in entries.items():
        for split, latest in by_split.items():
            for sid, entry in latest.items():
                by_sample.setdefault((split, sid), {})[model] = entry
    reference = reference_models(doc)  # reference lines: drawn in greys, never deciding a pick
    picks = gallery.select(by_sample, gallery_per_category, reference)
    del by_sample
    if samples is None:
        notes.append("No samples were given to the renderer, so the gallery shows text only (no images or masks).")
    exif = str(conventions.get("exif", "ignore"))
    # Only the records shown are read whole: the gallery's picks and the reasoning section's.
    shown = _picked_records({**picks, "reasoning": reasoning_section.wanted(doc.get("reasoning"))}, run, entries)
    look = gallery.Look.of(models, manifest.get("models") or {}, reference)
    sections = gallery.build_entries(picks, shown, models, samples, gallery.Thumbnailer(exif=exif), run.conventions, look)
    reasoning = reasoning_section.section(doc.get("reasoning"), shown, models, splits, samples, gallery_per_category, exif, look)

    # The paired differences from the same score index (no mask), by the bootstrap `harness compare` uses.
    # Only where a split has two models to pair: a one-model report builds none.
    paired_splits = {split for split in splits if sum(split in by_split for by_split in entries.values()) >= 2}
    pair_scores = {m: {split: scores_of(latest) for split, latest in by_split.items() if split in paired_splits}
                   for m, by_split in entries.items()}
    rounds = int((manifest.get("config") or {}).get("bootstrap_rounds", DEFAULT_ROUNDS))
    pairs, pairwise_notes = pairs_section.compute(doc, pair_scores, models, splits, samples, reference, rounds)
    focus = (manifest.get("config") or {}).get("focus")
    if focus is not None and focus not in models:
        notes.append(f"The focus model {focus!r} is not a model of this run; the headline names the best model instead.")
        focus = None
    pairwise = []
    for sp in pairs:
        plotted = pairs_section.plotted_pairs(sp, results, reference, focus)
        pair_figures = [draw(fig, f"{sp.split}-{first}-vs-{second}", f"{first} − {second} per slice on {sp.split}")
                        for first, second in plotted
                        if (fig := plots.slice_differences(sp.split, first, second, sp.pair(first, second), colours[first])) is not None]
        # The other pairs' slices as tables in collapsed sections: no figure drawn for pairs few will open.
        rest = [{"first": b, "second": a, "rows": pairs_section.slice_table(sp.pair(b, a), rounds)}
                for i, a in enumerate(sp.models) for b in sp.models[i + 1:]
                if not (a in reference and b in reference) and (b, a) not in plotted and (a, b) not in plotted]
        pairwise.append({"split": sp.split, "figures": pair_figures, "rest": rest, "notes": sp.notes})
    draw.finish()
    suite = doc.get("suite") or manifest.get("suite") or {}
    context = {
        "css": Markup((resource_dir("reports") / "report.css").read_text(encoding="utf-8")),  # our own file, not model text
        "title": f"{suite.get('name', 'run')} v{suite.get('version', '?')}"
                 + (f" (protocol {suite['protocol']})" if suite.get("protocol") else "")
                 + f" — {manifest.get('run_id', run_dir.name)}",
        "suite": suite,
        "run_id": manifest.get("run_id") or doc.get("run_id") or run_dir.name,
        "created": manifest.get("created", ""),
        "git_commit": manifest.get("git_commit"),
        "argv": manifest.get("argv") or [],
        "versions": manifest.get("versions") or {},
        "unit": doc.get("unit", "percent"),
        "models": [{"name": m, **{k: str(v) for k, v in (manifest.get("models") or {}).get(m, {}).items()}} for m in models],
        "splits": splits,
        "conventions": [(str(k), "null" if v is None else str(v)) for k, v in conventions.items()],
        "leaderboards": leaderboards,
        "headline": pairs_section.headline(pairs, results, splits, reference, focus, rounds),
        "focus": focus,
        "heat_maps": pairs_section.heat_maps(pairs, reference, rounds),
        "colours": colours,
        "reference": sorted(reference),
        "rounds": rounds,
        "standing": _standing(results, manifest, models, splits),
        "sources": sources,
        "details": [_details(results, models, s) for s in splits],
        "figures": figures,
        "gallery": sections,
        "slices": analysis.slices_section(doc, models, splits),
        "pairwise": pairwise,
        "pairwise_notes": pairwise_notes,
        "reasoning": reasoning,
        "failures": _failures(entries),
        "efficiency": _efficiency(manifest),
        "events": manifest.get("events") or [],
        "has_images": samples is not None,
        "per_category": gallery_per_category,
        "gallery_colours": [{"model": m, "colour": look.colour(m)} for m in models],
        "notes": notes,
    }
    html = _environment().get_template("report.html.j2").render(**context)
    out = run.dir.report_path
    write_text_atomic(out, html)
    return out
