"""The package's own structure rules, read from its source (ast): the layers of docs/ARCHITECTURE.md (a module imports
only from its own layer or those below it, never from a command) and no import circles; config groups are looked up
by name only in config.py and CLI entry points, no function takes more than five positional parameters, and no module
keeps mutable state at module level (process state lives in artifact.cell.session.Session)."""
from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

SOURCES = sorted((REPO / "artifact").rglob("*.py"))
# The axes, lowest first: a module may import from its own folder and the folders before it. Files at the top of
# artifact/ (and any __main__.py) are the commands: they may import anything, and nothing imports them.
LAYERS = ("core", "workload", "power", "models", "store", "cell", "sweep", "report")


def _module(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module(p): p for p in SOURCES}


def _is_command(module: str) -> bool:
    parts = module.split(".")
    return (len(parts) == 2 and parts[1] not in LAYERS) or parts[-1] == "__main__"


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else 0  # the root: __version__


def _imported(path: Path) -> set[str]:
    """The package's modules a module imports, at any depth of its code (function-level imports too)."""
    module = _module(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            found |= {f"{target}.{a.name}" if f"{target}.{a.name}" in MODULES else target for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {m for m in found if m in MODULES and m != module}


def test_no_module_imports_from_a_layer_above_it_or_from_a_command():
    offenders = []
    for module, path in MODULES.items():
        if _is_command(module):
            continue
        for target in sorted(_imported(path)):
            if _is_command(target) or _layer(target) > _layer(module):
                offenders.append(f"{module} imports {target}")
    assert offenders == []


def test_no_import_circles():
    graph = {module: _imported(path) for module, path in MODULES.items()}
    state: dict[str, str] = {}
    circles = []

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                circles.append(" -> ".join(trail[trail.index(target):] + [module, target]) if target in trail
                               else f"{module} -> {target}")
            elif target not in state:
                visit(target, trail + [module])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    assert circles == []


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _is_cli_entry(tree: ast.Module, path: Path) -> bool:
    if path.name == "__main__.py":
        return True
    return any(isinstance(node, ast.If) and "__name__" in ast.unparse(node.test) for node in tree.body)


# Modules that look config groups up by name though neither config nor a command, each with why.
GROUP_LOOKUP_ALLOWED = {
    "artifact/sweep/experiments.py": "an experiment's power-mode table lists conf/power blocks as declared data",
}


def test_config_groups_are_looked_up_only_by_config_and_cli_entry_points():
    callers = []
    for path in SOURCES:
        tree = _tree(path)
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
                 and ast.unparse(n.func).endswith(("load_group", "load_groups"))]
        if calls and path.name != "config.py" and not _is_cli_entry(tree, path):
            callers.append(str(path.relative_to(REPO)))
    assert sorted(callers) == sorted(GROUP_LOOKUP_ALLOWED)


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
