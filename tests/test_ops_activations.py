"""The ops of ``runtime/ops/activations.py``.

The activations (Elu, Selu, Gelu, HardSwish, Mish, PRelu, Hardmax, ...): single nodes
against onnxruntime, the activations cases of the shared table (``tests/op_cases.py``).
"""

from __future__ import annotations

import pytest
from op_cases import cases_of


@pytest.mark.parametrize("case", cases_of("activations"))
def test_single_node_matches_onnxruntime(case):
    case.check()
