"""``harness leaderboard RUN... --out DIR``: a static site across runs, for file:// and GitHub Pages.

    DIR/index.html             benchmarks, runs, link to the paper tables
    DIR/bench-<suite>.html     per benchmark (suite name and fingerprint): models x splits, cIoU or gIoU
                               (switchable), sample counts, 95% intervals, the suite's published numbers
                               with their sources, measured-minus-published deltas; sortable columns
    DIR/tables.html            LENS's Table 1 (RefCOCO/+/g) and Table 3 (ReasonSeg, GroundingSuite-Eval)
                               layouts with published and measured rows; the column -> (suite, split,
                               metric) mapping is data: reports/leaderboard_tables.yaml, or --tables FILE
    DIR/runs/<run>/            a copy of each run's self-contained report (gallery at #gallery) and results.json

Every link is relative and every page self-contained (CSS inlined, a few lines of inline JS for
sorting and the metric switch, no external URL). Model and dataset text goes through Jinja's
autoescape. A measured model is matched to a published row by, in order: ``--aliases FILE``
(YAML ``measured-name: published name``), a ``published_as`` field of the model's entry in the
run's results.json or manifest, or the same name (case-insensitive). Published rows come
from the runs' results.json; the paper tables also show those of built-in suites no run covers.
"""

from __future__ import annotations

import math
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.data.protocols import DEFAULT as DEFAULT_PROTOCOL
from harness.data.protocols import of_summary
from harness.data.yamlfile import read_yaml
from harness.errors import HarnessError
from harness.files import write_json_atomic, write_text_atomic
from harness.publish.standing import failed_text, is_clean, partial_text
from harness.records.reader import StoredRun
from harness.records.results import reference_models
from harness.records.store import RESULTS_NAME, RunDir
from harness.resources import resource_dir
from harness.score.cgf1 import COEFFICIENTS

METRICS = (("ciou", "cIoU"), ("giou", "gIoU"))
# A suite scored on instances (SA-Co/Gold) leads with its own metrics; IL_MCC is a coefficient, printed as published.
INSTANCE_METRICS = (("cgf1", "cgF1"), ("pmf1", "pmF1"), ("il_mcc", "IL_MCC"), *METRICS)


def metrics_of(conventions: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """The (key, label) views of a benchmark page, the suite's official metric first."""
    return INSTANCE_METRICS if conventions.get("scoring") == "instances" else METRICS


def _kind(metric: str) -> str:
    return "coef" if metric in COEFFICIENTS else "pct"
PubKey = tuple[str, str, str, str]  # suite, published model, split, metric


class LeaderboardError(HarnessError):
    """A run, aliases or tables file that cannot be used; names the file."""


@dataclass(frozen=True)
class RunEntry:
    root: Path
    doc: dict[str, Any]
    manifest: dict[str, Any]
    slug: str
    has_report: bool

    @property
    def run_id(self) -> str:
        return str(self.doc.get("run_id") or self.root.name)

    @property
    def suite(self) -> dict[str, Any]:
        return dict(self.doc.get("suite") or {})

    def published_as(self, model: str) -> str | None:
        for entries in (self.doc.get("models") or {}, self.manifest.get("models") or {}):
            value = (entries.get(model) or {}).get("published_as")
            if value:
                return str(value)
        return None


@dataclass(frozen=True)
class Column:
    label: str
    suite: str
    split: str
    metric: str


@dataclass(frozen=True)
class Table:
    id: str
    title: str
    caption: str
    average: bool
    groups: tuple[tuple[str, tuple[Column, ...]], ...]

    @property
    def columns(self) -> list[Column]:
        return [c for _, cols in self.groups for c in cols]


def _slug(text: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "run"
    slug, i = base, 1
    while slug in taken:
        i += 1
        slug = f"{base}-{i}"
    taken.add(slug)
    return slug


def _dict(v: Any) -> dict[str, Any]:
    return dict(v) if isinstance(v, Mapping) else {}


def load_runs(paths: Sequence[Path], verify: int | str | None = "none", notes: list[str] | None = None) -> list[RunEntry]:
    """Run directories (or their results.json), in the order given, each read and verified through
    harness/records/reader.py: every number is what the run's scores give, else the run is refused. With
    ``verify`` (lines per model x split, None for all) that many stored scores are re-derived from their
    masks first; ``notes`` receives what was re-derived per run, or why nothing was."""
    runs: list[RunEntry] = []
    taken: set[str] = set()
    for p in paths:
        root = p.parent if p.is_file() else p
        if not RunDir(root).results_path.exists():
            raise LeaderboardError(f"{p}: no results.json (give run directories; score one with `harness report {root}`)")
        run = StoredRun(root)
        doc = dict(run.results(intervals=verify is None))  # --verify all: the bootstrap intervals derived again too
        if verify != "none":
            note = run.rederive(verify if isinstance(verify, int) else None)
            if notes is not None:
                notes.append(f"{root}: {note}")
        runs.append(RunEntry(root, doc, run.manifest, _slug(str(doc.get("run_id") or root.name), taken), run.dir.report_path.is_file()))
    return runs


def load_aliases(path: Path | None) -> dict[str, str]:
    if path is None:
        return {}
    data = _yaml(path)
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise LeaderboardError(f"{path}: aliases must map measured model names to published model names (strings)")
    return {str(k): v for k, v in data.items()}


def _yaml(path: Path) -> Any:
    return read_yaml(path, LeaderboardError)


def load_tables(path: Path | None = None) -> list[Table]:
    """The paper-table layouts (default: reports/leaderboard_tables.yaml)."""
    path = path or resource_dir("reports") / "leaderboard_tables.yaml"
    data = _yaml(path)
    tables = []
    try:
        for t in data["tables"]:
            groups = []
            for g in t["groups"]:
                cols = []
                for c in g["columns"]:
                    metric = str(c.get("metric") or g.get("metric") or t.get("metric") or "ciou")
                    if metric not in dict(INSTANCE_METRICS):
                        raise ValueError(f"metric {metric!r} is not one of {', '.join(dict(INSTANCE_METRICS))}")
                    suite = c.get("suite") or g.get("suite") or t.get("suite")
                    if not suite:
                        raise ValueError(f"column {c.get('label')!r} of {g.get('label')!r} names no suite")
                    cols.append(Column(str(c["label"]), str(suite), str(c["split"]), metric))
                groups.append((str(g["label"]), tuple(cols)))
            tables.append(Table(str(t["id"]), str(t["title"]), str(t.get("caption", "")), bool(t.get("average")), tuple(groups)))
    except (KeyError, TypeError, ValueError) as exc:
        raise LeaderboardError(f"{path}: a table needs id, title and groups of columns with label and split ({exc})") from exc
    return tables


def _published(runs: Sequence[RunEntry], tables: Sequence[Table]) -> tuple[dict[PubKey, dict[str, Any]], dict[str, list[str]]]:
    """Published rows (first seen wins) and published model names per suite: from every run's
    results.json, then, for suites of the paper tables that no run covers, from the built-in suite."""
    from harness.data.suites import load_suite

    sources: list[tuple[str, list[dict[str, Any]]]] = [(str(r.suite.get("name")), list(r.doc.get("published") or [])) for r in runs]
    covered = {name for name, _ in sources}
    for name in dict.fromkeys(c.suite for t in tables for c in t.columns):
        if name not in covered:
            try:
                sources.append((name, [p.to_dict() for p in load_suite(name).published]))
            except HarnessError:  # not a built-in suite: its columns stay empty
                continue
    rows: dict[PubKey, dict[str, Any]] = {}
    models: dict[str, list[str]] = {}
    for suite, published in sources:
        for p in published:
            rows.setdefault((suite, str(p["model"]), str(p["split"]), str(p["metric"])), dict(p))
            if str(p["model"]) not in models.setdefault(suite, []):
                models[suite].append(str(p["model"]))
    return rows, models


def _alias(model: str, run: RunEntry, aliases: Mapping[str, str], published_models: Sequence[str]) -> str | None:
    name = aliases.get(model) or run.published_as(model)
    if name:
        return name
    return {p.lower(): p for p in published_models}.get(model.lower())


class _Sources:
    """Numbered footnotes of one page."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def ref(self, source: str) -> int:
        if source not in self.items:
            self.items.append(source)
        return self.items.index(source) + 1


def _num(v: Any) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


# An empty cell; "–" is the report's DASH (harness.publish.report.render, imported only when rendering).
# ``tier`` 1 marks a partial or failing number: never bold, and sorted below every complete one.
_CELL: dict[str, Any] = {"value": "–", "sort": "", "ci": "", "n": "", "partial": "", "failed": "", "tier": 0, "delta": "",
                         "delta_class": "", "delta_title": "", "best": False, "ref": None, "source": "",
                         "num": None, "ci95": None}  # num, ci95: unrounded (harness table)


def _measured(res: Mapping[str, Any] | None, metric: str, pub: Mapping[str, Any] | None, alias: str | None) -> dict[str, Any]:
    """A measured value with its interval, sample count, completeness and delta to the published value."""
    from harness.publish.report.render import _fmt

    res = res or {}
    value = _num(res.get(metric))
    ci = res.get(f"{metric}_ci95")
    n = res.get(f"n_{metric}")
    digits = 2 if _kind(metric) == "coef" else 1
    cell = {
        **_CELL, "value": _fmt(value, _kind(metric)), "sort": "" if value is None else f"{value:.6f}",
        "ci": f"[{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if isinstance(ci, list) and len(ci) == 2 else "",
        "num": value, "ci95": tuple(ci) if isinstance(ci, list) and len(ci) == 2 else None,
        "n": "" if n is None else f"n={int(n)}",
        "partial": partial_text(res), "failed": failed_text(res),
        "tier": 0 if value is None or is_clean(res) else 1,
    }
    pv = _num((pub or {}).get("value"))
    if value is not None and pv is not None:
        d = value - pv
        cell.update(delta=f"Δ {d:+.{digits}f}", delta_class="up" if d >= 0 else "down",
                    delta_title=f"measured − published {alias} ({pv:.{digits}f}; {(pub or {}).get('source', '')})")
    return cell


def _published_cell(pub: Mapping[str, Any] | None, sources: _Sources, metric: str = "ciou") -> dict[str, Any]:
    """A published value with its numbered source."""
    from harness.publish.report.render import _fmt

    value = _num((pub or {}).get("value"))
    if pub is None or value is None:
        return dict(_CELL)
    src = str(pub.get("source", ""))
    return {**_CELL, "value": _fmt(value, _kind(metric)), "sort": f"{value:.6f}", "ref": sources.ref(src), "source": src, "num": value}


def _mark_best(rows: list[dict[str, Any]], n_cols: int) -> None:
    """Bold the best complete measured number per column among the models; a partial or failing one never is,
    however high, and neither is a reference line's (an oracle is a bound, not a contender)."""
    for i in range(n_cols):
        ranked = [r["cells"][i] for r in rows if r["band"] == "models" and r["cells"][i]["sort"] and not r["cells"][i]["tier"]]
        top = max((float(c["sort"]) for c in ranked), default=None)
        for c in ranked:
            c["best"] = float(c["sort"]) == top


# The bands of a leaderboard table, in order: the models ranked, the reference lines (``empty``, ``full``,
# oracles: AdapterInfo.reference, as results.json records it), the published numbers. Each band sorts apart.
BANDS: tuple[tuple[str, str], ...] = (
    ("models", "Models"),
    ("reference", "Reference lines: trivial baselines and oracles (bounds, not ranked with the models)"),
    ("published", "Published numbers (not measured here)"),
)


def _banded(rows: list[dict[str, Any]], avg: bool = False) -> list[dict[str, Any]]:
    """The rows by band, each band sorted by the table's metric: complete rows first (a partial run never ranks
    above a complete one), then by the row's mean over the columns shown (its ``avg`` where the table has one),
    highest first, rows without a number last; ties keep their order. Sets each row's ``mean``, ``sort`` and ``badges``."""
    order = {key: i for i, (key, _) in enumerate(BANDS)}
    for r in rows:
        nums = [float(c["num"]) for c in r["cells"] if c["num"] is not None]
        r["mean"] = (r["avg"]["num"] if avg and r.get("avg") else None) or (sum(nums) / len(nums) if nums else None)
        r["sort"] = "" if r["mean"] is None else f"{r['mean']:.6f}"
        r["badges"] = _row_badges(r["cells"]) if not r["published"] else []
    return sorted(rows, key=lambda r: (order[r["band"]], sum(c["tier"] for c in r["cells"]), r["mean"] is None, -(r["mean"] or 0.0)))


def _row_badges(cells: Sequence[Mapping[str, Any]]) -> list[str]:
    """What a row's header says of its numbers: ``partial`` (a --limit cut or samples without a prediction),
    ``incomplete data`` (a copy of the data short of the suite's counts), ``failures``; the cells say how many."""
    texts = [str(c["partial"]) for c in cells if c["partial"]]
    badges = ["partial"] if any(not t.startswith("data:") or ", data:" in t for t in texts) else []
    badges += ["incomplete data"] if any("data:" in t for t in texts) else []
    return badges + (["failures"] if any(c["failed"] for c in cells) else [])


def _bands(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The template's view of banded rows: the non-empty bands with their label."""
    return [{"key": key, "label": label, "rows": [r for r in rows if r["band"] == key]} for key, label in BANDS
            if any(r["band"] == key for r in rows)]


def benchmark_page(runs: Sequence[RunEntry], aliases: Mapping[str, str], pub: Mapping[PubKey, dict[str, Any]],
                   pub_models: Mapping[str, list[str]]) -> dict[str, Any]:
    """Models x splits per metric for the runs of one benchmark."""
    suite = runs[0].suite
    name = str(suite.get("name"))
    splits: list[str] = []
    for run in runs:
        for by_split in run.doc["results"].values():
            splits += [s for s in by_split if s not in splits]
    splits = list(dict.fromkeys([*splits, *(k[2] for k in pub if k[0] == name)]))
    sources = _Sources()
    views = []
    for metric, label in metrics_of(runs[0].doc.get("conventions") or {}):
        rows: list[dict[str, Any]] = []
        for run in runs:
            for model, by_split in run.doc["results"].items():
                alias = _alias(model, run, aliases, pub_models.get(name, []))
                cells = [_measured(by_split.get(s), metric, pub.get((name, alias or "", s, metric)), alias) for s in splits]
                band = "reference" if model in reference_models(run.doc) else "models"
                rows.append({"label": model, "published": False, "band": band, "run": run, "alias": alias, "cells": cells})
        for pm in pub_models.get(name, []):
            cells = [_published_cell(pub.get((name, pm, s, metric)), sources, metric) for s in splits]
            if any(c["sort"] for c in cells):
                rows.append({"label": pm, "published": True, "band": "published", "run": None, "alias": None, "cells": cells})
        rows = _banded(rows)
        _mark_best(rows, len(splits))
        views.append({"key": metric, "label": label, "rows": rows, "bands": _bands(rows)})
    return {"suite": suite, "splits": splits, "views": views, "sources": sources.items, "runs": list(runs)}


def paper_tables(runs: Sequence[RunEntry], tables: Sequence[Table], aliases: Mapping[str, str],
                 pub: Mapping[PubKey, dict[str, Any]], pub_models: Mapping[str, list[str]]) -> tuple[list[dict[str, Any]], list[str]]:
    """The paper layouts: measured rows (by model name; a later run wins a cell) and published rows."""
    sources = _Sources()
    out = []
    for table in tables:
        cols = table.columns
        found: dict[str, dict[int, tuple[RunEntry, Mapping[str, Any]]]] = {}
        for run in runs:
            for model, by_split in run.doc["results"].items():
                for i, col in enumerate(cols):
                    if run.suite.get("name") == col.suite and col.split in by_split:
                        held = found.setdefault(model, {}).get(i)
                        # A later run wins the cell, unless it is partial or failing and the held one is complete.
                        if held is None or is_clean(by_split[col.split]) or not is_clean(held[1]):
                            found[model][i] = (run, by_split[col.split])
        rows: list[dict[str, Any]] = []
        for model, hits in found.items():
            cells = []
            for i, col in enumerate(cols):
                if i not in hits:
                    cells.append(_measured(None, col.metric, None, None))
                    continue
                run, res = hits[i]
                alias = _alias(model, run, aliases, pub_models.get(col.suite, []))
                cells.append(_measured(res, col.metric, pub.get((col.suite, alias or "", col.split, col.metric)), alias))
            run_links = list({id(r): r for r, _ in hits.values()}.values())
            band = "reference" if any(model in reference_models(r.doc) for r in run_links) else "models"
            rows.append({"label": model, "published": False, "band": band, "runs": run_links, "cells": cells})
        names = list(dict.fromkeys(m for col in cols for m in pub_models.get(col.suite, [])))
        for pm in names:
            cells = [_published_cell(pub.get((c.suite, pm, c.split, c.metric)), sources, c.metric) for c in cols]
            if any(c["sort"] for c in cells):
                rows.append({"label": pm, "published": True, "band": "published", "runs": [], "cells": cells})
        for row in rows:
            if table.average:
                vals = [float(c["num"]) for c in row["cells"] if c["num"] is not None]
                avg = sum(vals) / len(vals) if len(vals) == len(cols) else None
                row["avg"] = {"value": _CELL["value"] if avg is None else f"{avg:.1f}", "sort": "" if avg is None else f"{avg:.6f}",
                              "num": avg,  # an average over a partial value is partial too
                              "partial": "partial" if avg is not None and any(c["partial"] for c in row["cells"]) else ""}
        rows = _banded(rows, avg=table.average)
        _mark_best(rows, len(cols))
        # A layout without any measured row is a page of published numbers: the page names it in one line instead.
        measured = any(not r["published"] and any(c["num"] is not None for c in r["cells"]) for r in rows)
        out.append({"table": table, "rows": rows, "bands": _bands(rows), "columns": cols, "measured": measured,
                    "n_published": sum(r["published"] for r in rows)})
    return out, sources.items


def _cited(rendered: Sequence[dict[str, Any]], sources: Sequence[str]) -> list[str]:
    """The sources the shown tables cite (those with a measured row), numbered afresh in order of citation;
    their cells' ``ref`` renumbered to match. A layout reduced to its one-line note cites nothing."""
    kept = _Sources()
    for t in rendered:
        for row in t["rows"]:
            for cell in row["cells"]:
                if cell.get("ref"):
                    cell["ref"] = kept.ref(sources[cell["ref"] - 1]) if t["measured"] else None
    return kept.items


def _render(template: str, out: Path, **context: Any) -> None:
    from markupsafe import Markup

    from harness.publish.report.render import _environment

    css = "\n".join((resource_dir("reports") / name).read_text(encoding="utf-8") for name in ("report.css", "leaderboard.css"))
    html = _environment().get_template(template).render(css=Markup(css), **context)  # our own CSS, not model text
    write_text_atomic(out, html)


def build_site(run_paths: Sequence[Path], out: Path, aliases_file: Path | None = None, tables_file: Path | None = None,
               title: str = "Leaderboard", verify: int | str | None = "none", notes: list[str] | None = None) -> Path:
    """Write the site into ``out``; return the path of its index.html. ``verify`` and ``notes``: ``load_runs``."""
    runs = load_runs(run_paths, verify, notes)
    if not runs:
        raise LeaderboardError("no runs given")
    aliases, tables = load_aliases(aliases_file), load_tables(tables_file)
    pub, pub_models = _published(runs, tables)
    out.mkdir(parents=True, exist_ok=True)
    for run in runs:
        dest = out / "runs" / run.slug
        if run.has_report:
            shutil.copytree(RunDir(run.root).report_path.parent, dest, dirs_exist_ok=True)
        dest.mkdir(parents=True, exist_ok=True)
        write_json_atomic(dest / RESULTS_NAME, run.doc)  # the verified numbers, as the run's results.json holds them
    groups: dict[tuple[str, str], list[RunEntry]] = {}
    for run in runs:
        groups.setdefault((str(run.suite.get("name")), str(run.suite.get("fingerprint"))), []).append(run)
    names = [name for name, _ in groups]
    taken: set[str] = {"index", "tables"}
    benches: list[dict[str, Any]] = []
    for (name, fp), members in groups.items():
        label = name if names.count(name) == 1 else f"{name}-{fp[:8]}"
        followed = of_summary(members[0].suite)
        if followed != DEFAULT_PROTOCOL:  # every row of the page was scored under this paper's protocol: say so
            label = f"{label} (protocol {followed})"
        page = f"bench-{_slug(label, taken)}.html"
        benches.append({"name": name, "label": label, "href": page, "suite": members[0].suite, "runs": members})
    nav = {"benches": benches, "title": title}
    for bench in benches:
        _render("leaderboard.html.j2", out / bench["href"], nav=nav, bench=bench,
                page=benchmark_page(bench["runs"], aliases, pub, pub_models))
    rendered, sources = paper_tables(runs, tables, aliases, pub, pub_models)
    _render("leaderboard_tables.html.j2", out / "tables.html", nav=nav, tables=rendered, sources=_cited(rendered, sources))
    _render("leaderboard_index.html.j2", out / "index.html", nav=nav, runs=runs, aliases=aliases)
    (out / ".nojekyll").touch()  # GitHub Pages: serve the files as they are
    return out / "index.html"
