"""Shared fixtures: hand-made IDX datasets, the real Fashion-MNIST files, and the numba
cache filled once by `cnn warmup`."""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dataio.datasets import DATASETS, DatasetNotFoundError, DatasetSpec, IdxFile, locate


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array: magic 0x0000080N, big-endian dims, data."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_dataset(folder: Path, n_train: int = 200, n_test: int = 50, *, gz: bool = True):
    """Write four small random MNIST-style files; return the DatasetSpec that matches them."""
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, array in arrays.items():
        payload = idx_bytes(array)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(payload))
        else:
            (folder / name).write_bytes(payload)
        files[name] = IdxFile(name, hashlib.sha256(payload).hexdigest(), array.shape)
    return DatasetSpec(
        name="tiny",
        labels=tuple(str(i) for i in range(10)),
        files={
            "train": (files["train-images-idx3-ubyte"], files["train-labels-idx1-ubyte"]),
            "test": (files["t10k-images-idx3-ubyte"], files["t10k-labels-idx1-ubyte"]),
        },
        mirrors=(),
    )


@pytest.fixture
def isolated_env(tmp_path, monkeypatch):
    """No CNN_DATA_DIR, and a user cache folder inside tmp_path."""
    monkeypatch.delenv("CNN_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


@pytest.fixture(scope="session")
def fashion_dir() -> Path:
    """The real Fashion-MNIST folder. CI installs it (see .ci/run); a bare checkout skips."""
    try:
        return locate(DATASETS["fashion-mnist"], download=False, log=lambda *a: None)
    except DatasetNotFoundError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must provide Fashion-MNIST: {exc}")
        pytest.skip(f"Fashion-MNIST not installed: {str(exc).splitlines()[0]}")


def random_alexnet(seed: int = 0):
    """An AlexNet in eval mode whose BatchNorm layers hold distinct random statistics.

    (Fresh BN layers hold ones and zeros, which the exporter would store only once.)
    """
    import torch

    from training.catalog import MODELS

    torch.manual_seed(seed)
    model = MODELS["alexnet"].build().eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model


ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def warmed_cache() -> subprocess.CompletedProcess:
    """`cnn warmup` run once, in a process of its own, into the suite's numba cache.

    The tests that use it run first (``pytest_collection_modifyitems``): in CI, whose
    cache starts empty, it compiles every kernel once, and the suite's processes load them
    from what it wrote instead of each compiling its own. (tox sets PYTHONSAFEPATH, so a
    subprocess started in the checkout imports the installed package, as pytest does, and
    every process shares the one cache.)"""
    return subprocess.run(
        [sys.executable, "-m", "cnn", "warmup"],
        cwd=ROOT,
        text=True,
        capture_output=True,
        timeout=2400,  # a hang guard: 1,048 s of CPU on an AMD Zen 3, loaded
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests that use ``warmed_cache`` first, the rest in their order."""
    items.sort(key=lambda item: "warmed_cache" not in getattr(item, "fixturenames", ()))
