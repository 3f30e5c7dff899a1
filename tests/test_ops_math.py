"""The ops of ``runtime/ops/math.py``.

The unary and n-ary math (Erf, Sqrt, Pow, Mod, Max, Mean, BitShift, ...): single nodes
against onnxruntime, typed errors that name the node and results over the size limit
refused before allocating, from the math rows of the shared tables in
``tests/op_cases.py``.
"""

from __future__ import annotations

import pytest
from op_cases import cases_of, errors_of, too_large_of


@pytest.mark.parametrize("case", cases_of("math"))
def test_single_node_matches_onnxruntime(case):
    case.check()


@pytest.mark.parametrize("bad", errors_of("math"))
def test_bad_input_is_a_typed_error_naming_the_node(bad):
    bad.check()


@pytest.mark.parametrize("too_large", too_large_of("math"))
def test_too_large_outputs_are_refused_before_allocating(too_large, monkeypatch):
    too_large.check(monkeypatch)
