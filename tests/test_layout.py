"""The layout rules of docs/architecture.md, checked on the source with ``ast`` (nothing is imported).

* ``gateway/**`` imports nothing from ``handlers/`` or ``schema/`` — except the App modules that
  wire everything together (``gateway/app.py``, ``gateway/__main__.py``); ``schema/**`` imports
  nothing from ``handlers/``. Every import counts here, wherever it stands.
* No import cycles among the product modules. Counted: module-level imports (also inside ``try``,
  ``if`` and class bodies), because those run at import time. Not counted: imports under
  ``if TYPE_CHECKING:`` (they never run) and imports inside functions (they run late, on purpose).
  Importing ``a.b.c`` also runs ``a/__init__`` and ``a/b/__init__``, so those count as edges too,
  except a module's own parent packages (structure, not a dependency).
* No module over 300 lines and no class over 250 lines without a reason: a ``# layout:`` comment
  in the module's first 20 lines (naming the class, for a long class).
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("gateway", "handlers", "schema")
APP_MODULES = {"gateway.app", "gateway.__main__"}
MAX_MODULE_LINES = 300
MAX_CLASS_LINES = 250
REASON_MARK = "# layout:"


def product_modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the product packages."""
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_time_statements(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """Imports that run when the module is imported (not in functions, not under TYPE_CHECKING)."""
    for statement in body:
        if isinstance(statement, ast.Import | ast.ImportFrom):
            yield statement
        elif isinstance(statement, ast.If):
            if not _is_type_checking(statement.test):
                yield from _import_time_statements(statement.body)
            yield from _import_time_statements(statement.orelse)
        elif isinstance(statement, ast.Try):
            for block in (statement.body, statement.orelse, statement.finalbody):
                yield from _import_time_statements(block)
            for handler in statement.handlers:
                yield from _import_time_statements(handler.body)
        elif isinstance(statement, ast.ClassDef):
            yield from _import_time_statements(statement.body)


def _all_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node


def imported_names(module: str, path: Path, node: ast.Import | ast.ImportFrom, known: dict[str, Path]) -> list[str]:
    """The dotted names an import statement refers to (``from a import b`` -> ``a.b`` if a module)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, base] if base else package)
    return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]


def import_graph() -> dict[str, set[str]]:
    """module -> product modules it runs at import time (including the packages on the way)."""
    modules = product_modules()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        edges: set[str] = set()
        for node in _import_time_statements(ast.parse(path.read_text(encoding="utf-8")).body):
            for name in imported_names(module, path, node, modules):
                parts = name.split(".")
                for end in range(1, len(parts) + 1):
                    target = ".".join(parts[:end])
                    if target in modules and target != module and not module.startswith(target + "."):
                        edges.add(target)
        graph[module] = edges
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_services_import_neither_handlers_nor_schema() -> None:
    modules = product_modules()
    wrong = []
    for module, path in modules.items():
        top = module.split(".")[0]
        if module in APP_MODULES or top == "handlers":
            continue
        forbidden = ("handlers", "schema") if top == "gateway" else ("handlers",)
        for node in _all_imports(ast.parse(path.read_text(encoding="utf-8"))):
            for name in imported_names(module, path, node, modules):
                if name.split(".")[0] in forbidden:
                    wrong.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {name}")
    assert wrong == [], "arrows point handlers -> schema -> gateway services:\n" + "\n".join(wrong)


def test_no_import_cycles() -> None:
    assert import_cycles(import_graph()) == []


def test_the_cycle_finder_finds_cycles() -> None:
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def _reasons(path: Path) -> str:
    head = path.read_text(encoding="utf-8").splitlines()[:20]
    return "\n".join(line for line in head if line.strip().startswith(REASON_MARK))


@pytest.mark.parametrize("path", sorted(product_modules().values()), ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_and_classes_stay_small(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    reasons = _reasons(path)
    lines = len(text.splitlines())
    assert lines <= MAX_MODULE_LINES or reasons, f"{lines} lines: split it, or say why at its top ({REASON_MARK})"
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ClassDef):
            assert node.end_lineno is not None
            size = node.end_lineno - node.lineno + 1
            assert size <= MAX_CLASS_LINES or node.name in reasons, (
                f"class {node.name} has {size} lines: split it, or name it in a {REASON_MARK} comment at the top"
            )


@pytest.mark.parametrize("module", sorted(product_modules()), ids=str)
def test_every_product_module_imports(module: str) -> None:
    """mypy runs with ignore_missing_imports: a module path broken by a move would pass it silently."""
    if module.endswith("__main__"):
        return
    importlib.import_module(module)
