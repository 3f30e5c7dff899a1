"""ONNX's official backend test suite against the numba engine.

``onnx.backend.test.BackendTest`` builds the node tests in memory from the
generators in the installed onnx package and runs the real-model tests whose
(light) models ship in it, with their expected outputs. ONNX_HOME points into a
temp folder.

What runs is derived from the op registry, not from a hand-kept list: every node
test (function-expanded variants included) whose ops the engine claims at the
test's opset, plus the real models, less the exclusions listed with their reasons
in ``tests/node_suite.py``. Every exclusion and every real-model pattern must match a
test that would otherwise run (``test_every_pattern_matches``), so a rename in onnx or
an op that starts passing cannot leave a stale line behind, and the node tests derived
from the registry must be tests of the suite. The suite's tests are marked slow; these checks
are not, so a plain run (``-m "not slow"``) makes them.
"""

from __future__ import annotations

import os
import re
import tempfile

import onnx.backend.test
import pytest
from node_suite import EXCLUDED, claimed_node_tests

from runtime.onnx_backend import NumbaBackend

# The real-model tests that ship with onnx (light versions of the zoo models).
REAL_MODELS = [
    r"^test_bvlc_alexnet",
    r"^test_densenet121",
    r"^test_inception_v1",
    r"^test_inception_v2",
    r"^test_resnet50",
    r"^test_shufflenet",
    r"^test_squeezenet",
    r"^test_vgg19",
    r"^test_zfnet512",
]


def _suite():
    os.environ.setdefault("ONNX_HOME", tempfile.mkdtemp(prefix="onnx_home_"))
    suite = onnx.backend.test.BackendTest(NumbaBackend, __name__)
    names = "|".join(re.escape(n) for n in claimed_node_tests())
    suite.include(rf"^({names})$")
    for pattern in REAL_MODELS:
        suite.include(pattern)
    for pattern in EXCLUDED:
        suite.exclude(pattern)
    return suite


_backend_test = _suite()
# The suite's tests are slow; the pattern checks below are not, so they run by default.
globals().update({name: pytest.mark.slow(case) for name, case in _backend_test.test_cases.items()})


def _candidates() -> list[str]:
    """Every test the suite would run before exclusions (CPU variants)."""
    real = [
        m
        for m in dir(_backend_test.test_cases["OnnxBackendRealModelTest"])
        if m.endswith("_cpu") and any(re.search(p, m) for p in REAL_MODELS)
    ]
    return list(claimed_node_tests()) + real


@pytest.mark.parametrize("pattern", [*REAL_MODELS, *EXCLUDED])
def test_every_pattern_matches(pattern: str) -> None:
    """A real-model or exclusion pattern that matches nothing is a stale line."""
    assert any(re.search(pattern, name) for name in _candidates()), (
        f"pattern {pattern!r} matches no test the suite would run"
    )


def test_the_node_test_include_matches_the_suite() -> None:
    """The node tests derived from the registry are many, and each is a test of the
    suite: an include that matched nothing would run nothing and pass."""
    claimed = claimed_node_tests()
    assert len(claimed) > 1000, len(claimed)
    suite = set(dir(_backend_test.test_cases["OnnxBackendNodeModelTest"]))
    missing = [name for name in claimed if name not in suite]
    assert not missing, f"claimed node tests the suite does not have: {missing[:10]}"
