"""The ops of ``runtime/ops/indexing.py``.

The gathers, scatters and index ops (Expand, Tile, Where, OneHot, Range, Einsum, ...):
single nodes against onnxruntime, the indexing cases of the shared table
(``tests/op_cases.py``).
"""

from __future__ import annotations

import pytest
from op_cases import cases_of


@pytest.mark.parametrize("case", cases_of("indexing"))
def test_single_node_matches_onnxruntime(case):
    case.check()
