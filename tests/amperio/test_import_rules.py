"""Amperio's import rules, read from the source: no import circle at module level, the Modbus
layer knows no HTTP, the domain knows no Django, and calls go tasks -> gateway -> packages."""

from __future__ import annotations

import ast
from pathlib import Path

from amperio.procs import REPO_DIR

PACKAGE = REPO_DIR / "amperio"
HTTP = ("requests", "httpx", "django", "rest_framework", "urllib.request")
DJANGO = ("django", "rest_framework")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_DIR).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(name: str, *, module_level_only: bool) -> set[str]:
    """What module `name` imports: every module named, resolved to an Amperio module where the
    name is one (`from amperio.dispatch import store` is amperio.dispatch.store)."""
    tree = ast.parse(MODULES[name].read_text())
    if module_level_only:  # statements at the top, also inside `if` and `try` blocks there
        nodes = [n for top in tree.body if not _in_function(top) for n in ast.walk(top)]
    else:
        nodes = list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(name, node)
            for alias in node.names:
                child = f"{base}.{alias.name}"
                found.add(child if child in MODULES else base)
    return found


def _absolute(name: str, node: ast.ImportFrom) -> str:
    """The module an ImportFrom names, relative ones (`from .outbox import`) made absolute."""
    if node.level == 0:
        return node.module or ""
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def _in_function(node: ast.AST) -> bool:
    return isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))


def cycle_from(start: str, graph: dict[str, set[str]]) -> list[str] | None:
    """A path from `start` back to itself, if there is one."""
    stack = [(start, [start])]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        for nxt in graph.get(node, ()):
            if nxt == start:
                return [*path, start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return None


def offending(names: list[str], banned: tuple[str, ...]) -> dict[str, set[str]]:
    out = {}
    for name in names:
        bad = {
            imported
            for imported in imports(name, module_level_only=False)
            if any(imported == b or imported.startswith(b + ".") for b in banned)
        }
        if bad:
            out[name] = bad
    return out


def test_no_amperio_module_imports_itself_back_in_a_circle():
    graph = {
        name: {m for m in imports(name, module_level_only=True) if m in MODULES} for name in MODULES
    }
    circles = {name: cycle for name in MODULES if (cycle := cycle_from(name, graph))}
    assert circles == {}


def test_the_modbus_layer_imports_no_http_library():
    assert offending([n for n in MODULES if n.startswith("amperio.modbus")], HTTP) == {}


def test_the_gateway_domain_imports_no_django():
    domain = [n for n in MODULES if not n.startswith("amperio.api")]
    assert offending(domain, DJANGO) == {}


def test_the_packages_never_call_back_into_the_gateway_or_its_tasks():
    packages = ("amperio.telemetry", "amperio.dispatch", "amperio.enexa_link", "amperio.modbus")
    inner = [n for n in MODULES if n.startswith(packages)]
    assert offending(inner, ("amperio.gateway", "amperio.tasks", "amperio.celery")) == {}
