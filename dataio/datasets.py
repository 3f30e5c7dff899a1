"""MNIST and Fashion-MNIST: find the IDX files, check them, parse them, batch them.

Where the four files come from, first match wins:

1. ``--data-dir`` (the ``data_dir`` argument)
2. the ``CNN_DATA_DIR`` environment variable
3. the user cache folder (``$XDG_CACHE_HOME/cnn/<dataset>``, default ``~/.cache/cnn/<dataset>``)
4. a system folder from a Debian package (``apt-get install dataset-fashion-mnist``)
5. a download from the official mirrors into the first folder of 1-3 that was given

A folder counts when it holds all four files, gzipped or raw. Whatever is found is
checked, and a bad file is an error naming it: never a silent fall-back to another
folder or another dataset.

Checksums are the SHA-256 of the *decompressed* IDX payload. Debian re-compresses
the archives (their gzip bytes differ from the publisher's), and a user may keep
the files raw; the payload is the same in every case.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dataio.files import atomic_write_bytes

ENV_DATA_DIR = "CNN_DATA_DIR"
SPLITS = ("train", "test")
VALIDATION_SIZE = 5_000  # the article holds out the first 5,000 training images
DOWNLOAD_TIMEOUT_S = 30.0
_GZIP_MAGIC = b"\x1f\x8b"


class DatasetError(ValueError):
    """A dataset file exists but is not what it should be (corrupt, truncated, wrong)."""


class DatasetNotFoundError(FileNotFoundError):
    """No source had the dataset; the message lists every way to get it."""


@dataclass(frozen=True)
class IdxFile:
    name: str  # base name without .gz, e.g. "train-images-idx3-ubyte"
    sha256: str  # of the decompressed payload
    shape: tuple[int, ...]  # (count, 28, 28) or (count,)


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    labels: tuple[str, ...]
    files: dict[str, tuple[IdxFile, IdxFile]]  # split -> (images, labels)
    mirrors: tuple[str, ...]  # base URLs, tried in order; files are fetched as <name>.gz
    system_dirs: tuple[Path, ...] = field(default_factory=tuple)
    install_hint: str = ""

    def all_files(self) -> list[IdxFile]:
        return [f for split in SPLITS for f in self.files[split]]


def _mnist_style_files(hashes: Sequence[str]) -> dict[str, tuple[IdxFile, IdxFile]]:
    ti, tl, vi, vl = hashes
    return {
        "train": (
            IdxFile("train-images-idx3-ubyte", ti, (60_000, 28, 28)),
            IdxFile("train-labels-idx1-ubyte", tl, (60_000,)),
        ),
        "test": (
            IdxFile("t10k-images-idx3-ubyte", vi, (10_000, 28, 28)),
            IdxFile("t10k-labels-idx1-ubyte", vl, (10_000,)),
        ),
    }


DATASETS: dict[str, DatasetSpec] = {
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist",
        labels=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        files=_mnist_style_files(
            (
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
            )
        ),
        mirrors=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        ),
        system_dirs=(Path("/usr/share/datasets/fashion-mnist"),),
        install_hint="apt-get install dataset-fashion-mnist (Debian/Ubuntu)",
    ),
    "mnist": DatasetSpec(
        name="mnist",
        labels=tuple(str(d) for d in range(10)),
        files=_mnist_style_files(
            (
                "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
                "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
            )
        ),
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
    ),
}


def get_dataset_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}: expected one of {sorted(DATASETS)}") from None


# --------------------------------------------------------------------------- IDX parsing

_IDX_DTYPES = {0x08: np.dtype(np.uint8)}  # MNIST-style files only use unsigned bytes


def parse_idx(data: bytes, *, source: str = "<bytes>") -> np.ndarray:
    """Parse an uncompressed IDX payload into an array; raise DatasetError if malformed."""
    if len(data) < 4:
        raise DatasetError(f"{source}: {len(data)} bytes is too short for an IDX header")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code not in _IDX_DTYPES or ndim == 0:
        raise DatasetError(
            f"{source}: bad IDX magic number 0x{data[:4].hex()}: "
            "expected 0x0000080N (unsigned bytes, N dimensions)"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"{source}: truncated IDX header ({len(data)} of {header} bytes)")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = _IDX_DTYPES[dtype_code]
    expected = header + int(np.prod(dims)) * dtype.itemsize
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "has trailing bytes"
        raise DatasetError(
            f"{source}: {what}: dimensions {dims} need {expected} bytes, file has {len(data)}"
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)


def _decompress(raw: bytes, source: str) -> bytes:
    """The IDX payload of a file that may or may not be gzipped."""
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError) as exc:
        raise DatasetError(f"{source}: corrupt gzip archive ({exc})") from exc


def _check_payload(payload: bytes, spec: IdxFile, source: str) -> None:
    digest = hashlib.sha256(payload).hexdigest()
    if digest != spec.sha256:
        raise DatasetError(
            f"{source}: checksum mismatch for {spec.name}: "
            f"expected sha256 {spec.sha256}, received {digest}"
        )


def load_idx_file(path: Path, spec: IdxFile) -> np.ndarray:
    """Read, checksum and parse one file; its shape must be the one the spec expects."""
    payload = _decompress(path.read_bytes(), str(path))
    array = parse_idx(payload, source=str(path))
    _check_payload(payload, spec, str(path))
    if array.shape != spec.shape:
        raise DatasetError(f"{path}: expected shape {spec.shape}, received {array.shape}")
    return array


# ----------------------------------------------------------------------- finding files


def _file_in(folder: Path, idx: IdxFile) -> Path | None:
    for candidate in (folder / f"{idx.name}.gz", folder / idx.name):
        if candidate.is_file():
            return candidate
    return None


def _complete(folder: Path, spec: DatasetSpec) -> bool:
    return all(_file_in(folder, f) is not None for f in spec.all_files())


def user_cache_dir(dataset: str) -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cnn" / dataset


def candidate_dirs(spec: DatasetSpec, data_dir: str | os.PathLike | None) -> list[tuple[str, Path]]:
    """The folders searched, in order, each with the way it was chosen."""
    found: list[tuple[str, Path]] = []
    if data_dir is not None:
        found.append(("--data-dir", Path(data_dir)))
    if os.environ.get(ENV_DATA_DIR):
        found.append((ENV_DATA_DIR, Path(os.environ[ENV_DATA_DIR])))
    found.append(("user cache", user_cache_dir(spec.name)))
    found.extend(("system package", d) for d in spec.system_dirs)
    return found


def locate(
    spec: DatasetSpec,
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool = True,
    log=print,
) -> Path:
    """The folder that holds the dataset, downloading it if no folder does."""
    candidates = candidate_dirs(spec, data_dir)
    for _, folder in candidates:
        if _complete(folder, spec):
            return folder
    # Download into the first folder the user named, else the cache.
    target = next(folder for how, folder in candidates if how != "system package")
    errors: list[str] = []
    if download and spec.mirrors:
        try:
            download_dataset(spec, target, log=log)
            return target
        except (OSError, DatasetError) as exc:
            errors.append(str(exc))
    searched = "\n".join(f"  - {how}: {folder}" for how, folder in candidates)
    ways = [
        f"pass --data-dir DIR with the four files of {spec.name} in it",
        f"set {ENV_DATA_DIR}=DIR",
        f"copy them into {user_cache_dir(spec.name)}",
    ]
    if spec.install_hint:
        ways.append(spec.install_hint)
    ways.append(f"connect to the internet and rerun: they download from {', '.join(spec.mirrors)}")
    detail = f"\ndownload failed: {errors[0]}" if errors else ""
    raise DatasetNotFoundError(
        f"dataset {spec.name!r} not found. Searched:\n{searched}{detail}\nTo get it:\n"
        + "\n".join(f"  * {w}" for w in ways)
    )


# ---------------------------------------------------------------------------- download


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
        return response.read()


def download_dataset(spec: DatasetSpec, target: Path, *, log=print) -> None:
    """Fetch every file from the first mirror that serves it with the right checksum.

    Each archive is checked before it is written, and written through a temp file
    and a rename, so the target never holds a partial or unverified file.
    """
    for idx in spec.all_files():
        if _file_in(target, idx) is not None:
            continue
        failures = []
        for mirror in spec.mirrors:
            url = mirror.rstrip("/") + f"/{idx.name}.gz"
            try:
                log(f"downloading {url}")
                archive = _fetch(url)
                payload = _decompress(archive, url)
                parse_idx(payload, source=url)
                _check_payload(payload, idx, url)
            except (OSError, urllib.error.URLError, DatasetError) as exc:
                failures.append(f"{url}: {exc}")
                continue
            atomic_write_bytes(target / f"{idx.name}.gz", archive)
            break
        else:
            raise DatasetError(f"could not download {idx.name}: " + "; ".join(failures))


# ------------------------------------------------------------------------- the dataset


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # (N, 28, 28) uint8
    labels: np.ndarray  # (N,) int64

    def __len__(self) -> int:
        return len(self.labels)

    def head(self, n: int | None) -> Split:
        return self if n is None else Split(self.images[:n], self.labels[:n])


@dataclass(frozen=True)
class Dataset:
    spec: DatasetSpec
    folder: Path
    train: Split
    validation: Split
    test: Split


def _load_split(folder: Path, images: IdxFile, labels: IdxFile) -> Split:
    img_path, lbl_path = _file_in(folder, images), _file_in(folder, labels)
    if img_path is None or lbl_path is None:
        raise DatasetNotFoundError(f"{folder}: missing {images.name} or {labels.name}")
    x = load_idx_file(img_path, images)
    y = load_idx_file(lbl_path, labels)
    if len(x) != len(y):
        raise DatasetError(f"{img_path} has {len(x)} images but {lbl_path} has {len(y)} labels")
    if y.size and int(y.max()) > 9:
        bad = int(np.argmax(y > 9))
        raise DatasetError(f"{lbl_path}: label {int(y[bad])} at index {bad}: expected 0..9")
    return Split(x, y.astype(np.int64))


def load_dataset(
    name: str = "fashion-mnist",
    data_dir: str | os.PathLike | None = None,
    *,
    subset: int | None = None,
    download: bool = True,
    spec: DatasetSpec | None = None,
    log=print,
) -> Dataset:
    """Load a dataset, split off the first 5,000 training images for validation.

    ``subset`` keeps the first ``subset`` images of each of train, validation, test.
    """
    spec = spec or get_dataset_spec(name)
    if subset is not None and subset < 1:
        raise ValueError(f"subset must be a positive number of images, received {subset}")
    folder = locate(spec, data_dir, download=download, log=log)
    train = _load_split(folder, *spec.files["train"])
    test = _load_split(folder, *spec.files["test"])
    n_val = min(VALIDATION_SIZE, len(train) // 10)  # small hand-made files keep 90% to train
    validation = Split(train.images[:n_val], train.labels[:n_val])
    train = Split(train.images[n_val:], train.labels[n_val:])
    return Dataset(spec, folder, train.head(subset), validation.head(subset), test.head(subset))


def batch_indices(
    n: int,
    batch_size: int,
    *,
    seed: int | None,
    rank: int = 0,
    world: int = 1,
    pad: bool = True,
) -> Iterator[np.ndarray]:
    """Index batches for one epoch: shuffled by ``seed`` (None: in order), sharded by rank.

    With ``pad`` every rank gets the same number of batches (the permutation wraps
    around, as DistributedSampler does) so that DDP's collective calls line up;
    evaluation passes ``pad=False`` so that no image is counted twice.
    """
    order = np.arange(n) if seed is None else np.random.default_rng(seed).permutation(n)
    if world > 1:
        if pad:
            order = np.resize(order, -(-n // world) * world)
        order = order[rank::world]
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]
