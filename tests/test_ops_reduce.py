"""The ops of ``runtime/ops/reduce.py``.

The reductions, ArgMax/ArgMin, TopK and CumSum: single nodes against onnxruntime and
typed errors that name the node, from the reduce rows of the shared tables in
``tests/op_cases.py``.
"""

from __future__ import annotations

import pytest
from op_cases import cases_of, errors_of


@pytest.mark.parametrize("case", cases_of("reduce"))
def test_single_node_matches_onnxruntime(case):
    case.check()


@pytest.mark.parametrize("bad", errors_of("reduce"))
def test_bad_input_is_a_typed_error_naming_the_node(bad):
    bad.check()
