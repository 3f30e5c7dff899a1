"""``cnn profile MODEL``: where the numba engine's time goes, step by step, beside
onnxruntime's profiler on the same input.

    cnn profile exported/lenet5.onnx --batch 64 --threads 1
    cnn profile mobilenetv2.onnx --threads 1 --runs 20 --json prof.json --plot prof.png
    cnn profile unet.onnx --dim H=256 --dim W=256

Per step of the plan (a node, or the nodes fused into one step): its median time,
its algorithm and why (``InferenceSession.describe()``), its FLOPs and GFLOP/s, and
that as a fraction of the machine's peak, measured once with the engine's own GEMM
on the same threads. Then the totals per op type, beside onnxruntime's kernel time
per op type (``SessionOptions.enable_profiling``), and per algorithm. The timing is
``runtime/profile.py``'s. The input is seeded random data of the input's shape
(``--shape``, ``--dim``, ``--batch``), as ``cnn compare`` makes it (cnn/samples.py).
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from runtime.profile import OrtProfile, Profile, StepRecord

# onnxruntime's fused kernels are counted with the op they are made from
ORT_FUSED_PREFIX = "Fused"


@dataclass(frozen=True)
class ProfileReport:
    model: str
    inputs: str  # what was fed, in words
    machine: dict
    peak_gflops: float
    peak_source: str
    numba: Profile
    ort: OrtProfile | None
    ort_error: str = ""  # why onnxruntime's column is absent, when it is


def make_feeds(
    model: str | os.PathLike,
    *,
    dims: Mapping[str, int] | None = None,
    shape: Sequence[int] | None = None,
    batch: int | None = None,
    seed: int = 0,
) -> tuple[dict[str, np.ndarray], str]:
    """One call's seeded random feeds, shaped as ``cnn compare`` shapes them, and their
    description. ``batch``: the first axis when the model, ``dims`` and ``shape`` leave
    it free (default 1)."""
    from cnn import samples as S
    from cnn import shapes as shp

    dims = dict(dims or {})
    info = S.model_info(model)
    if not info.inputs:
        raise ValueError(f"{model}: the graph has no inputs to feed")
    resolved = shp.resolve(info.inputs, dims, shape)
    fixed, _ = S.call_batch(info.inputs, resolved.shapes)
    if batch is not None and fixed is not None and batch != fixed:
        raise ValueError(
            f"cannot take --batch {batch}: the inputs' first axis is fixed at {fixed} "
            "(by the model, --dim or --shape)"
        )
    n = fixed or batch or 1
    feeds = shp.random_feeds(info.inputs, resolved.concrete(n), seed)
    shown = ", ".join(f"{k} {list(v.shape)} {v.dtype}" for k, v in feeds.items())
    return feeds, f"{shown}, seeded random (seed {seed})"


def run_profile(
    model: str | os.PathLike,
    feeds: Mapping[str, np.ndarray],
    inputs: str,
    *,
    threads: int | None = None,
    runs: int = 10,
    warmup: int = 2,
    with_ort: bool = True,
    gemm_size: int = 1024,
    clock: str = "wall",
) -> ProfileReport:
    """The peak, then the numba engine's profile, then onnxruntime's (after numba, so
    that its spinning threads do not share the cores with the steps being timed), each
    timed by ``clock`` (``runtime/profile.py``: ``"cpu"`` on one thread only)."""
    from cnn.bench import machine
    from runtime.profile import clock_of, ort_profile, peak_gflops, profile

    clock_of(clock, threads)  # a wrong clock says so before the minutes of timing
    peak, source = peak_gflops(threads, gemm_size, clock=clock)
    prof = profile(model, feeds, threads=threads, runs=runs, warmup=warmup, clock=clock)
    ort, error = None, ""
    if with_ort:
        try:
            ort = ort_profile(model, feeds, threads=threads, runs=runs, warmup=warmup, clock=clock)
        except Exception as exc:  # onnxruntime refuses the model: numba's profile stands
            error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return ProfileReport(str(model), inputs, machine(), peak, source, prof, ort, error)


def ort_class(op: str) -> str:
    """The op class of an onnxruntime kernel: its fused kernels count as their op."""
    if op.startswith(ORT_FUSED_PREFIX) and len(op) > len(ORT_FUSED_PREFIX):
        return op[len(ORT_FUSED_PREFIX) :]
    return op


def op_classes(report: ProfileReport) -> list[dict]:
    """Per op class: numba's steps and time beside onnxruntime's kernels and time,
    slowest (on either side) first."""
    rows: dict[str, dict] = {}
    for t in report.numba.totals("op"):
        rows[t.name] = {"op": t.name, "numba_steps": t.steps, "numba_s": t.seconds,
                        "flops": t.flops, "ort_kernels": 0, "ort_s": None}  # fmt: skip
    if report.ort is not None:
        for op, seconds in report.ort.by_op.items():
            name = ort_class(op)
            row = rows.setdefault(name, {"op": name, "numba_steps": 0, "numba_s": None,
                                         "flops": 0, "ort_kernels": 0, "ort_s": None})  # fmt: skip
            row["ort_s"] = (row["ort_s"] or 0.0) + seconds
            row["ort_kernels"] += report.ort.nodes.get(op, 0)
    return sorted(rows.values(), key=lambda r: -max(r["numba_s"] or 0.0, r["ort_s"] or 0.0))


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1e3:.3f}" if seconds < 0.01 else f"{seconds * 1e3:.2f}"


def _rate(gflops: float | None, peak: float) -> tuple[str, str]:
    if gflops is None:
        return "-", "-"
    return f"{gflops:.2f}", f"{100 * gflops / peak:.1f}%" if peak > 0 else "-"


def _table(
    title: str, headers: Sequence[str], rows: Sequence[Sequence[str]], left: Collection[int]
) -> str:
    """A rich table (the columns numbered in ``left`` left-aligned, the others right);
    plain text without rich."""
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=True)]
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        lines = [title]
        for row in [headers, *rows]:
            cells = [
                c.ljust(w) if i in left else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            ]
            lines.append("  ".join(cells).rstrip())
        return "\n".join(lines)
    table = Table(title=title, title_justify="left")
    for i, h in enumerate(headers):
        table.add_column(h, justify="left" if i in left else "right")
    for row in rows:
        table.add_row(*row)
    # as wide as the cells (long node names, reasons): a row per line, never wrapped
    width = max(80, sum(widths) + 3 * len(widths) + 1, len(title))
    console = Console(width=width, record=True, force_terminal=False)
    with console.capture() as cap:
        console.print(table)
    return "\n".join(line.rstrip() for line in cap.get().rstrip().splitlines())


def render(report: ProfileReport) -> str:
    """The header lines, then the tables: per step, per op class beside onnxruntime,
    per algorithm."""
    from cnn.bench import machine_line

    p, peak = report.numba, report.peak_gflops
    steps_s = p.steps_s
    threads = f"{p.threads} thread" + ("s" if p.threads != 1 else "")
    timed_by = (
        "the calling thread's CPU time (time.thread_time: time other processes took the core "
        "is left out)"
        if p.clock == "cpu"
        else "wall time"
    )
    lines = [
        f"model: {report.model}",
        f"input: {report.inputs}",
        f"threads: {p.threads}; each time the median of {p.runs} runs after {p.warmup} "
        f"warm-up runs, by {timed_by}",
        machine_line(report.machine),
        f"peak: {peak:.1f} GFLOP/s, {report.peak_source}, {threads} (best of 5)",
    ]
    if p.compiled:
        lines.append(
            f"numba: the real run is one compiled program: whole call {_ms(p.whole_call_s)} ms "
            "(median); its steps are not observable inside it, so the steps below ran one by "
            f"one on a step-by-step plan (compile_plans=False): their medians add up to "
            f"{_ms(steps_s)} ms, a run of them takes {_ms(p.steps_run_s)} ms (median)"
        )
    else:
        lines.append(
            f"numba: whole call {_ms(p.whole_call_s)} ms (median); the steps' medians add up "
            f"to {_ms(steps_s)} ms, a run of them takes {_ms(p.steps_run_s)} ms (median); "
            f"the plan runs step by step: {p.not_compiled or 'not one program'}"
        )
    if report.ort is not None:
        kernels = sum(report.ort.by_op.values())
        whole = (
            "its profiler's model_run"
            if p.clock == "wall"
            else "the same CPU clock, a session without the profiler"
        )
        lines.append(
            f"onnxruntime: whole call {_ms(report.ort.whole_call_s)} ms (median, by {whole}); "
            f"its kernels add up to {_ms(kernels)} ms (its profiler's wall times)"
        )
    else:
        lines.append(f"onnxruntime: no profile ({report.ort_error})")
    rows = []
    for r in p.steps:
        gf, frac = _rate(r.gflops, peak)
        share = f"{100 * r.median_s / steps_s:.1f}%" if steps_s > 0 else "-"
        rows.append((str(r.index), r.node, r.op, "+".join(r.fused) or "-", r.algorithm,
                     _ms(r.median_s), share, f"{r.flops / 1e6:.3g}", gf, frac,
                     r.reason or "-"))  # fmt: skip
    out = ["\n".join(lines), ""]
    out.append(
        _table(
            "per step (numba)",
            (
                "#",
                "node",
                "op",
                "fused",
                "algorithm",
                "ms",
                "share",
                "MFLOP",
                "GFLOP/s",
                "of peak",
                "why",
            ),
            rows,
            left=(0, 1, 2, 3, 4, 10),
        )
    )
    rows = []
    for c in op_classes(report):
        gf = c["flops"] / c["numba_s"] / 1e9 if c["flops"] and c["numba_s"] else None
        ratio = (
            f"{c['numba_s'] / c['ort_s']:.2f}" if c["numba_s"] is not None and c["ort_s"] else "-"
        )
        rows.append((c["op"], str(c["numba_steps"] or "-"), _ms(c["numba_s"]),
                     _rate(gf, peak)[0], _rate(gf, peak)[1],
                     str(c["ort_kernels"] or "-"), _ms(c["ort_s"]), ratio))  # fmt: skip
    out += [
        "",
        _table(
            "per op class: numba beside onnxruntime (its Fused* kernels counted with their op)",
            (
                "op",
                "numba steps",
                "numba ms",
                "GFLOP/s",
                "of peak",
                "ort kernels",
                "ort ms",
                "numba/ort",
            ),
            rows,
            left=(0,),
        ),
    ]
    rows = []
    for t in p.totals("algorithm"):
        gf, frac = _rate(t.gflops, peak)
        share = f"{100 * t.seconds / steps_s:.1f}%" if steps_s > 0 else "-"
        rows.append((t.name, str(t.steps), _ms(t.seconds), share, gf, frac))
    out += [
        "",
        _table(
            "per algorithm (numba)",
            ("algorithm", "steps", "ms", "share", "GFLOP/s", "of peak"),
            rows,
            left=(0,),
        ),
    ]
    return "\n".join(out)


def _step_json(r: StepRecord, peak: float) -> dict:
    d = r.as_dict()
    d["peak_fraction"] = None if r.gflops is None or peak <= 0 else r.gflops / peak
    return d


def to_json(report: ProfileReport) -> dict:
    p, peak = report.numba, report.peak_gflops

    def total(t) -> dict:
        return {"name": t.name, "steps": t.steps, "ms": t.seconds * 1e3, "flops": t.flops,
                "gflops": t.gflops,
                "peak_fraction": None if t.gflops is None else t.gflops / peak}  # fmt: skip

    ort = None
    if report.ort is not None:
        ort = {
            "threads": report.ort.threads,
            "runs": report.ort.runs,
            "whole_call_ms": report.ort.whole_call_s * 1e3,
            "by_op_ms": {k: v * 1e3 for k, v in report.ort.by_op.items()},
            "kernels_per_op": report.ort.nodes,
        }
    return {
        "model": report.model,
        "input": report.inputs,
        "input_shapes": {k: list(v) for k, v in p.input_shapes.items()},
        "machine": report.machine,
        "peak": {"gflops": peak, "source": report.peak_source, "threads": p.threads},
        "clock": p.clock,
        "numba": {
            "threads": p.threads,
            "runs": p.runs,
            "warmup": p.warmup,
            "compiled": p.compiled,
            "note": (
                "the real run is one compiled program (whole_call_ms); the steps ran one "
                "by one on a step-by-step plan (compile_plans=False)"
                if p.compiled
                else p.not_compiled
            ),
            "whole_call_ms": p.whole_call_s * 1e3,
            "steps_ms": p.steps_s * 1e3,
            "steps_run_ms": p.steps_run_s * 1e3,
            "steps": [_step_json(r, peak) for r in p.steps],
            "by_op": [total(t) for t in p.totals("op")],
            "by_algorithm": [total(t) for t in p.totals("algorithm")],
        },
        "onnxruntime": ort,
        "onnxruntime_error": report.ort_error or None,
        "by_op_class": [
            {
                "op": c["op"],
                "numba_steps": c["numba_steps"],
                "numba_ms": None if c["numba_s"] is None else c["numba_s"] * 1e3,
                "ort_kernels": c["ort_kernels"],
                "ort_ms": None if c["ort_s"] is None else c["ort_s"] * 1e3,
            }
            for c in op_classes(report)
        ],
    }


def plot(report: ProfileReport, path: str | os.PathLike) -> None:
    """Two panels: time per op class, numba beside onnxruntime; and each numba step's
    time, coloured by algorithm."""
    try:
        import matplotlib
    except ImportError:
        raise RuntimeError("--plot needs matplotlib: pip install 'cnn-pipeline[cli]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dataio.files import atomic_write

    classes = op_classes(report)[::-1]  # slowest at the top
    steps = report.numba.steps
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(13, max(4.0, 0.22 * max(len(classes), len(steps) / 2))),
        gridspec_kw={"width_ratios": [1, 1.4]},
    )  # fmt: skip
    ys = np.arange(len(classes))
    left.barh(ys + 0.2, [(c["numba_s"] or 0) * 1e3 for c in classes], 0.4, label="numba")
    left.barh(ys - 0.2, [(c["ort_s"] or 0) * 1e3 for c in classes], 0.4, label="onnxruntime")
    left.set_yticks(ys)
    left.set_yticklabels([c["op"] for c in classes])
    left.set_xlabel("ms per call (median)")
    left.set_title("per op class")
    left.legend()
    algorithms = list(dict.fromkeys(r.algorithm for r in steps))
    colors = plt.get_cmap("tab10")
    for k, name in enumerate(algorithms):
        idx = [r.index for r in steps if r.algorithm == name]
        right.bar(idx, [steps[i].median_s * 1e3 for i in idx], color=colors(k % 10), label=name)
    right.set_xlabel("step")
    right.set_ylabel("ms (median)")
    right.set_title("numba, per step, by algorithm")
    right.legend(fontsize="small")
    fig.suptitle(f"{os.path.basename(report.model)}: {report.inputs}", fontsize="medium")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
