"""The op registry: a visible dict from op type to its versions, filled by ``@register``.

The op contract, checked when an op is registered (``contract``):

* An op is a plain function. Its positional parameters are the node's inputs (numpy
  arrays, ``None`` for an omitted optional input; ``*inputs`` for variadic ops) and
  its keyword-only parameters are the ONNX attribute names with the ONNX defaults (no
  default: the attribute is required; ``**attrs``: any attribute). It returns one
  array or a tuple, one per node output.
* Two private keywords, and no others, let the engine pass what a node cannot say:
  ``_out``, a tuple with one planned buffer (or None) per node output, which the op
  writes into when shape and dtype fit, so that repeated runs allocate nothing; and
  ``_num_outputs``, how many outputs the node asks for.
* ``prepare(x, constants, attrs)``, optional, lays the op out once for an input shape
  (the engine binds it per plan): a call ``call(x, out)`` with the op's checks done.

``since`` is the first default-domain opset version whose semantics the function
implements; a model gets the newest version not newer than its opset.
"""

from __future__ import annotations

import bisect
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

OpFunction = Callable[..., object]
PRIVATE = ("_out", "_num_outputs")  # the keywords the engine passes


@dataclass(frozen=True)
class Contract:
    """What an op function takes, read from its signature (``contract``)."""

    attributes: frozenset[str] | None  # None: any (``**attrs``)
    required: frozenset[str]  # attributes without a default
    writes_out: bool  # takes ``_out``
    counts_outputs: bool  # takes ``_num_outputs``


@cache
def contract(fn: Callable) -> Contract:
    """``fn``'s op contract; TypeError when its signature breaks the module's rules."""
    params = list(inspect.signature(fn).parameters.values())
    keywords = [p for p in params if p.kind == p.KEYWORD_ONLY]
    private = {p.name for p in keywords if p.name.startswith("_")}
    if private - set(PRIVATE):
        raise TypeError(
            f"op function {fn.__qualname__}: private keywords {sorted(private - set(PRIVATE))}; "
            f"expected only {list(PRIVATE)}"
        )
    if any(p.kind == p.POSITIONAL_OR_KEYWORD and p.name.startswith("_") for p in params):
        raise TypeError(f"op function {fn.__qualname__}: private names must be keyword-only")
    attributes = {p.name for p in keywords if not p.name.startswith("_")}
    required = {p.name for p in keywords if p.default is p.empty and not p.name.startswith("_")}
    takes_any = any(p.kind == p.VAR_KEYWORD for p in params)
    return Contract(
        None if takes_any else frozenset(attributes),
        frozenset(required),
        "_out" in private or takes_any,
        "_num_outputs" in private,
    )


@dataclass(frozen=True)
class OpVersion:
    op_type: str
    since: int
    fn: OpFunction
    contract: Contract = field(compare=False, default=None)  # type: ignore[assignment]
    # the @njit kernels the op's calls may run ("module.function" in runtime/kernels),
    # for describe(); a Conv's or Gemm's come from the kernel table instead
    kernels: tuple[str, ...] = field(compare=False, default=())

    def __post_init__(self) -> None:
        if self.contract is None:
            object.__setattr__(self, "contract", contract(self.fn))


OPS: dict[str, list[OpVersion]] = {}


def register(
    op_type: str, since: int = 1, *, kernels: tuple[str, ...] = ()
) -> Callable[[OpFunction], OpFunction]:
    """Add ``fn`` as ``op_type``'s implementation from opset ``since`` on; its
    signature is checked against the op contract now, not when a model first uses it.
    ``kernels``: the @njit kernels it runs ("module.function" in ``runtime/kernels``;
    ``tests/test_kernel_table.py`` holds runs against them)."""

    def add(fn: OpFunction) -> OpFunction:
        version = OpVersion(op_type, since, fn, kernels=kernels)  # checks the contract
        versions = OPS.setdefault(op_type, [])
        if any(v.since == since for v in versions):
            raise RuntimeError(f"{op_type} since opset {since} registered twice")
        bisect.insort(versions, version, key=lambda v: v.since)
        return fn

    return add


def resolve(op_type: str, opset: int) -> OpVersion | None:
    """The implementation for ``op_type`` at ``opset``, or None if there is none."""
    versions = OPS.get(op_type)
    if not versions:
        return None
    i = bisect.bisect_right([v.since for v in versions], opset)
    return versions[i - 1] if i else None


def supported_ops() -> list[str]:
    return sorted(OPS)
