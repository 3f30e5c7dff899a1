"""Buffer planning for a step-by-step plan: when each intermediate tensor dies, and
which reusable buffer slot each step writes its outputs into.

Slots are assigned by liveness, so a warm run allocates only its outputs. Each
thread gets its own buffers for a plan (``NumbaEngine``), built from ``slot_specs``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from runtime.bind import Bound
from runtime.ops.registry import contract
from runtime.steps import Step

Slots = list[tuple[int | None, ...] | None]  # step i writes output j into slot k (None: fresh)
SlotSpecs = list[tuple[tuple[int, ...], np.dtype]]  # shape and dtype of each slot


def release_after(steps: list[Step], kept: set[str], wanted: set[str]) -> list[tuple[str, ...]]:
    """For each step, the tensors to drop after it: those it reads for the last time,
    except ``kept`` (constants and feeds) and ``wanted`` (the outputs asked for)."""
    last_use: dict[str, int] = {}
    for i, step in enumerate(steps):
        for n in step.inputs:
            if n and n not in kept:
                last_use[n] = i
    release: list[list[str]] = [[] for _ in steps]
    for name, i in last_use.items():
        if name not in wanted:
            release[i].append(name)
    return [tuple(r) for r in release]


def _writes_out(fn: Callable) -> bool:
    return isinstance(fn, Bound) or contract(fn).writes_out


def plan_buffers(
    steps: list[Step], env: Mapping[str, np.ndarray], fixed: set[str], wanted: set[str]
) -> tuple[Slots, SlotSpecs]:
    """Give each intermediate tensor a reusable buffer slot, by liveness (``env``: the
    tensors of a run with the plan's shapes).

    A tensor that is a view of another (Reshape, Flatten...) shares its root's
    buffer, which then lives until the view's last use. Roots behind a graph output,
    a feed or a constant (``fixed``) are never planned: outputs are fresh arrays for
    the caller.
    """
    root: dict[str, str] = {}
    for step in steps:
        for o in step.outputs:
            if not o:
                continue
            root[o] = o
            for i in step.inputs:
                if i and i in env and np.shares_memory(env[o], env[i]):
                    root[o] = root.get(i, i)
    last: dict[str, int] = {}
    for k, step in enumerate(steps):
        for i in step.inputs:
            if i:
                last[root.get(i, i)] = k
    blocked = {root.get(n, n) for n in wanted} | fixed
    free: dict[tuple, list[int]] = {}
    specs: SlotSpecs = []
    slot_of: dict[str, int] = {}
    out_slots: Slots = []
    for k, step in enumerate(steps):
        for name, slot in list(slot_of.items()):
            if last.get(name, -1) < k:  # died before this step: its slot is free again
                free.setdefault(specs[slot], []).append(slot)
                del slot_of[name]
        if not _writes_out(step.fn):
            out_slots.append(None)
            continue
        row: list[int | None] = []
        for o in step.outputs:
            if not o or root.get(o) != o or o in blocked or o not in last:
                row.append(None)
                continue
            spec = (env[o].shape, env[o].dtype)
            pool = free.get(spec)
            if pool:
                slot = pool.pop()
            else:
                slot = len(specs)
                specs.append(spec)
            slot_of[o] = slot
            row.append(slot)
        out_slots.append(tuple(row) if any(s is not None for s in row) else None)
    return out_slots, specs
