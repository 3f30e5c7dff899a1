"""The models this project trains, with their input shapes and training defaults.

Torch-free, so that the command line can list models and defaults without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class ModelSpec:
    name: str
    input_shape: tuple[int, int, int]  # (C, H, W) of one image, as the graph takes it
    default_epochs: int
    default_batch_size: int
    default_lr: float

    def build(self) -> nn.Module:
        from training.models import MODEL_CLASSES

        return MODEL_CLASSES[self.name]()


MODELS: dict[str, ModelSpec] = {
    "lenet5": ModelSpec("lenet5", (1, 28, 28), 15, 64, 1e-3),
    "alexnet": ModelSpec("alexnet", (3, 227, 227), 1, 64, 1e-4),
}


def get_model_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}: expected one of {sorted(MODELS)}") from None
