"""The ops of ``runtime/ops/reduce.py``.

The reductions, ArgMax/ArgMin, TopK and CumSum: single nodes against onnxruntime, the
reduce cases of the shared table (``tests/op_cases.py``).
"""

from __future__ import annotations

import pytest
from op_cases import cases_of


@pytest.mark.parametrize("case", cases_of("reduce"))
def test_single_node_matches_onnxruntime(case):
    case.check()
