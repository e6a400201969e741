"""The code base's shape rules that a reviewer would otherwise have to check by hand."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Beyond this many positional parameters a function takes one context object instead.
MAX_POSITIONAL = 6


def test_no_function_takes_more_than_six_positional_parameters() -> None:
    crowded = []
    for package in ("recorder", "queries"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    count = len(node.args.posonlyargs) + len(node.args.args)
                    if count > MAX_POSITIONAL:
                        crowded.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert not crowded, crowded


def test_recorder_never_imports_queries() -> None:
    offenders = []
    for path in sorted((ROOT / "recorder").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            offenders += [
                f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] == "queries"
            ]
    assert not offenders, offenders
