"""The package's shape, read from its source: imports point one way (model <- engine <- io <-
runner, batch <- cli, gui), with no cycle, imports inside functions included; no module over 600
lines and no function body over 60."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "annolid_depth"
MAX_MODULE_LINES = 600
MAX_BODY_LINES = 60
SHARED = {"annolid_depth", "annolid_depth.errors", "annolid_depth.settings", "annolid_depth.background",
          "annolid_depth.weights"}  # the leaves every layer may use (settings and weights reach only model)
# what each layer must never import (a module's layer: its subpackage, else its own name)
FORBIDDEN = {
    "model": {"engine", "io", "runner", "recompute", "batch", "cli", "gui", "export", "download_weights", *SHARED},
    "engine": {"io", "runner", "recompute", "batch", "cli", "gui", "export", "download_weights"},
    "io": {"engine", "runner", "recompute", "batch", "cli", "gui", "export", "download_weights"},
    "runner": {"batch", "cli", "gui", "export", "download_weights"},
    "recompute": {"batch", "cli", "gui", "export", "download_weights"},
    "batch": {"cli", "gui", "export", "download_weights"},
    "errors": {"*"},
    "background": {"*"},
    "settings": {"engine", "io", "runner", "recompute", "batch", "cli", "gui", "export", "weights"},
    "weights": {"engine", "io", "runner", "recompute", "batch", "cli", "gui", "export"},
}


def module_name(path: Path) -> str:
    parts = ("annolid_depth", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py")) if "_standalone" not in path.parts}


MODULES = sources()


def imported(name: str, path: Path) -> set[str]:
    """The package's modules that `name` imports anywhere in its file, functions included."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:  # a name inside a module: the module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


GRAPH = {name: imported(name, path) for name, path in MODULES.items()}


def layer(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "annolid_depth"


def test_no_import_cycle():
    done, path, cycles = set(), [], []

    def visit(node):
        if node in path:
            cycles.append(path[path.index(node):] + [node])
            return
        if node in done:
            return
        path.append(node)
        for target in sorted(GRAPH[node]):
            if not target.startswith(node + "."):  # a package importing its own modules is not a cycle
                visit(target)
        path.pop()
        done.add(node)

    for node in sorted(GRAPH):
        visit(node)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_imports_point_one_way():
    against = []
    for name, targets in GRAPH.items():
        banned = FORBIDDEN.get(layer(name), set())
        for target in targets:
            if layer(target) == layer(name) and target != "annolid_depth":
                continue
            if "*" in banned and target.startswith("annolid_depth"):
                against.append(f"{name} -> {target}")
            elif layer(target) in banned or target in banned:
                against.append(f"{name} -> {target}")
    assert not against, "\n".join(sorted(against))


def test_the_rules_see_real_imports():
    """The reader finds relative, absolute and in-function imports (or the rules above check nothing)."""
    assert "annolid_depth.model" in GRAPH["annolid_depth.engine.offline"]
    assert "annolid_depth.io.records" in GRAPH["annolid_depth.runner"]
    assert "annolid_depth.runner" in GRAPH["annolid_depth.batch"]  # imported inside run_one


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_and_functions_stay_small(name):
    path = MODULES[name]
    text = path.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= MAX_MODULE_LINES, f"{path} has {len(text.splitlines())} lines"
    long = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body[1:] if ast.get_docstring(node) else node.body
            lines = body[-1].end_lineno - body[0].lineno + 1 if body else 0
            if lines > MAX_BODY_LINES:
                long.append(f"{node.name} ({lines} lines)")
    assert not long, f"{path}: " + ", ".join(long)
