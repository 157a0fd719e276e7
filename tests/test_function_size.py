"""No function in ``nbpro_pipeline`` or ``assets_defs`` is longer than 60 lines: a longer one is a place to
redesign (DESIGN.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import assets_defs
import nbpro_pipeline

LIMIT = 60
PACKAGES = [Path(nbpro_pipeline.__file__).parent, Path(assets_defs.__file__).parent]
ROOT = PACKAGES[0].parent


def long_functions(source: str, limit: int = LIMIT) -> list[tuple[str, int]]:
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > limit:
                out.append((node.name, length))
    return out


def test_no_function_is_longer_than_60_lines():
    found = {
        path.relative_to(ROOT).as_posix(): long_functions(path.read_text())
        for package in PACKAGES
        for path in sorted(package.rglob("*.py"))
    }
    assert {name: fns for name, fns in found.items() if fns} == {}


def test_the_size_check_notices_a_long_function():
    body = "\n".join(f"    x{i} = {i}" for i in range(LIMIT))
    assert long_functions(f"def f():\n{body}\n") == [("f", LIMIT + 1)]
    assert long_functions("async def g():\n    return 1\n") == []
