"""The import rules of the house style, kept by an import graph read from the source (AST)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, *, top_level_only: bool) -> set[str]:
    """The absolute names `path` imports; with `top_level_only`, only those run at import time
    (not inside a function, nor under `if TYPE_CHECKING`)."""
    tree = ast.parse(path.read_text(), str(path))
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            elif top_level_only and isinstance(
                node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
            ):
                continue
            else:
                visit(
                    [child for child in ast.iter_child_nodes(node) if isinstance(child, ast.stmt)]
                )

    visit(tree.body)
    return found


def graph(root: str, *, top_level_only: bool) -> dict[str, set[str]]:
    """Module -> the modules of `root` it imports (a `from pkg import name` counts as `pkg`
    and, when `name` is a module, as `pkg.name`)."""
    files = {module_name(path): path for path in (ROOT / root).rglob("*.py")}
    files = {name: path for name, path in files.items() if ".migrations." not in name}
    return {
        name: {
            target
            for target in imports_of(path, top_level_only=top_level_only)
            if target in files and target != name
        }
        for name, path in files.items()
    }


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in edges.get(node, ()):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            connect(node)
    return found


def all_imports(root: str) -> dict[str, set[str]]:
    """Module -> every name it imports anywhere (in functions too)."""
    return {
        module_name(path): imports_of(path, top_level_only=False)
        for path in (ROOT / root).rglob("*.py")
        if "migrations" not in path.parts
    }


def is_under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


# (which modules, imports they may not make, why).
FORBIDDEN: list[tuple[str, str, str]] = [
    ("shared", "enexa", "shared is standard library only, for both sides"),
    ("shared", "amperio", "shared is standard library only, for both sides"),
    ("shared", "django", "shared is standard library only, for both sides"),
    ("enexa", "amperio", "the platform and the middleware meet only on the wire"),
    ("amperio", "enexa", "the platform and the middleware meet only on the wire"),
    ("enexa.core", "enexa.api", "the kernel knows no HTTP layer"),
    ("enexa.core", "django.http", "the kernel knows no HTTP"),
    ("enexa.core", "rest_framework", "the kernel knows no HTTP"),
    ("*services", "enexa.api", "services take plain values and raise domain errors"),
    ("amperio.modbus", "requests", "the Modbus layer knows no HTTP"),
    ("amperio.modbus", "httpx", "the Modbus layer knows no HTTP"),
    ("amperio.modbus", "urllib.request", "the Modbus layer knows no HTTP"),
    ("amperio.modbus", "django", "the Modbus layer knows no HTTP"),
    ("amperio - amperio.api", "django", "Amperio's domain imports no Django (api/ is its HTTP)"),
    ("amperio - amperio.api", "rest_framework", "Amperio's domain imports no Django"),
]
# Calls go one way, tasks -> gateway -> packages: the packages never call back up.
for _package in ("telemetry", "dispatch", "enexa_link", "modbus"):
    FORBIDDEN += [
        (f"amperio.{_package}", f"amperio.{up}", "calls go tasks -> gateway -> packages")
        for up in ("gateway", "tasks", "celery")
    ]

# Package roots checked for circles at module level; imports inside functions are left out
# (each says why it is there: models loaded after app registry, or a dependency that would
# otherwise run both ways).
CYCLE_FREE = ["enexa", "amperio", "shared"]


def source_modules(pattern: str, modules: dict[str, set[str]]) -> list[str]:
    """The modules a rule is about: a package (`enexa.core`), `*name` for every module (or
    package) of that name, e.g. every app's `services`, or `package - subpackage`."""
    if " - " in pattern:
        package, _, left_out = pattern.partition(" - ")
        return [m for m in modules if is_under(m, package) and not is_under(m, left_out)]
    if pattern.startswith("*"):
        suffix = pattern[1:]
        return [m for m in modules if m.split(".")[-1] == suffix or f".{suffix}." in f"{m}."]
    return [m for m in modules if is_under(m, pattern)]


@pytest.mark.parametrize(("source", "target", "why"), FORBIDDEN)
def test_no_module_makes_a_forbidden_import(source, target, why):
    root = "enexa" if source.startswith("*") else source.split(".")[0].split(" ")[0]
    modules = all_imports(root)
    sources = source_modules(source, modules)
    assert sources, f"the rule names no module: {source}"
    offenders = {
        module: sorted(name for name in modules[module] if is_under(name, target))
        for module in sources
    }
    assert {m: names for m, names in offenders.items() if names} == {}, why


@pytest.mark.parametrize("root", CYCLE_FREE)
def test_no_package_has_an_import_circle(root):
    assert cycles(graph(root, top_level_only=True)) == []


def test_the_cycle_check_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
