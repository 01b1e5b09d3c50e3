"""nnctl.numfmt.human: the rounding the CLI's tables and the library's text charts share."""

import math

import numpy as np

from nnctl import plots
from nnctl.cli import output
from nnctl.numfmt import human


def test_floats_are_rounded_by_magnitude():
    assert human(0.08123) == "0.0812"  # four decimals from 1e-3 up
    assert human(-2.5) == "-2.5000"
    assert human(3.17e-05) == "3.17e-05"  # three significant digits below 1e-3
    assert human(1234567.4) == "1,234,567"  # separators, no decimals from 1e5 up
    assert human(0.0) == "0"


def test_other_values_are_their_str():
    assert human(7) == "7"
    assert human(True) == "True"
    assert human("relu") == "relu"
    assert human(math.inf) == "inf" and human(math.nan) == "nan"


def test_numpy_scalars_are_read_as_python_numbers():
    assert human(np.float32(0.25)) == "0.2500"
    assert human(np.int64(3)) == "3"


def test_the_cli_and_the_plots_use_the_library_function():
    assert output.fmt is human
    assert plots._label(np.float64(1.5e-4)) == "0.00015"
