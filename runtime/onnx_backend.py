"""Our engine behind ``onnx.backend.base.Backend``, the interface of ONNX's official
backend test suite (``onnx.backend.test.BackendTest``), as onnxruntime.backend does.

    import onnx.backend.test
    from runtime.onnx_backend import NumbaBackend
    suite = onnx.backend.test.BackendTest(NumbaBackend, __name__)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx
from onnx.backend.base import Backend, BackendRep

from runtime.engine import NumbaEngine
from runtime.graph import load_graph
from runtime.session import check_feeds


class NumbaBackendRep(BackendRep):
    def __init__(self, engine: NumbaEngine) -> None:
        self.engine = engine
        self.inputs = engine.graph.inputs

    def run(self, inputs: Any, **kwargs: Any) -> tuple[np.ndarray, ...]:
        if isinstance(inputs, np.ndarray):
            inputs = [inputs]
        if isinstance(inputs, Mapping):
            feed = dict(inputs)
        else:
            feed = {info.name: value for info, value in zip(self.inputs, inputs, strict=False)}
        feeds = check_feeds(self.inputs, feed)
        return tuple(self.engine.run(feeds, self.engine.output_names))


class NumbaBackend(Backend):
    @classmethod
    def prepare(
        cls, model: onnx.ModelProto | bytes, device: str = "CPU", **kwargs: Any
    ) -> NumbaBackendRep:
        if not cls.supports_device(device):
            raise ValueError(f"device {device!r}: the numba backend runs on 'CPU' only")
        data = model if isinstance(model, bytes) else model.SerializeToString()
        return NumbaBackendRep(NumbaEngine(load_graph(data)))

    @classmethod
    def run_model(
        cls, model: onnx.ModelProto, inputs: Sequence[np.ndarray], device: str = "CPU", **kw: Any
    ) -> tuple[np.ndarray, ...]:
        return cls.prepare(model, device).run(inputs)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device.upper().startswith("CPU")
