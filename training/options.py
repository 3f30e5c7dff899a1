"""The ``train`` command's options, torch-free: ``cnn train`` and ``python -m training``
(for torchrun) parse the same arguments into the same ``TrainConfig``."""

from __future__ import annotations

import argparse
from typing import Any

from dataio.datasets import DATASETS
from training.catalog import MODELS


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {text}")
    return value


def add_train_parser(sub: Any, formatter_class: type = argparse.HelpFormatter) -> Any:
    """Add the ``train`` subcommand to ``sub`` (an argparse subparsers object)."""
    models = "; ".join(
        f"{m.name}: {m.default_epochs} epochs, batch {m.default_batch_size}, lr {m.default_lr:g}"
        for m in MODELS.values()
    )
    p = sub.add_parser(
        "train",
        help="train a model, checkpoint each epoch, export it to ONNX",
        formatter_class=formatter_class,
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
        "--batch-size", type=positive_int, default=None, help="per process (default: the model's)"
    )
    p.add_argument(
        "--lr", type=float, default=None, help="Adam learning rate (default: the model's)"
    )
    p.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="default: %(default)s")
    p.add_argument(
        "--max-steps",
        type=positive_int,
        default=None,
        help="stop after N optimizer steps (default: no limit)",
    )
    p.add_argument(
        "--subset",
        type=positive_int,
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
    p.add_argument(
        "--progress",
        action="store_true",
        default=None,
        help="draw progress bars even when stderr is not a terminal (default: only on one; "
        "a log gets one line per epoch)",
    )
    return p


def config_from_args(args: argparse.Namespace) -> Any:
    """The ``TrainConfig`` of parsed ``train`` arguments (imports torch)."""
    from training.train import TrainConfig

    return TrainConfig(
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
        progress=args.progress,
    )
