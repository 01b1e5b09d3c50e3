"""cupyx for the emulator: the scatter_add that nnctl's backend uses."""

import cupy


def scatter_add(a, slices, value):
    """a[slices] += value with repeated indices accumulated (device arrays only)."""
    cupy.add.at(a, slices, value)
