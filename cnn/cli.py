"""The ``cnn`` command line. Each subcommand imports what it needs when it runs, so
the command starts without torch and only ``cnn train`` / ``cnn export`` need it.

    cnn train lenet5                      # full Fashion-MNIST run, exports runs/lenet5.onnx
    cnn export runs/lenet5.pt --out exported/lenet5.onnx
    cnn summary exported/lenet5.onnx      # layers, shapes, parameters, MACs, metadata
    cnn bisect exported/lenet5.onnx       # the first node where numba and onnxruntime differ

Errors meant for people print one line on stderr and exit with code 2;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
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
    from training.train import TrainConfig, train

    cfg = TrainConfig(
        model=args.model,
        dataset=args.dataset,
        data_dir=args.data_dir,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        device=args.device,
        max_steps=args.max_steps,
        subset=args.subset,
        out=args.out,
        resume=args.resume,
        export=not args.no_export,
        bn_batches=args.bn_batches,
    )
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

    from runtime.summary import summarize

    summary = summarize(args.model)
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


def _cmd_predict(args: argparse.Namespace) -> int:
    import json

    import numpy as np

    from runtime import InferenceSession
    from runtime.images import Recipe, load_image

    sess = InferenceSession(args.model, backend=args.backend)
    meta = sess.get_modelmeta().custom_metadata_map
    (inp,) = sess.get_inputs()
    recipe = Recipe.from_metadata(meta, inp.shape)
    try:
        labels = json.loads(meta["labels"])
    except (KeyError, ValueError):
        labels = None
    images, good, failed = [], [], 0
    for path in args.images:
        try:
            images.append(load_image(path, recipe, invert=args.invert))
            good.append(path)
        except (OSError, ValueError) as exc:
            failed += 1
            print(f"cnn predict: error: {exc}", file=sys.stderr)
    results = []
    if images:
        (probs,) = sess.run(None, {inp.name: np.stack(images)})  # (N, classes)
        k = min(args.top_k, probs.shape[1])
        for path, p in zip(good, probs, strict=True):
            top = np.argsort(-p, kind="stable")[:k]
            results.append({
                "image": path,
                "predictions": [
                    {"label": labels[i] if labels else str(i), "index": int(i),
                     "probability": float(p[i])}
                    for i in top
                ],
            })  # fmt: skip
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            best = ", ".join(f"{p['label']} {p['probability']:.3f}" for p in r["predictions"])
            print(f"{r['image']}: {best}")
    return 1 if failed else 0


def _cmd_bisect(args: argparse.Namespace) -> int:
    from runtime.bisect import bisect_backends

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    report = bisect_backends(args.model, backends, atol=args.atol, batch=args.batch, seed=args.seed)
    print(f"{'#':>4}  {'node':<28} {'op':<20} max |{backends[0]} - {backends[1]}|")
    for row in report.nodes:
        print(row.row)
    bad = report.first_bad
    if bad is None:
        print(f"the backends agree on all {len(report.nodes)} node outputs within {args.atol:g}")
        return 0
    print(
        f"first difference: node {bad.node!r} ({bad.op_type}), output {bad.output!r}, "
        f"max abs diff {bad.max_abs_diff:.3g} > {args.atol:g}"
    )
    return 1


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {text}")
    return value


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples' line breaks; help strings state their defaults themselves."""


def build_parser() -> argparse.ArgumentParser:
    from training.catalog import MODELS  # torch-free, like training.data
    from training.data import DATASETS

    parser = argparse.ArgumentParser(
        prog="cnn",
        description="Train LeNet-5 and AlexNet, export them to ONNX, run them without torch.",
        formatter_class=_Formatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    models = "; ".join(
        f"{m.name}: {m.default_epochs} epochs, batch {m.default_batch_size}, lr {m.default_lr:g}"
        for m in MODELS.values()
    )
    p = sub.add_parser(
        "train",
        help="train a model, checkpoint each epoch, export it to ONNX",
        formatter_class=_Formatter,
        description="Train with Adam and cross-entropy; validate every epoch; test at the end.",
        epilog=(
            "examples:\n"
            "  cnn train lenet5                              # full Fashion-MNIST run\n"
            "  cnn train alexnet --max-steps 50              # a short CPU run\n"
            "  cnn train lenet5 --epochs 3 --resume          # continue an interrupted run\n"
            "  torchrun --nproc-per-node 2 -m training lenet5  # DistributedDataParallel\n"
            f"\nmodel defaults: {models}"
        ),
    )
    p.add_argument("model", choices=sorted(MODELS), help="which network")
    p.add_argument(
        "--dataset",
        default="fashion-mnist",
        choices=sorted(DATASETS),
        help="default: %(default)s",
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="folder with the four IDX files (default: $CNN_DATA_DIR, the user cache, "
        "the Debian package, then a download, in that order)",
    )
    p.add_argument("--epochs", type=int, default=None, help="default: the model's, below")
    p.add_argument(
        "--batch-size", type=_positive_int, default=None, help="per process (default: the model's)"
    )
    p.add_argument(
        "--lr", type=float, default=None, help="Adam learning rate (default: the model's)"
    )
    p.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="default: %(default)s")
    p.add_argument(
        "--max-steps",
        type=_positive_int,
        default=None,
        help="stop after N optimizer steps (default: no limit)",
    )
    p.add_argument(
        "--subset",
        type=_positive_int,
        default=None,
        help="use the first N images of each split (default: all)",
    )
    p.add_argument(
        "--out",
        default="runs",
        help="folder for checkpoint, metrics, plot, ONNX (default: %(default)s)",
    )
    p.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="CHECKPOINT",
        help="continue from OUT/MODEL.pt, or from CHECKPOINT (default: start afresh)",
    )
    p.add_argument(
        "--bn-batches",
        type=int,
        default=20,
        help="recompute BatchNorm statistics over N training batches before each evaluation; "
        "0 keeps Keras-style running averages (default: %(default)s; AlexNet only)",
    )
    p.add_argument("--no-export", action="store_true", help="skip the ONNX export at the end")
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
        epilog="example:\n  cnn summary exported/lenet5.onnx",
    )
    p.add_argument("model", help="an ONNX file")
    p.set_defaults(func=_cmd_summary)

    p = sub.add_parser(
        "predict",
        help="classify image files with an exported model",
        formatter_class=_Formatter,
        description="Preprocessing follows the model's metadata (grey or RGB, resize, "
        "scale to [0, 1]). Many files run as one batch.",
        epilog="examples:\n  cnn predict exported/lenet5.onnx shirt.png boot.jpg\n"
        "  cnn predict exported/lenet5.onnx photo.jpg --invert --top-k 1 --json",
    )
    p.add_argument("model", help="an ONNX file exported by cnn train")
    p.add_argument("images", nargs="+", help="PNG, JPEG or any format Pillow reads")
    p.add_argument("--backend", default="numba", choices=["numba", "onnxruntime",
                   "onnxruntime-cuda"], help="default: %(default)s")  # fmt: skip
    p.add_argument("--top-k", type=_positive_int, default=3, help="default: %(default)s")
    p.add_argument(
        "--invert",
        action="store_true",
        help="for dark objects on a light background (the datasets are light on dark)",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=_cmd_predict)

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
    p.add_argument("--batch", type=_positive_int, default=1, help="batch size of the random input")
    p.add_argument("--seed", type=int, default=0, help="seed of the random input (default: 0)")
    p.set_defaults(func=_cmd_bisect)
    return parser


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
        message = str(exc).strip() or type(exc).__name__
        print(f"cnn {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USAGE
