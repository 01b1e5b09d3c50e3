"""nnctl: a declarative spec file turned into a trained neural network, on NumPy or CuPy."""

__version__ = "0.1.0"
