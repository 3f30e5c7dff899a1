"""The ops of ``runtime/ops/math.py``.

The unary and n-ary math (Erf, Sqrt, Pow, Mod, Max, Mean, BitShift, ...): single nodes
against onnxruntime, the math cases of the shared table (``tests/op_cases.py``).
"""

from __future__ import annotations

import pytest
from op_cases import cases_of


@pytest.mark.parametrize("case", cases_of("math"))
def test_single_node_matches_onnxruntime(case):
    case.check()
