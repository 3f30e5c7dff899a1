"""The ops of ``runtime/ops/indexing.py``.

The gathers, scatters and index ops (Expand, Tile, Where, OneHot, Range, Einsum, ...):
single nodes against onnxruntime, typed errors that name the node and results over the
size limit refused before allocating, from the indexing rows of the shared tables in
``tests/op_cases.py``.
"""

from __future__ import annotations

import pytest
from op_cases import cases_of, errors_of, too_large_of


@pytest.mark.parametrize("case", cases_of("indexing"))
def test_single_node_matches_onnxruntime(case):
    case.check()


@pytest.mark.parametrize("bad", errors_of("indexing"))
def test_bad_input_is_a_typed_error_naming_the_node(bad):
    bad.check()


@pytest.mark.parametrize("too_large", too_large_of("indexing"))
def test_too_large_outputs_are_refused_before_allocating(too_large, monkeypatch):
    too_large.check(monkeypatch)
