"""ONNX's official backend test suite against the numba engine.

``onnx.backend.test.BackendTest`` builds the node tests in memory from the
generators in the installed onnx package and runs the real-model tests whose
(light) models ship in it, with their expected outputs. We include every test of
every op the engine claims, plus the real models, and exclude a listed few, each
with its reason. ONNX_HOME points into a temp folder.
"""

from __future__ import annotations

import os
import tempfile

import onnx.backend.test
import pytest

from runtime.onnx_backend import NumbaBackend

# One pattern per supported op; anchored so that e.g. ConvInteger and ConvTranspose
# (which `^test_conv` would also match) stay out.
SUPPORTED = [
    r"^test_conv_",
    r"^test_basic_conv_",
    r"^test_maxpool_",
    r"^test_averagepool_",
    r"^test_globalaveragepool",
    r"^test_globalmaxpool",
    r"^test_lrn",
    r"^test_batchnorm_",
    r"^test_gemm_",
    r"^test_matmul_",
    r"^test_add(_|$)",
    r"^test_sub(_|$)",
    r"^test_mul(_|$)",
    r"^test_div(_|$)",
    r"^test_sum(_|$)",
    r"^test_relu",
    r"^test_leakyrelu",
    r"^test_tanh",
    r"^test_sigmoid",
    r"^test_clip",
    r"^test_softmax",
    r"^test_logsoftmax",
    r"^test_flatten",
    r"^test_reshape",
    r"^test_transpose",
    r"^test_concat",
    r"^test_split",
    r"^test_squeeze",
    r"^test_unsqueeze",
    r"^test_dropout",
    r"^test_identity(_|$)",
    r"^test_constant(_|$)",
    r"^test_constantofshape",
    r"^test_shape(_|$)",
    r"^test_gather_[0-9]",
    r"^test_gather_negative",
    r"^test_slice",
    r"^test_cast_",
    r"^test_constant_pad",
    r"^test_edge_pad",
    r"^test_reflect_pad",
    r"^test_wrap_pad",
]
# The real-model tests that ship with onnx (light versions of the zoo models).
REAL_MODELS = [
    r"^test_bvlc_alexnet",
    r"^test_densenet121",
    r"^test_inception_v1",
    r"^test_inception_v2",
    r"^test_resnet50",
    r"^test_shufflenet",
    r"^test_squeezenet",
    r"^test_vgg19",
    r"^test_zfnet512",
]
# Excluded, each with its reason. These match node tests of supported ops that use
# a type or a feature the engine does not implement.
EXCLUDED = {
    r"_expanded(_ver\d+)?_cpu$": (
        "function-expanded forms are built from ops outside the engine's list "
        "(ReduceMax, Exp, Log, Less, Where, CastLike, Max)"
    ),
    r"^test_identity_(sequence|opt)": "sequence and optional types: the engine runs tensors",
    r"^test_split_to_sequence": "SplitToSequence makes a sequence: not an op of the engine",
    r"^test_cast_.*(STRING|BFLOAT16|FLOAT8|FLOAT4|INT4|UINT4|INT2|UINT2)": (
        "string, bfloat16 and sub-byte float/int types"
    ),
    r"^test_batchnorm_.*training_mode": "training-mode BatchNormalization: inference only",
    r"^test_maxpool_2d_uint8": "integer pooling: the pool kernels are float32",
    r"^test_softmax_(functional_dim3|lastdim)": "converted at opset 6; the engine starts at 7",
}


def _suite():
    os.environ.setdefault("ONNX_HOME", tempfile.mkdtemp(prefix="onnx_home_"))
    suite = onnx.backend.test.BackendTest(NumbaBackend, __name__)
    for pattern in SUPPORTED + REAL_MODELS:
        suite.include(pattern)
    for pattern in EXCLUDED:
        suite.exclude(pattern)
    return suite


_backend_test = _suite()
pytestmark = pytest.mark.slow
globals().update(_backend_test.test_cases)
