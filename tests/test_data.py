"""IDX parsing, checksums, the order of data sources, and the download path.

Downloads go only to a local HTTP server on 127.0.0.1, started by the test.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import threading
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from conftest import idx_bytes, write_dataset

from dataio import datasets as D
from dataio.datasets import (
    DATASETS,
    DatasetError,
    DatasetNotFoundError,
    batch_indices,
    load_dataset,
    locate,
    parse_idx,
)

# ------------------------------------------------------------------------ the parser


def test_parse_idx_round_trip():
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(parse_idx(idx_bytes(a)), a)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b"\x00\x00\x0d\x03" + b[4:], "bad IDX magic"),  # float type code
        (lambda b: b"\x01\x00" + b[2:], "bad IDX magic"),  # non-zero leading bytes
        (lambda b: b[:2], "too short"),
        (lambda b: b[:10], "truncated IDX header"),
        (lambda b: b[:-1], "truncated"),
        (lambda b: b + b"\x00", "trailing bytes"),
    ],
    ids=["type-code", "leading-bytes", "2-bytes", "header", "data", "trailing"],
)
def test_parse_idx_rejects_malformed(mutate, message):
    good = idx_bytes(np.zeros((3, 28, 28), np.uint8))
    with pytest.raises(DatasetError, match=message):
        parse_idx(mutate(good), source="made-up")


def test_load_tiny_dataset_gz_and_raw(tmp_path, isolated_env):
    for gz in (True, False):
        folder = tmp_path / f"gz{gz}"
        spec = write_dataset(folder, n_train=100, n_test=30, gz=gz)
        ds = load_dataset(spec=spec, data_dir=folder, download=False)
        assert ds.folder == folder
        assert (len(ds.train), len(ds.validation), len(ds.test)) == (90, 10, 30)
        assert ds.train.images.shape == (90, 28, 28) and ds.train.labels.dtype == np.int64


def test_validation_is_the_first_training_images(tmp_path, isolated_env):
    spec = write_dataset(tmp_path / "d", n_train=100)
    ds = load_dataset(spec=spec, data_dir=tmp_path / "d", download=False)
    raw = parse_idx(gzip.decompress((tmp_path / "d/train-images-idx3-ubyte.gz").read_bytes()))
    np.testing.assert_array_equal(ds.validation.images, raw[:10])
    np.testing.assert_array_equal(ds.train.images, raw[10:])


def test_checksum_mismatch_names_the_file(tmp_path, isolated_env):
    spec = write_dataset(tmp_path / "d")
    images, labels = spec.files["test"]
    bad = replace(spec, files={**spec.files, "test": (replace(images, sha256="0" * 64), labels)})
    with pytest.raises(DatasetError, match=r"t10k-images-idx3-ubyte.gz: checksum mismatch"):
        load_dataset(spec=bad, data_dir=tmp_path / "d", download=False)


def test_label_out_of_range(tmp_path, isolated_env):
    folder = tmp_path / "d"
    spec = write_dataset(folder)
    labels = np.zeros(50, np.uint8)
    labels[7] = 12
    payload = idx_bytes(labels)
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(payload))
    images, lab = spec.files["test"]
    spec = replace(
        spec,
        files={
            **spec.files,
            "test": (images, replace(lab, sha256=hashlib.sha256(payload).hexdigest())),
        },
    )
    with pytest.raises(DatasetError, match=r"label 12 at index 7: expected 0\.\.9"):
        load_dataset(spec=spec, data_dir=folder, download=False)


def test_count_mismatch_between_images_and_labels(tmp_path, isolated_env):
    folder = tmp_path / "d"
    spec = write_dataset(folder)
    payload = idx_bytes(np.zeros(49, np.uint8))
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(payload))
    images, lab = spec.files["test"]
    lab = replace(lab, sha256=hashlib.sha256(payload).hexdigest(), shape=(49,))
    spec = replace(spec, files={**spec.files, "test": (images, lab)})
    with pytest.raises(DatasetError, match=r"50 images but .* has 49 labels"):
        load_dataset(spec=spec, data_dir=folder, download=False)


def test_corrupt_gzip(tmp_path, isolated_env):
    folder = tmp_path / "d"
    spec = write_dataset(folder)
    path = folder / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(DatasetError, match=r"train-labels-idx1-ubyte\.gz: corrupt gzip"):
        load_dataset(spec=spec, data_dir=folder, download=False)


# ------------------------------------------------------------------- source ordering


def test_source_order(tmp_path, isolated_env, monkeypatch):
    """--data-dir, then $CNN_DATA_DIR, then the user cache, then the system folder."""
    spec = write_dataset(tmp_path / "system")
    spec = replace(spec, system_dirs=(tmp_path / "system",))
    for name in ("flag", "env", "cache/cnn/tiny"):
        write_dataset(tmp_path / name)
    monkeypatch.setenv("CNN_DATA_DIR", str(tmp_path / "env"))
    quiet = {"download": False, "log": lambda *a: None}
    assert locate(spec, tmp_path / "flag", **quiet) == tmp_path / "flag"
    assert locate(spec, None, **quiet) == tmp_path / "env"
    # A named folder without the files is passed over, not mistaken for the data.
    assert locate(spec, tmp_path / "empty", **quiet) == tmp_path / "env"
    monkeypatch.delenv("CNN_DATA_DIR")
    assert locate(spec, None, **quiet) == tmp_path / "cache/cnn/tiny"
    for f in (tmp_path / "cache/cnn/tiny").iterdir():
        f.unlink()
    assert locate(spec, None, **quiet) == tmp_path / "system"


def test_incomplete_folder_does_not_count(tmp_path, isolated_env):
    spec = write_dataset(tmp_path / "d")
    (tmp_path / "d/t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetNotFoundError):
        locate(spec, tmp_path / "d", download=False)


def test_not_found_names_every_way(tmp_path, isolated_env):
    spec = replace(
        DATASETS["fashion-mnist"],
        system_dirs=(tmp_path / "nowhere",),
        mirrors=("http://127.0.0.1:9/",),  # the discard port: connection refused at once
    )
    with pytest.raises(DatasetNotFoundError) as info:
        locate(spec, tmp_path / "given", log=lambda *a: None)
    text = str(info.value)
    for way in ("--data-dir", "CNN_DATA_DIR", str(tmp_path / "cache"), "apt-get install"):
        assert way in text
    assert "dataset-fashion-mnist" in text and "download failed" in text
    assert not (tmp_path / "given").exists() or not any((tmp_path / "given").iterdir())


def test_no_silent_fallback_to_another_dataset(tmp_path, isolated_env):
    write_dataset(tmp_path / "cache/cnn/fashion-mnist")  # real names, wrong contents
    with pytest.raises(DatasetError, match="checksum mismatch"):
        load_dataset("fashion-mnist", download=False)


def test_unknown_dataset():
    with pytest.raises(ValueError, match=r"unknown dataset 'cifar'.*fashion-mnist"):
        load_dataset("cifar")


# ------------------------------------------------------------------------ download


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def http_mirror(tmp_path):
    """Serve tmp_path/'mirror' on 127.0.0.1 at a free port."""
    root = tmp_path / "mirror"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_download_good_checksum(tmp_path, isolated_env, http_mirror):
    root, url = http_mirror
    spec = replace(write_dataset(root), mirrors=("http://127.0.0.1:9/", url))
    log = []
    ds = load_dataset(spec=spec, log=log.append)
    cache = tmp_path / "cache/cnn/tiny"
    assert ds.folder == cache
    assert sorted(p.name for p in cache.iterdir()) == sorted(p.name for p in root.iterdir())
    assert any(url in line for line in log)
    # The second load finds the cache and downloads nothing.
    log.clear()
    load_dataset(spec=spec, log=log.append)
    assert log == []


def test_download_into_the_named_folder(tmp_path, isolated_env, http_mirror):
    root, url = http_mirror
    spec = replace(write_dataset(root), mirrors=(url,))
    assert locate(spec, tmp_path / "mine", log=lambda *a: None) == tmp_path / "mine"


def test_download_bad_checksum_writes_nothing(tmp_path, isolated_env, http_mirror):
    root, url = http_mirror
    spec = write_dataset(root)
    images, labels = spec.files["train"]
    spec = replace(
        spec,
        mirrors=(url,),
        files={**spec.files, "train": (images, replace(labels, sha256="f" * 64))},
    )
    with pytest.raises(DatasetNotFoundError, match="checksum mismatch"):
        locate(spec, log=lambda *a: None)
    cache = tmp_path / "cache/cnn/tiny"
    written = sorted(p.name for p in cache.iterdir()) if cache.exists() else []
    assert "train-labels-idx1-ubyte.gz" not in written
    assert not [n for n in written if n.endswith(".tmp")]  # no partial files


def test_download_missing_on_mirror(tmp_path, isolated_env, http_mirror):
    root, url = http_mirror
    spec = replace(write_dataset(root), mirrors=(url,))
    (root / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DatasetNotFoundError, match="t10k-images-idx3-ubyte"):
        locate(spec, log=lambda *a: None)


# ----------------------------------------------------------------------- batching


def test_batch_indices_cover_each_image_once():
    batches = list(batch_indices(103, 10, seed=1))
    assert [len(b) for b in batches] == [10] * 10 + [3]
    assert sorted(np.concatenate(batches)) == list(range(103))
    assert [list(b) for b in batch_indices(103, 10, seed=1)] == [list(b) for b in batches]


def test_batch_indices_shard_for_ddp():
    ranks = [list(batch_indices(103, 10, seed=3, rank=r, world=2)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1])  # collectives line up
    seen = np.concatenate([np.concatenate(r) for r in ranks])
    assert set(seen) == set(range(103)) and len(seen) == 104  # one wrapped image
    exact = [
        np.concatenate(list(batch_indices(103, 10, seed=None, rank=r, world=2, pad=False)))
        for r in range(2)
    ]
    assert sorted(np.concatenate(exact)) == list(range(103))


# --------------------------------------------------------------------- real data


def test_real_fashion_mnist_checks_out(fashion_dir):
    ds = load_dataset("fashion-mnist", fashion_dir, download=False)
    assert (len(ds.train), len(ds.validation), len(ds.test)) == (55_000, 5_000, 10_000)
    assert np.bincount(ds.test.labels).tolist() == [1000] * 10
    assert ds.spec.labels[9] == "Ankle boot"


def test_module_has_no_torch_dependency():
    assert "torch" not in Path(D.__file__).read_text()
