"""dataio/progress.py: bars only on a terminal (or when asked), one line per stage in a
log; training and the tools both use it."""

from __future__ import annotations

import ast
import io
from pathlib import Path

import pytest

from dataio.progress import progress, wants_bar

ROOT = Path(__file__).resolve().parents[1]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_one_line_per_stage():
    log = io.StringIO()
    with progress(500, "epoch 1/3", unit="batch", stream=log) as bar:
        for _ in range(500):
            bar.update(1)
            bar.set_postfix(loss="0.5000")
    text = log.getvalue()
    assert "\r" not in text and text.count("\n") == 1
    assert text.startswith("epoch 1/3: 500/500 batch in ") and text.endswith(", loss=0.5000\n")


def test_no_line_when_the_caller_prints_its_own_and_nothing_when_hidden():
    log = io.StringIO()
    with progress(10, "validate", line=False, stream=log) as bar:
        bar.update(10)
    with progress(10, "rank 1", show=False, stream=log, bar=True) as bar:
        bar.update(10)
    assert log.getvalue() == ""


def test_a_terminal_gets_a_bar_and_so_does_progress_flag():
    pytest.importorskip("tqdm")
    term = _Terminal()
    with progress(50, "agreement", stream=term) as bar:
        for _ in range(50):
            bar.update(1)
    assert "\r" in term.getvalue() and "agreement" in term.getvalue()
    forced = io.StringIO()
    with progress(5, "forced", bar=True, stream=forced) as bar:
        bar.update(5)
    assert "\r" in forced.getvalue()
    assert wants_bar(None, _Terminal()) and not wants_bar(None, io.StringIO())
    assert not wants_bar(False, _Terminal()) and wants_bar(True, io.StringIO())


@pytest.mark.parametrize("path", ["training/train.py", "cnn/worker.py", "cnn/cli.py"])
def test_training_and_tools_use_the_shared_helper(path):
    """No module draws its own tqdm bar: every one goes through dataio.progress."""
    imports = _imports(ROOT / path)
    assert "dataio.progress" in imports
    assert not any(m.startswith("tqdm") for m in imports)


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_no_module_but_the_helper_imports_tqdm():
    users = [
        str(path.relative_to(ROOT))
        for package in ("cnn", "dataio", "training", "runtime")
        for path in sorted((ROOT / package).rglob("*.py"))
        if any(m.split(".")[0] == "tqdm" for m in _imports(path))
    ]
    assert users == ["dataio/progress.py"]
