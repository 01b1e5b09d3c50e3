"""The benchmark scripts build every model they time through the library as it is now.

benchmarks/ is not run by the suite (it times fresh processes for minutes), so a library change that breaks
its one model-building path would otherwise be found only when someone measures: each model here is built
and trained for one small batch, and the loss it reports must be finite.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import common  # benchmarks/ is a folder of scripts, not a package: importable once on the path


@pytest.mark.parametrize("model", sorted(common.NNCTL_LAYERS))
def test_every_benchmark_model_trains_one_batch(model):
    net, trainer = common.nnctl_model(model, batch=8, mallopt=False)
    x, y = common.make_data(model, 16)
    state = trainer.fit(x, y, epochs=1)
    loss = state.history["loss"][-1]
    assert math.isfinite(loss) and loss > 0
