"""Real training runs on Fashion-MNIST subsets: accuracy, determinism, resume, DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from training import train as T
from training.train import TrainConfig, read_checkpoint, train

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
quiet = lambda *a, **k: None  # noqa: E731


def _cfg(tmp_path, fashion_dir, **kw) -> TrainConfig:
    base = {
        "model": "lenet5",
        "data_dir": str(fashion_dir),
        "subset": 2000,
        "epochs": 2,
        "out": str(tmp_path / "out"),
        "export": False,
        "command": "pytest",
    }
    return TrainConfig(**{**base, **kw})


def test_short_lenet5_run_learns(tmp_path, fashion_dir):
    """10,000 training images, 3 epochs: well above chance, and above 0.75 on test images."""
    cfg = _cfg(tmp_path, fashion_dir, subset=10_000, epochs=3, export=True)
    metrics = train(cfg, log=quiet)
    assert metrics["test_accuracy"] > 0.75, metrics["test_accuracy"]
    out = tmp_path / "out"
    on_disk = json.loads((out / "lenet5.metrics.json").read_text())
    assert on_disk["test_accuracy"] == metrics["test_accuracy"]
    assert [e["epoch"] for e in on_disk["epochs"]] == [1, 2, 3]
    assert on_disk["epochs"][-1]["train_loss"] < on_disk["epochs"][0]["train_loss"]
    assert (out / "lenet5.curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "lenet5.onnx").stat().st_size > 200_000
    assert read_checkpoint(out / "lenet5.pt")["epoch"] == 3


def test_same_seed_same_weights(tmp_path, fashion_dir):
    train(_cfg(tmp_path / "a", fashion_dir, epochs=1), log=quiet)
    train(_cfg(tmp_path / "b", fashion_dir, epochs=1), log=quiet)
    train(_cfg(tmp_path / "c", fashion_dir, epochs=1, seed=1), log=quiet)
    a, b, c = (read_checkpoint(tmp_path / x / "out/lenet5.pt")["model"] for x in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_resume_after_interruption_matches_an_uninterrupted_run(tmp_path, fashion_dir, monkeypatch):
    full = train(_cfg(tmp_path / "full", fashion_dir, epochs=3), log=quiet)

    real_epoch = T.train_one_epoch

    def interrupted(*args, **kwargs):
        if args[5] == 1:  # epoch index 1, the second: Ctrl-C: Ctrl-C arrives mid-run
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(T, "train_one_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(tmp_path / "cut", fashion_dir, epochs=3), log=quiet)
    ckpt_path = tmp_path / "cut/out/lenet5.pt"
    assert read_checkpoint(ckpt_path)["epoch"] == 1  # only the epoch in progress was lost
    assert not [p for p in ckpt_path.parent.iterdir() if p.name.endswith(".tmp")]

    monkeypatch.setattr(T, "train_one_epoch", real_epoch)
    resumed = train(_cfg(tmp_path / "cut", fashion_dir, epochs=3, resume=True), log=quiet)
    assert [e["epoch"] for e in resumed["epochs"]] == [1, 2, 3]
    assert resumed["test_accuracy"] == full["test_accuracy"]
    a = read_checkpoint(tmp_path / "full/out/lenet5.pt")["model"]
    b = read_checkpoint(ckpt_path)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_another_model(tmp_path, fashion_dir):
    train(_cfg(tmp_path, fashion_dir, epochs=1), log=quiet)
    ckpt = tmp_path / "out/lenet5.pt"
    with pytest.raises(ValueError, match="checkpoint is for dataset 'fashion-mnist'"):
        train(_cfg(tmp_path, fashion_dir, dataset="mnist", resume=str(ckpt)), log=quiet)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(_cfg(tmp_path / "none", fashion_dir, resume=True), log=quiet)


def test_max_steps_stops_early(tmp_path, fashion_dir):
    metrics = train(_cfg(tmp_path, fashion_dir, epochs=5, max_steps=7), log=quiet)
    assert metrics["steps"] == 7 and len(metrics["epochs"]) == 1


def test_alexnet_trains_on_resized_batches(tmp_path, fashion_dir):
    """Two AlexNet steps on 227x227 inputs made on the fly from 28x28 images."""
    cfg = _cfg(tmp_path, fashion_dir, model="alexnet", subset=16, batch_size=8, epochs=1)
    metrics = train(cfg, log=quiet)
    assert metrics["steps"] == 2
    assert np.isfinite(metrics["test_loss"])


def test_batchnorm_recalibration(tmp_path, fashion_dir):
    """BN statistics become the plain average over the given batches; LeNet-5 has none."""
    from dataio.datasets import load_dataset
    from training.train import recalibrate_batchnorm

    data = load_dataset("fashion-mnist", fashion_dir, subset=64, download=False)
    spec = T.get_model_spec("alexnet")
    torch.manual_seed(0)
    model = spec.build()
    bn = model.features[2]
    cfg = _cfg(tmp_path, fashion_dir, model="alexnet", batch_size=16, bn_batches=2)
    assert recalibrate_batchnorm(model, data.train, spec, cfg, 0, "cpu")
    assert bn.momentum == pytest.approx(0.01) and model.training  # both restored
    # The same two batches by hand: the mean of conv1+ReLU's per-batch channel means.
    batches = list(T.batch_indices(len(data.train), 16, seed=cfg.seed + 7919))[:2]
    with torch.no_grad():
        means = [
            model.features[1](model.features[0](T._batch(data.train, i, spec, "cpu")[0])).mean(
                (0, 2, 3)
            )
            for i in batches
        ]
    torch.testing.assert_close(bn.running_mean, sum(means) / 2, rtol=1e-4, atol=1e-5)
    lenet = T.get_model_spec("lenet5")
    assert not recalibrate_batchnorm(lenet.build(), data.train, lenet, cfg, 0, "cpu")
    off = _cfg(tmp_path, fashion_dir, model="alexnet", bn_batches=0)
    assert not recalibrate_batchnorm(model, data.train, spec, off, 0, "cpu")


def test_ddp_two_processes(tmp_path, fashion_dir):
    """torchrun with 2 CPU processes (gloo), batch 32 each, is one process with batch 64.

    Rank r takes images r, r+2, ... of each epoch's permutation, so step k of the two
    ranks together sees exactly the 64 images of the single process's step k, and
    DDP's averaged gradient is that batch's gradient, up to float rounding.
    """
    out = tmp_path / "ddp"
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(_free_port()),
        "-m",
        "training",
        "lenet5",
        "--subset",
        "2000",
        "--epochs",
        "2",
        "--batch-size",
        "32",
        "--data-dir",
        str(fashion_dir),
        "--out",
        str(out),
    ]
    run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    metrics = json.loads((out / "lenet5.metrics.json").read_text())
    assert metrics["world_size"] == 2
    # Each process took 1,000 of the 2,000 images per epoch, batch 32: 32 steps each.
    assert metrics["steps"] == 2 * 32
    assert (out / "lenet5.onnx").is_file()
    single = train(_cfg(tmp_path / "single", fashion_dir, batch_size=64), log=quiet)
    assert single["steps"] == metrics["steps"]
    a = read_checkpoint(out / "lenet5.pt")["model"]
    b = read_checkpoint(tmp_path / "single/out/lenet5.pt")["model"]
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    print(f"max |DDP - single process| weight difference: {worst:.3g}")
    assert worst < 1e-3
    assert abs(metrics["test_accuracy"] - single["test_accuracy"]) <= 0.005


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
