"""Torch-free inference over exported ONNX graphs.

Nothing in this package imports torch; optional backends are imported lazily.
"""
