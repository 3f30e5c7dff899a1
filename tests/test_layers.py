"""The packages' layers, read from their imports: each imports only the layers below it.

dataio     numpy only: the dataset readers and atomic file writes
runtime    the torch-free engine and session API
training   torch: models, training, export; uses dataio
cnn        the tools and the command line: compare, bench, bisect, summary, images;
           uses runtime, dataio and (lazily) training
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = {
    "dataio": set(),
    "runtime": set(),
    "training": {"dataio"},
    "cnn": {"dataio", "runtime", "training"},
}


def _project_imports(path: Path) -> set[str]:
    """The project packages a module imports anywhere in it (lazy imports too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found.update(n.split(".")[0] for n in names if n.split(".")[0] in ALLOWED)
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_the_layers_below(package):
    wrong = {
        str(path.relative_to(ROOT)): sorted(_project_imports(path) - ALLOWED[package] - {package})
        for path in sorted((ROOT / package).rglob("*.py"))
    }
    assert not {k: v for k, v in wrong.items() if v}, wrong
