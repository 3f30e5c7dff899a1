"""The two networks match the article: parameter counts and every layer's output shape."""

import pytest
import torch

from training.catalog import MODELS
from training.models import AlexNet, LeNet5, WithSoftmax, count_parameters


def _shapes_after(model, kinds, x):
    shapes = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: shapes.append(tuple(out.shape[1:])))
        for m in model.modules()
        if isinstance(m, kinds)
    ]
    with torch.no_grad():
        model.eval()(x)
    for h in hooks:
        h.remove()
    return shapes


def test_lenet5_parameter_count():
    assert count_parameters(LeNet5()) == (61_706, 0)


def test_alexnet_parameter_count_matches_keras_summary():
    trainable, stats = count_parameters(AlexNet())
    assert trainable == 58_325_066
    assert stats == 2_752
    assert trainable + stats == 58_327_818


def test_lenet5_layer_shapes():
    shapes = _shapes_after(
        LeNet5(), (torch.nn.Conv2d, torch.nn.AvgPool2d, torch.nn.Linear), torch.zeros(2, 1, 28, 28)
    )
    # Keras reports NHWC; ours are (C, H, W) of the same layers.
    assert shapes == [(6, 28, 28), (6, 14, 14), (16, 10, 10), (16, 5, 5), (120,), (84,), (10,)]


def test_alexnet_layer_shapes():
    shapes = _shapes_after(
        AlexNet(),
        (torch.nn.BatchNorm2d, torch.nn.MaxPool2d, torch.nn.Flatten),
        torch.zeros(1, 3, 227, 227),
    )
    assert shapes == [
        (96, 55, 55),
        (96, 27, 27),
        (256, 27, 27),
        (256, 13, 13),
        (384, 13, 13),
        (384, 13, 13),
        (256, 13, 13),
        (256, 6, 6),
        (9216,),
    ]


def test_alexnet_batchnorm_uses_keras_defaults():
    bns = [m for m in AlexNet().modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == 5
    assert all(bn.eps == 1e-3 and bn.momentum == pytest.approx(0.01) for bn in bns)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_softmax_head_gives_probabilities(name):
    spec = MODELS[name]
    torch.manual_seed(0)
    probs = WithSoftmax(spec.build()).eval()(torch.rand(2, *spec.input_shape))
    assert probs.shape == (2, 10)
    torch.testing.assert_close(probs.sum(1), torch.ones(2))
