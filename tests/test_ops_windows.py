"""The ops of ``runtime/ops/windows.py``.

The windowed ops (LpPool, ...): single nodes against onnxruntime, the windows cases of
the shared table (``tests/op_cases.py``).
"""

from __future__ import annotations

import pytest
from op_cases import cases_of


@pytest.mark.parametrize("case", cases_of("windows"))
def test_single_node_matches_onnxruntime(case):
    case.check()
