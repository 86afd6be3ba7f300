"""The code keeps the shape STYLE.md asks for: no module needs a second reason to change
(over 400 lines, or no docstring saying what it is for), and no function needs scrolling."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[2] / "src" / "binderq"
MODULES = sorted(SOURCE.rglob("*.py"))
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 50


def _name(path: Path) -> str:
    return str(path.relative_to(SOURCE.parent))


def test_the_source_tree_is_found():
    assert len(MODULES) > 40


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_each_module_is_short_and_says_what_it_is_for(path):
    text = path.read_text()
    assert text.count("\n") <= MAX_MODULE_LINES
    assert ast.get_docstring(ast.parse(text)), "a module docstring states its one reason"


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_no_function_is_longer_than_fifty_lines(path):
    long = [f"{node.name}: {node.end_lineno - node.lineno + 1} lines"
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long
