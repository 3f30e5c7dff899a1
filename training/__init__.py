"""The PyTorch half: LeNet-5 and AlexNet, their data, training, and ONNX export.

Needs the ``[train]`` extra (torch, onnxscript, tqdm, matplotlib). Nothing in
``runtime/`` imports from here.
"""
