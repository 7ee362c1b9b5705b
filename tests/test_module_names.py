"""No module of the project shares a name with a package it imports, or with one installed beside it.

A module named like a third-party package shadows it wherever its folder is on ``sys.path``: Airflow
puts ``dags/`` and ``plugins/`` there, ``streamlit run`` the app's folder, ``python -m`` the current one.
"""

from __future__ import annotations

import ast
import importlib.machinery
import sys
from pathlib import Path

from tests.support.paths import REPO_ROOT

CODE_FOLDERS = ("include", "dashboard", "bench", "plugins", "dags")
TOP_LEVEL_FOLDERS = ("dags", "plugins")  # Airflow imports their modules by their bare names
PROJECT_PATHS = {REPO_ROOT, *(REPO_ROOT / folder for folder in TOP_LEVEL_FOLDERS)}


def project_modules() -> list[Path]:
    return sorted(path for folder in CODE_FOLDERS for path in (REPO_ROOT / folder).rglob("*.py"))


def imported_top_levels(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def own_names(path: Path) -> set[str]:
    """The names a module answers to below its top folder: each subfolder of its path, and its own."""
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts[1:]
    return {part for part in parts if part != "__init__"}


def test_no_module_is_named_like_a_package_it_imports():
    clashes = {
        str(path.relative_to(REPO_ROOT)): sorted(own_names(path) & imported_top_levels(path))
        for path in project_modules()
    }
    assert {path: names for path, names in clashes.items() if names} == {}


def installed_elsewhere(name: str) -> bool:
    """Whether ``name`` is importable from outside this repo (site-packages, the standard library)."""
    if name in sys.builtin_module_names:
        return True
    outside = [entry for entry in sys.path if entry and Path(entry).resolve() not in PROJECT_PATHS]
    return importlib.machinery.PathFinder.find_spec(name, outside) is not None


def test_modules_airflow_imports_by_bare_name_shadow_nothing_installed():
    bare = [path.stem for folder in TOP_LEVEL_FOLDERS for path in (REPO_ROOT / folder).glob("*.py")]
    bare += [folder for folder in CODE_FOLDERS if (REPO_ROOT / folder / "__init__.py").exists()]
    assert [name for name in bare if installed_elsewhere(name)] == []
