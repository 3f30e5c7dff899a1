"""The ops of ``runtime/ops/logic.py``.

The comparisons and boolean ops: single nodes against onnxruntime, the logic cases of
the shared table (``tests/op_cases.py``).
"""

from __future__ import annotations

import pytest
from op_cases import cases_of


@pytest.mark.parametrize("case", cases_of("logic"))
def test_single_node_matches_onnxruntime(case):
    case.check()
