"""LeNet-5 and AlexNet as the source article builds them in Keras, in PyTorch.

Both ``forward`` methods return logits (what ``nn.CrossEntropyLoss`` wants); the
article's final softmax is added by :class:`WithSoftmax` at export time, so the
ONNX graph ends in ``probabilities`` exactly as the Keras model does.

Keras defaults carried over: 'same' padding is symmetric for odd kernels, and
BatchNormalization uses ``epsilon=1e-3`` and ``momentum=0.99``, which is
PyTorch's ``momentum=0.01`` (PyTorch weights the *new* batch statistic).
"""

from __future__ import annotations

import torch
from torch import nn

KERAS_BN_EPS = 1e-3
KERAS_BN_MOMENTUM = 0.01  # Keras momentum 0.99, expressed the PyTorch way


class LeNet5(nn.Module):
    """LeNet-5, 61,706 parameters; input (N, 1, 28, 28)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, kernel_size=5, padding=2),  # (N, 6, 28, 28) 'same'
            nn.Tanh(),
            nn.AvgPool2d(2),  # (N, 6, 14, 14)
            nn.Conv2d(6, 16, kernel_size=5),  # (N, 16, 10, 10) 'valid'
            nn.Tanh(),
            nn.AvgPool2d(2),  # (N, 16, 5, 5)
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),  # (N, 400)
            nn.Linear(400, 120),
            nn.Tanh(),
            nn.Linear(120, 84),
            nn.Tanh(),
            nn.Linear(84, num_classes),  # (N, 10) logits
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def _conv_relu_bn(c_in: int, c_out: int, kernel: int, stride: int = 1) -> list[nn.Module]:
    # The article puts BatchNormalization after the activation, not before it.
    padding = 0 if stride != 1 else kernel // 2  # stride 4 is 'valid', the rest 'same'
    return [
        nn.Conv2d(c_in, c_out, kernel_size=kernel, stride=stride, padding=padding),
        nn.ReLU(inplace=True),
        nn.BatchNorm2d(c_out, eps=KERAS_BN_EPS, momentum=KERAS_BN_MOMENTUM),
    ]


class AlexNet(nn.Module):
    """AlexNet as in the article, 58,325,066 trainable parameters; input (N, 3, 227, 227)."""

    def __init__(self, num_classes: int = 10, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *_conv_relu_bn(3, 96, 11, stride=4),  # (N, 96, 55, 55)
            nn.MaxPool2d(3, 2),  # (N, 96, 27, 27)
            *_conv_relu_bn(96, 256, 5),  # (N, 256, 27, 27)
            nn.MaxPool2d(3, 2),  # (N, 256, 13, 13)
            *_conv_relu_bn(256, 384, 3),  # (N, 384, 13, 13)
            *_conv_relu_bn(384, 384, 3),  # (N, 384, 13, 13)
            *_conv_relu_bn(384, 256, 3),  # (N, 256, 13, 13)
            nn.MaxPool2d(3, 2),  # (N, 256, 6, 6)
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),  # (N, 9216)
            nn.Linear(9216, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, num_classes),  # (N, 10) logits
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class WithSoftmax(nn.Module):
    """The article's last layer: Dense(10, activation='softmax'). Used for export."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(x), dim=1)


MODEL_CLASSES: dict[str, type[nn.Module]] = {"lenet5": LeNet5, "alexnet": AlexNet}


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable parameters, non-trainable buffers such as BN running statistics).

    The buffer count matches Keras' "non-trainable params": BN's running mean and
    variance, not PyTorch's extra ``num_batches_tracked`` counters.
    """
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    stats = sum(
        b.numel()
        for name, b in model.named_buffers()
        if name.endswith(("running_mean", "running_var"))
    )
    return trainable, stats
