"""Reading Seg-Zero's scripts from the checkout (HARNESS_SEGZERO_REPO): the values and functions they run.

The scripts are ``main()`` programs that load 7B models, so nothing in them can be imported as is.
These helpers parse a script with ``ast`` and hand back what it *uses*: a module-level string
(``QUESTION_TEMPLATE``), an argparse default, the keyword arguments of a call (``generate``), a
shell script's variable, and a module-level function (``extract_bbox_points_think``) compiled
from the checkout's own source and run with the modules it names. Nothing is copied: every value
comes from the file at test time, so a change upstream (or here) shows as a failing test.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any


def tree(repo: Path, relative: str) -> ast.Module:
    return ast.parse((repo / relative).read_text(encoding="utf-8"), filename=str(repo / relative))


def _walk(node: ast.AST) -> list[ast.AST]:
    return list(ast.walk(node))


def assigned(module: ast.Module, name: str) -> Any:
    """The literal value of the (last) assignment ``name = <literal>`` anywhere in the script."""
    found = [n.value for n in _walk(module) if isinstance(n, ast.Assign)
             and any(isinstance(t, ast.Name) and t.id == name for t in n.targets)]
    if not found:
        raise LookupError(f"no assignment to {name}")
    return ast.literal_eval(found[-1])


def template_format_call(module: ast.Module, template: str = "QUESTION_TEMPLATE") -> ast.Call:
    """The ``<template>.format(Question=..., Answer=...)`` call that builds the user text."""
    calls = [n for n in _walk(module) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
             and n.func.attr == "format" and isinstance(n.func.value, ast.Name) and n.func.value.id == template]
    if len(calls) != 1:
        raise LookupError(f"expected one {template}.format call, found {len(calls)}")
    return calls[0]


def user_text(module: ast.Module, text: str) -> str:
    """What the script's own ``QUESTION_TEMPLATE.format(...)`` expression gives for one query text."""
    from types import SimpleNamespace

    call = template_format_call(module)
    namespace = {"QUESTION_TEMPLATE": assigned(module, "QUESTION_TEMPLATE"), "item": {"text": text},
                 "args": SimpleNamespace(text=text)}
    return eval(compile(ast.Expression(call), "<upstream>", "eval"), namespace)


def argparse_default(module: ast.Module, option: str) -> Any:
    for n in _walk(module):
        if (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "add_argument"
                and n.args and isinstance(n.args[0], ast.Constant) and n.args[0].value == option):
            for kw in n.keywords:
                if kw.arg == "default":
                    return ast.literal_eval(kw.value)
    raise LookupError(f"no default for {option}")


def call_keywords(module: ast.Module, method: str) -> dict[str, Any]:
    """The literal keyword arguments of the (one) ``<x>.<method>(...)`` call."""
    calls = [n for n in _walk(module) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == method]
    if len(calls) != 1:
        raise LookupError(f"expected one .{method}( call, found {len(calls)}")
    out = {}
    for kw in calls[0].keywords:
        if kw.arg is not None:
            try:
                out[kw.arg] = ast.literal_eval(kw.value)
            except ValueError:
                out[kw.arg] = ast.unparse(kw.value)
    return out


def resize_calls(module: ast.Module) -> list[str]:
    """The source of every ``<image>.resize(...)`` call."""
    return [ast.unparse(n) for n in _walk(module) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
            and n.func.attr == "resize"]


def function(module: ast.Module, name: str, **modules: Any) -> Any:
    """The module-level function ``name`` compiled from the checkout's source, its globals ``modules``."""
    [node] = [n for n in module.body if isinstance(n, ast.FunctionDef) and n.name == name]
    namespace: dict[str, Any] = dict(modules)
    exec(compile(ast.Module(body=[node], type_ignores=[]), f"<upstream {name}>", "exec"), namespace)
    return namespace[name]


def shell_variable(repo: Path, relative: str, name: str) -> str:
    """The value of the last uncommented ``NAME="value"`` line of a shell script."""
    values = re.findall(rf'^\s*{name}="?([^"\n]*)"?\s*$', (repo / relative).read_text(encoding="utf-8"), re.MULTILINE)
    if not values:
        raise LookupError(f"{relative} sets no {name}")
    return values[-1]


def shell_python_scripts(repo: Path, relative: str) -> list[str]:
    """The Python scripts a shell script runs (``python path/to/x.py``)."""
    return re.findall(r"^\s*python\s+(\S+\.py)", (repo / relative).read_text(encoding="utf-8"), re.MULTILINE)
