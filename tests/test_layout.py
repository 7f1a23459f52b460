"""The folder rules of container/, read from the imports of every module (with ``ast``; imports
inside functions and ``importlib.import_module("...")`` with a literal name count too):

- container/worker/ never imports container.node, container.router or container.ctl;
- nothing outside container/router/ imports crossbar;
- container/ctl/ imports neither container.node nor container.router.

And the tests' own: what they share lives in tests/support/, and no test module imports
another test module.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.paths import ROOT, TESTS

PACKAGE = ROOT / "container"
MAX_LINES = 450


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every module the module at ``path`` imports."""
    return imports_in(path.read_text(encoding="utf-8"), module_name(path),
                      package=path.name == "__init__.py")


def imports_in(source: str, module: str, package: bool = False) -> list[tuple[int, str]]:
    """(line, module) for every import in ``source``, the text of ``module``. ``from a import
    b`` yields ``a`` and ``a.b`` (b may be a submodule); relative imports are made absolute."""
    here = module.split(".") if package else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = here[: len(here) - node.level + 1] if node.level else []
            name = ".".join([*base, *(node.module.split(".") if node.module else [])])
            found.append((node.lineno, name))
            found += [(node.lineno, f"{name}.{alias.name}") for alias in node.names]
        elif (isinstance(node, ast.Call) and _is_dynamic_import(node.func) and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.append((node.lineno, node.args[0].value))
    return found


def _is_dynamic_import(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id in ("__import__", "import_module")
    return isinstance(func, ast.Attribute) and func.attr == "import_module"


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def within(name: str, *prefixes: str) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def violations(folder: str, forbidden: tuple[str, ...], *, outside: bool = False) -> list[str]:
    """``FILE:LINE imports NAME`` for every import of ``forbidden`` in the modules under
    ``container/<folder>/`` (with ``outside``: in every module *not* under it)."""
    found = []
    for path in modules():
        inside = within(module_name(path), f"container.{folder}")
        if inside == outside:
            continue
        for line, name in imported_names(path):
            if within(name, *forbidden):
                found.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    return sorted(set(found))


def test_the_rules_see_imports_of_every_kind():
    source = ("import crossbar.router\n"
              "from . import sibling\n"
              "def later():\n"
              "    from ..node import plan\n"
              "    importlib.import_module('crossbar.personality')\n")
    assert [name for _, name in imports_in(source, "container.worker.probe")] == [
        "crossbar.router", "container.worker", "container.worker.sibling",
        "container.node", "container.node.plan", "crossbar.personality"]
    assert ("container.worker", 1) in [
        (name, line) for line, name in imports_in("from . import x", "container.worker", True)]


def test_the_package_has_the_four_program_folders():
    folders = {path.name for path in PACKAGE.iterdir() if (path / "__init__.py").exists()}
    assert {"worker", "node", "router", "ctl"} <= folders


def test_the_worker_imports_neither_the_node_nor_the_router_nor_ctl():
    forbidden = ("container.node", "container.router", "container.ctl")
    assert violations("worker", forbidden) == []


def test_only_the_router_folder_imports_crossbar():
    assert violations("router", ("crossbar",), outside=True) == []


def test_ctl_imports_neither_the_node_nor_the_router():
    assert violations("ctl", ("container.node", "container.router")) == []


def test_what_the_tests_share_lives_in_support():
    """Outside tests/support/ (and the test apps) there are only test modules and conftest."""
    helpers = [str(path.relative_to(ROOT)) for path in sorted(TESTS.rglob("*.py"))
               if not path.is_relative_to(TESTS / "support")
               and not path.is_relative_to(TESTS / "apps")
               and not path.is_relative_to(TESTS / "configs")
               and not path.name.startswith("test_")
               and path.name not in ("conftest.py", "__init__.py")]
    assert helpers == []


def test_no_test_module_imports_another():
    found = []
    for path in sorted(TESTS.rglob("test_*.py")):
        for line, name in imported_names(path):
            parts = name.split(".")
            if parts[0] == "tests" and any(part.startswith("test_") for part in parts):
                found.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert sorted(set(found)) == []


def test_no_module_is_over_the_line_limit():
    lengths = {str(path.relative_to(ROOT)): len(path.read_text(encoding="utf-8").splitlines())
               for path in modules()}
    assert {name: n for name, n in lengths.items() if n > MAX_LINES} == {}
