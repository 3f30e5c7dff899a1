"""``InferenceSession``: onnxruntime's call contract over our backends.

    sess = InferenceSession("exported/lenet5.onnx", backend="numba")  # or "onnxruntime"
    probs, = sess.run(None, {sess.get_inputs()[0].name: x})

Feeds are checked here, the same way for every backend, so a wrong name, dtype,
rank or dimension is the same typed error whichever backend runs the model.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from runtime.description import Description
from runtime.errors import BackendUnavailableError, InputFeedError
from runtime.graph import Graph, TensorInfo, load_graph
from runtime.threads import default_threads

BACKENDS = ("numba", "onnxruntime", "onnxruntime-cuda")


@dataclass(frozen=True)
class NodeArg:
    """What onnxruntime's ``get_inputs()`` / ``get_outputs()`` return."""

    name: str
    shape: list[int | str | None]
    type: str


@dataclass(frozen=True)
class ModelMetadata:
    """What onnxruntime's ``get_modelmeta()`` returns."""

    custom_metadata_map: dict[str, str] = field(default_factory=dict)
    producer_name: str = ""
    graph_name: str = ""
    domain: str = ""
    description: str = ""
    version: int = 0


def _node_arg(info: TensorInfo) -> NodeArg:
    shape = [] if info.shape is None else list(info.shape)
    return NodeArg(info.name, shape, info.type_string)


def check_feeds(inputs: Sequence[TensorInfo], feed: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Names, dtypes, ranks and fixed dimensions of the feeds against the graph's inputs."""
    if not isinstance(feed, Mapping):
        raise InputFeedError(f"input_feed: expected a dict of name -> array, received {type(feed)}")
    if len(feed) != len(inputs) or not all(i.name in feed for i in inputs):
        expected = {i.name for i in inputs}
        unknown = sorted(set(feed) - expected)
        if unknown:
            raise InputFeedError(f"unknown input name(s) {unknown}: expected {sorted(expected)}")
        missing = sorted(expected - set(feed))
        raise InputFeedError(f"missing input(s) {missing}: expected feeds for {sorted(expected)}")
    out = {}
    for info in inputs:
        name = info.name
        value = feed[name]
        if isinstance(value, np.generic):  # a numpy scalar is a 0-d tensor
            value = np.asarray(value)
        if not isinstance(value, np.ndarray):
            raise InputFeedError(
                f"input {name!r}: expected a numpy array, received {type(value).__name__}"
            )
        if value.dtype != info.dtype:
            raise InputFeedError(
                f"input {name!r}: expected dtype {info.dtype} ({info.type_string}), "
                f"received {value.dtype}"
            )
        if info.shape is not None:
            if value.ndim != len(info.shape):
                raise InputFeedError(
                    f"input {name!r}: expected rank {len(info.shape)} {list(info.shape)}, "
                    f"received rank {value.ndim} {list(value.shape)}"
                )
            for axis, (want, got) in enumerate(zip(info.shape, value.shape, strict=True)):
                if isinstance(want, int) and want > 0 and want != got:
                    raise InputFeedError(
                        f"input {name!r}: dimension {axis} must be {want}, received {got} "
                        f"(expected shape {list(info.shape)}, received {list(value.shape)})"
                    )
        # not np.ascontiguousarray: it makes a 0-d feed 1-d
        out[name] = value if value.flags.c_contiguous else value.copy(order="C")
    return out


class _NumbaBackend:
    def __init__(self, graph: Graph, threads: int | None, compile_plans: bool) -> None:
        from threadpoolctl import ThreadpoolController

        from runtime.engine import NumbaEngine

        self.engine = NumbaEngine(graph, compile_plans=compile_plans)
        self.threads = threads
        self.blas = ThreadpoolController().select(user_api="blas").lib_controllers
        if threads is None:
            default_threads(1)  # starts measuring the load, so the first run can use it

    def run(self, names: Sequence[str], feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        self._use_threads()
        return self.engine.run(feeds, names, around_steps=self._one_blas_thread)

    def step_calls(self, feeds: Mapping[str, np.ndarray]) -> Iterator[tuple]:
        """``NumbaEngine.step_calls`` with this session's threads, as ``run`` runs."""
        self._use_threads()
        with self._one_blas_thread():
            yield from self.engine.step_calls(feeds)

    def _use_threads(self) -> None:
        import numba

        # Every call sets it: numba's thread count is process-wide state that another
        # session (threads=1) may have changed. None: the cores other processes leave
        # idle (runtime/threads.py), all of them on a quiet machine.
        cores = numba.config.NUMBA_NUM_THREADS
        want = min(self.threads, cores) if self.threads else default_threads(cores)
        if numba.get_num_threads() != want:  # reading it costs a third of setting it
            numba.set_num_threads(want)

    @contextmanager
    def _one_blas_thread(self) -> Iterator[None]:
        # One thread pool: numba's parallel kernels own the cores. A multi-threaded
        # BLAS between them oversubscribes (LeNet-5 at batch 64: 44 ms instead of 7 ms).
        # Each BLAS library is set directly: threadpoolctl's ``limit`` does more Python
        # work, which a run pays for each call with caches that its kernels swept.
        before = [lib.num_threads for lib in self.blas]
        for lib, n in zip(self.blas, before, strict=True):
            if n != 1:
                lib.set_num_threads(1)
        try:
            yield
        finally:
            for lib, n in zip(self.blas, before, strict=True):
                if n != 1:
                    lib.set_num_threads(n)

    def providers(self) -> list[str]:
        return ["NumbaExecutionProvider"]


class _OrtBackend:
    def __init__(self, model: bytes, threads: int | None, cuda: bool) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendUnavailableError(
                "backend 'onnxruntime' needs the onnxruntime package: pip install onnxruntime"
            ) from None
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        available = ort.get_available_providers()
        wanted = ["CUDAExecutionProvider"] if cuda else ["CPUExecutionProvider"]
        if cuda and "CUDAExecutionProvider" not in available:
            raise BackendUnavailableError(
                "backend 'onnxruntime-cuda' needs CUDAExecutionProvider; this onnxruntime "
                f"offers {available}. Install onnxruntime-gpu (the [cuda] extra) on a machine "
                "with CUDA, or use backend='onnxruntime'"
            )
        if cuda:
            wanted.append("CPUExecutionProvider")
        self.session = ort.InferenceSession(model, options, providers=wanted)
        if cuda and self.session.get_providers()[0] != "CUDAExecutionProvider":
            # onnxruntime falls back to the CPU with only a warning when CUDA fails to start.
            raise BackendUnavailableError(
                "backend 'onnxruntime-cuda': CUDAExecutionProvider failed to start "
                f"(session providers {self.session.get_providers()}, available {available})"
            )

    def run(self, names: Sequence[str], feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(list(names), dict(feeds))

    def providers(self) -> list[str]:
        return self.session.get_providers()


class InferenceSession:
    """Load a model once, run it many times; the API mirrors onnxruntime's.

    ``threads``: the cores a run may use (None: all). ``compile_plans`` (numba only):
    False runs every plan step by step, as a plan that does not qualify for one
    compiled program runs; for comparing the two paths (tests, bisection), not
    for speed.
    """

    def __init__(
        self,
        path_or_bytes: str | os.PathLike | bytes,
        backend: str = "numba",
        threads: int | None = None,
        *,
        compile_plans: bool = True,
    ) -> None:
        if backend not in BACKENDS:
            raise BackendUnavailableError(f"backend {backend!r}: expected one of {BACKENDS}")
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads: expected a positive integer or None, received {threads!r}")
        if not isinstance(compile_plans, bool):
            raise ValueError(f"compile_plans: expected True or False, received {compile_plans!r}")
        if not compile_plans and backend != "numba":
            raise ValueError(
                f"compile_plans=False: only the numba backend compiles plans, not {backend!r}"
            )
        self.backend = backend
        # The file is validated for every backend; opsets only for ours.
        self.graph = load_graph(path_or_bytes, strict_opset=backend == "numba")
        if backend == "numba":
            self._impl: Any = _NumbaBackend(self.graph, threads, compile_plans)
        else:
            data = (
                bytes(path_or_bytes)
                if isinstance(path_or_bytes, (bytes, bytearray, memoryview))
                else str(path_or_bytes)
            )
            self._impl = _OrtBackend(data, threads, cuda=backend == "onnxruntime-cuda")
        self._inputs = [_node_arg(i) for i in self.graph.inputs]
        self._outputs = [_node_arg(o) for o in self.graph.outputs]
        self._output_names = tuple(o.name for o in self._outputs)

    def get_inputs(self) -> list[NodeArg]:
        return list(self._inputs)

    def get_outputs(self) -> list[NodeArg]:
        return list(self._outputs)

    def get_providers(self) -> list[str]:
        return self._impl.providers()

    def get_modelmeta(self) -> ModelMetadata:
        return ModelMetadata(custom_metadata_map=dict(self.graph.metadata),
                             producer_name=self.graph.producer)  # fmt: skip

    def run(
        self,
        output_names: Sequence[str] | None,
        input_feed: Mapping[str, Any],
        run_options: object = None,
    ) -> list[np.ndarray]:
        all_names = self._output_names
        if output_names is None:
            names = list(all_names)
        else:
            names = list(output_names)
            unknown = [n for n in names if n not in all_names]
            if unknown:
                raise InputFeedError(
                    f"unknown output name(s) {unknown}: expected among {list(all_names)}"
                )
        feeds = check_feeds(self.graph.inputs, input_feed)
        return self._impl.run(names, feeds)

    def describe(self, input_feed: Mapping[str, Any] | None = None) -> Description:
        """What the numba engine runs for ``input_feed``'s shapes (run once now if it
        has not run with them): per step, the op, the ops fused into it, the algorithm
        and why, and whether the plan is one compiled program. Without a feed: the
        newest plan, or the load-time choices."""
        if self.backend != "numba":
            raise BackendUnavailableError(
                f"describe() shows the numba engine's plan; this session runs {self.backend!r}"
            )
        feeds = None
        if input_feed is not None:
            feeds = check_feeds(self.graph.inputs, input_feed)
            self._impl.run(list(self._output_names), feeds)
        return self._impl.engine.describe(feeds)
