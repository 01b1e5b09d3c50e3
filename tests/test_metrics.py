"""Metrics against hand-computed values and brute-force NumPy versions of their definitions."""

import itertools

import numpy as np
import pytest

from helpers import ROOT, dev
from nnctl import metrics

RNG = np.random.default_rng(3)


def m(name, p, y, kind, n_classes=2):
    return metrics.compute([name], dev(np.asarray(p)), dev(np.asarray(y)), kind, n_classes)[metrics.canonical(name)]


def brute_roc_auc(s, t):
    """P(score of a positive > score of a negative), ties half: every pair counted."""
    pos, neg = s[t], s[~t]
    pairs = [(a > b) + 0.5 * (a == b) for a, b in itertools.product(pos, neg)]
    return float(np.mean(pairs))


def brute_average_precision(s, t):
    """sum over distinct thresholds, high to low, of (recall gained) * precision at that threshold."""
    ap, prev_recall = 0.0, 0.0
    for th in sorted(set(s), reverse=True):
        chosen = s >= th
        recall = (chosen & t).sum() / t.sum()
        ap += (recall - prev_recall) * (chosen & t).sum() / chosen.sum()
        prev_recall = recall
    return ap


def test_auc_hand_computed():
    # positives 0.9, 0.4; negatives 0.5, 0.1: pairs won (0.9>0.5, 0.9>0.1, 0.4>0.1), lost (0.4<0.5): 3/4
    p, y = np.array([[0.9], [0.5], [0.4], [0.1]]), np.array([[1.0], [0.0], [1.0], [0.0]])
    assert m("auc", p, y, "binary") == pytest.approx(0.75)
    # thresholds 0.9 (P 1, R 1/2), 0.5 (P 1/2), 0.4 (P 2/3, R 1): 1/2 * 1 + 1/2 * 2/3
    assert m("pr_auc", p, y, "binary") == pytest.approx(0.5 + 1 / 3)


@pytest.mark.parametrize("ties", [False, True])
def test_auc_against_the_pairwise_definition(ties):
    s = RNG.integers(0, 5, size=40) / 4 if ties else RNG.uniform(size=40)
    t = RNG.uniform(size=40) < 0.4
    p, y = s[:, None], t[:, None].astype(float)
    assert m("auc", p, y, "binary") == pytest.approx(brute_roc_auc(s, t))
    assert m("pr_auc", p, y, "binary") == pytest.approx(brute_average_precision(s, t))


def test_multiclass_auc_pools_every_class_column():
    p = RNG.dirichlet(np.ones(3), size=12)
    ids = RNG.integers(0, 3, size=12)
    onehot = np.eye(3)[ids]
    want = brute_roc_auc(p.reshape(-1), onehot.reshape(-1) > 0.5)
    assert m("auc", p, onehot, "categorical", 3) == pytest.approx(want)
    assert m("auc", p, ids.astype(float), "sparse", 3) == pytest.approx(want)


def test_top_k_hand_computed():
    p = np.array(
        [
            [0.1, 0.2, 0.3, 0.05, 0.05, 0.3],  # true class 0: 4 scores above it -> in the top 5
            [0.5, 0.1, 0.1, 0.1, 0.1, 0.1],  # true class 1: only 0.5 above (ties count in)
            [0.01, 0.02, 0.03, 0.04, 0.05, 0.85],
        ]
    )  # true 0: 5 above -> out
    ids = np.array([0, 1, 0])
    assert m("sparse_top_k_categorical_accuracy", p, ids.astype(float), "sparse", 6) == pytest.approx(2 / 3)
    assert m("top_k_categorical_accuracy", p, np.eye(6)[ids], "categorical", 6) == pytest.approx(2 / 3)


def test_top_k_for_any_k_by_its_name():
    p = np.array(
        [
            [0.1, 0.2, 0.3, 0.05, 0.05, 0.3],  # true 0: 4 scores above it
            [0.5, 0.1, 0.1, 0.1, 0.1, 0.1],  # true 1: 1 above
            [0.01, 0.02, 0.03, 0.04, 0.05, 0.85],
        ]
    )  # true 0: 5 above
    y = np.array([0, 1, 0]).astype(float)
    assert m("top1_accuracy", p, y, "sparse", 6) == pytest.approx(0.0)
    assert m("top2_accuracy", p, y, "sparse", 6) == pytest.approx(1 / 3)
    assert m("top5_accuracy", p, y, "sparse", 6) == pytest.approx(2 / 3)  # = top_k_categorical_accuracy
    assert m("top6_accuracy", p, y, "sparse", 6) == pytest.approx(1.0)


def test_fbeta_for_any_beta_by_its_name():
    p, y = _confusion_case()
    # per class (P, R): (1, 2/3), (1/2, 1/2), (1/2, 1); F_b = (1 + b^2) P R / (b^2 P + R), macro mean
    per = [(1, 2 / 3), (1 / 2, 1 / 2), (1 / 2, 1)]
    for beta in (3.0, 0.25):
        b2 = beta * beta
        want = sum((1 + b2) * P * R / (b2 * P + R) for P, R in per) / 3
        assert m(f"f{beta:g}", p, y, "categorical", 3) == pytest.approx(want)


def test_parametrised_metric_names_in_a_spec(tmp_path):
    from nnctl import spec as spec_mod
    from nnctl.errors import SpecError

    def spec_with(metric):
        path = tmp_path / "s.toml"
        path.write_text(f"""
[data]
train = "{ROOT / "examples/data/iris.csv"}"
validation = {{ split = 0.2 }}
[model]
layers = [{{type = "Dense", units = 3, activation = "softmax"}}]
[train]
loss = "sparse_categorical_crossentropy"
metrics = ["{metric}"]
early_stopping = {{monitor = "val_{metric}", mode = "max"}}
""")
        return spec_mod.load(path)

    assert spec_with("top2_accuracy").train.metrics == ["top2_accuracy"]
    assert spec_with("F3").train.metrics == ["f3"]
    for bad in ("top0_accuracy", "f0", "top_accuracy"):
        with pytest.raises(SpecError, match="train.metrics"):
            spec_with(bad)


def _confusion_case():
    # true 0 0 0 1 1 2, predicted 0 1 0 1 2 2 (one-hot probabilities)
    true = np.array([0, 0, 0, 1, 1, 2])
    pred = np.array([0, 1, 0, 1, 2, 2])
    return np.eye(3)[pred] * 0.8 + 0.1, np.eye(3)[true]


def test_precision_recall_f_averages_hand_computed():
    p, y = _confusion_case()
    # per class: tp (2, 1, 1), predicted (2, 2, 2), support (3, 2, 1)
    prec, rec = np.array([1.0, 0.5, 0.5]), np.array([2 / 3, 0.5, 1.0])
    f1 = 2 * prec * rec / (prec + rec)
    assert m("precision", p, y, "categorical", 3) == pytest.approx(prec.mean())
    assert m("f1", p, y, "categorical", 3) == pytest.approx(f1.mean())
    assert m("precision_micro", p, y, "categorical", 3) == pytest.approx(4 / 6)
    assert m("recall_micro", p, y, "categorical", 3) == pytest.approx(4 / 6)
    assert m("f1_micro", p, y, "categorical", 3) == pytest.approx(4 / 6)
    support = np.array([3, 2, 1])
    assert m("precision_weighted", p, y, "categorical", 3) == pytest.approx((prec * support).sum() / 6)
    assert m("recall_weighted", p, y, "categorical", 3) == pytest.approx((rec * support).sum() / 6)
    assert m("f1_weighted", p, y, "categorical", 3) == pytest.approx((f1 * support).sum() / 6)
    f2 = 5 * prec * rec / (4 * prec + rec)
    assert m("f2", p, y, "categorical", 3) == pytest.approx(f2.mean())
    fh = 1.25 * prec * rec / (0.25 * prec + rec)
    assert m("f0.5", p, y, "categorical", 3) == pytest.approx(fh.mean())
    # IoU per class: tp / (predicted + support - tp) = 2/3, 1/3, 1/2
    assert m("mean_iou", p, y, "categorical", 3) == pytest.approx((2 / 3 + 1 / 3 + 1 / 2) / 3)


def test_binary_fbeta_and_iou():
    p = np.array([[0.9], [0.8], [0.2], [0.7], [0.1]])
    y = np.array([[1.0], [0.0], [1.0], [1.0], [0.0]])
    # positive class: tp 2, predicted 3, actual 3 -> P = R = 2/3
    assert m("f2", p, y, "binary") == pytest.approx(2 / 3)
    # IoU class 1: 2 / (3 + 3 - 2) = 1/2; class 0: 1 / (2 + 2 - 1) = 1/3
    assert m("mean_iou", p, y, "binary") == pytest.approx((0.5 + 1 / 3) / 2)


def test_regression_metrics_and_crossentropy_against_their_definitions():
    p = np.array([[0.5, 2.0], [1.0, 4.0]])
    y = np.array([[1.0, 2.5], [2.0, 0.0]])
    assert m("mape", p, y, "regression") == pytest.approx(np.mean(100 * np.abs(y - p) / np.maximum(np.abs(y), 1e-7)))
    want = np.mean((np.log1p(p) - np.log1p(np.maximum(y, 1e-7))) ** 2)
    assert m("mean_squared_logarithmic_error", p, y, "regression") == pytest.approx(want)
    pb, yb = np.array([[0.9], [0.3]]), np.array([[1.0], [1.0]])
    assert m("binary_crossentropy", pb, yb, "binary") == pytest.approx(-(np.log(0.9) + np.log(0.3)) / 2)
    pc = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    assert m("categorical_crossentropy", pc, np.eye(3)[[1, 2]], "categorical", 3) == pytest.approx(
        -(np.log(0.2) + np.log(0.8)) / 2
    )
    assert m("sparse_categorical_crossentropy", pc, np.array([1.0, 2.0]), "sparse", 3) == pytest.approx(
        -(np.log(0.2) + np.log(0.8)) / 2
    )


def test_directions_and_classification_flags():
    assert metrics.higher_is_better("val_auc") and metrics.higher_is_better("mean_iou")
    assert not metrics.higher_is_better("val_crossentropy") and not metrics.higher_is_better("mape")
    assert metrics.METRICS.get("auc").classification and not metrics.METRICS.get("msle").classification
    with pytest.raises(ValueError, match="classification"):
        m("auc", np.zeros((2, 1)), np.zeros((2, 1)), "regression")
