"""Torch-free data and file helpers shared by training and the tools: the MNIST and
Fashion-MNIST IDX readers with their locations and download (``datasets``), and
writes through a temp file and a rename (``files``). Imports nothing of the project's."""
