"""Buffer planning for a step-by-step plan: when each intermediate tensor dies, and
which buffer slot each step writes its outputs into.

Slots are assigned by liveness, so a warm run allocates only its outputs. A slot is
a range of bytes in one arena per plan and thread (``slot_buffers``), starting on a
cache line (``memory.ALIGN``); tensors that are never alive together may share
bytes whatever their shapes, and a new tensor takes the free range freed last, whose
lines are likeliest still in cache (``plan_buffers``). Each thread gets its own arena
for a plan (``NumbaEngine``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from runtime.bind import Bound
from runtime.memory import ALIGN, aligned_empty
from runtime.ops.registry import contract
from runtime.steps import Step

Slots = list[tuple[int | None, ...] | None]  # step i writes output j into slot k (None: fresh)
SlotSpecs = list[tuple[tuple[int, ...], np.dtype]]  # shape and dtype of each slot


def slot_bytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    """The bytes a slot takes in the arena: its data rounded up to whole ``ALIGN``s (at
    least one), so the next slot starts on a cache line too."""
    need = np.dtype(dtype).itemsize
    for d in shape:
        need *= int(d)
    return max(ALIGN, -(-need // ALIGN) * ALIGN)


def slot_buffers(specs: SlotSpecs, offsets: list[int]) -> list[np.ndarray]:
    """A thread's buffers for a plan's slots: views at ``offsets`` (bytes) into one
    arena that starts on a cache line (``memory.aligned_empty``)."""
    size = max((o + slot_bytes(*s) for s, o in zip(specs, offsets, strict=True)), default=0)
    arena = aligned_empty((size,), np.uint8)
    buffers = []
    for (shape, dtype), offset in zip(specs, offsets, strict=True):
        count = np.dtype(dtype).itemsize
        for d in shape:
            count *= int(d)
        buffers.append(arena[offset : offset + count].view(dtype).reshape(shape))
    return buffers


class Arena:
    """Byte ranges of a growing arena handed out and given back: ``take`` gives the
    fitting free range that was given back last (LIFO: the bytes likeliest still in
    cache), the smallest among equals, else the arena's end, grown."""

    def __init__(self) -> None:
        self.free: list[list[int]] = []  # [start, end, when given back], by start, merged
        self.top = 0  # the arena's size so far
        self._clock = 0

    def take(self, size: int) -> int:
        """The start of ``size`` bytes (a multiple of ``ALIGN``) no one else holds."""
        fits = [r for r in self.free if r[1] - r[0] >= size]
        if fits:
            r = max(fits, key=lambda r: (r[2], r[0] - r[1]))  # latest, then smallest
            start = r[0]
            if r[1] - r[0] == size:
                self.free.remove(r)
            else:
                r[0] += size
            return start
        at_end = bool(self.free) and self.free[-1][1] == self.top
        start = self.free.pop()[0] if at_end else self.top  # a free range at the end grows
        self.top = start + size
        return start

    def give_back(self, start: int, size: int) -> None:
        """Free ``size`` bytes from ``start``, merged with free neighbours (the merged
        range counts as given back now)."""
        self._clock += 1
        new = [start, start + size, self._clock]
        kept: list[list[int]] = []
        for r in self.free:
            if r[1] == new[0] or r[0] == new[1]:  # adjacent: merge
                new = [min(r[0], new[0]), max(r[1], new[1]), self._clock]
            else:
                kept.append(r)
        kept.append(new)
        kept.sort()
        self.free = kept


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
) -> tuple[Slots, SlotSpecs, list[int]]:
    """Give each intermediate tensor a buffer slot, by liveness (``env``: the tensors
    of a run with the plan's shapes): the slots, their shapes and dtypes, and their
    byte offsets in the arena (``Arena``; a slot is one shape at one offset, so a
    tensor that reuses another's bytes with its shape reuses its slot too).

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
    arena = Arena()
    specs: SlotSpecs = []
    offsets: list[int] = []
    slot_at: dict[tuple, int] = {}  # (shape, dtype, offset): its slot
    live: dict[str, tuple[int, int]] = {}  # planned tensor: (offset, bytes)
    out_slots: Slots = []
    for k, step in enumerate(steps):
        for name in [n for n in live if last.get(n, -1) < k]:  # died before this step
            arena.give_back(*live.pop(name))
        if not _writes_out(step.fn):
            out_slots.append(None)
            continue
        row: list[int | None] = []
        for o in step.outputs:
            if not o or root.get(o) != o or o in blocked or o not in last:
                row.append(None)
                continue
            shape, dtype = env[o].shape, env[o].dtype
            if dtype.hasobject:  # no view of the arena's bytes holds objects
                row.append(None)
                continue
            size = slot_bytes(shape, dtype)
            offset = arena.take(size)
            live[o] = (offset, size)
            slot = slot_at.get((shape, dtype, offset))
            if slot is None:
                slot = slot_at[(shape, dtype, offset)] = len(specs)
                specs.append((shape, dtype))
                offsets.append(offset)
            row.append(slot)
        out_slots.append(tuple(row) if any(s is not None for s in row) else None)
    return out_slots, specs, offsets
