"""Small, architecturally faithful CNNs built from torch layers, for export tests.

torchvision cannot be installed beside this CPU torch, so the architectures users
bring are rebuilt here: the same blocks, ops and wiring (residuals, inverted
residuals, squeeze-and-excitation, channel shuffle, grouped and depthwise convs,
channels-last LayerNorm, dense and parallel concatenations, fire modules), with
fewer blocks and narrower widths so that each runs in well under a second on a CPU.

Every builder seeds torch, builds, gives each BatchNorm (and LayerNorm, and layer
scale) distinct random statistics so that BN folding is exercised, and returns the
model in eval mode. ``ZOO`` maps a name to its :class:`ZooEntry` (builder and input
shape, one image); :func:`export_zoo_model` writes one to ONNX with a dynamic batch.

Input sizes: 224x224 for ResNet-18, MobileNetV3-Small, ShuffleNetV2 and SqueezeNet
1.1; 128x128 for the others; 64x64 for the segmentation head.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from dataio.files import atomic_write

INPUT_NAME = "input"
OUTPUT_NAME = "output"
NUM_CLASSES = 100

SHAPES: dict[str, tuple[int, int, int]] = {  # (C, H, W), one image
    "resnet18": (3, 224, 224),
    "resnet50": (3, 128, 128),
    "mobilenet_v2": (3, 128, 128),
    "mobilenet_v3_small": (3, 224, 224),
    "efficientnet_b0": (3, 128, 128),
    "shufflenet_v2": (3, 224, 224),
    "mnasnet": (3, 128, 128),
    "regnet": (3, 128, 128),
    "convnext": (3, 128, 128),
    "densenet": (3, 128, 128),
    "googlenet": (3, 128, 128),
    "squeezenet1_1": (3, 224, 224),
    "seg_head": (3, 64, 64),
}


def _randomize(model: nn.Module, seed: int) -> nn.Module:
    """Random BN statistics and affine parameters (fresh ones are ones and zeros)."""
    gen = torch.Generator().manual_seed(seed + 1)

    def uniform(t: torch.Tensor, lo: float, hi: float) -> None:
        t.copy_(torch.rand(t.shape, generator=gen) * (hi - lo) + lo)

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                uniform(m.running_mean, -0.3, 0.3)
                uniform(m.running_var, 0.5, 2.0)
                uniform(m.weight, 0.5, 1.5)
                uniform(m.bias, -0.2, 0.2)
            elif isinstance(m, nn.LayerNorm):
                uniform(m.weight, 0.5, 1.5)
                uniform(m.bias, -0.2, 0.2)
            elif isinstance(m, _ConvNeXtBlock):
                uniform(m.gamma, 0.1, 0.5)
    return model.eval()


def _build(
    make: Callable[[], nn.Module], head: str, shape: tuple[int, int, int], seed: int
) -> nn.Module:
    """Seed, build, randomize the norms, then scale ``head`` (the last layer) so that
    the outputs of a seeded random batch have standard deviation 1: with torch's
    default init, logits of 0.05 would make an absolute tolerance say little."""
    torch.manual_seed(seed)
    model = _randomize(make(), seed)
    layer = model.get_submodule(head)
    x = torch.rand((2, *shape), generator=torch.Generator().manual_seed(seed + 2))
    with torch.no_grad():
        std = float(model(x).std())
        layer.weight.div_(std)
        layer.bias.div_(std)
    return model


def _conv_bn(
    c_in: int,
    c_out: int,
    kernel: int,
    stride: int = 1,
    groups: int = 1,
    act: type[nn.Module] | None = nn.ReLU,
) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
    ]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


def _divisible(v: float, divisor: int = 8) -> int:
    """torchvision's ``_make_divisible``: round to a multiple, never below 90%."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


# ResNet ------------------------------------------------------------------------------


class _BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, c_in: int, width: int, stride: int) -> None:
        super().__init__()
        self.conv1 = _conv_bn(c_in, width, 3, stride)
        self.conv2 = _conv_bn(width, width, 3, act=None)
        self.down = (
            _conv_bn(c_in, width, 1, stride, act=None) if stride != 1 or c_in != width else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.down is None else self.down(x)
        return F.relu(self.conv2(self.conv1(x)) + skip)


class _Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int) -> None:
        super().__init__()
        c_out = width * self.expansion
        self.conv1 = _conv_bn(c_in, width, 1)
        self.conv2 = _conv_bn(width, width, 3, stride)  # stride on the 3x3 (ResNet v1.5)
        self.conv3 = _conv_bn(width, c_out, 1, act=None)
        self.down = (
            _conv_bn(c_in, c_out, 1, stride, act=None) if stride != 1 or c_in != c_out else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.down is None else self.down(x)
        return F.relu(self.conv3(self.conv2(self.conv1(x))) + skip)


class ResNet(nn.Module):
    def __init__(self, block, depths: tuple[int, ...], widths: tuple[int, ...]) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            _conv_bn(3, widths[0], 7, 2), nn.MaxPool2d(3, 2, 1)
        )  # (N, w0, H/4, W/4)
        layers, c_in = [], widths[0]
        for i, (depth, width) in enumerate(zip(depths, widths, strict=True)):
            for j in range(depth):
                layers.append(block(c_in, width, 2 if j == 0 and i > 0 else 1))
                c_in = width * block.expansion
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.layers(self.stem(x)))  # (N, C, 1, 1)
        return self.fc(torch.flatten(x, 1))  # (N, classes)


def resnet18(seed: int = 0) -> nn.Module:
    return _build(
        lambda: ResNet(_BasicBlock, (2, 2, 2, 2), (16, 32, 64, 128)), "fc", SHAPES["resnet18"], seed
    )


def resnet18_torchvision(seed: int = 0, classes: int = 1000) -> nn.Module:
    """ResNet-18 at torchvision's size (widths 64 to 512, 1,000 classes), random
    weights: a stand-in for ``torchvision.models.resnet18`` as users export it."""

    def make() -> nn.Module:
        model = ResNet(_BasicBlock, (2, 2, 2, 2), (64, 128, 256, 512))
        model.fc = nn.Linear(512, classes)
        return model

    return _build(make, "fc", SHAPES["resnet18"], seed)


def resnet50(seed: int = 0) -> nn.Module:
    return _build(
        lambda: ResNet(_Bottleneck, (2, 2, 2, 1), (16, 32, 64, 128)), "fc", SHAPES["resnet50"], seed
    )


# MobileNetV2 -------------------------------------------------------------------------


class _InvertedResidual(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = c_in * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(_conv_bn(c_in, hidden, 1, act=nn.ReLU6))
        layers += [
            _conv_bn(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6),  # depthwise
            _conv_bn(hidden, c_out, 1, act=None),  # linear bottleneck
        ]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.residual else self.block(x)


class MobileNetV2(nn.Module):
    # (expansion t, channels c, repeats n, stride s) as in the paper, repeats reduced
    CONFIG = (
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 2, 2),
        (6, 64, 2, 2),
        (6, 96, 1, 1),
        (6, 160, 2, 2),
        (6, 320, 1, 1),
    )

    def __init__(self, width: float = 0.5) -> None:
        super().__init__()
        c_in = _divisible(32 * width)
        layers: list[nn.Module] = [_conv_bn(3, c_in, 3, 2, act=nn.ReLU6)]
        for t, c, n, s in self.CONFIG:
            c_out = _divisible(c * width)
            for i in range(n):
                layers.append(_InvertedResidual(c_in, c_out, s if i == 0 else 1, t))
                c_in = c_out
        layers.append(_conv_bn(c_in, 1280, 1, act=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, NUM_CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(self.features(x), 1)  # (N, 1280, 1, 1)
        return self.classifier(torch.flatten(x, 1))


def mobilenet_v2(seed: int = 0) -> nn.Module:
    return _build(MobileNetV2, "classifier.1", SHAPES["mobilenet_v2"], seed)


# MobileNetV3-Small -------------------------------------------------------------------


class _SqueezeExcite(nn.Module):
    """Global average pool, 1x1 conv down, activation, 1x1 conv up, gate, scale."""

    def __init__(
        self,
        channels: int,
        squeeze: int,
        act: type[nn.Module] = nn.ReLU,
        gate: type[nn.Module] = nn.Hardsigmoid,
    ) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.act = act()
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.gate = gate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)  # (N, C, 1, 1)
        return x * self.gate(self.fc2(self.act(self.fc1(s))))


class _MobileV3Block(nn.Module):
    def __init__(
        self, c_in: int, kernel: int, hidden: int, c_out: int, se: bool, hs: bool, stride: int
    ) -> None:
        super().__init__()
        act = nn.Hardswish if hs else nn.ReLU
        layers: list[nn.Module] = []
        if hidden != c_in:
            layers.append(_conv_bn(c_in, hidden, 1, act=act))
        layers.append(_conv_bn(hidden, hidden, kernel, stride, groups=hidden, act=act))
        if se:
            layers.append(_SqueezeExcite(hidden, _divisible(hidden // 4)))
        layers.append(_conv_bn(hidden, c_out, 1, act=None))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.residual else self.block(x)


class MobileNetV3Small(nn.Module):
    # (in, kernel, expanded, out, SE, hard-swish, stride): torchvision's full config
    CONFIG = (
        (16, 3, 16, 16, True, False, 2),
        (16, 3, 72, 24, False, False, 2),
        (24, 3, 88, 24, False, False, 1),
        (24, 5, 96, 40, True, True, 2),
        (40, 5, 240, 40, True, True, 1),
        (40, 5, 240, 40, True, True, 1),
        (40, 5, 120, 48, True, True, 1),
        (48, 5, 144, 48, True, True, 1),
        (48, 5, 288, 96, True, True, 2),
        (96, 5, 576, 96, True, True, 1),
        (96, 5, 576, 96, True, True, 1),
    )

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_bn(3, 16, 3, 2, act=nn.Hardswish)]
        layers += [_MobileV3Block(*cfg) for cfg in self.CONFIG]
        layers.append(_conv_bn(96, 576, 1, act=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(576, 1024), nn.Hardswish(), nn.Dropout(0.2), nn.Linear(1024, NUM_CLASSES)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x))  # (N, 576, 1, 1)
        return self.classifier(torch.flatten(x, 1))


def mobilenet_v3_small(seed: int = 0) -> nn.Module:
    return _build(MobileNetV3Small, "classifier.3", SHAPES["mobilenet_v3_small"], seed)


# EfficientNet-B0 ---------------------------------------------------------------------


class _MBConv(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = c_in * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(_conv_bn(c_in, hidden, 1, act=nn.SiLU))
        layers += [
            _conv_bn(hidden, hidden, kernel, stride, groups=hidden, act=nn.SiLU),
            _SqueezeExcite(hidden, max(1, c_in // 4), act=nn.SiLU, gate=nn.Sigmoid),
            _conv_bn(hidden, c_out, 1, act=None),
        ]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.residual else self.block(x)


class EfficientNetB0(nn.Module):
    # (expand, kernel, stride, in, out, layers): B0's stages, layers reduced
    CONFIG = (
        (1, 3, 1, 32, 16, 1),
        (6, 3, 2, 16, 24, 2),
        (6, 5, 2, 24, 40, 1),
        (6, 3, 2, 40, 80, 2),
        (6, 5, 1, 80, 112, 1),
        (6, 5, 2, 112, 192, 2),
        (6, 3, 1, 192, 320, 1),
    )

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_bn(3, 32, 3, 2, act=nn.SiLU)]
        for expand, kernel, stride, c_in, c_out, n in self.CONFIG:
            for i in range(n):
                layers.append(
                    _MBConv(
                        c_in if i == 0 else c_out, c_out, kernel, stride if i == 0 else 1, expand
                    )
                )
        layers.append(_conv_bn(320, 1280, 1, act=nn.SiLU))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, NUM_CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(self.features(x), 1)  # (N, 1280, 1, 1)
        return self.classifier(torch.flatten(x, 1))


def efficientnet_b0(seed: int = 0) -> nn.Module:
    return _build(EfficientNetB0, "classifier.1", SHAPES["efficientnet_b0"], seed)


# ShuffleNetV2 ------------------------------------------------------------------------


def _channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    n, c, h, w = x.shape
    x = x.view(n, groups, c // groups, h, w)  # (N, g, C/g, H, W)
    x = torch.transpose(x, 1, 2).contiguous()  # (N, C/g, g, H, W)
    return x.view(n, c, h, w)


class _ShuffleUnit(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        branch = c_out // 2
        if stride > 1:
            self.branch1 = nn.Sequential(
                _conv_bn(c_in, c_in, 3, stride, groups=c_in, act=None),
                _conv_bn(c_in, branch, 1),
            )
        self.branch2 = nn.Sequential(
            _conv_bn(c_in if stride > 1 else branch, branch, 1),
            _conv_bn(branch, branch, 3, stride, groups=branch, act=None),
            _conv_bn(branch, branch, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)  # channel split
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return _channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    """x0.5 widths (24, 48, 96, 192, 1024), repeats (2, 2, 2) instead of (4, 8, 4)."""

    def __init__(self) -> None:
        super().__init__()
        widths, repeats = (24, 48, 96, 192, 1024), (2, 2, 2)
        self.stem = nn.Sequential(_conv_bn(3, widths[0], 3, 2), nn.MaxPool2d(3, 2, 1))
        stages, c_in = [], widths[0]
        for c_out, n in zip(widths[1:4], repeats, strict=True):
            stages += [
                _ShuffleUnit(c_in if i == 0 else c_out, c_out, 2 if i == 0 else 1) for i in range(n)
            ]
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.conv5 = _conv_bn(c_in, widths[4], 1)
        self.fc = nn.Linear(widths[4], NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv5(self.stages(self.stem(x)))
        return self.fc(x.mean([2, 3]))  # global pool as ReduceMean, (N, 1024)


def shufflenet_v2(seed: int = 0) -> nn.Module:
    return _build(ShuffleNetV2, "fc", SHAPES["shufflenet_v2"], seed)


# MNASNet -----------------------------------------------------------------------------


class MNASNet(nn.Module):
    """MNASNet 0.5: separable stem, inverted residual stacks (no SE), ReLU, 1x1 head."""

    # (in, out, kernel, stride, expansion, repeats) at width 1.0, repeats reduced
    STACKS = (
        (16, 24, 3, 2, 3, 2),
        (24, 40, 5, 2, 3, 2),
        (40, 80, 5, 2, 6, 2),
        (80, 96, 3, 1, 6, 1),
        (96, 192, 5, 2, 6, 2),
        (192, 320, 3, 1, 6, 1),
    )

    def __init__(self, alpha: float = 0.5) -> None:
        super().__init__()
        c0, c1 = _divisible(32 * alpha), _divisible(16 * alpha)
        layers: list[nn.Module] = [
            _conv_bn(3, c0, 3, 2),
            _conv_bn(c0, c0, 3, groups=c0),
            _conv_bn(c0, c1, 1, act=None),
        ]
        for c_in, c_out, kernel, stride, expand, n in self.STACKS:
            c_in, c_out = _divisible(c_in * alpha), _divisible(c_out * alpha)
            for i in range(n):
                layers.append(
                    _MnasUnit(
                        c_in if i == 0 else c_out, c_out, kernel, stride if i == 0 else 1, expand
                    )
                )
        layers.append(_conv_bn(_divisible(320 * alpha), 1280, 1))
        self.layers = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, NUM_CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.layers(x).mean([2, 3]))  # (N, classes)


class _MnasUnit(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = c_in * expand
        self.block = nn.Sequential(
            _conv_bn(c_in, hidden, 1),
            _conv_bn(hidden, hidden, kernel, stride, groups=hidden),
            _conv_bn(hidden, c_out, 1, act=None),
        )
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.residual else self.block(x)


def mnasnet(seed: int = 0) -> nn.Module:
    return _build(MNASNet, "classifier.1", SHAPES["mnasnet"], seed)


# RegNet ------------------------------------------------------------------------------


class _RegNetBlock(nn.Module):
    """RegNetY's X block with SE: 1x1, grouped 3x3 (group width), SE, 1x1, residual."""

    def __init__(self, c_in: int, c_out: int, stride: int, group_width: int) -> None:
        super().__init__()
        self.a = _conv_bn(c_in, c_out, 1)
        self.b = _conv_bn(c_out, c_out, 3, stride, groups=c_out // group_width)
        self.se = _SqueezeExcite(c_out, max(1, c_in // 4), gate=nn.Sigmoid)
        self.c = _conv_bn(c_out, c_out, 1, act=None)
        self.proj = (
            _conv_bn(c_in, c_out, 1, stride, act=None) if stride != 1 or c_in != c_out else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.proj is None else self.proj(x)
        return F.relu(self.c(self.se(self.b(self.a(x)))) + skip)


class RegNet(nn.Module):
    """RegNetY-200MF widths (24, 56, 152, 368), group width 8, depths (1, 1, 2, 2)."""

    def __init__(self) -> None:
        super().__init__()
        widths, depths, group_width = (24, 56, 152, 368), (1, 1, 2, 2), 8
        blocks: list[nn.Module] = [_conv_bn(3, 32, 3, 2)]
        c_in = 32
        for width, depth in zip(widths, depths, strict=True):
            for i in range(depth):
                blocks.append(_RegNetBlock(c_in, width, 2 if i == 0 else 1, group_width))
                c_in = width
        self.trunk = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.trunk(x)), 1))


def regnet(seed: int = 0) -> nn.Module:
    return _build(RegNet, "fc", SHAPES["regnet"], seed)


# ConvNeXt ----------------------------------------------------------------------------


class _LayerNorm2d(nn.LayerNorm):
    """LayerNorm over channels of an NCHW tensor, through channels-last."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)  # (N, H, W, C)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)  # (N, C, H, W)


class _ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 1e-6))  # layer scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)  # (N, H, W, C)
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y))))  # (N, H, W, C)
        return x + (self.gamma * y).permute(0, 3, 1, 2)  # (N, C, H, W)


class ConvNeXt(nn.Module):
    """ConvNeXt's stem, downsampling layers and blocks; dims (24, 48, 96, 192)."""

    def __init__(self, dims=(24, 48, 96, 192), depths=(1, 1, 2, 1)) -> None:
        super().__init__()
        stages: list[nn.Module] = [
            nn.Sequential(nn.Conv2d(3, dims[0], 4, stride=4), _LayerNorm2d(dims[0], eps=1e-6))
        ]
        for i, (dim, depth) in enumerate(zip(dims, depths, strict=True)):
            if i > 0:
                stages.append(
                    nn.Sequential(
                        _LayerNorm2d(dims[i - 1], eps=1e-6),
                        nn.Conv2d(dims[i - 1], dim, 2, stride=2),
                    )
                )
            stages += [_ConvNeXtBlock(dim) for _ in range(depth)]
        self.stages = nn.Sequential(*stages)
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(x).mean([-2, -1])  # (N, C)
        return self.head(self.norm(x))


def convnext(seed: int = 0) -> nn.Module:
    return _build(ConvNeXt, "head", SHAPES["convnext"], seed)


# DenseNet ----------------------------------------------------------------------------


class _DenseLayer(nn.Module):
    def __init__(self, c_in: int, growth: int, bn_size: int) -> None:
        super().__init__()
        self.layer = nn.Sequential(
            nn.BatchNorm2d(c_in),
            nn.ReLU(),
            nn.Conv2d(c_in, bn_size * growth, 1, bias=False),
            nn.BatchNorm2d(bn_size * growth),
            nn.ReLU(),
            nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.layer(x)], 1)  # (N, C + growth, H, W)


class DenseNet(nn.Module):
    """DenseNet-BC: pre-activation dense layers (BN, ReLU, conv), transitions halve C."""

    def __init__(self, growth: int = 12, blocks=(3, 3, 3), init: int = 24, bn_size: int = 4):
        super().__init__()
        layers: list[nn.Module] = [_conv_bn(3, init, 7, 2), nn.MaxPool2d(3, 2, 1)]
        c = init
        for i, n in enumerate(blocks):
            for _ in range(n):
                layers.append(_DenseLayer(c, growth, bn_size))
                c += growth
            if i < len(blocks) - 1:
                layers += [
                    nn.BatchNorm2d(c),
                    nn.ReLU(),
                    nn.Conv2d(c, c // 2, 1, bias=False),
                    nn.AvgPool2d(2, 2),
                ]
                c //= 2
        layers += [nn.BatchNorm2d(c), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


def densenet(seed: int = 0) -> nn.Module:
    return _build(DenseNet, "classifier", SHAPES["densenet"], seed)


# GoogLeNet ---------------------------------------------------------------------------


class _Inception(nn.Module):
    def __init__(self, c_in: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, cp: int):
        super().__init__()
        self.branch1 = _conv_bn(c_in, c1, 1)
        self.branch2 = nn.Sequential(_conv_bn(c_in, c3r, 1), _conv_bn(c3r, c3, 3))
        self.branch3 = nn.Sequential(_conv_bn(c_in, c5r, 1), _conv_bn(c5r, c5, 3))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True), _conv_bn(c_in, cp, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.branch1, self.branch2, self.branch3, self.branch4)
        return torch.cat([b(x) for b in branches], 1)


class GoogLeNet(nn.Module):
    """torchvision's GoogLeNet layout at half width, inception 3a, 3b, 4a, 4b."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            _conv_bn(3, 32, 7, 2),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            _conv_bn(32, 32, 1),
            _conv_bn(32, 96, 3),
            nn.MaxPool2d(3, 2, ceil_mode=True),
        )
        self.blocks = nn.Sequential(
            _Inception(96, 32, 48, 64, 8, 16, 16),  # 128
            _Inception(128, 64, 64, 96, 16, 48, 32),  # 240
            nn.MaxPool2d(3, 2, ceil_mode=True),
            _Inception(240, 96, 48, 104, 8, 24, 32),  # 256
            _Inception(256, 80, 56, 112, 12, 32, 32),  # 256
        )
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(256, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(self.blocks(self.stem(x)), (1, 1))
        return self.fc(self.dropout(torch.flatten(x, 1)))


def googlenet(seed: int = 0) -> nn.Module:
    return _build(GoogLeNet, "fc", SHAPES["googlenet"], seed)


# SqueezeNet 1.1 ----------------------------------------------------------------------


class _Fire(nn.Module):
    def __init__(self, c_in: int, squeeze: int, e1: int, e3: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(c_in, squeeze, 1)
        self.expand1 = nn.Conv2d(squeeze, e1, 1)
        self.expand3 = nn.Conv2d(squeeze, e3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.relu(self.squeeze(x))
        return torch.cat([F.relu(self.expand1(s)), F.relu(self.expand3(s))], 1)


class SqueezeNet11(nn.Module):
    """SqueezeNet 1.1 exactly as torchvision builds it (no BatchNorm in it)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 3, stride=2),
            nn.ReLU(),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            _Fire(64, 16, 64, 64),
            _Fire(128, 16, 64, 64),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            _Fire(128, 32, 128, 128),
            _Fire(256, 32, 128, 128),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            _Fire(256, 48, 192, 192),
            _Fire(384, 48, 192, 192),
            _Fire(384, 64, 256, 256),
            _Fire(512, 64, 256, 256),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Conv2d(512, NUM_CLASSES, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.classifier(self.features(x)), 1)


def squeezenet1_1(seed: int = 0) -> nn.Module:
    return _build(SqueezeNet11, "classifier.1", SHAPES["squeezenet1_1"], seed)


# Segmentation head -------------------------------------------------------------------


class SegHead(nn.Module):
    """A U-Net-style decoder: two downsamplings, then ConvTranspose and bilinear
    Upsample, each concatenated with its skip, then a 1x1 conv to per-pixel classes."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.enc1 = _conv_bn(3, 16, 3)  # (N, 16, H, W)
        self.enc2 = _conv_bn(16, 32, 3, 2)  # (N, 32, H/2, W/2)
        self.enc3 = _conv_bn(32, 64, 3, 2)  # (N, 64, H/4, W/4)
        self.up1 = nn.ConvTranspose2d(64, 32, 2, stride=2)  # (N, 32, H/2, W/2)
        self.dec1 = _conv_bn(64, 32, 3)
        self.up2 = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.dec2 = _conv_bn(48, 16, 3)
        self.out = nn.Conv2d(16, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s1 = self.enc1(x)
        s2 = self.enc2(s1)
        y = self.dec1(torch.cat([self.up1(self.enc3(s2)), s2], 1))  # (N, 32, H/2, W/2)
        y = self.dec2(torch.cat([self.up2(y), s1], 1))  # (N, 16, H, W)
        return self.out(y)  # (N, classes, H, W)


def seg_head(seed: int = 0) -> nn.Module:
    return _build(SegHead, "out", SHAPES["seg_head"], seed)


# Registry and export -----------------------------------------------------------------


@dataclass(frozen=True)
class ZooEntry:
    build: Callable[..., nn.Module]
    input_shape: tuple[int, int, int]  # (C, H, W), one image


ZOO: dict[str, ZooEntry] = {
    "resnet18": ZooEntry(resnet18, SHAPES["resnet18"]),
    "resnet50": ZooEntry(resnet50, SHAPES["resnet50"]),
    "mobilenet_v2": ZooEntry(mobilenet_v2, SHAPES["mobilenet_v2"]),
    "mobilenet_v3_small": ZooEntry(mobilenet_v3_small, SHAPES["mobilenet_v3_small"]),
    "efficientnet_b0": ZooEntry(efficientnet_b0, SHAPES["efficientnet_b0"]),
    "shufflenet_v2": ZooEntry(shufflenet_v2, SHAPES["shufflenet_v2"]),
    "mnasnet": ZooEntry(mnasnet, SHAPES["mnasnet"]),
    "regnet": ZooEntry(regnet, SHAPES["regnet"]),
    "convnext": ZooEntry(convnext, SHAPES["convnext"]),
    "densenet": ZooEntry(densenet, SHAPES["densenet"]),
    "googlenet": ZooEntry(googlenet, SHAPES["googlenet"]),
    "squeezenet1_1": ZooEntry(squeezenet1_1, SHAPES["squeezenet1_1"]),
    "seg_head": ZooEntry(seg_head, SHAPES["seg_head"]),
}


def _legacy_proto(model: nn.Module, example: torch.Tensor, opset: int):
    import warnings

    import onnx

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            buffer,
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        )
    return onnx.load_from_string(buffer.getvalue())


def export_zoo_model(
    name: str, path: str | os.PathLike, opset: int | None = None, dynamo: bool = True
) -> Path:
    """Export ``ZOO[name]`` to ``path``: input ``input`` (batch, C, H, W), output ``output``.

    ``dynamo=False`` is torch's legacy TorchScript exporter (opset 17 by default),
    ``dynamo=True`` the torch.export one (opset 18 by default). The file is checked
    by ``onnx.checker`` before it is renamed into place.
    """
    import onnx

    from training.export import _to_proto

    if name not in ZOO:
        raise KeyError(f"zoo model {name!r}: expected one of {sorted(ZOO)}")
    entry = ZOO[name]
    model = entry.build()
    example = torch.rand((2, *entry.input_shape), generator=torch.Generator().manual_seed(0))
    if dynamo:
        proto = _to_proto(model, example, 18 if opset is None else opset, OUTPUT_NAME)
    else:
        proto = _legacy_proto(model, example, 17 if opset is None else opset)

    def write_and_check(tmp: Path) -> None:
        onnx.save_model(proto, tmp, save_as_external_data=False)
        onnx.checker.check_model(str(tmp), full_check=True)

    return atomic_write(path, write_and_check)
