"""The package's own structure rules, read from its source (ast): config groups are looked up by name only in
config.py and CLI entry points, no function takes more than five positional parameters, and no module keeps
mutable state at module level (process state lives in artifact.session.Session)."""
from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

SOURCES = sorted((REPO / "artifact").rglob("*.py"))


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _is_cli_entry(tree: ast.Module, path: Path) -> bool:
    if path.name == "__main__.py":
        return True
    return any(isinstance(node, ast.If) and "__name__" in ast.unparse(node.test) for node in tree.body)


def test_config_groups_are_looked_up_only_by_config_and_cli_entry_points():
    callers = []
    for path in SOURCES:
        tree = _tree(path)
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and ast.unparse(n.func).endswith("load_group")]
        if calls and path.name != "config.py" and not _is_cli_entry(tree, path):
            callers.append(str(path.relative_to(REPO)))
    assert callers == []


def test_no_function_takes_more_than_five_positional_parameters():
    offenders = []
    for path in SOURCES:
        for node in ast.walk(_tree(path)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                positional = [a.arg for a in node.args.posonlyargs + node.args.args if a.arg not in ("self", "cls")]
                if len(positional) > 5:
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name}({', '.join(positional)})")
    assert offenders == []


def test_no_module_level_mutable_state():
    """Module-level assignments hold constants only (no dict/list/set built empty or by a call, no lru_cache)."""
    offenders = []
    for path in SOURCES:
        tree = _tree(path)
        for node in tree.body:
            if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
                empty = isinstance(node.value, (ast.Dict, ast.List, ast.Set)) and not (
                    getattr(node.value, "keys", None) or getattr(node.value, "elts", None))
                if empty:
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno} {ast.unparse(node)}")
            if isinstance(node, ast.FunctionDef) and any("lru_cache" in ast.unparse(d) or "cache" == ast.unparse(d)
                                                         for d in node.decorator_list):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno} @lru_cache {node.name}")
            if isinstance(node, ast.Global):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno} global")
        for node in ast.walk(tree):
            if isinstance(node, ast.Global):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno} global {', '.join(node.names)}")
    assert offenders == []
