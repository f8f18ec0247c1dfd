"""`harness --help` and `harness list` import only what they print; a subcommand's module is imported when it is chosen."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness import cli
from harness.data.yamlfile import read_yaml

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("numpy", "PIL", "torch", "tqdm", "pandas", "jinja2")

# Runs the CLI in a fresh interpreter, then prints which heavy top-level packages ended up imported.
_WRAPPER = """
import json, runpy, sys
sys.argv = ["harness", *sys.argv[1:]]
try:
    runpy.run_module("harness", run_name="__main__")
except SystemExit:
    pass
sys.stdout.flush()
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules} & set(HEAVY))), file=sys.stderr)
""".replace("HEAVY", repr(HEAVY))


def _imported(*argv: str) -> tuple[str, list[str]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", _WRAPPER, *argv], capture_output=True, text=True, env=env, check=True)
    return proc.stdout, json.loads(proc.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize("argv", [("--help",), ("list",), (), ("run", "--help")])
def test_help_and_list_import_no_heavy_package(argv: tuple[str, ...]) -> None:
    out, heavy = _imported(*argv)
    assert heavy == []
    assert ("models:" in out) if argv == ("list",) else ("usage: harness" in out)


def test_chosen_lazy_command_is_imported() -> None:
    out, heavy = _imported("gate", "--help")
    assert "numpy" in heavy  # the spy works: the gate module (numpy) is loaded once `gate` is chosen
    assert "--max-drop" in out


def _help(parser_argv: list[str], full: bool) -> str:
    parser = cli.build_parser(parser_argv, full=full)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), pytest.raises(SystemExit):
        parser.parse_args([*parser_argv, "--help"])
    return buf.getvalue()


def test_top_level_help_is_unchanged_by_lazy_registration() -> None:
    text = _help([], full=False)
    assert text == _help([], full=True)
    assert "{" + ",".join(cli.LAZY_COMMANDS) + "}" in text  # every command, in the table's order


SUBCOMMANDS = [["env", "create"], ["env", "list"], ["env", "remove"], ["baseline", "save"], ["data", "check"], ["data", "layout"]]


@pytest.mark.parametrize("argv", [[name] for name in cli.LAZY_COMMANDS] + SUBCOMMANDS)
def test_subcommand_help_is_unchanged_by_lazy_registration(argv: list[str]) -> None:
    assert _help(argv, full=False) == _help(argv, full=True)


@pytest.mark.parametrize("name", list(cli.LAZY_COMMANDS))
def test_each_command_parses_to_its_own_module(name: str) -> None:
    module = importlib.import_module(cli.LAZY_COMMANDS[name][0])
    parser = cli.build_parser([name], full=False)
    chosen = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    assert chosen.get_default("func") is module.main
    assert chosen.description == getattr(module, "DESCRIPTION", None)


def test_lazy_command_parses_to_its_module_function() -> None:
    args = cli.build_parser(["gate", "r", "--baseline", "b"], full=False).parse_args(["gate", "r", "--baseline", "b"])
    from harness.cli import gate

    assert args.func is gate.main and args.max_drop == 0.5


def test_c_yaml_loader_reads_suites_like_the_python_one() -> None:
    if not getattr(yaml, "__with_libyaml__", False):
        pytest.skip("PyYAML built without libyaml")
    suites = sorted(ROOT.glob("suites/*.yaml")) + sorted(ROOT.glob("reports/*.yaml"))
    assert suites
    for path in suites:
        assert read_yaml(path) == yaml.safe_load(path.read_text(encoding="utf-8")), path
