"""``harness table RUN... --layout lens-table1|lens-table3|FILE --format markdown|latex|csv``: tables for a paper.

The layouts are the leaderboard's (``reports/leaderboard_tables.yaml``: ``lens-table1`` is LENS's
Table 1, RefCOCO/+/g cIoU; ``lens-table3`` its Table 3, ReasonSeg and GroundingSuite-Eval), or any
layout file in that format (every table in it, or the one chosen with ``--table ID``). Cells are
filled exactly as the leaderboard's tables page fills them (``leaderboard.paper_tables``): measured
rows by model name (a later run wins a cell), then the published rows of the suites, marked with a
dagger and their sources. The best measured value of a model in each column is bold (Markdown ``**``,
LaTeX ``\\textbf``); a published number, and a reference line's (``empty``, ``full``, an oracle), never is.
``--intervals`` adds each measured value's bootstrap 95% interval; a cell of a split not fully predicted
is marked with an asterisk, and so is an average over such a cell (CSV: the ``partial`` column names them).

LaTeX uses booktabs rules (``\\toprule``, ``\\cmidrule``, ``\\midrule``, ``\\bottomrule``) and
escapes model names; ``--standalone`` wraps it in a document that compiles with pdflatex. CSV
carries unrounded numbers (one row per table row, intervals as ``<column> lo/hi`` columns), for
further processing rather than for show, so it has no bold.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.data.protocols import of_summary
from harness.errors import HarnessError
from harness.publish.leaderboard import Table, _published, load_aliases, load_runs, load_tables, paper_tables

# Named layouts: the table ids of the leaderboard's default layout file.
LAYOUTS = {"lens-table1": "refcoco", "lens-table3": "reasoning"}
FORMATS = ("markdown", "latex", "csv")
DAGGER = "†"


def resolve_layout(layout: str, table_id: str | None = None) -> list[Table]:
    if layout in LAYOUTS:
        tables = [t for t in load_tables() if t.id == LAYOUTS[layout]]
    else:
        path = Path(layout)
        if not path.is_file():
            raise HarnessError(f"--layout {layout!r} is neither a known layout ({', '.join(LAYOUTS)}) nor a layout file")
        tables = load_tables(path)
    if table_id is not None:
        chosen = [t for t in tables if t.id == table_id]
        if not chosen:
            raise HarnessError(f"--table {table_id!r} is not in {layout} (it has {', '.join(t.id for t in tables)})")
        tables = chosen
    if not tables:
        raise HarnessError(f"{layout}: no table")
    return tables


def build(run_paths: Sequence[Path], tables: Sequence[Table], aliases_file: Path | None = None,
          verify: int | str | None = "none", notes: list[str] | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """The filled tables (rows of cells, as the leaderboard's tables page) and the published sources;
    ``verify`` and ``notes`` as for ``load_runs`` (stored scores re-derived from their masks first)."""
    runs = load_runs(run_paths, verify, notes)
    if not runs:
        raise HarnessError("no runs given")
    followed = {of_summary(r.suite) for r in runs}
    if len(followed) > 1:  # a paper table mixes no protocols: its rows would read as comparable
        raise HarnessError("the runs follow different protocols (" + ", ".join(
            f"{r.root}: {of_summary(r.suite)}" for r in runs) + "); table runs of one protocol (docs/protocols.md)")
    pub, pub_models = _published(runs, tables)
    rendered, sources = paper_tables(runs, tables, load_aliases(aliases_file), pub, pub_models)
    if not any(c.get("num") is not None for t in rendered for r in t["rows"] if not r["published"] for c in r["cells"]):
        # A table of published numbers only would read like a result: refused, saying why.
        suites = sorted({str(r.suite.get("name")) for r in runs})
        raise HarnessError(f"no run given measured any column of this layout (the runs are of suite {', '.join(suites)}); "
                           "give runs of the layout's suites, or a layout file for these")
    return rendered, sources


def _number(v: float | None, decimals: int) -> str | None:
    return None if v is None else f"{v:.{decimals}f}"


def _cell_text(cell: dict[str, Any], decimals: int, intervals: bool, bold: tuple[str, str], dash: str,
               interval: tuple[str, str] = (" [", "]"), partial: str = "*") -> str:
    text = _number(cell.get("num"), decimals)
    if text is None:
        return dash
    if cell.get("best"):
        text = f"{bold[0]}{text}{bold[1]}"
    if cell.get("partial"):
        text += partial
    ci = cell.get("ci95")
    if intervals and ci:
        text += f"{interval[0]}{ci[0]:.{decimals}f}, {ci[1]:.{decimals}f}{interval[1]}"
    return text


def _notes(rendered: dict[str, Any], sources: Sequence[str]) -> tuple[list[str], str]:
    """The sources cited by this table's published rows, and the footnote of its partial cells ("" for none)."""
    refs = sorted({c["ref"] for r in rendered["rows"] if r["published"] for c in r["cells"] if c.get("ref")})
    marks = [c["partial"] for r in rendered["rows"] if not r["published"] for c in [*r["cells"], r.get("avg") or {}] if c.get("partial")]
    # Why each marked value is not complete ("partial: 40 of 160", "data: 4 of 200 images"), each reason once.
    why = "; ".join(dict.fromkeys(m for m in marks if m != "partial")) or "an average over a partial value"
    return [f"[{k}] {sources[k - 1]}" for k in refs], (f"not a complete result ({why})" if marks else "")


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;").replace("*", "\\*").replace("_", "\\_")


def markdown(rendered: dict[str, Any], sources: Sequence[str], decimals: int = 1, intervals: bool = False) -> str:
    table: Table = rendered["table"]
    avg = table.average
    head = ["model", *(f"{g} {c.label}" for g, cols in table.groups for c in cols), *(["avg"] if avg else [])]
    lines = [f"**{_md(table.title)}**", "", "| " + " | ".join(_md(h) for h in head) + " |",
             "| --- |" + " ---: |" * (len(head) - 1)]
    for row in rendered["rows"]:
        label = _md(row["label"]) + (f" {DAGGER}" if row["published"] else "")
        cells = [_cell_text(c, decimals, intervals, ("**", "**"), "–", partial="\\*") for c in row["cells"]]
        if avg:
            cells.append(_cell_text(row.get("avg", {}), decimals, False, ("", ""), "–", partial="\\*"))
        lines.append("| " + " | ".join([label, *cells]) + " |")
    cited, partial = _notes(rendered, sources)
    lines.append("")
    lines.append("Measured by the harness, in percent; best measured value of a model (not a reference line) per column in bold."
                 + (" Intervals: bootstrap 95%." if intervals else ""))
    if cited:
        lines.append(f"{DAGGER} published, not measured: " + "; ".join(_md(c) for c in cited))
    if partial:
        lines.append("\\* " + _md(partial))
    if table.caption:
        lines += ["", _md(table.caption)]
    return "\n".join(lines) + "\n"


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                  "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "–": "--", "†": r"$^\dagger$", "<": r"\textless{}",
                  ">": r"\textgreater{}"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)  # other UTF-8 passes: pdflatex reads UTF-8 input


def latex(rendered: dict[str, Any], sources: Sequence[str], decimals: int = 1, intervals: bool = False) -> str:
    table: Table = rendered["table"]
    spec = "l" + "".join("c" * len(cols) for _, cols in table.groups) + ("c" if table.average else "")
    out = [r"\begin{table}[t]", r"\centering", rf"\caption{{{latex_escape(table.title)}}}",
           rf"\label{{tab:{latex_escape(table.id)}}}", rf"\begin{{tabular}}{{{spec}}}", r"\toprule"]
    groups, rules, start = [""], [], 2
    for label, cols in table.groups:
        groups.append(rf"\multicolumn{{{len(cols)}}}{{c}}{{{latex_escape(label)}}}")
        rules.append(rf"\cmidrule(lr){{{start}-{start + len(cols) - 1}}}")
        start += len(cols)
    if table.average:
        groups.append("")
    out += [" & ".join(groups) + r" \\", " ".join(rules)]
    out.append(" & ".join(["Model", *(latex_escape(c.label) for c in rendered["columns"]), *(["Avg"] if table.average else [])]) + r" \\")
    out.append(r"\midrule")
    measured = [r for r in rendered["rows"] if not r["published"]]
    published = [r for r in rendered["rows"] if r["published"]]
    for block in (measured, published):
        if not block:
            continue
        if block is published and measured:
            out.append(r"\midrule")
        for row in block:
            label = latex_escape(row["label"]) + (r"$^\dagger$" if row["published"] else "")
            cells = [_cell_text(c, decimals, intervals, (r"\textbf{", "}"), "--", (r" {\scriptsize[", "]}"), partial=r"$^*$")
                     for c in row["cells"]]
            if table.average:
                cells.append(_cell_text(row.get("avg", {}), decimals, False, ("", ""), "--", partial=r"$^*$"))
            out.append(" & ".join([label, *cells]) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}"]
    cited, partial = _notes(rendered, sources)
    notes = []
    if cited:
        notes.append(r"$^\dagger$ published, not measured: " + "; ".join(latex_escape(c) for c in cited) + ".")
    if partial:
        notes.append(r"$^*$ " + latex_escape(partial) + ".")
    if notes:
        out.append(r"\par\smallskip{\footnotesize " + r" \\ ".join(notes) + "}")
    out.append(r"\end{table}")
    return "\n".join(out) + "\n"


def standalone(body: str) -> str:
    return "\n".join([r"\documentclass{article}", r"\usepackage{booktabs}", r"\usepackage[T1]{fontenc}", r"\begin{document}",
                      body.rstrip("\n"), r"\end{document}"]) + "\n"


def csv_text(rendered: dict[str, Any], intervals: bool = True) -> str:
    table: Table = rendered["table"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    names = [f"{g} {c.label}" for g, cols in table.groups for c in cols]
    head = ["table", "model", "published"]
    for name in names:
        head += [name, *([f"{name} lo", f"{name} hi"] if intervals else [])]
    w.writerow([*head, *(["avg"] if table.average else []), "sources", "partial"])
    for row in rendered["rows"]:
        vals: list[Any] = [table.id, row["label"], "yes" if row["published"] else "no"]
        for c in row["cells"]:
            vals.append("" if c.get("num") is None else repr(float(c["num"])))
            if intervals:
                ci = c.get("ci95")
                vals += [repr(float(ci[0])), repr(float(ci[1]))] if ci else ["", ""]
        if table.average:
            num = row.get("avg", {}).get("num")
            vals.append("" if num is None else repr(float(num)))
        vals.append("; ".join(dict.fromkeys(c["source"] for c in row["cells"] if c.get("source"))))
        # the asterisk of Markdown and LaTeX: which values (and the average over them) are partial, and how
        marks = [f"{name} ({c['partial']})" for name, c in zip(names, row["cells"]) if c.get("partial")]
        vals.append("; ".join(marks + (["avg"] if table.average and (row.get("avg") or {}).get("partial") else [])))
        w.writerow(vals)
    return buf.getvalue()


def render(run_paths: Sequence[Path], layout: str, fmt: str = "markdown", intervals: bool = False, decimals: int = 1,
           table_id: str | None = None, aliases_file: Path | None = None, standalone_doc: bool = False,
           verify: int | str | None = "none", notes: list[str] | None = None) -> str:
    if fmt not in FORMATS:
        raise HarnessError(f"--format {fmt!r}: one of {', '.join(FORMATS)}")
    rendered, sources = build(run_paths, resolve_layout(layout, table_id), aliases_file, verify, notes)
    if fmt == "csv":
        return "\n".join(csv_text(t, intervals) for t in rendered)  # tables of other columns: blocks apart
    if fmt == "latex":
        body = "\n".join(latex(t, sources, decimals, intervals) for t in rendered)
        return standalone(body) if standalone_doc else body
    return "\n".join(markdown(t, sources, decimals, intervals) for t in rendered)
