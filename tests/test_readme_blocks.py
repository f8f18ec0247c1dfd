"""Every shell and YAML block of README.md and the adapters' READMEs is checked as a user would run it.

- YAML blocks parse; a run config (a mapping with ``models:`` or ``suite:``) loads through the
  harness's own config builder, and its suite and splits exist (``Suite.select_splits``).
- Shell blocks: each command line (``\\`` continuations joined, ``&&``/``;``/``|`` split) is tokenised
  with ``shlex``; a ``harness`` command (also ``python -m harness`` and ``torchrun ... -m harness``)
  is parsed by the real argparse parser, and its ``--suite``/``--splits`` checked against the suite.
  GPU-only lines are parsed and validated, not run. ``torchrun`` comes with torch, which the
  engine's own virtualenv does not have: it must be called from a model's environment
  (``.../envs/<name>/bin/torchrun``).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from harness.cli import build_parser
from harness.data.suites import load_suite
from harness.run.config import build_config

ROOT = Path(__file__).resolve().parents[1]
READMES = [ROOT / "README.md", *sorted(ROOT.glob("adapters/*/README.md"))]
FENCE = re.compile(r"^(\s*)```(\S*)\s*$")
SHELL = {"bash", "sh", "shell", "console"}
YAML = {"yaml", "yml"}


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
