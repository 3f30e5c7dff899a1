"""The ops of ``runtime/ops/activations.py``.

The activations (Elu, Selu, Gelu, HardSwish, Mish, PRelu, Hardmax, ...): single nodes
against onnxruntime and typed errors that name the node, from the activations rows of
the shared tables in ``tests/op_cases.py``.
"""

from __future__ import annotations

import pytest
from op_cases import cases_of, errors_of


@pytest.mark.parametrize("case", cases_of("activations"))
def test_single_node_matches_onnxruntime(case):
    case.check()


@pytest.mark.parametrize("bad", errors_of("activations"))
def test_bad_input_is_a_typed_error_naming_the_node(bad):
    bad.check()
