"""The op registry: a visible dict from op type to its versions, filled by ``@register``.

An op is a plain function. Its positional parameters are the node's inputs (numpy
arrays, ``None`` for an omitted optional input) and its keyword parameters are the
ONNX attribute names with the ONNX defaults. It returns one array or a tuple.
An op may also take ``_out``: a tuple with one planned buffer (or None) per node
output, which it writes into when shape and dtype fit, so that repeated runs
allocate nothing. ``since`` is the first default-domain opset version whose semantics the function
implements; a model gets the newest version not newer than its opset.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass

OpFunction = Callable[..., object]


@dataclass(frozen=True)
class OpVersion:
    op_type: str
    since: int
    fn: OpFunction


OPS: dict[str, list[OpVersion]] = {}


def register(op_type: str, since: int = 1) -> Callable[[OpFunction], OpFunction]:
    def add(fn: OpFunction) -> OpFunction:
        versions = OPS.setdefault(op_type, [])
        if any(v.since == since for v in versions):
            raise RuntimeError(f"{op_type} since opset {since} registered twice")
        bisect.insort(versions, OpVersion(op_type, since, fn), key=lambda v: v.since)
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
