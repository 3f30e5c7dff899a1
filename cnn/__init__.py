"""The ``cnn`` command: one entry point over training/ and runtime/."""
