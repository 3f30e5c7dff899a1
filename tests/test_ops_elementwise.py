"""The ops of ``runtime/ops/elementwise.py``.

The broadcasting arithmetic, Relu, LeakyRelu, Tanh, Sigmoid, Clip and Cast: single nodes
against onnxruntime, from the elementwise rows of the shared tables in
``tests/op_cases.py``.
"""

from __future__ import annotations

import pytest
from op_cases import cases_of


@pytest.mark.parametrize("case", cases_of("elementwise"))
def test_single_node_matches_onnxruntime(case):
    case.check()
