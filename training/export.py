"""Export a trained model to one self-contained ONNX file, then prove the file is right.

One function does it all, as timm's ``onnx_export`` does: export (dynamo, dynamic
batch axis), write the metadata, ``onnx.checker`` with ``full_check``, then a parity
check of torch against onnxruntime on a real batch. Everything happens on a temp
file beside the target; only a file that passed every check is renamed into place,
so a failed export never leaves a broken file nor replaces a good one.

The graph contract later tools rely on: one input ``input``, float32 NCHW pixels in
[0, 1]; one output ``probabilities``, (N, 10), softmax.

Command line: ``cnn export runs/lenet5.pt [--out exported/lenet5.onnx]``.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dataio.files import atomic_write
from training.models import WithSoftmax

INPUT_NAME = "input"
OUTPUT_NAME = "probabilities"
DEFAULT_OPSET = 18
PARITY_TOLERANCE = 1e-5


class ExportError(RuntimeError):
    """The exported graph failed a check; the previous file (if any) is untouched."""


@dataclass(frozen=True)
class ExportReport:
    path: Path
    max_abs_diff: float
    parity_batch: int
    size_bytes: int


def _to_proto(model: nn.Module, example: torch.Tensor, opset: int, output_name: str = OUTPUT_NAME):
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    # The exporter warns about torchvision ops it skips and other things we do on purpose.
    registry_log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registry_log.level
    registry_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model,
                (example,),
                dynamo=True,
                input_names=[INPUT_NAME],
                output_names=[output_name],
                dynamic_shapes={"x": {0: batch}},
                opset_version=opset,
                verbose=False,
            )
    finally:
        registry_log.setLevel(level)
    return program.model_proto


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    sample: torch.Tensor,
    metadata: dict[str, str],
    opset: int = DEFAULT_OPSET,
    tolerance: float = PARITY_TOLERANCE,
    log=print,
) -> ExportReport:
    """Export ``model`` (which returns logits) with a softmax head to ``path``.

    ``sample`` is a real input batch (N, C, H, W), N >= 2, used for the parity check.
    """
    import onnx
    import onnxruntime as ort

    if sample.ndim != 4 or sample.shape[0] < 2:
        raise ValueError(
            f"sample: expected a batch (N>=2, C, H, W), received {tuple(sample.shape)}"
        )
    path = Path(path)
    wrapped = WithSoftmax(model).eval()
    proto = _to_proto(wrapped, sample[:2].contiguous(), opset)
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, str(value)

    with torch.no_grad():
        expected = wrapped(sample).numpy()
    diffs: list[float] = []

    def write_and_check(tmp: Path) -> None:
        onnx.save_model(proto, tmp, save_as_external_data=False)
        onnx.checker.check_model(str(tmp), full_check=True)
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        (received,) = session.run([OUTPUT_NAME], {INPUT_NAME: sample.numpy()})
        if received.shape != expected.shape:
            raise ExportError(
                f"{path}: output {OUTPUT_NAME!r} has shape {received.shape} in onnxruntime, "
                f"expected {expected.shape} as torch gives"
            )
        diff = float(np.max(np.abs(received - expected)))
        log(f"export parity on {len(sample)} images: max |torch - onnxruntime| = {diff:.3g}")
        if not diff <= tolerance:
            raise ExportError(
                f"{path}: torch and onnxruntime differ by {diff:.3g} (max abs), "
                f"expected at most {tolerance:g}; the previous file is kept"
            )
        diffs.append(diff)

    atomic_write(path, write_and_check)
    return ExportReport(path, diffs[0], len(sample), path.stat().st_size)
