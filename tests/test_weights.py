"""train.class_weight: Keras's semantics (sum_i w_i l_i / N in the training loss, validation unweighted) and
its effect on an imbalanced problem."""

import numpy as np
import pytest

from nnctl import losses, run, spec
from nnctl.errors import SpecError


def _imbalanced(path, n=1000, minority=0.05, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.uniform(size=n) < minority).astype(int)
    x = rng.normal(size=(n, 2)) + 1.6 * y[:, None]  # overlapping classes: the minority is easy to ignore
    rows = ["a,b,y"] + [f"{a:.6f},{b:.6f},{t}" for (a, b), t in zip(x, y)]
    path.write_text("\n".join(rows) + "\n")
    return x, y


def _spec(tmp_path, csv, epochs, class_weight=None, tag="", **train):
    raw = {
        "name": "imb",
        "seed": 0,
        "data": {"train": str(csv), "test": str(csv), "target": "y"},
        "model": {"layers": [{"type": "Dense", "units": 1, "activation": "sigmoid"}]},
        "train": {
            "loss": "binary_crossentropy",
            "optimizer": {"type": "adam", "learning_rate": 0.05},
            "metrics": ["recall"],
            "epochs": epochs,
            "batch_size": 100,
            **train,
        },
        "output": {"checkpoint": str(tmp_path / f"imb{epochs}{class_weight is not None}{tag}.h5")},
    }
    if class_weight is not None:
        raw["train"]["class_weight"] = class_weight
    return spec.validate(raw, "imb.toml")


def test_balanced_weights_are_sklearns_and_tables_name_labels():
    ids = np.array([0, 0, 0, 1])
    np.testing.assert_allclose(losses.class_weights("balanced", ids, 2), [4 / 6, 4 / 2])
    classes = np.array(["cat", "dog", "eel"])
    np.testing.assert_allclose(losses.class_weights({"dog": 2.5}, ids, 3, classes), [1.0, 2.5, 1.0])
    np.testing.assert_allclose(losses.class_weights({"1": 4}, ids, 2, np.array([0.0, 1.0])), [1.0, 4.0])
    with pytest.raises(ValueError, match="not a class"):
        losses.class_weights({"cow": 1.0}, ids, 3, classes)


def test_reported_loss_is_the_weighted_mean_over_samples(tmp_path):
    """One full batch: the logged training loss is sum_i w_i l_i / N at the initial weights (hand-computed from
    the untrained model's predictions), and the validation loss stays unweighted."""
    csv = tmp_path / "imb.csv"
    x, y = _imbalanced(csv, n=200)
    start = _spec(tmp_path, csv, 0)
    run.train(start)  # epochs = 0: the checkpoint holds the initial weights
    p, _ = run.predict(run.restore(start.output.checkpoint), x)
    p = np.clip(p[:, 0].astype(np.float64), 1e-7, 1 - 1e-7)
    per_sample = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    w = np.where(y == 1, 7.0, 0.5)
    s = _spec(tmp_path, csv, 1, {"1": 7.0, "0": 0.5}, batch_size="full")
    done = run.train(s)
    assert done["metrics"]["loss"] == pytest.approx(float((w * per_sample).sum() / len(y)), rel=1e-5)
    plain = run.train(_spec(tmp_path, csv, 1, tag="plain", batch_size="full"))
    assert plain["metrics"]["loss"] == pytest.approx(float(per_sample.mean()), rel=1e-5)


def test_balanced_class_weight_raises_minority_recall(tmp_path):
    csv = tmp_path / "imb.csv"
    _imbalanced(csv)
    plain = _spec(tmp_path, csv, 15)
    run.train(plain)
    weighted = _spec(tmp_path, csv, 15, "balanced")
    run.train(weighted)
    r_plain = run.evaluate(plain.output.checkpoint)["recall"]
    r_weighted = run.evaluate(weighted.output.checkpoint)["recall"]
    print(f"minority recall: {r_plain:.3f} unweighted, {r_weighted:.3f} balanced")
    assert r_plain < 0.4 and r_weighted > 0.7, (r_plain, r_weighted)


def test_class_weight_refused_where_it_cannot_apply(tmp_path):
    raw = {
        "data": {"train": "x.csv"},
        "model": {"layers": [{"type": "Dense", "units": 1}]},
        "train": {"loss": "mse", "class_weight": "balanced"},
    }
    with pytest.raises(SpecError, match="class_weight: needs a classification loss"):
        spec.validate(raw, "s.toml")
    raw["train"] = {"loss": "binary_crossentropy", "class_weight": {"1": -2}}
    raw["model"]["layers"][0]["activation"] = "sigmoid"
    with pytest.raises(SpecError, match="non-negative"):
        spec.validate(raw, "s.toml")
    raw["train"]["class_weight"] = "inverse"
    with pytest.raises(SpecError, match="balanced"):
        spec.validate(raw, "s.toml")
