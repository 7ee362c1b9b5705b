"""include/warehouse/ in layers: the shared types in a leaf, the Warehouse protocol on them alone, and no
import circle anywhere in the package.

The imports are read from the source (ast), wherever they stand: at the top of a module, inside a
function or under ``TYPE_CHECKING``. An import moved into a function or behind ``TYPE_CHECKING``
still ties the two modules, so it cannot hide a circle here.
"""

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

from tests.support.paths import REPO_ROOT

PACKAGE = "include.warehouse"
FOLDER = REPO_ROOT / "include" / "warehouse"
MODULES = frozenset(path.stem for path in FOLDER.glob("*.py"))
LEAF = "shared"  # LoadResult, RefusedFile, StatusRefresh, the dialects, Execute
PROTOCOL = "base"  # the Warehouse protocol


def imported_names(node: ast.Import | ast.ImportFrom) -> list[str]:
    """The dotted names an import statement reads: a module, and each ``from`` name as a possible submodule."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level > 1:  # leaves this flat package
        return []
    module = ".".join(part for part in (PACKAGE if node.level else "", node.module or "") if part)
    return [module, *(f"{module}.{alias.name}" for alias in node.names)]


def package_imports(path: Path) -> set[str]:
    """The modules of the package that the file imports (itself left out)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import | ast.ImportFrom):
            for name in imported_names(node):
                if name.startswith(PACKAGE + "."):
                    found.add(name.removeprefix(PACKAGE + ".").split(".")[0])
    return (found & MODULES) - {path.stem}


def import_graph() -> dict[str, set[str]]:
    return {path.stem: package_imports(path) for path in FOLDER.glob("*.py")}


def test_the_graph_reads_every_form_of_import_the_package_could_use(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from typing import TYPE_CHECKING\n"
        "import include.warehouse.sql\n"
        "from include.warehouse import load\n"
        "from .discover import discover\n"
        "if TYPE_CHECKING:\n"
        "    from include.warehouse.status import StatusLoader\n"
        "def later():\n"
        "    from include.warehouse.duckdb_backend import DuckDBWarehouse\n"
        "from include.lake.store import ObjectStore\n"
    )
    assert package_imports(probe) == {"sql", "load", "discover", "status", "duckdb_backend"}


def test_the_warehouse_modules_import_each_other_without_a_circle():
    try:
        TopologicalSorter(import_graph()).prepare()
    except CycleError as error:
        pytest.fail("an import circle in include/warehouse: " + " -> ".join(error.args[1]))


def test_the_shared_types_are_a_leaf_that_imports_nothing_of_the_package():
    graph = import_graph()
    assert LEAF in graph, f"include/warehouse/{LEAF}.py holds the types every layer shares"
    assert graph[LEAF] == set()


def test_the_warehouse_protocol_stands_on_the_shared_types_alone():
    assert import_graph()[PROTOCOL] == {LEAF}
