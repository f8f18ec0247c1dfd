"""Every code block and link of README.md, docs/*.md and the adapters' READMEs is checked as a user would use it.

- YAML blocks parse; a run config (a mapping with ``models:`` or ``suite:``) loads through the
  harness's own config builder, and its suite and splits exist (``Suite.select_splits``).
- Shell blocks: each command line (``\\`` continuations joined, ``&&``/``;``/``|`` split) is tokenised
  with ``shlex``; a ``harness`` command (also ``python -m harness`` and ``torchrun ... -m harness``)
  is parsed by the real argparse parser, and its ``--suite``/``--splits`` checked against the suite.
  GPU-only lines are parsed and validated, not run. ``torchrun`` comes with torch, which the
  engine's own virtualenv does not have: it must be called from a model's environment
  (``.../envs/<name>/bin/torchrun``). A ``python benchmarks/<script>.py`` line names a script that
  exists, with options it takes.
- Python blocks run, in a fresh directory holding ``runs/pair`` (the run the docs make with
  ``harness run --models shapes-reasoner,oracle-box --out runs/pair``, here with a --limit).
- Relative links resolve to a file of the repository, and a ``#fragment`` to one of its headings.
- The README's command table names every subcommand.

tests/test_readme_examples.py runs the README's own-model examples end to end.
"""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest
import yaml

from harness.cli import build_parser, main
from harness.data.suites import load_suite
from harness.run.config import build_config

ROOT = Path(__file__).resolve().parents[1]
READMES = [ROOT / "README.md", *sorted(ROOT.glob("docs/*.md")), *sorted(ROOT.glob("adapters/*/README.md"))]
FENCE = re.compile(r"^(\s*)```(\S*)\s*$")
SHELL = {"bash", "sh", "shell", "console"}
YAML = {"yaml", "yml"}
PYTHON = {"python", "py"}


def blocks(path: Path) -> list[tuple[str, int, str]]:
    """(language, first line number, text) of each fenced block."""
    out, lang, start, body, indent = [], None, 0, [], ""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        m = FENCE.match(line)
        if lang is None and m:
            lang, start, body, indent = m.group(2).lower(), number + 1, [], m.group(1)
        elif lang is not None and m and m.group(2) == "":
            out.append((lang, start, "\n".join(body)))
            lang = None
        elif lang is not None:
            body.append(line[len(indent):] if line.startswith(indent) else line)
    assert lang is None, f"{path}: unclosed code block at line {start - 1}"
    return out


def _id(value: object) -> str:
    return value if isinstance(value, str) and len(value) < 60 and ":" in value else ""


def _cases(kinds: set[str]) -> list[tuple[str, int, str]]:
    return [(f"{p.relative_to(ROOT)}:{start}", start, text) for p in READMES for lang, start, text in blocks(p) if lang in kinds]


def commands(text: str) -> list[list[str]]:
    """The simple commands of a shell block, tokenised (comments dropped). A usage synopsis's optional
    parts (``[--metric ciou,giou]``) are unbracketed, so that every option it shows is parsed too."""
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        tokens = [t.removeprefix("[").removesuffix("]") if t.startswith("[") or (t.endswith("]") and "[" not in t) else t
                  for t in shlex.split(line, comments=True)]
        command: list[str] = []
        for token in [*tokens, ";"]:
            if token in ("&&", ";", "|", "||", "&") or token.endswith(";"):
                if token.endswith(";") and token != ";":
                    command.append(token[:-1])
                if command:
                    out.append(command)
                command = []
            else:
                command.append(token)
    return out


def harness_argv(command: list[str]) -> list[str] | None:
    """The harness arguments of a command that runs the harness, else None."""
    words = [w for w in command if not re.match(r"^[A-Z_][A-Z0-9_]*=", w)]  # VAR=value prefixes
    if not words:
        return None
    exe = Path(words[0]).name
    if exe == "harness":
        return words[1:]
    if exe.startswith(("python", "torchrun")) and "-m" in words:
        i = words.index("-m")
        if i + 1 < len(words) and words[i + 1] == "harness":
            return words[i + 2:]
    return None


def check_harness(argv: list[str], where: str) -> None:
    parser = build_parser(argv, full=True)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse's error exit
        raise AssertionError(f"{where}: `harness {' '.join(argv)}` does not parse (exit {exc.code})") from None
    if getattr(args, "command", None) == "run":
        config = build_config(config_file=None, models=args.models, suite=args.suite, splits=args.splits)
        load_suite(config.suite).select_splits(list(config.splits) or None)
    suite = getattr(args, "suite", None)
    if args.command != "run" and isinstance(suite, str):
        load_suite(suite)


@pytest.mark.parametrize(("where", "start", "text"), _cases(SHELL), ids=_id)
def test_shell_block(where: str, start: int, text: str) -> None:
    cmds = commands(text)
    assert cmds, f"{where}: an empty shell block"
    for command in cmds:
        words = [w for w in command if not re.match(r"^[A-Z_][A-Z0-9_]*=", w)]
        if words and Path(words[0]).name == "torchrun":
            assert re.search(r"/envs/[^/]+/bin/torchrun$", words[0]), (
                f"{where}: `{' '.join(command)}`: torchrun comes with torch, which the engine's virtualenv does not "
                "have; call it from a model's environment (.../envs/<name>/bin/torchrun)")
        argv = harness_argv(command)
        if argv is not None:
            check_harness(argv, where)
        elif len(words) > 1 and Path(words[0]).name.startswith("python") and words[1].startswith("benchmarks/"):
            check_bench_script(words[1], words[2:], where)


def check_bench_script(script: str, args: list[str], where: str) -> None:
    """A performance script the docs run exists and takes the options they give it."""
    path = ROOT / script
    assert path.is_file(), f"{where}: `python {script}`: no such script"
    text = path.read_text(encoding="utf-8")
    for option in (a.split("=")[0] for a in args if a.startswith("--")):
        assert f'"{option}"' in text, f"{where}: `python {script}` takes no option {option}"


@pytest.mark.parametrize(("where", "start", "text"), _cases(YAML), ids=_id)
def test_yaml_block(where: str, start: int, text: str, tmp_path: Path) -> None:
    data = yaml.safe_load(text)
    assert data is not None, f"{where}: an empty YAML block"
    if isinstance(data, dict) and ({"models", "suite"} & set(data)):
        path = tmp_path / "run.yaml"
        path.write_text(text, encoding="utf-8")
        config = build_config(config_file=path)
        load_suite(config.suite).select_splits(list(config.splits) or None)


def test_the_readmes_have_blocks_to_check() -> None:
    assert len(_cases(SHELL)) >= 10 and len(_cases(YAML)) >= 4


def test_a_wrong_split_or_option_fails(tmp_path: Path) -> None:
    """The checks can fail: an unknown split, an unknown option and a bare torchrun are caught."""
    with pytest.raises(Exception, match="split"):
        test_yaml_block("x", 1, "suite: refcoco\nsplits: [val]\nmodels:\n  segzero: {}\n", tmp_path)
    with pytest.raises(Exception, match="split"):
        test_shell_block("x", 1, "harness run --models segzero --suite refcoco --splits val")
    with pytest.raises(AssertionError, match="does not parse"):
        test_shell_block("x", 1, "pip install -e . && harness run --no-such-option")
    with pytest.raises(AssertionError, match="torchrun"):
        test_shell_block("x", 1, "torchrun --nproc-per-node 8 -m harness run --suite shapes")


# -- Python blocks -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pair_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding runs/pair, as the docs make it (limited here to a few samples per split)."""
    home = tmp_path_factory.mktemp("docs-run")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HARNESS_CACHE", str(home / "cache"))
        mp.chdir(home)
        assert main(["run", "--models", "shapes-reasoner,oracle-box", "--out", "runs/pair", "--limit", "12", "--no-report"]) == 0
    return home


@pytest.mark.parametrize(("where", "start", "text"), _cases(PYTHON), ids=_id)
def test_python_block(where: str, start: int, text: str, pair_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "runs").symlink_to(pair_run / "runs", target_is_directory=True)
    monkeypatch.setenv("HARNESS_CACHE", str(pair_run / "cache"))
    monkeypatch.chdir(tmp_path)
    code = compile(text, where, "exec")
    exec(code, {"__name__": "__docs__"})


# -- links -------------------------------------------------------------------------------------------

LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*$", text, flags=re.M)}


def links(path: Path) -> list[tuple[int, str]]:
    out = []
    fenced = False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            out += [(number, m.group(1)) for m in LINK.finditer(line)]
    return out


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    broken = []
    for number, target in links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...: not ours to check
            continue
        file, _, fragment = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        where = f"{path.name}:{number}: {target}"
        if not dest.exists() or root.resolve() not in dest.parents:
            broken.append(f"{where} (no such file in the repository)")
        elif fragment and dest.is_file() and fragment not in anchors(dest):
            broken.append(f"{where} (no heading #{fragment} in {dest.name})")
    return broken


@pytest.mark.parametrize("path", READMES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path: Path) -> None:
    broken = broken_links(path)
    assert not broken, f"{path.relative_to(ROOT)}: " + "; ".join(broken)


def test_the_link_check_can_fail(tmp_path: Path) -> None:
    assert slug("results.json source digest") == "resultsjson-source-digest"
    assert slug("Plugins: an adapter distribution") == "plugins-an-adapter-distribution"
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A page\n\n## Its part\n\n```\n# not a heading\n```\n")
    page = tmp_path / "b.md"
    page.write_text("[ok](docs/a.md#its-part) [x](https://example.org/#nothing) [gone](docs/c.md)\n"
                    "[bad](docs/a.md#not-a-heading) [out](../elsewhere.md)\n")
    assert broken_links(page, tmp_path) == [
        "b.md:1: docs/c.md (no such file in the repository)",
        "b.md:2: docs/a.md#not-a-heading (no heading #not-a-heading in a.md)",
        "b.md:2: ../elsewhere.md (no such file in the repository)",
    ]


# -- the command table -------------------------------------------------------------------------------


def test_the_readme_command_table_names_every_subcommand() -> None:
    parser = build_parser([], full=True)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("## Commands"):readme.index("## Evaluate your own model")]
    rows = [line for line in table.splitlines() if line.startswith("| `harness ")]
    named = {re.match(r"\| `harness (\S+?)[` ]", row).group(1) for row in rows}  # type: ignore[union-attr]
    assert named == set(sub.choices), f"README command table: {sorted(named)} vs the parser's {sorted(sub.choices)}"
