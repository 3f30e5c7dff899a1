"""``InferenceSession``: onnxruntime's session API over our backends.

    sess = InferenceSession("exported/lenet5.onnx", providers=["NumbaExecutionProvider"])
    probs, = sess.run(None, {sess.get_inputs()[0].name: x})

A script written for onnxruntime runs with ``import runtime as ort`` (or
``from runtime import InferenceSession, SessionOptions``): the constructor takes
``sess_options`` and ``providers`` as onnxruntime's does (runtime/options.py maps them
onto our backends), and the session answers the same calls. ``backend=`` names a
backend directly. Feeds are checked here, the same way for every backend, so a wrong
name, dtype, rank or dimension is the same typed error whichever backend runs the model.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from runtime import options as opt
from runtime.description import Description
from runtime.errors import (
    BackendUnavailableError,
    InputFeedError,
    SessionOptionError,
    UnsupportedOpError,
    UnsupportedOpsetError,
)
from runtime.graph import Graph, TensorInfo, load_graph
from runtime.threads import default_threads

BACKENDS = ("numba", "onnxruntime", "onnxruntime-cuda")
NO_VERSION = 2**63 - 1  # onnxruntime's get_modelmeta().version for a model that sets none


@dataclass(frozen=True)
class NodeArg:
    """What onnxruntime's ``get_inputs()`` / ``get_outputs()`` return: a dimension is
    an int, a name (str) or None (unnamed); an unknown rank is ``[]``."""

    name: str
    type: str  # onnxruntime's spelling: tensor(float)
    shape: list[int | str | None]


@dataclass(frozen=True)
class ModelMetadata:
    """What onnxruntime's ``get_modelmeta()`` returns (``version``: the model's
    ``model_version``, onnxruntime's 2**63 - 1 where the model sets none)."""

    custom_metadata_map: dict[str, str] = field(default_factory=dict)
    producer_name: str = ""
    graph_name: str = ""
    domain: str = ""
    description: str = ""
    graph_description: str = ""
    version: int = NO_VERSION


def _node_arg(info: TensorInfo) -> NodeArg:
    shape = [] if info.shape is None else list(info.shape)
    return NodeArg(name=info.name, type=info.type_string, shape=shape)


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
        elif isinstance(value, list):  # as onnxruntime: a list becomes the input's dtype
            try:
                value = np.array(value, dtype=info.dtype)
            except (ValueError, TypeError) as exc:
                raise InputFeedError(
                    f"input {name!r}: a list that is not a rectangular array of {info.dtype}: {exc}"
                ) from None
        if not isinstance(value, np.ndarray):
            raise InputFeedError(
                f"input {name!r}: expected a numpy array (or a list), "
                f"received {type(value).__name__}"
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
    def __init__(
        self,
        graph: Graph,
        threads: int | None,
        compile_plans: bool,
        optimize: bool = True,
        fixed_threads: bool = False,
    ) -> None:
        import numba
        from threadpoolctl import ThreadpoolController

        from runtime.engine import NumbaEngine

        self.engine = NumbaEngine(graph, optimize=optimize, compile_plans=compile_plans)
        if threads is None and fixed_threads:  # the same count every run: the same bits
            threads = numba.config.NUMBA_NUM_THREADS
        self.threads = threads
        self.compile_plans = compile_plans
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

    def run_profiled(
        self, names: Sequence[str], feeds: Mapping[str, np.ndarray], profiler: _Profiler
    ) -> list[np.ndarray]:
        """``run``, each step timed into ``profiler`` (a compiled program: one event)."""
        clock = time.perf_counter_ns
        env = None
        for step, tensors, call in self.step_calls(feeds):
            env = tensors  # the same dict each step: the outputs are in it at the end
            t0 = clock()
            call()
            profiler.node(step.node.name, step.op_type, t0, clock(), fused=step.fused)
        if env is not None:
            return [env[n] for n in names]
        t0 = clock()  # the plan is one compiled program: nothing to time inside it
        outs = self.run(names, feeds)
        profiler.node("compiled_program", "CompiledProgram", t0, clock())
        return outs

    def providers(self) -> list[str]:
        return [opt.NUMBA]

    def provider_options(self) -> dict[str, dict[str, str]]:
        return {opt.NUMBA: {"compile_plans": str(int(self.compile_plans))}}


class _OrtBackend:
    def __init__(
        self,
        model: bytes | str,
        threads: int | None,
        cuda: bool,
        options: Any = None,
        provider_options: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        """``options``: an onnxruntime ``SessionOptions`` (given, or made from ours);
        ``threads`` is its ``intra_op_num_threads`` for this session."""
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendUnavailableError(
                "backend 'onnxruntime' needs the onnxruntime package: pip install onnxruntime"
            ) from None
        if options is None:
            options = ort.SessionOptions()
        elif isinstance(options, opt.SessionOptions):
            options = opt.to_onnxruntime(options, ort)
        available = ort.get_available_providers()
        wanted = [opt.CUDA] if cuda else [opt.CPU]
        if cuda and opt.CUDA not in available:
            raise BackendUnavailableError(
                "backend 'onnxruntime-cuda' needs CUDAExecutionProvider; this onnxruntime "
                f"offers {available}. Install onnxruntime-gpu (the [cuda] extra) on a machine "
                "with CUDA, or use backend='onnxruntime'"
            )
        if cuda:
            wanted.append(opt.CPU)
        given = provider_options or {}
        listed = [(p, dict(given[p])) if given.get(p) else p for p in wanted]
        before = options.intra_op_num_threads
        if threads:  # set for this session only: the caller's object is put back
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(model, options, providers=listed)
        finally:
            options.intra_op_num_threads = before
        if cuda and self.session.get_providers()[0] != opt.CUDA:
            # onnxruntime falls back to the CPU with only a warning when CUDA fails to start.
            raise BackendUnavailableError(
                "backend 'onnxruntime-cuda': CUDAExecutionProvider failed to start "
                f"(session providers {self.session.get_providers()}, available {available})"
            )

    def run(
        self, names: Sequence[str], feeds: Mapping[str, np.ndarray], run_options: Any = None
    ) -> list[np.ndarray]:
        if isinstance(run_options, opt.RunOptions):
            import onnxruntime as ort

            run_options = opt.run_options_to_onnxruntime(run_options, ort)
        return self.session.run(list(names), dict(feeds), run_options)

    def providers(self) -> list[str]:
        return self.session.get_providers()

    def provider_options(self) -> dict[str, dict[str, str]]:
        return self.session.get_provider_options()


class _Profiler:
    """A numba session's ``enable_profiling``: each run's steps as events of
    onnxruntime's profile format (Chrome trace JSON: ``cat`` Session or Node, ``name``
    the node's name with ``_kernel_time``, ``args.op_name``, ``ts``/``dur`` in µs), kept
    until ``end_profiling()`` writes them to ``<prefix>_<date>_<ms>.json``."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.start_ns = time.time_ns()
        self._origin = time.perf_counter_ns()
        self.events: list[dict[str, Any]] = []
        self.active = True  # until end_profiling(), as onnxruntime

    def _event(self, cat: str, name: str, t0: int, t1: int, args: dict) -> None:
        self.events.append({
            "cat": cat, "pid": os.getpid(), "tid": 0, "dur": (t1 - t0) // 1000,
            "ts": (t0 - self._origin) // 1000, "ph": "X", "name": name, "args": args,
        })  # fmt: skip

    def node(self, node: str, op: str, t0: int, t1: int, fused: Sequence[str] = ()) -> None:
        args = {"op_name": op, "provider": opt.NUMBA, "fused": list(fused)}
        self._event("Node", f"{node}_kernel_time", t0, t1, args)

    def run(self, t0: int, t1: int) -> None:
        self._event("Session", "model_run", t0, t1, {})

    def write(self) -> str:
        """The events to ``<prefix>_<date>.json`` (a temporary file renamed into place);
        its path."""
        stamp = time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(self.start_ns / 1e9))
        path = f"{self.prefix}_{stamp}_{self.start_ns // 1_000_000 % 1000:03d}.json"
        folder = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".profile-", suffix=".json")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(self.events, f)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
        self.events = []
        self.active = False
        return path


def _flag(value: Any, what: str) -> bool:
    """A provider option's switch: True/False, or onnxruntime's strings "1"/"0"."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "0", "true", "false"):
        return value.lower() in ("1", "true")
    raise SessionOptionError(f"{what}: expected True, False, '1' or '0', received {value!r}")


class BoundValue:
    """An output of ``run_with_iobinding``, with the calls of onnxruntime's ``OrtValue``
    that a CPU script makes."""

    def __init__(self, array: np.ndarray) -> None:
        self._array = array

    def numpy(self) -> np.ndarray:
        return self._array

    def shape(self) -> list[int]:
        return list(self._array.shape)

    def data_type(self) -> str:
        return f"tensor({_onnx_type_name(self._array.dtype)})"

    def device_name(self) -> str:
        return "cpu"

    def is_tensor(self) -> bool:
        return True


def _onnx_type_name(dtype: np.dtype) -> str:
    import onnx

    code = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    return onnx.TensorProto.DataType.Name(code).lower()


class IOBinding:
    """onnxruntime's ``IOBinding`` for numpy arrays on the CPU, on every backend: bind
    inputs (``bind_cpu_input``) and outputs by name, ``run_with_iobinding``, then
    ``copy_outputs_to_cpu()`` or ``get_outputs()``. Device memory, raw buffer pointers
    and OrtValues are refused with a typed error."""

    def __init__(self, session: InferenceSession) -> None:
        self._session = session
        self._inputs: dict[str, np.ndarray] = {}
        self._outputs: list[str] = []
        self._results: list[np.ndarray] = []

    def bind_cpu_input(self, name: str, arr_on_cpu: np.ndarray) -> None:
        known = [i.name for i in self._session.get_inputs()]
        if name not in known:
            raise InputFeedError(f"bind_cpu_input: unknown input {name!r}: expected one of {known}")
        self._inputs[name] = arr_on_cpu

    def bind_input(self, name: str, device_type: str, device_id: int, element_type: Any,
                   shape: Sequence[int], buffer_ptr: int) -> None:  # fmt: skip
        raise BackendUnavailableError(
            f"bind_input({name!r}, {device_type!r}, ...): this runtime binds numpy arrays "
            "only; use bind_cpu_input(name, array)"
        )

    def bind_output(self, name: str, device_type: str = "cpu", device_id: int = 0,
                    element_type: Any = None, shape: Sequence[int] | None = None,
                    buffer_ptr: int | None = None) -> None:  # fmt: skip
        known = [o.name for o in self._session.get_outputs()]
        if name not in known:
            raise InputFeedError(f"bind_output: unknown output {name!r}: expected one of {known}")
        if str(device_type).lower() != "cpu" or buffer_ptr is not None:
            raise BackendUnavailableError(
                f"bind_output({name!r}, device_type={device_type!r}, buffer_ptr="
                f"{buffer_ptr!r}): this runtime returns outputs as new numpy arrays on the "
                "CPU; bind with the name alone"
            )
        if name not in self._outputs:
            self._outputs.append(name)

    def bind_ortvalue_input(self, name: str, ortvalue: Any) -> None:
        raise BackendUnavailableError(
            f"bind_ortvalue_input({name!r}): this runtime has no OrtValues; use bind_cpu_input"
        )

    def bind_ortvalue_output(self, name: str, ortvalue: Any) -> None:
        raise BackendUnavailableError(
            f"bind_ortvalue_output({name!r}): this runtime has no OrtValues; use bind_output"
        )

    def clear_binding_inputs(self) -> None:
        self._inputs = {}

    def clear_binding_outputs(self) -> None:
        self._outputs = []
        self._results = []

    def synchronize_inputs(self) -> None:
        """Nothing to wait for: the arrays are on the CPU."""

    def synchronize_outputs(self) -> None:
        """Nothing to wait for: the arrays are on the CPU."""

    def get_outputs(self) -> list[BoundValue]:
        return [BoundValue(a) for a in self._results]

    def copy_outputs_to_cpu(self) -> list[np.ndarray]:
        return [a.copy() for a in self._results]


class InferenceSession:
    """Load a model once, run it many times; onnxruntime's API.

    ``sess_options``: a ``runtime.SessionOptions`` or an ``onnxruntime.SessionOptions``
    (runtime/options.py says what each option does on each backend). ``providers``:
    onnxruntime's list of names or (name, options) pairs in the order to try them,
    ``provider_options`` one dict per provider: ``"NumbaExecutionProvider"`` (our
    engine, the default), ``"CPUExecutionProvider"`` (onnxruntime),
    ``"CUDAExecutionProvider"`` (onnxruntime-gpu); a later one runs the model when an
    earlier one refuses it (``["NumbaExecutionProvider", "CPUExecutionProvider"]``:
    onnxruntime for a model with an op the engine lacks).
    ``backend``: our name for the same choice ("numba", "onnxruntime",
    "onnxruntime-cuda"), instead of ``providers``.

    ``threads``: the cores a run may use (None: the session chooses per run), as
    ``intra_op_num_threads``. ``compile_plans`` (numba only): False runs every plan
    step by step, as a plan that does not qualify for one compiled program runs; for
    comparing the two paths (tests, bisection), not for speed.
    """

    def __init__(
        self,
        path_or_bytes: str | os.PathLike | bytes,
        sess_options: Any = None,
        providers: Sequence[str | tuple[str, Mapping[str, Any]]] | None = None,
        provider_options: Sequence[Mapping[str, Any]] | None = None,
        *,
        backend: str | None = None,
        threads: int | None = None,
        compile_plans: bool = True,
    ) -> None:
        if isinstance(sess_options, str):  # the older positional form: (path, backend, threads)
            if backend is not None:
                raise SessionOptionError(f"backend given twice: {sess_options!r} and {backend!r}")
            backend, sess_options = sess_options, None
            if isinstance(providers, int) and threads is None:
                threads, providers = providers, None
        if threads is not None and (
            isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
        ):
            raise ValueError(f"threads: expected a positive integer or None, received {threads!r}")
        if not isinstance(compile_plans, bool):
            raise ValueError(f"compile_plans: expected True or False, received {compile_plans!r}")
        options = opt.session_options(sess_options)
        if threads is not None and options.intra_op_num_threads not in (0, threads):
            raise SessionOptionError(
                f"threads={threads} and sess_options.intra_op_num_threads="
                f"{options.intra_op_num_threads}: give one"
            )
        choice = opt.resolve_providers(providers, provider_options, backend)
        numba_options = choice.options.get(opt.NUMBA, {})
        if "compile_plans" in numba_options:
            flag = _flag(numba_options["compile_plans"], f"{opt.NUMBA} option compile_plans")
            if not compile_plans and flag:
                raise SessionOptionError(
                    "compile_plans=False and the NumbaExecutionProvider option compile_plans=1"
                )
            compile_plans = flag
        if not compile_plans and choice.backends[0] != "numba":
            raise ValueError(
                f"compile_plans=False: only the numba backend compiles plans, "
                f"not {choice.backends[0]!r}"
            )
        threads = threads or options.intra_op_num_threads or None
        self._options = options
        self._given_options = sess_options
        self._profiler: _Profiler | None = None
        self._inputs: list[NodeArg] = []
        for i, backend_name in enumerate(choice.backends):
            fallback = i + 1 < len(choice.backends)
            try:
                self._start(path_or_bytes, backend_name, threads, compile_plans, choice)
                break
            except (UnsupportedOpError, UnsupportedOpsetError):
                if not fallback:
                    raise
        if threads is not None:
            self._options.intra_op_num_threads = threads
        self._inputs = [_node_arg(i) for i in self.graph.inputs]
        self._outputs = [_node_arg(o) for o in self.graph.outputs]
        self._output_names = tuple(o.name for o in self._outputs)

    def _start(
        self,
        path_or_bytes: str | os.PathLike | bytes,
        backend: str,
        threads: int | None,
        compile_plans: bool,
        choice: opt.ProviderChoice,
    ) -> None:
        """Load the model and start ``backend`` (a refusal raises: the caller may fall back)."""
        # The file is validated for every backend; opsets only for ours.
        self.graph = load_graph(path_or_bytes, strict_opset=backend == "numba")
        self.backend = backend
        if backend == "numba":
            settings = opt.numba_settings(self._options)
            self._impl: Any = _NumbaBackend(
                self.graph,
                threads,
                compile_plans,
                optimize=settings.optimize,
                fixed_threads=settings.fixed_threads,
            )
            if settings.profiling:
                self._profiler = _Profiler(settings.profile_prefix)
            return
        data = (
            bytes(path_or_bytes)
            if isinstance(path_or_bytes, (bytes, bytearray, memoryview))
            else str(path_or_bytes)
        )
        given = self._given_options
        ort_options = (
            given
            if given is not None and not isinstance(given, opt.SessionOptions)
            else self._options
        )
        self._impl = _OrtBackend(
            data, threads, backend == "onnxruntime-cuda", ort_options, choice.options
        )

    def get_inputs(self) -> list[NodeArg]:
        return list(self._inputs)

    def get_outputs(self) -> list[NodeArg]:
        return list(self._outputs)

    def get_overridable_initializers(self) -> list[NodeArg]:
        """onnxruntime's: initializers that are also graph inputs. Our sessions take
        none as feeds (a feed must name a non-initializer input): always empty."""
        return []

    def get_providers(self) -> list[str]:
        """The providers that run the model (onnxruntime's names; ours: NumbaExecutionProvider)."""
        return self._impl.providers()

    def get_provider_options(self) -> dict[str, dict[str, str]]:
        return self._impl.provider_options()

    def get_session_options(self) -> opt.SessionOptions:
        """The options this session runs with (a copy), ``intra_op_num_threads``
        included when ``threads=`` set it."""
        return opt.session_options(self._options)

    def get_modelmeta(self) -> ModelMetadata:
        g = self.graph
        return ModelMetadata(
            custom_metadata_map=dict(g.metadata),
            producer_name=g.producer,
            graph_name=g.graph_name,
            domain=g.domain,
            description=g.doc_string,
            graph_description=g.graph_doc_string,
            version=NO_VERSION if g.model_version is None else g.model_version,
        )

    def run(
        self,
        output_names: Sequence[str] | None,
        input_feed: Mapping[str, Any],
        run_options: Any = None,
    ) -> list[np.ndarray]:
        """The outputs named (None or []: every output, in the graph's order) for
        ``input_feed``; ``run_options``: a ``runtime.RunOptions`` or onnxruntime's."""
        all_names = self._output_names
        if isinstance(output_names, (str, bytes)) or not (
            output_names is None or isinstance(output_names, Sequence)
        ):
            raise InputFeedError(
                f"output_names: expected a list of output names or None, received {output_names!r}"
            )
        if not output_names:
            names = list(all_names)
        else:
            names = list(output_names)
            unknown = [n for n in names if n not in all_names]
            if unknown:
                raise InputFeedError(
                    f"unknown output name(s) {unknown}: expected among {list(all_names)}"
                )
        options = opt.run_options(run_options)
        feeds = check_feeds(self.graph.inputs, input_feed)
        if self.backend != "numba":
            given = run_options if options is not None else None
            return self._impl.run(names, feeds, given)
        if options is not None and options.terminate:
            raise SessionOptionError(
                "run_options.terminate is set: the run was not started (onnxruntime refuses "
                "it too; the numba engine reads the flag only when a run starts)"
            )
        if self._profiler is None or not self._profiler.active:
            return self._impl.run(names, feeds)
        t0 = time.perf_counter_ns()
        outs = self._impl.run_profiled(names, feeds, self._profiler)
        self._profiler.run(t0, time.perf_counter_ns())
        return outs

    def io_binding(self) -> IOBinding:
        return IOBinding(self)

    def run_with_iobinding(self, iobinding: IOBinding, run_options: Any = None) -> None:
        """``run`` on the bound inputs, for the bound outputs (kept in ``iobinding``)."""
        if not isinstance(iobinding, IOBinding) or iobinding._session is not self:
            raise InputFeedError(
                "run_with_iobinding: expected this session's io_binding(), received "
                f"{type(iobinding).__name__}"
            )
        if not iobinding._outputs:
            raise InputFeedError(
                "run_with_iobinding: no output is bound (bind_output), as onnxruntime requires"
            )
        iobinding._results = self.run(iobinding._outputs, iobinding._inputs, run_options)

    def end_profiling(self) -> str:
        """With ``enable_profiling``: write the events so far to the profile file, stop
        profiling and return the file's path (onnxruntime's format); without, or a
        second time: ``""``, as onnxruntime."""
        if self.backend != "numba":
            return self._impl.session.end_profiling()
        if self._profiler is None or not self._profiler.active:
            return ""
        return self._profiler.write()

    def get_profiling_start_time_ns(self) -> int:
        if self.backend != "numba":
            return self._impl.session.get_profiling_start_time_ns()
        return 0 if self._profiler is None else self._profiler.start_ns

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
