"""The model whose trained weights tests/fixtures/rng_reference.npz holds, written by the code before the build
context (issue 20): the same seed must still give the same initial weights and the same dropout/noise masks.

Regenerate only on purpose: ``python tests/rng_reference.py`` (then explain why the streams changed)."""

import pathlib

import numpy as np

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "rng_reference.npz"
LAYERS = [
    {"type": "LSTM", "units": 5, "dropout": 0.3, "return_sequences": True},
    {"type": "Bidirectional", "layer": {"type": "GRU", "units": 3, "dropout": 0.2}},
    {"type": "Dropout", "rate": 0.5},
    {"type": "Dense", "units": 8, "activation": "relu"},
    {"type": "GaussianNoise", "stddev": 0.1},
    {"type": "Dense", "units": 3, "activation": "softmax"},
]


def trained_weights() -> dict:
    """Every parameter after two epochs of Adam on fixed data (float64, seed 7), by checkpoint name."""
    from nnctl import backend as B
    from nnctl import losses, optimizers
    from nnctl.build import build_model
    from nnctl.spec import validate
    from nnctl.train import Trainer

    B.use("cpu")
    raw = {
        "name": "rng_reference",
        "seed": 7,
        "dtype": "float64",
        "data": {"train": "synthetic"},
        "model": {"layers": [dict(e) for e in LAYERS]},
        "train": {"loss": "sparse_categorical_crossentropy", "optimizer": "adam", "batch_size": 16, "epochs": 2},
    }
    spec = validate(raw, source="rng_reference")
    model = build_model(spec, (6, 4), spec.seed)
    model.to_device()
    trainer = Trainer(
        model, losses.get(spec.train.loss.type), optimizers.get("adam"), spec.train, "sparse", 3, spec.seed
    )
    data = np.random.default_rng(0)
    x = data.normal(size=(64, 6, 4))
    y = data.integers(0, 3, size=64)
    for _ in range(2):
        trainer.run_epoch(x, y)
    return {k: B.to_numpy(v).copy() for k, v in model.named_params().items()}


if __name__ == "__main__":
    np.savez(FIXTURE, **trained_weights())
    print(f"wrote {FIXTURE}")
