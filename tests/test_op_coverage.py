"""Every registered op version has a parity case, and every case table runs.

For each (op, since) in the registry (``runtime/ops/registry.py``), one of:

* a row of the shared single-node table (``tests/op_cases.py``, run against
  onnxruntime by ``tests/test_ops_<family>.py``) whose opset resolves to it;
* a node test of ONNX's suite that ``tests/test_conformance.py`` runs (claimed and
  not excluded) with a node of that op at an opset that resolves to it (each case's
  model says its opset in ``opset_import``).

What has neither is listed in ``UNCOVERED`` with its reason; an entry that no longer
applies (covered now, or no longer registered) fails, as ``test_conformance``'s
exclusions do. And each family that has rows in a table has its test file, which
runs them.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pytest
from node_suite import claimed, excluded, node_cases, opset_of
from op_cases import CASES, ERRORS, TOO_LARGE

from runtime.ops import resolve
from runtime.ops.registry import OPS

TESTS = Path(__file__).resolve().parent
UNCOVERED = {
    ("GroupNormalization", 18): (
        "onnxruntime dropped this version (scale and bias per group) and the node suite "
        "tests it at 21: tests/test_ops_normalization.py checks it against the formula"
    ),
}


def _registered() -> list[tuple[str, int]]:
    return [(op, v.since) for op, versions in sorted(OPS.items()) for v in versions]


@lru_cache(maxsize=1)
def _covered() -> dict[tuple[str, int], str]:
    """(op, since) -> the first case that runs that version: a table row or a node test."""
    covered: dict[tuple[str, int], str] = {}
    for case in CASES:
        version = case.version()
        covered.setdefault((version.op_type, version.since), f"op_cases: {case.op}-{case.opset}")
    for case in node_cases():
        name = f"{case.name}_cpu"
        if not claimed(case) or excluded(name):
            continue
        opset = opset_of(case.model)
        for node in case.model.graph.node:
            version = resolve(node.op_type, opset)
            covered.setdefault((version.op_type, version.since), f"node suite: {name}")
    return covered


def test_every_registered_op_version_has_a_parity_case():
    covered = _covered()
    missing = [k for k in _registered() if k not in covered and k not in UNCOVERED]
    assert not missing, (
        f"registered op versions with no case in tests/op_cases.py and no node test that "
        f"test_conformance runs: {missing}"
    )


@pytest.mark.parametrize("key", list(UNCOVERED), ids=[f"{op}-{since}" for op, since in UNCOVERED])
def test_every_uncovered_entry_still_applies(key):
    """A version listed as uncovered is registered and still has no case."""
    assert key in _registered(), f"{key} is not registered: remove it from UNCOVERED"
    assert key not in _covered(), f"{key} is covered by {_covered()[key]}: remove it from UNCOVERED"


@pytest.mark.parametrize(
    ("table", "runner"),
    [(CASES, "cases_of"), (ERRORS, "errors_of"), (TOO_LARGE, "too_large_of")],
    ids=["CASES", "ERRORS", "TOO_LARGE"],
)
def test_every_family_with_rows_runs_them(table, runner):
    """A row runs only in its family's file: a family without one would not run."""
    for family in sorted({row.family() for row in table}):
        path = TESTS / f"test_ops_{family}.py"
        assert path.exists(), f"{runner}: rows of runtime/ops/{family}.py but no {path.name}"
        assert f'{runner}("{family}")' in path.read_text(), f"{path.name} does not run {runner}"
