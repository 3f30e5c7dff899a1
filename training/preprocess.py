"""From dataset bytes to model input, and the same recipe written down for the ONNX metadata.

The 28x28 grey images become each model's input per batch, on the fly: LeNet-5
takes them as they are, AlexNet gets them resized to 227x227 and repeated to
three channels. The resized dataset is never materialised (60,000x3x227x227
float32 would be 37 GB). :func:`preprocessing_metadata` states the same steps for
whoever turns an image file into the exported graph's input.
"""

from __future__ import annotations

import json

import torch
import torch.nn.functional as F


def to_model_input(images: torch.Tensor, input_shape: tuple[int, int, int]) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float32 (N, C, H, W) in [0, 1], as ``input_shape`` asks."""
    channels, height, width = input_shape
    x = images.to(torch.float32).div_(255.0).unsqueeze(1)  # (N, 1, 28, 28)
    if x.shape[-2:] != (height, width):
        x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)
        x = x.clamp_(0.0, 1.0)  # (N, 1, H, W)
    if channels != 1:
        x = x.expand(-1, channels, -1, -1).contiguous()  # (N, C, H, W), grey repeated
    return x


def preprocessing_metadata(input_shape: tuple[int, int, int]) -> str:
    """JSON recipe: how an image file becomes the graph's ``input`` tensor."""
    channels, height, width = input_shape
    return json.dumps(
        {
            "color": "grayscale",
            "channels": channels,
            "channel_note": "grey value repeated to every channel" if channels > 1 else "",
            "size": [height, width],
            "resize": "bilinear",
            "scale": "pixel / 255, float32 in [0, 1]; no mean/std normalisation",
            "layout": "NCHW",
            "polarity": "light object on a dark background (invert dark-on-light photos)",
        }
    )
