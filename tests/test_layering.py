"""The engine's rooms import in one direction: data and score below records; run (the only writer of a
run) and publish (which only reads, through records) above it.

Read statically (every import statement, the deferred ones inside functions too), so a
forbidden import fails here whether or not a test happens to execute it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "harness"
# The machinery that starts and drives model processes; publishing a run never needs it.
WORKER_MACHINERY = ("harness.run.worker", "harness.run.remote", "harness.run.channel", "harness.run.runner")
# The writers of a run directory: publish only reads (through harness.records.reader).
RUN_WRITERS = ("harness.run.finish", "harness.run.merge", "harness.run.rescore", "harness.run.rescore_log")
# What each room may not import (a prefix forbids the room and everything below it).
FORBIDDEN = {
    "harness.data": ("harness.run", "harness.records", "harness.score", "harness.publish"),
    "harness.score": ("harness.run", "harness.records", "harness.publish"),
    "harness.records": ("harness.run", "harness.publish"),
    "harness.publish": WORKER_MACHINERY + RUN_WRITERS,
}
# The shared vocabulary sits below every room.
VOCABULARY = ("harness.types", "harness.adapter", "harness.errors", "harness.masks", "harness.answer", "harness.resources",
              "harness.files")


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every harness module a file names in an import, resolved to module paths."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("harness"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            if not mod.startswith("harness"):
                continue
            found.add(mod)
            # `from harness.records import locks` imports the module harness.records.locks.
            found.update(f"{mod}.{a.name}" for a in node.names if (ROOT.parent / mod.replace(".", "/") / f"{a.name}.py").exists()
                         or (ROOT.parent / mod.replace(".", "/") / a.name).is_dir())
    return found


def graph(root: Path = ROOT) -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in sorted(root.rglob("*.py"))}


def _under(mod: str, prefix: str) -> bool:
    return mod == prefix or mod.startswith(prefix + ".")


def violations(g: dict[str, set[str]]) -> list[str]:
    out = []
    for mod, deps in g.items():
        for room, banned in FORBIDDEN.items():
            if _under(mod, room):
                out += [f"{mod} imports {d}" for d in sorted(deps) if any(_under(d, b) for b in banned)]
        out += [f"{mod} imports the CLI" for d in deps if _under(d, "harness.cli") and mod != "harness.__main__"]
        if mod in VOCABULARY:
            out += [f"{mod} (shared vocabulary) imports {d}" for d in sorted(deps)
                    if any(_under(d, r) for r in ("harness.data", "harness.run", "harness.records", "harness.score", "harness.publish"))]
    return out


def test_the_rooms_import_only_downstream() -> None:
    assert violations(graph()) == []


def test_publish_reaches_no_worker_machinery_even_indirectly() -> None:
    g = graph()
    for start in [m for m in g if _under(m, "harness.publish")]:
        seen, todo = set(), [start]
        while todo:
            m = todo.pop()
            for d in g.get(m, ()):
                if d not in seen and d in g:
                    seen.add(d)
                    todo.append(d)
        assert not [m for m in seen if m in WORKER_MACHINERY], f"{start} reaches {sorted(m for m in seen if m in WORKER_MACHINERY)}"


@pytest.mark.parametrize(("mod", "line", "why"), [
    ("harness/data/x.py", "from harness.run.config import load_config_file", "harness.data.x imports harness.run.config"),
    ("harness/score/x.py", "from harness.publish import gate", "harness.score.x imports harness.publish"),
    ("harness/score/x.py", "def f():\n    from ..publish.report import render_report", "harness.score.x imports harness.publish.report"),
    ("harness/score/x.py", "import harness.records.store", "harness.score.x imports harness.records.store"),
    ("harness/records/x.py", "from harness.run import finish", "harness.records.x imports harness.run"),
    ("harness/publish/x.py", "from harness.run.finish import finish", "harness.publish.x imports harness.run.finish"),
    ("harness/publish/x.py", "from harness.run.remote import make_adapter", "harness.publish.x imports harness.run.remote"),
    ("harness/run/x.py", "from harness.cli import main", "harness.run.x imports the CLI"),
])
def test_a_forbidden_import_is_found(tmp_path: Path, mod: str, line: str, why: str) -> None:
    root = tmp_path / "harness"
    for pkg in ("data", "run", "records", "score", "publish", "publish/report"):
        (root / pkg).mkdir(parents=True, exist_ok=True)
        (root / pkg / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (tmp_path / mod).write_text(line + "\n")
    global ROOT
    saved, ROOT = ROOT, root
    try:
        found = violations(graph(root))
    finally:
        ROOT = saved
    assert any(why in v for v in found), found
