"""ONNX's node test suite as the tests read it: the cases (built once a process), the
ones the engine claims, and the claimed ones excluded from ``tests/test_conformance.py``
with their reasons. ``tests/test_op_coverage.py`` reads which op versions they run."""

from __future__ import annotations

import re
from functools import lru_cache

import onnx
from onnx.backend.test.case.node import collect_testcases

from runtime.ops import resolve

# Excluded, each with its reason: node tests of claimed ops that use a type or a
# feature the engine does not implement.
EXCLUDED = {
    r"^test_identity_(sequence|opt)": "sequence and optional types: the engine runs tensors",
    r"^test_batchnorm_.*training_mode": "training-mode BatchNormalization: inference only",
    r"^test_maxpool_2d_uint8": "integer pooling: the pool kernels are float32",
    r"^test_not_[234]d": "opset 1 models: the loader accepts default-domain opsets 7 on",
    r"^test_attention_.*bf16_expanded": "bfloat16 reductions (ReduceMax): NumPy has no bfloat16",
    r"^test_training_dropout(_default)?(_mask)?_cpu$": (
        "training-mode Dropout with a nonzero ratio (random masks): inference only"
    ),
}


@lru_cache(maxsize=1)
def node_cases() -> tuple:
    """Every node test case of the installed onnx (their models are built in memory,
    tens of seconds on a busy machine: once a process)."""
    return tuple(collect_testcases(None))


def opset_of(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def claimed(case) -> bool:
    """Whether the engine implements every node of a node test's model at its opset
    (and the model imports the default domain only)."""
    opset = opset_of(case.model)
    if any(o.domain not in ("", "ai.onnx") for o in case.model.opset_import):
        return False
    return all(
        n.domain in ("", "ai.onnx") and resolve(n.op_type, opset) is not None
        for n in case.model.graph.node
    )


@lru_cache(maxsize=1)
def claimed_node_tests() -> tuple[str, ...]:
    """The names (``test_..._cpu``) of the node tests the engine claims."""
    return tuple(sorted(f"{c.name}_cpu" for c in node_cases() if claimed(c)))


def excluded(name: str) -> bool:
    return any(re.search(pattern, name) for pattern in EXCLUDED)
