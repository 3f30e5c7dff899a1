"""Models this project did not make, as a user brings them, for trying the tools:

- ``resnet18.onnx``: ResNet-18 at torchvision's size (11.7 M parameters, 1,000
  classes, seeded random weights; torchvision itself does not install beside the
  CPU torch), exported as torchvision's docs do: ``torch.onnx.export`` (TorchScript
  exporter, opset 17), input ``input`` of shape (N, 3, 224, 224), no metadata;
- ``seg.onnx``: the U-Net-style segmentation head of training/zoo.py with symbolic
  batch, height and width (N, 3, H, W) -> (N, 5, H, W).

    python scripts/foreign_models.py OUT_DIR

Needs torch (``pip install '.[train]'``).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import torch

from training.zoo import resnet18_torchvision, seg_head


def export(model: torch.nn.Module, example: torch.Tensor, path: Path, axes: dict) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": axes, "output": axes},
        )
    print(f"wrote {path}")


def main(out: str) -> None:
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    export(resnet18_torchvision(), torch.rand(1, 3, 224, 224), folder / "resnet18.onnx", {0: "N"})
    export(seg_head(), torch.rand(1, 3, 64, 64), folder / "seg.onnx", {0: "N", 2: "H", 3: "W"})


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python scripts/foreign_models.py OUT_DIR")
    main(sys.argv[1])
