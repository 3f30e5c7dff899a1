"""The ops of ``runtime/ops/detection.py``.

The detection ops (NonMaxSuppression, RoiAlign, GridSample): single nodes against
onnxruntime, the detection cases of the shared table (``tests/op_cases.py``).
"""

from __future__ import annotations

import pytest
from op_cases import cases_of


@pytest.mark.parametrize("case", cases_of("detection"))
def test_single_node_matches_onnxruntime(case):
    case.check()
