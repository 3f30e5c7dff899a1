"""What the numba engine does with a model, per step: ``InferenceSession.describe()``.

For people (``cnn describe MODEL``) and for tests, instead of private state: each step
of the plan with its node, op, the ops fused into it, the algorithm it runs and why,
and whether the plan runs as one compiled program (and if not, why not).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StepInfo:
    node: str  # the (first) node's name
    op: str
    fused: tuple[str, ...]  # ops fused into the step by the rewrite passes
    algorithm: str
    reason: str
    bound: bool = False  # laid out once for the plan's input shapes (``runtime/bind.py``)
    runs: tuple[str, ...] = ()  # the @njit kernels its call runs ("module.function")


@dataclass(frozen=True)
class Description:
    input_shapes: dict[str, tuple[int, ...]] | None  # the plan's, or None: load time only
    compiled: bool  # the whole plan runs as one compiled program
    not_compiled: str  # why not, when it does not
    steps: tuple[StepInfo, ...]
    passes: tuple[str, ...] = ()  # the rewrite passes that changed the steps, in order

    def algorithms(self, op: str | None = None) -> list[str]:
        """The algorithm of each step (of op type ``op``), in order."""
        return [s.algorithm for s in self.steps if op is None or s.op == op]

    def table(self) -> str:
        """A plain-text table, one line per step."""
        head = ("node", "op", "fused", "algorithm", "why")
        rows = [head] + [
            (s.node, s.op, "+".join(s.fused) or "-", s.algorithm, s.reason) for s in self.steps
        ]
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = ["  ".join(r[i].ljust(widths[i]) for i in range(4)) + "  " + r[4] for r in rows]
        shapes = (
            ", ".join(f"{k} {list(v)}" for k, v in self.input_shapes.items())
            if self.input_shapes
            else "no input yet (load-time choices)"
        )
        plan = "one compiled program" if self.compiled else f"step by step: {self.not_compiled}"
        passes = ", ".join(self.passes) or "none"
        return "\n".join([f"inputs: {shapes}", f"plan: {plan}", f"passes: {passes}", *lines])
