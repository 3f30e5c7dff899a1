"""The PyTorch half: LeNet-5 and AlexNet, their data, training, and ONNX export.

Needs the ``[train]`` extra (torch, onnxscript, tqdm, matplotlib). Reads its data
through ``dataio`` (torch-free, shared with the tools); nothing in ``runtime/`` or
``dataio/`` imports from here (``tests/test_layers.py``). ``options`` (the ``train``
command's arguments) is torch-free too.
"""
