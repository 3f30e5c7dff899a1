"""The ops of ``runtime/ops/windows.py``.

The windowed ops (LpPool, ...): single nodes against onnxruntime and typed errors that
name the node, from the windows rows of the shared tables in ``tests/op_cases.py``.
"""

from __future__ import annotations

import pytest
from op_cases import cases_of, errors_of


@pytest.mark.parametrize("case", cases_of("windows"))
def test_single_node_matches_onnxruntime(case):
    case.check()


@pytest.mark.parametrize("bad", errors_of("windows"))
def test_bad_input_is_a_typed_error_naming_the_node(bad):
    bad.check()
