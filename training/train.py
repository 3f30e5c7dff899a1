"""Train LeNet-5 or AlexNet on (Fashion-)MNIST, checkpoint every epoch, export to ONNX.

Run it with ``cnn train lenet5`` (or ``python -m training lenet5``); on more
processes with PyTorch's DistributedDataParallel:
``torchrun --nproc-per-node 2 -m training lenet5 --subset 2000``.

Files written to ``--out`` (default ``runs/``), each through a temp file and a rename:
``<model>.pt`` (checkpoint, every epoch), ``<model>.metrics.json``,
``<model>.curves.png`` and, at the end, ``<model>.onnx``.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from dataio.datasets import Dataset, Split, batch_indices, load_dataset
from dataio.files import atomic_write
from training.catalog import ModelSpec, get_model_spec
from training.preprocess import preprocessing_metadata, to_model_input

CHECKPOINT_VERSION = 1


@dataclass
class TrainConfig:
    model: str = "lenet5"
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    epochs: int | None = None  # None: the model's default
    batch_size: int | None = None
    lr: float | None = None
    seed: int = 0
    device: str = "cpu"
    max_steps: int | None = None
    subset: int | None = None
    out: str = "runs"
    resume: str | bool = False  # True: <out>/<model>.pt; a string: that checkpoint
    export: bool = True
    bn_batches: int = 20  # BN statistics recomputed over this many batches before evaluating
    progress: bool | None = None  # progress bars: None on a terminal only, True always
    command: str = field(default_factory=lambda: shlex.join(["cnn", *sys.argv[1:]]))

    def resolved(self) -> TrainConfig:
        spec = get_model_spec(self.model)
        return TrainConfig(
            **{
                **asdict(self),
                "epochs": self.epochs if self.epochs is not None else spec.default_epochs,
                "batch_size": self.batch_size or spec.default_batch_size,
                "lr": self.lr if self.lr is not None else spec.default_lr,
            }
        )


@dataclass
class Outputs:
    checkpoint: Path
    metrics: Path
    curves: Path
    onnx: Path

    @classmethod
    def under(cls, out: str | os.PathLike, model: str) -> Outputs:
        base = Path(out)
        return cls(
            base / f"{model}.pt",
            base / f"{model}.metrics.json",
            base / f"{model}.curves.png",
            base / f"{model}.onnx",
        )


# ---------------------------------------------------------------------- distributed


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device: str) -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size())


def _all_sum(values: list[float], d: Dist) -> list[float]:
    if d.world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


# ------------------------------------------------------------------------ file writes


def _write_json(obj: object, path: Path) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2) + "\n"))


def _plot_curves(history: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for split in ("train", "val"):
        ax_loss.plot(epochs, [h[f"{split}_loss"] for h in history], marker="o", label=split)
        ax_acc.plot(epochs, [h[f"{split}_accuracy"] for h in history], marker="o", label=split)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


# ---------------------------------------------------------------------- train / test


def _batch(split: Split, idx: np.ndarray, spec: ModelSpec, device: torch.device):
    x = to_model_input(torch.from_numpy(split.images[idx]), spec.input_shape).to(device)
    y = torch.from_numpy(split.labels[idx]).to(device)
    return x, y


def evaluate(
    model: nn.Module,
    split: Split,
    spec: ModelSpec,
    batch_size: int,
    device: torch.device,
    d: Dist,
    desc: str = "evaluate",
    show_bar: bool | None = None,
) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) over the whole split, summed across ranks."""
    model.eval()
    loss_sum = correct = count = 0.0
    batches = list(
        batch_indices(len(split), batch_size, seed=None, rank=d.rank, world=d.world, pad=False)
    )
    with torch.no_grad(), _progress(len(batches), desc, d.main, show_bar, leave=False) as bar:
        for idx in batches:
            x, y = _batch(split, idx, spec, device)
            logits = model(x)
            loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
            correct += float((logits.argmax(1) == y).sum())
            count += len(idx)
            bar.update(1)
    loss_sum, correct, count = _all_sum([loss_sum, correct, count], d)
    return loss_sum / max(count, 1), correct / max(count, 1)


def recalibrate_batchnorm(
    model: nn.Module, split: Split, spec: ModelSpec, cfg: TrainConfig, epoch: int, device
) -> bool:
    """Recompute BatchNorm's running statistics as a plain average over training batches.

    With Keras' momentum (0.99 per batch) the running statistics of a short run are
    still mostly their initial values, so evaluation-mode BN is far off and a
    50-step AlexNet tests at chance level. This is ``torch.optim.swa_utils.update_bn``
    over ``cfg.bn_batches`` batches: the weights are untouched. Every rank uses the
    same batches, so the statistics agree across DDP processes. Returns whether the
    model has BatchNorm layers at all.
    """
    from torch.optim.swa_utils import update_bn

    if cfg.bn_batches < 1 or not any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()
    ):
        return False
    batches = batch_indices(len(split), cfg.batch_size, seed=cfg.seed + epoch + 7919)
    inputs = (
        _batch(split, idx, spec, device)[0]
        for _, idx in zip(range(cfg.bn_batches), batches, strict=False)
    )
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        update_bn(inputs, model)
    return True


def _progress(total: int, desc: str, show: bool, bar: bool | None, leave: bool = True):
    """A bar on a terminal (or with ``--progress``); in a log nothing, since the epoch's
    own line follows (dataio/progress.py)."""
    from dataio.progress import progress

    return progress(total, desc, unit="batch", bar=bar, line=False, leave=leave, show=show)


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Dataset,
    spec: ModelSpec,
    cfg: TrainConfig,
    epoch: int,
    step: int,
    device: torch.device,
    d: Dist,
) -> tuple[float, float, int]:
    """One pass over the training split; returns (loss, accuracy, global step)."""
    model.train()
    batches = list(
        batch_indices(
            len(data.train), cfg.batch_size, seed=cfg.seed + epoch, rank=d.rank, world=d.world
        )
    )
    if cfg.max_steps is not None:
        batches = batches[: max(0, cfg.max_steps - step)]
    loss_sum = correct = count = 0.0
    with _progress(len(batches), f"epoch {epoch + 1}/{cfg.epochs}", d.main, cfg.progress) as bar:
        for idx in batches:
            x, y = _batch(data.train, idx, spec, device)
            optimizer.zero_grad(set_to_none=True)
            logits = model(x)
            loss = nn.functional.cross_entropy(logits, y)
            loss.backward()
            optimizer.step()
            step += 1
            loss_sum += loss.item() * len(idx)
            correct += float((logits.argmax(1) == y).sum())
            count += len(idx)
            bar.update(1)
            bar.set_postfix(
                loss=f"{loss_sum / count:.4f}", acc=f"{correct / count:.4f}", refresh=False
            )
    loss_sum, correct, count = _all_sum([loss_sum, correct, count], d)
    return loss_sum / max(count, 1), correct / max(count, 1), step


def read_checkpoint(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for a file that is not a checkpoint
        raise ValueError(f"{path}: not a readable torch checkpoint ({exc})") from exc
    if not isinstance(ckpt, dict) or ckpt.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: not a checkpoint of this project (version {CHECKPOINT_VERSION})")
    return ckpt


def _resume_checkpoint(path: Path, cfg: TrainConfig) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint at {path}: train without --resume first")
    ckpt = read_checkpoint(path)
    saved = ckpt["config"]
    for key in ("model", "dataset"):
        if saved[key] != getattr(cfg, key):
            raise ValueError(
                f"--resume {path}: checkpoint is for {key} {saved[key]!r}, "
                f"this run asks for {getattr(cfg, key)!r}"
            )
    return ckpt


def train(cfg: TrainConfig, *, log=print) -> dict:
    """Train, checkpoint each epoch, test, export. Returns the metrics dictionary."""
    cfg = cfg.resolved()
    spec = get_model_spec(cfg.model)
    for name in ("epochs", "batch_size", "max_steps"):
        value = getattr(cfg, name)
        if value is not None and value < (0 if name == "epochs" else 1):
            raise ValueError(f"--{name.replace('_', '-')} must be positive, received {value}")
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda: this torch build sees no CUDA device; use --device cpu")
    d = _init_distributed(cfg.device)
    device = torch.device(cfg.device)
    outputs = Outputs.under(cfg.out, cfg.model)
    quiet = log if d.main else (lambda *a, **k: None)

    torch.manual_seed(cfg.seed)
    model = spec.build().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    history: list[dict] = []
    start_epoch = step = 0
    if cfg.resume:
        ckpt_path = outputs.checkpoint if cfg.resume is True else Path(cfg.resume)
        ckpt = _resume_checkpoint(ckpt_path, cfg)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        history, start_epoch, step = ckpt["history"], ckpt["epoch"], ckpt["step"]
        torch.set_rng_state(ckpt["rng"])
        quiet(f"resumed from {ckpt_path} after epoch {start_epoch} (step {step})")
    else:
        torch.manual_seed(cfg.seed + d.rank)  # dropout masks differ per rank

    data = load_dataset(cfg.dataset, cfg.data_dir, subset=cfg.subset, log=quiet)
    quiet(
        f"{cfg.model} on {cfg.dataset} ({data.folder}): {len(data.train)} train, "
        f"{len(data.validation)} validation, {len(data.test)} test images; "
        f"{d.world} process(es), batch {cfg.batch_size} each, device {cfg.device}"
    )
    net = model
    if d.world > 1:
        net = nn.parallel.DistributedDataParallel(model)

    started = time.perf_counter()
    for epoch in range(start_epoch, cfg.epochs):
        if cfg.max_steps is not None and step >= cfg.max_steps:
            break
        t0 = time.perf_counter()
        train_loss, train_acc, step = train_one_epoch(
            net, optimizer, data, spec, cfg, epoch, step, device, d
        )
        recalibrate_batchnorm(model, data.train, spec, cfg, epoch, device)
        val_loss, val_acc = evaluate(
            net, data.validation, spec, cfg.batch_size, device, d, "validate", cfg.progress
        )
        history.append(
            {
                "epoch": epoch + 1,
                "step": step,
                "train_loss": train_loss,
                "train_accuracy": train_acc,
                "val_loss": val_loss,
                "val_accuracy": val_acc,
                "seconds": time.perf_counter() - t0,
            }
        )
        quiet(
            f"epoch {epoch + 1}: train loss {train_loss:.4f} acc {train_acc:.4f} | "
            f"val loss {val_loss:.4f} acc {val_acc:.4f} | {history[-1]['seconds']:.1f} s"
        )
        if d.main:
            state = {
                "version": CHECKPOINT_VERSION,
                "config": asdict(cfg),
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "epoch": epoch + 1,
                "step": step,
                "history": history,
                "rng": torch.get_rng_state(),
            }
            atomic_write(outputs.checkpoint, lambda tmp, s=state: torch.save(s, tmp))
            _plot_curves(history, outputs.curves, f"{cfg.model} on {cfg.dataset}")
    train_seconds = time.perf_counter() - started

    test_loss, test_acc = evaluate(
        net, data.test, spec, cfg.batch_size, device, d, desc="test", show_bar=cfg.progress
    )
    quiet(f"test: loss {test_loss:.4f} accuracy {test_acc:.4f} on {len(data.test)} images")
    metrics = {
        "model": cfg.model,
        "dataset": cfg.dataset,
        "command": cfg.command,
        "config": asdict(cfg),
        "world_size": d.world,
        "train_seconds": train_seconds,
        "steps": step,
        "epochs": history,
        "test_loss": test_loss,
        "test_accuracy": test_acc,
    }
    if d.main:
        _write_json(metrics, outputs.metrics)
        if cfg.export:
            model.eval()
            sample = _batch(data.test, np.arange(min(64, len(data.test))), spec, device)[0]
            report = export_trained(
                model.cpu(), outputs.onnx, spec, data, test_acc, cfg.command, sample.cpu(), quiet
            )
            metrics["onnx"] = str(report.path)
            metrics["onnx_max_abs_diff"] = report.max_abs_diff
            _write_json(metrics, outputs.metrics)
            quiet(f"wrote {report.path} ({report.size_bytes / 1e6:.1f} MB)")
    if d.world > 1:
        dist.barrier()
    return metrics


def export_trained(
    model: nn.Module,
    path: Path,
    spec: ModelSpec,
    data: Dataset,
    test_accuracy: float,
    command: str,
    sample: torch.Tensor,
    log=print,
):
    """Export with the metadata every later tool reads from the file."""
    from training.export import export_onnx

    metadata = {
        "model": spec.name,
        "labels": json.dumps(list(data.spec.labels)),
        "dataset": data.spec.name,
        "test_accuracy": f"{test_accuracy:.4f}",
        "test_images": str(len(data.test)),
        "input_shape": json.dumps(["batch", *spec.input_shape]),
        "preprocessing": preprocessing_metadata(spec.input_shape),
        "training_command": command,
        "torch_version": torch.__version__,
    }
    return export_onnx(model, path, sample=sample, metadata=metadata, log=log)


def export_checkpoint(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    data_dir: str | None = None,
    log=print,
):
    """``cnn export CHECKPOINT``: rebuild the model, re-test it, export it."""
    path = Path(checkpoint)
    ckpt = read_checkpoint(path)
    saved = ckpt["config"]
    spec = get_model_spec(saved["model"])
    model = spec.build()
    model.load_state_dict(ckpt["model"])
    data = load_dataset(saved["dataset"], data_dir or saved.get("data_dir"), subset=saved["subset"])
    bs = saved["batch_size"]
    _, test_acc = evaluate(model, data.test, spec, bs, torch.device("cpu"), Dist())
    log(f"test accuracy {test_acc:.4f} on {len(data.test)} images")
    sample = _batch(data.test, np.arange(min(64, len(data.test))), spec, torch.device("cpu"))[0]
    target = Path(out) if out else path.with_suffix(".onnx")
    return export_trained(model, target, spec, data, test_acc, saved["command"], sample, log)
