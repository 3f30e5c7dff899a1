"""The ops of ``runtime/ops/detection.py``.

The detection ops (NonMaxSuppression, RoiAlign, GridSample): single nodes against
onnxruntime and typed errors that name the node, from the detection rows of the shared
tables in ``tests/op_cases.py``.
"""

from __future__ import annotations

import pytest
from op_cases import cases_of, errors_of


@pytest.mark.parametrize("case", cases_of("detection"))
def test_single_node_matches_onnxruntime(case):
    case.check()


@pytest.mark.parametrize("bad", errors_of("detection"))
def test_bad_input_is_a_typed_error_naming_the_node(bad):
    bad.check()
