"""onnxruntime's session vocabulary over our backends: ``SessionOptions``, ``RunOptions``,
``GraphOptimizationLevel``, ``ExecutionMode``, the execution-provider names and what
each runs.

    so = runtime.SessionOptions()
    so.intra_op_num_threads = 2
    sess = runtime.InferenceSession(path, sess_options=so, providers=["NumbaExecutionProvider"])

Providers name a backend: ``NumbaExecutionProvider`` our engine, ``CPUExecutionProvider``
onnxruntime on the CPU, ``CUDAExecutionProvider`` onnxruntime-gpu. Every option has a
meaning on every backend, or is refused with a ``SessionOptionError``: onnxruntime gets
them all; the numba engine maps those it has (threads, optimisation on or off,
profiling) and takes the scheduling, memory and logging hints that cannot change an
answer as documented no-ops (``NUMBA_IGNORES``). onnxruntime's own option objects are
read field by field, and onnxruntime is imported only when one of its backends runs.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runtime.errors import BackendUnavailableError, SessionOptionError

NUMBA = "NumbaExecutionProvider"
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"

# provider -> the backend that runs it (InferenceSession's ``backend=`` names)
PROVIDER_BACKENDS = {NUMBA: "numba", CPU: "onnxruntime", CUDA: "onnxruntime-cuda"}
BACKEND_PROVIDERS = {"numba": [NUMBA], "onnxruntime": [CPU], "onnxruntime-cuda": [CUDA, CPU]}
# A provider list is onnxruntime's priority order. onnxruntime assigns nodes to
# providers one by one; our backends run whole models, so a later entry runs the whole
# model when an earlier one refuses it at load: onnxruntime after the numba engine for
# an op or opset the engine lacks. (onnxruntime's CUDA session already runs the nodes
# CUDA lacks on its CPU provider, and onnxruntime refuses no op the engine runs.)
NUMBA_PROVIDER_OPTIONS = ("compile_plans",)  # ("NumbaExecutionProvider", {...}) keys


class GraphOptimizationLevel(enum.IntEnum):
    """onnxruntime's levels and values. The numba engine has two: ``ORT_DISABLE_ALL``
    runs one step per node (no rewrite pass, no compiled program); every other level
    applies all of ``runtime.passes.PASSES``."""

    ORT_DISABLE_ALL = 0
    ORT_ENABLE_BASIC = 1
    ORT_ENABLE_EXTENDED = 2
    ORT_ENABLE_LAYOUT = 3
    ORT_ENABLE_ALL = 99


class ExecutionMode(enum.IntEnum):
    """onnxruntime's modes; the numba engine runs its steps in order in either."""

    ORT_SEQUENTIAL = 0
    ORT_PARALLEL = 1


# Options the numba engine takes without effect: scheduling, memory and logging hints
# that cannot change an answer (the engine plans its own buffers and logs nothing).
NUMBA_IGNORES = (
    "inter_op_num_threads",
    "execution_mode",
    "log_severity_level",
    "log_verbosity_level",
    "logid",
    "enable_cpu_mem_arena",
    "enable_mem_pattern",
    "enable_mem_reuse",
)
# Session config entries (add_session_config_entry) the numba engine accepts as no-ops:
# onnxruntime's thread-spinning switches. Any other entry is refused on numba.
NUMBA_CONFIG_IGNORES = ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning")

_DEFAULTS: dict[str, Any] = {
    "intra_op_num_threads": 0,
    "inter_op_num_threads": 0,
    "graph_optimization_level": GraphOptimizationLevel.ORT_ENABLE_ALL,
    "execution_mode": ExecutionMode.ORT_SEQUENTIAL,
    "enable_profiling": False,
    "profile_file_prefix": "onnxruntime_profile_",
    "log_severity_level": -1,
    "log_verbosity_level": 0,
    "logid": "",
    "optimized_model_filepath": "",
    "enable_cpu_mem_arena": True,
    "enable_mem_pattern": True,
    "enable_mem_reuse": True,
    "use_deterministic_compute": False,
}


def _check(name: str, value: Any) -> Any:
    """``value`` for option ``name`` as stored, or a SessionOptionError."""
    default = _DEFAULTS[name]
    if isinstance(default, enum.IntEnum):
        kind = type(default)
        try:  # onnxruntime's own enum values convert by int()
            return kind(int(value))
        except (TypeError, ValueError):
            raise SessionOptionError(
                f"{name}: expected one of {[m.name for m in kind]}, received {value!r}"
            ) from None
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise SessionOptionError(f"{name}: expected True or False, received {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise SessionOptionError(f"{name}: expected an integer, received {value!r}")
        if name.endswith("num_threads") and value < 0:
            raise SessionOptionError(f"{name}: expected 0 (the default) or more, received {value}")
        if name == "log_severity_level" and not -1 <= value <= 4:
            raise SessionOptionError(
                f"{name}: expected -1 to 4 (0 verbose, 4 fatal), received {value}"
            )
        return value
    if not isinstance(value, str):
        raise SessionOptionError(f"{name}: expected a string, received {value!r}")
    return value


class SessionOptions:
    """onnxruntime's ``SessionOptions``: the same attribute names, defaults and values.

    What each does on the numba engine: ``intra_op_num_threads`` is ``threads`` (0: the
    session chooses per run); ``graph_optimization_level`` ``ORT_DISABLE_ALL`` runs one
    step per node, any other level every rewrite pass; ``enable_profiling`` times each
    run's steps into ``profile_file_prefix``'s JSON (``end_profiling()``);
    ``use_deterministic_compute`` fixes the thread count at every core rather than the
    idle ones, so a feed gives the same bits run after run; ``optimized_model_filepath``
    is refused (the engine writes no ONNX); the rest (``NUMBA_IGNORES``) are hints that
    cannot change an answer, taken as no-ops. Setting an attribute onnxruntime lacks,
    or a value of the wrong kind, raises ``SessionOptionError``.
    """

    def __init__(self) -> None:
        for name, value in _DEFAULTS.items():
            object.__setattr__(self, name, value)
        object.__setattr__(self, "_config", {})

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in _DEFAULTS:
            raise SessionOptionError(
                f"SessionOptions has no option {name!r}: expected one of {sorted(_DEFAULTS)}"
            )
        object.__setattr__(self, name, _check(name, value))

    def add_session_config_entry(self, key: str, value: str) -> None:
        if not isinstance(key, str) or not isinstance(value, str):
            raise SessionOptionError(
                "session config entry: expected a string key and value, "
                f"received {key!r}: {value!r}"
            )
        self._config[key] = value

    def get_session_config_entry(self, key: str) -> str:
        if key not in self._config:
            raise SessionOptionError(f"SessionOptions has no config entry {key!r}")
        return self._config[key]

    def config_entries(self) -> dict[str, str]:
        """The entries added with ``add_session_config_entry`` (onnxruntime cannot list its own)."""
        return dict(self._config)

    def changed(self) -> dict[str, Any]:
        """The options set away from their defaults."""
        return {n: getattr(self, n) for n in _DEFAULTS if getattr(self, n) != _DEFAULTS[n]}

    def __repr__(self) -> str:
        return f"SessionOptions({', '.join(f'{k}={v!r}' for k, v in self.changed().items())})"


def _is_onnxruntime(obj: object, name: str) -> bool:
    """``obj`` is onnxruntime's ``name`` class, told without importing onnxruntime."""
    kind = type(obj)
    return kind.__name__ == name and kind.__module__.split(".")[0] == "onnxruntime"


def session_options(obj: object) -> SessionOptions:
    """Ours for ``sess_options``: None is the defaults, ours is copied, onnxruntime's is
    read field by field (its config entries and free-dimension overrides cannot be
    read back: onnxruntime runs them, the numba engine does not see them)."""
    out = SessionOptions()
    if obj is None:
        return out
    if isinstance(obj, SessionOptions):
        for name in _DEFAULTS:
            setattr(out, name, getattr(obj, name))
        out._config.update(obj._config)
        return out
    if _is_onnxruntime(obj, "SessionOptions"):
        for name in _DEFAULTS:
            value = getattr(obj, name, _DEFAULTS[name])  # an older onnxruntime lacks some
            if name == "profile_file_prefix" and not isinstance(value, str):
                value = str(value)
            setattr(out, name, value)
        return out
    raise SessionOptionError(
        "sess_options: expected runtime.SessionOptions, onnxruntime.SessionOptions or None, "
        f"received {type(obj).__name__}"
    )


@dataclass(frozen=True)
class NumbaSettings:
    """What a ``SessionOptions`` asks of the numba engine."""

    threads: int | None  # None: chosen per run (runtime/threads.py)
    optimize: bool
    profiling: bool
    profile_prefix: str
    fixed_threads: bool  # use_deterministic_compute: every core, not the idle ones


def numba_settings(opts: SessionOptions) -> NumbaSettings:
    """The numba engine's reading of ``opts``; an option it cannot honour raises."""
    if opts.optimized_model_filepath:
        raise SessionOptionError(
            f"optimized_model_filepath {opts.optimized_model_filepath!r}: the numba engine "
            "writes no optimized ONNX model; use providers=['CPUExecutionProvider'] for that"
        )
    unknown = sorted(set(opts.config_entries()) - set(NUMBA_CONFIG_IGNORES))
    if unknown:
        raise SessionOptionError(
            f"session config entr{'y' if len(unknown) == 1 else 'ies'} {unknown}: the numba "
            f"engine reads none but {list(NUMBA_CONFIG_IGNORES)} (no-ops); onnxruntime's "
            "providers take every entry"
        )
    return NumbaSettings(
        threads=opts.intra_op_num_threads or None,
        optimize=opts.graph_optimization_level != GraphOptimizationLevel.ORT_DISABLE_ALL,
        profiling=opts.enable_profiling,
        profile_prefix=opts.profile_file_prefix,
        fixed_threads=opts.use_deterministic_compute,
    )


def to_onnxruntime(opts: SessionOptions, ort: Any) -> Any:
    """onnxruntime's ``SessionOptions`` with every field and config entry of ``opts``."""
    out = ort.SessionOptions()
    for name, value in opts.changed().items():
        if name == "graph_optimization_level":
            value = ort.GraphOptimizationLevel(int(value))
        elif name == "execution_mode":
            value = ort.ExecutionMode(int(value))
        setattr(out, name, value)
    for key, value in opts.config_entries().items():
        out.add_session_config_entry(key, value)
    return out


class RunOptions:
    """onnxruntime's ``RunOptions``. On the numba engine ``terminate`` refuses the run
    (it is read when the run starts: the engine cannot stop a run under way);
    ``only_execute_path_to_fetches``, the logging fields and run config entries are
    no-ops (the plan computes what the graph's outputs need)."""

    _FIELDS: Mapping[str, Any] = {
        "log_severity_level": -1,
        "log_verbosity_level": 0,
        "logid": "",
        "only_execute_path_to_fetches": False,
        "terminate": False,
    }

    def __init__(self) -> None:
        for name, value in self._FIELDS.items():
            object.__setattr__(self, name, value)
        object.__setattr__(self, "_config", {})

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in self._FIELDS:
            raise SessionOptionError(
                f"RunOptions has no option {name!r}: expected one of {sorted(self._FIELDS)}"
            )
        kind = type(self._FIELDS[name])
        if type(value) is not kind:
            raise SessionOptionError(
                f"RunOptions.{name}: expected {kind.__name__}, received {value!r}"
            )
        object.__setattr__(self, name, value)

    def add_run_config_entry(self, key: str, value: str) -> None:
        if not isinstance(key, str) or not isinstance(value, str):
            raise SessionOptionError(
                f"run config entry: expected a string key and value, received {key!r}: {value!r}"
            )
        self._config[key] = value

    def get_run_config_entry(self, key: str) -> str:
        if key not in self._config:
            raise SessionOptionError(f"RunOptions has no config entry {key!r}")
        return self._config[key]


def run_options(obj: object) -> RunOptions | None:
    """Ours for ``run_options`` (onnxruntime's read field by field); None stays None."""
    if obj is None or isinstance(obj, RunOptions):
        return obj
    if _is_onnxruntime(obj, "RunOptions"):
        out = RunOptions()
        for name, default in RunOptions._FIELDS.items():
            setattr(out, name, getattr(obj, name, default))
        return out
    raise SessionOptionError(
        "run_options: expected runtime.RunOptions, onnxruntime.RunOptions or None, "
        f"received {type(obj).__name__}"
    )


def run_options_to_onnxruntime(opts: RunOptions, ort: Any) -> Any:
    out = ort.RunOptions()
    for name in RunOptions._FIELDS:
        setattr(out, name, getattr(opts, name))
    for key, value in opts._config.items():
        out.add_run_config_entry(key, value)
    return out


@dataclass(frozen=True)
class ProviderChoice:
    """The backends to try in order (a second one: the whole-model fall-back) and each
    provider's options."""

    backends: tuple[str, ...]
    options: dict[str, dict[str, Any]] = field(default_factory=dict)


def resolve_providers(
    providers: Sequence[str | tuple[str, Mapping[str, Any]]] | None,
    provider_options: Sequence[Mapping[str, Any]] | None,
    backend: str | None,
) -> ProviderChoice:
    """``providers`` (onnxruntime's form: names, or (name, options) pairs, in the
    order to try them) or ``backend`` as the backends to run; neither: numba."""
    if backend is not None:
        if providers is not None or provider_options is not None:
            raise SessionOptionError(
                f"backend={backend!r} and providers=: give one (backend= names our backends, "
                "providers= onnxruntime's provider names)"
            )
        if backend not in BACKEND_PROVIDERS:
            raise BackendUnavailableError(
                f"backend {backend!r}: expected one of {tuple(BACKEND_PROVIDERS)}"
            )
        return ProviderChoice((backend,))
    if providers is not None and not isinstance(providers, (str, bytes)) and not providers:
        providers = None  # onnxruntime takes an empty list as its default
    if providers is None:
        if provider_options is not None:
            raise SessionOptionError(
                "provider_options without providers: give both, one per provider"
            )
        return ProviderChoice(("numba",))
    if isinstance(providers, (str, bytes)) or not isinstance(providers, Sequence):
        raise SessionOptionError(
            f"providers: expected a list of provider names or (name, options) pairs, "
            f"received {providers!r}"
        )
    names: list[str] = []
    options: dict[str, dict[str, Any]] = {}
    for entry in providers:
        if isinstance(entry, str):
            name, opts = entry, {}
        elif (
            isinstance(entry, tuple)
            and len(entry) == 2
            and isinstance(entry[0], str)
            and isinstance(entry[1], Mapping)
        ):
            name, opts = entry[0], dict(entry[1])
        else:
            raise SessionOptionError(
                f"providers: expected a provider name or a (name, options dict) pair, "
                f"received {entry!r}"
            )
        if name not in PROVIDER_BACKENDS:
            raise BackendUnavailableError(
                f"provider {name!r} is not one this runtime runs: expected "
                f"{NUMBA!r} (our numba engine), {CPU!r} (onnxruntime on the CPU) or "
                f"{CUDA!r} (onnxruntime-gpu), in the order to try them"
            )
        if name in names:
            raise SessionOptionError(f"providers: {name!r} is listed twice in {providers!r}")
        names.append(name)
        options[name] = opts
    if provider_options is not None:
        if len(provider_options) != len(names) or not all(
            isinstance(o, Mapping) for o in provider_options
        ):
            raise SessionOptionError(
                f"provider_options: expected one options dict per provider ({len(names)}), "
                f"received {provider_options!r}"
            )
        if any(options[n] for n in names):
            raise SessionOptionError(
                "provider options given twice: in providers' (name, options) pairs and in "
                "provider_options; give them in one place"
            )
        options = {n: dict(o) for n, o in zip(names, provider_options, strict=True)}
    bad = sorted(set(options.get(NUMBA, {})) - set(NUMBA_PROVIDER_OPTIONS))
    if bad:
        raise SessionOptionError(
            f"{NUMBA} options {bad}: expected only {list(NUMBA_PROVIDER_OPTIONS)}"
        )
    return ProviderChoice(tuple(PROVIDER_BACKENDS[n] for n in names), options)


def get_available_providers() -> list[str]:
    """The providers that can run here, in onnxruntime's priority order: CUDA where
    onnxruntime-gpu finds it, the numba engine, onnxruntime's CPU where it is installed."""
    try:
        import onnxruntime as ort
    except ImportError:
        return [NUMBA]
    available = ort.get_available_providers()
    return [p for p in (CUDA, NUMBA, CPU) if p == NUMBA or p in available]


def get_device() -> str:
    """onnxruntime's ``get_device()``: where the default provider (our engine) runs."""
    return "CPU"
