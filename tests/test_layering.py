"""The engine's rooms import in one direction, each only from the rooms below it:

    vocabulary  <  data  <  score  <  records  <  publish  <  run  <  cli

- vocabulary: ``types``, ``errors``, ``masks``, ``answer``, ``resources``, ``files``, ``adapter``,
  ``registry``; they import no room. The adapters shipped with the engine (``builtin_adapters``)
  and the kit for writing adapters (``modelkit``) sit on the vocabulary alone too;
- data: suites, conventions and the readers of datasets;
- score: masks into per-sample scores and metrics;
- records: the run directory's one owner (logs, manifest, results) and its one reader, which verifies;
- publish: reports, leaderboards, gates, baselines, tables, comparisons; it only reads, through records;
- run: orchestrates and is the only writer of a run (a run ends by rendering its report through publish);
- cli: the ``harness`` command, one module per subcommand; nothing imports it but ``harness.__main__``.

Read statically (every import statement, the deferred ones inside functions and the type-only ones
under ``if TYPE_CHECKING:`` too), so a forbidden import fails here whether or not a test happens to
execute it. Import cycles are looked for in the same graph less the type-only imports, which never run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "harness"
ORDER = ("harness.data", "harness.score", "harness.records", "harness.publish", "harness.run", "harness.cli")
VOCABULARY = ("harness.types", "harness.geometry", "harness.errors", "harness.masks", "harness.answer", "harness.resources",
              "harness.files",
              "harness.adapter", "harness.registry")
ADAPTER_KITS = ("harness.builtin_adapters", "harness.modelkit")
# What each room may not import: every room above it (a prefix forbids the package and everything in it).
FORBIDDEN = {room: ORDER[k + 1:] for k, room in enumerate(ORDER)}
FORBIDDEN.update({mod: ORDER for mod in (*VOCABULARY, *ADAPTER_KITS)})
# Import cycles that remain, each to be broken (the test fails once one is gone, so that it is struck off here).
KNOWN_CYCLES: list[set[str]] = []


def module_name(path: Path, root: Path = ROOT) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _is_module(name: str, root: Path) -> bool:
    path = root.parent / name.replace(".", "/")
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(node: ast.AST, type_only: bool = False) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement in ``node``, at any depth, and whether it sits under ``if TYPE_CHECKING:``."""
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node, type_only
    elif isinstance(node, ast.If) and _type_checking(node.test):
        for child in node.body:
            yield from _import_nodes(child, True)
        for child in node.orelse:
            yield from _import_nodes(child, type_only)
    else:
        for child in ast.iter_child_nodes(node):
            yield from _import_nodes(child, type_only)


def imports_of(path: Path, root: Path = ROOT, with_type_only: bool = True) -> set[str]:
    """Every harness module a file imports, resolved to module names: ``from harness.records import locks``
    imports harness.records.locks, ``from harness.records.reader import StoredRun`` harness.records.reader."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node, type_only in _import_nodes(ast.parse(path.read_text(), str(path))):
        if type_only and not with_type_only:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "harness")
            continue
        if node.level:
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            mod = f"{base}.{node.module}" if node.module else base
        else:
            mod = node.module or ""
        if mod.split(".")[0] != "harness":
            continue
        for alias in node.names:
            found.add(f"{mod}.{alias.name}" if _is_module(f"{mod}.{alias.name}", root) else mod)
    return found


def graph(root: Path = ROOT, with_type_only: bool = True) -> dict[str, set[str]]:
    return {module_name(p, root): imports_of(p, root, with_type_only) for p in sorted(root.rglob("*.py"))}


def _under(mod: str, prefix: str) -> bool:
    return mod == prefix or mod.startswith(prefix + ".")


def violations(g: dict[str, set[str]]) -> list[str]:
    out = []
    for mod, deps in g.items():
        for owner, banned in FORBIDDEN.items():
            if _under(mod, owner):
                out += [f"{mod} imports {d}" for d in sorted(deps) if any(_under(d, b) for b in banned)]
        if mod != "harness.__main__" and not _under(mod, "harness.cli"):
            out += [f"{mod} imports the CLI ({d})" for d in sorted(deps) if _under(d, "harness.cli")]
    return sorted(set(out))


def cycles(g: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (or a module importing itself), by Tarjan."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(g.get(v, ())):
            if w not in g:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                component.add(w)
                if w == v:
                    break
            if len(component) > 1 or v in g.get(v, ()):
                out.append(component)

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_the_rooms_import_only_downstream() -> None:
    assert violations(graph()) == []


def test_no_import_cycles_but_the_known_ones() -> None:
    found = cycles(graph(with_type_only=False))
    assert [c for c in found if c not in KNOWN_CYCLES] == [], "import cycles between harness modules"
    assert [c for c in KNOWN_CYCLES if c not in found] == [], "a known cycle is gone: strike it off KNOWN_CYCLES"


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    """A harness package with the rooms as empty packages, plus ``files`` (path under tmp_path -> source)."""
    root = tmp_path / "harness"
    for pkg in ("", "data", "score", "records", "publish", "publish/report", "run", "cli", "modelkit"):
        (root / pkg).mkdir(parents=True, exist_ok=True)
        (root / pkg / "__init__.py").write_text("")
    for mod in ("types", "errors", "masks"):
        (root / f"{mod}.py").write_text("")
    for rel, source in files.items():
        (tmp_path / rel).write_text(source + "\n")
    return root


@pytest.mark.parametrize(("mod", "line", "why"), [
    ("harness/publish/x.py", "from harness.run.config import build_config", "harness.publish.x imports harness.run.config"),
    ("harness/publish/x.py", "def f():\n    from harness.run import finish", "harness.publish.x imports harness.run"),
    ("harness/records/x.py", "from harness.publish import gate", "harness.records.x imports harness.publish"),
    ("harness/records/x.py", "from ..publish.report import render_report", "harness.records.x imports harness.publish.report"),
    ("harness/score/x.py", "import harness.records.store", "harness.score.x imports harness.records.store"),
    ("harness/score/x.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from harness.records.reader import StoredRun",
     "harness.score.x imports harness.records.reader"),
    ("harness/data/x.py", "def f():\n    from harness.score.metrics import summarize", "harness.data.x imports harness.score.metrics"),
    ("harness/data/x.py", "from harness.run.config import load_config_file", "harness.data.x imports harness.run.config"),
    ("harness/types.py", "from harness.data.suites import Suite", "harness.types imports harness.data.suites"),
    ("harness/modelkit/x.py", "from harness.records import store", "harness.modelkit.x imports harness.records"),
    ("harness/run/x.py", "from harness.cli import main", "harness.run.x imports harness.cli"),
    ("harness/publish/x.py", "from harness.cli.gate import main", "harness.publish.x imports harness.cli.gate"),
    ("harness/masks.py", "import harness.cli", "harness.masks imports harness.cli"),
    ("harness/x.py", "from harness.cli import main", "harness.x imports the CLI (harness.cli)"),
])
def test_an_upward_import_is_found(tmp_path: Path, mod: str, line: str, why: str) -> None:
    found = violations(graph(_tree(tmp_path, {mod: line})))
    assert why in found, found


def test_downward_imports_pass(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"harness/cli/x.py": "from harness.run import config\nfrom harness.publish import gate",
                            "harness/run/x.py": "from harness.publish.report import render_report",
                            "harness/publish/x.py": "from harness.records import store\nfrom harness.types import Sample",
                            "harness/__main__.py": "from harness.cli import main"})
    assert violations(graph(root)) == []


def test_a_cycle_is_found_and_a_type_only_one_is_not(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"harness/publish/a.py": "from harness.publish.b import f",
                            "harness/publish/b.py": "def f():\n    from harness.publish import a",
                            "harness/records/c.py": "def g():\n    from harness.records.d import h",
                            "harness/records/d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                                    "    from harness.records.c import g\nh = 1"})
    assert cycles(graph(root, with_type_only=False)) == [{"harness.publish.a", "harness.publish.b"}]
    assert {"harness.records.c", "harness.records.d"} in cycles(graph(root))  # counted, the type-only edge is a cycle
