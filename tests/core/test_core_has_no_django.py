"""The core must stay framework-agnostic: nothing under tracking_adapter/ imports Django."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "tracking_adapter"


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_no_module_in_the_core_imports_django():
    offenders = {
        str(path.relative_to(CORE.parent)): sorted(
            name for name in _imported_modules(path) if name.split(".")[0] == "django"
        )
        for path in CORE.rglob("*.py")
    }
    offenders = {path: names for path, names in offenders.items() if names}
    assert offenders == {}


def test_importing_the_whole_core_does_not_load_django():
    code = (
        "import pkgutil, importlib, sys, tracking_adapter\n"
        "for info in pkgutil.walk_packages(tracking_adapter.__path__, 'tracking_adapter.'):\n"
        "    if info.name == 'tracking_adapter.__main__': continue\n"
        "    importlib.import_module(info.name)\n"
        "loaded = sorted(m for m in sys.modules if m == 'django' or m.startswith('django.'))\n"
        "print(loaded)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
