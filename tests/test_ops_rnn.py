"""The ops of ``runtime/ops/rnn.py``.

RNN, GRU and LSTM: single nodes against onnxruntime, from the rnn rows of the shared
tables in ``tests/op_cases.py`` (``tests/test_rnn.py`` holds the kernels against their
twins and the cells' settings one by one).
"""

from __future__ import annotations

import pytest
from op_cases import cases_of


@pytest.mark.parametrize("case", cases_of("rnn"))
def test_single_node_matches_onnxruntime(case):
    case.check()
