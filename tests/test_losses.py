"""Every registered loss: float64 gradient against central differences, fused (logit) forms against the
unfused composition, and no NaN on saturated outputs."""

import numpy as np
import pytest

from helpers import dev, host
from nnctl import losses
from nnctl.ops.activations import sigmoid, softmax

RNG = np.random.default_rng(0)
N, K = 5, 4


def _targets(loss, p):
    if loss.target == "sparse":
        return RNG.integers(0, K, size=p.shape[:-1]).astype(np.float64)
    if loss.target == "binary":
        return RNG.integers(0, 2, size=p.shape).astype(np.float64)
    if isinstance(loss, losses.CategoricalHinge):
        return np.eye(p.shape[-1])[RNG.integers(0, p.shape[-1], size=p.shape[:-1])]
    if isinstance(loss, (losses.CategoricalCrossentropy, losses.KLDivergence)):
        return host(softmax(dev(RNG.normal(size=p.shape))))
    if isinstance(loss, (losses.Poisson, losses.MeanSquaredLogarithmicError)):
        return RNG.poisson(2.0, size=p.shape).astype(np.float64)
    return RNG.normal(size=p.shape)


def _prediction(loss, shape):
    """A host prediction array (softmax/sigmoid computed by nnctl on the device)."""
    if isinstance(loss, (losses.CategoricalCrossentropy, losses.SparseCategoricalCrossentropy, losses.KLDivergence)):
        return host(softmax(dev(RNG.normal(size=shape))))
    if isinstance(loss, losses.BinaryCrossentropy):
        return host(sigmoid(dev(RNG.normal(size=shape))))
    if isinstance(loss, (losses.Poisson, losses.MeanSquaredLogarithmicError)):
        return np.exp(RNG.normal(size=shape))  # positive: away from the clip at 1e-7
    return RNG.normal(size=shape) + 0.05  # keep hinge/mae kinks away from the sample points


def _numeric_grad(f, p, h=1e-6):
    """Central differences of the scalar f (called with the host array p) at p, on the host."""
    g = np.zeros_like(p)
    for i in np.ndindex(p.shape):
        old = p[i]
        p[i] = old + h
        fp = f(p)
        p[i] = old - h
        fm = f(p)
        p[i] = old
        g[i] = (fp - fm) / (2 * h)
    return g


UNFUSED = [n for n in losses.NAMES if n != "perceptron"]


@pytest.mark.parametrize("name", UNFUSED)
@pytest.mark.parametrize("shape", [(N, K), (2, 3, K)])
def test_loss_gradient_matches_finite_differences(name, shape):
    loss = losses.get(name)
    p = _prediction(loss, shape)
    y = _targets(loss, p)
    yd = dev(y)
    num = _numeric_grad(lambda q: float(host(loss.value(dev(q), yd))), p.copy())
    np.testing.assert_allclose(host(loss.grad(dev(p), yd)), num, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("name", [n for n in losses.NAMES if losses.get(n).fused and n != "perceptron"])
def test_fused_loss_equals_composition_and_its_gradient(name):
    loss = losses.get(name)
    act = next(iter(loss.fused))
    f = softmax if act == "softmax" else sigmoid
    z = RNG.normal(size=(N, K if act == "softmax" else 1))
    y = _targets(loss, z)
    zd, yd = dev(z), dev(y)
    value, grad = host(loss.fused_value_grad(zd, yd, act))
    np.testing.assert_allclose(value, host(loss.value(f(zd), yd)), rtol=1e-10)
    num = _numeric_grad(lambda q: float(host(loss.fused_value_grad(dev(q), yd, act)[0])), z.copy())
    np.testing.assert_allclose(grad, num, rtol=1e-5, atol=1e-8)


def test_fused_cross_entropy_is_finite_on_saturated_logits():
    z = np.array([[1000.0, -1000.0, 0.0], [-800.0, 800.0, 5.0]])
    y = np.eye(3)[[1, 0]]
    value, grad = host(losses.get("categorical_crossentropy").fused_value_grad(dev(z), dev(y), "softmax"))
    assert np.isfinite(value) and np.isfinite(grad).all()
    assert value == pytest.approx((2000.0 + 1600.0) / 2)  # -log softmax = gap to the max logit
    zb = np.array([[1000.0], [-1000.0]])
    vb, gb = host(losses.get("binary_crossentropy").fused_value_grad(dev(zb), dev([[0.0], [1.0]]), "sigmoid"))
    assert vb == pytest.approx(1000.0) and np.isfinite(gb).all()


def test_perceptron_loss_gradient_is_the_perceptron_rule():
    z = np.array([[0.5], [-0.2], [0.3], [-1.0]])
    y = np.array([[1.0], [1.0], [0.0], [0.0]])
    _, grad = host(losses.get("perceptron").fused_value_grad(dev(z), dev(y), "step"))
    # step(z) - y per sample, averaged: wrong ones are samples 2 (step 0, y 1) and 3 (step 1, y 0)
    np.testing.assert_allclose(grad, np.array([[0.0], [-1.0], [1.0], [0.0]]) / 4)


def test_every_loss_is_checked():
    checked = set(UNFUSED) | {"perceptron"}
    assert checked == set(losses.NAMES)


# -- options: label smoothing, focal parameters, logits, per-sample weights -----------------------------
VARIANTS = [
    ("binary_crossentropy", {"label_smoothing": 0.2}),
    ("binary_crossentropy", {"label_smoothing": 0.1, "from_logits": True}),
    ("categorical_crossentropy", {"label_smoothing": 0.3}),
    ("categorical_crossentropy", {"label_smoothing": 0.3, "from_logits": True}),
    ("binary_focal_crossentropy", {"apply_class_balancing": True, "alpha": 0.3, "gamma": 1.5}),
    ("binary_focal_crossentropy", {"gamma": 0.0, "label_smoothing": 0.1, "from_logits": True}),
    ("binary_focal_crossentropy", {"gamma": 3.0, "from_logits": True, "apply_class_balancing": True}),
    ("categorical_focal_crossentropy", {"gamma": 1.0, "alpha": 0.5, "label_smoothing": 0.1}),
    ("categorical_focal_crossentropy", {"from_logits": True}),
]


@pytest.mark.parametrize("name,kw", VARIANTS)
def test_loss_options_gradient_matches_finite_differences(name, kw):
    loss = losses.get(name, **kw)
    shape = (N, 1) if "binary" in name else (N, K)
    p = RNG.normal(size=shape) if kw.get("from_logits") else _prediction(loss, shape)
    y = _targets(loss, p)
    if "categorical" in name:
        y = np.eye(K)[RNG.integers(0, K, size=N)]
    yd = dev(y)
    num = _numeric_grad(lambda q: float(host(loss.value(dev(q), yd))), p.copy())
    np.testing.assert_allclose(host(loss.grad(dev(p), yd)), num, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("name", UNFUSED)
def test_sample_weights_give_the_weighted_mean_and_its_gradient(name):
    """L_w = sum_i w_i l_i / N, with l_i each sample's own (unweighted) loss: the loss on row i alone."""
    loss = losses.get(name)
    p = _prediction(loss, (N, K))
    y = _targets(loss, p)
    w = RNG.uniform(0.0, 3.0, size=N)
    per_sample = [float(host(loss.value(dev(p[i : i + 1]), dev(y[i : i + 1])))) for i in range(N)]
    value = float(host(loss.value(dev(p), dev(y), dev(w))))
    assert value == pytest.approx(float(np.dot(w, per_sample)) / N, rel=1e-10)
    num = _numeric_grad(lambda q: float(host(loss.value(dev(q), dev(y), dev(w)))), p.copy())
    np.testing.assert_allclose(host(loss.grad(dev(p), dev(y), dev(w))), num, rtol=1e-5, atol=1e-8)


def test_weighted_fused_loss_hand_computed():
    # two samples, weights 3 and 1: (3 softplus(-z0) + softplus(z1)) / 2 for y = (1, 0)
    z, y, w = np.array([[0.5], [-1.0]]), np.array([[1.0], [0.0]]), np.array([3.0, 1.0])
    value, grad = host(losses.get("binary_crossentropy").fused_value_grad(dev(z), dev(y), "sigmoid", dev(w)))
    sp = lambda x: np.log1p(np.exp(x))  # noqa: E731
    assert value == pytest.approx((3 * sp(-0.5) + sp(-1.0)) / 2)
    s = 1 / (1 + np.exp(-z[:, 0]))
    np.testing.assert_allclose(grad[:, 0], np.array([3 * (s[0] - 1), s[1]]) / 2)


# -- reference values: hand-computed or NumPy from the definitions ---------------------------------------
def _val(name, p, y, **kw):
    return float(host(losses.get(name, **kw).value(dev(np.asarray(p, float)), dev(np.asarray(y, float)))))


def test_regression_losses_against_their_definitions():
    p = np.array([[0.5, 2.0, 3.5], [1.0, 0.2, 4.0]])
    y = np.array([[1.0, 2.0, 3.0], [2.0, 0.5, 0.0]])
    assert _val("mape", p, y) == pytest.approx(np.mean(100 * np.abs(y - p) / np.maximum(np.abs(y), 1e-7)))
    assert _val("msle", p, y) == pytest.approx(np.mean((np.log(p + 1) - np.log(np.maximum(y, 1e-7) + 1)) ** 2))
    assert _val("poisson", p, y) == pytest.approx(np.mean(p - y * np.log(p + 1e-7)))
    assert _val("log_cosh", p, y) == pytest.approx(np.mean(np.log(np.cosh(p - y))))
    cos = (p * y).sum(1) / np.linalg.norm(p, axis=1) / np.linalg.norm(y, axis=1)
    assert _val("cosine_similarity", p, y) == pytest.approx(-cos.mean())
    # log_cosh stays finite where cosh overflows: log cosh(x) -> |x| - log 2
    assert _val("log_cosh", [[1000.0]], [[0.0]]) == pytest.approx(1000.0 - np.log(2.0))


def test_hinge_family_hand_computed():
    p, y = np.array([[0.3], [-2.0], [0.8]]), np.array([[1.0], [0.0], [0.0]])
    # t = (1, -1, -1): 1 - t p = (0.7, -1.0, 1.8) -> clipped (0.7, 0, 1.8)
    assert _val("squared_hinge", p, y) == pytest.approx((0.49 + 0 + 3.24) / 3)
    pc = np.array([[0.1, 0.7, 0.2], [2.0, 0.5, -1.0]])
    yc = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    # sample 0: neg 0.7, pos 0.1 -> 1.6; sample 1: neg 0.5, pos 2.0 -> max(-0.5, 0) = 0
    assert _val("categorical_hinge", pc, yc) == pytest.approx(0.8)


def test_focal_losses_hand_computed():
    p, y = np.array([[0.9], [0.2]]), np.array([[1.0], [1.0]])
    # p_t = (0.9, 0.2): (0.1^2 (-log 0.9) + 0.8^2 (-log 0.2)) / 2
    plain = (0.01 * -np.log(0.9) + 0.64 * -np.log(0.2)) / 2
    assert _val("binary_focal_crossentropy", p, y) == pytest.approx(plain)
    assert _val("binary_focal_crossentropy", p, y, apply_class_balancing=True) == pytest.approx(0.25 * plain)
    pc, yc = np.array([[0.7, 0.2, 0.1]]), np.array([[0.0, 1.0, 0.0]])
    assert _val("categorical_focal_crossentropy", pc, yc) == pytest.approx(0.25 * 0.8**2 * -np.log(0.2))
    # unnormalised probabilities are normalised first (Keras): (1.4, 0.4, 0.2) is the same distribution
    assert _val("categorical_focal_crossentropy", 2 * pc, yc) == pytest.approx(0.25 * 0.8**2 * -np.log(0.2))


def test_label_smoothing_hand_computed():
    # binary: y = 1 -> 1 - s/2 = 0.9 with s = 0.2
    assert _val("bce", [[0.8]], [[1.0]], label_smoothing=0.2) == pytest.approx(-(0.9 * np.log(0.8) + 0.1 * np.log(0.2)))
    # categorical, K = 4: (0.775, 0.075, 0.075, 0.075) with s = 0.3
    p, y = np.array([[0.4, 0.3, 0.2, 0.1]]), np.array([[1.0, 0, 0, 0]])
    t = np.array([0.775, 0.075, 0.075, 0.075])
    assert _val("cce", p, y, label_smoothing=0.3) == pytest.approx(-(t * np.log(p[0])).sum())


# -- PyTorch references ---------------------------------------------------------------------------------
@pytest.mark.torch
def test_losses_against_pytorch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    z = RNG.normal(size=(6, K))
    labels = RNG.integers(0, K, size=6)
    onehot = np.eye(K)[labels]
    ls = 0.15
    ref = float(F.cross_entropy(torch.tensor(z), torch.tensor(labels), label_smoothing=ls))
    got = losses.get("cce", from_logits=True, label_smoothing=ls).value(dev(z), dev(onehot))
    assert float(host(got)) == pytest.approx(ref, rel=1e-10)
    zb, yb = RNG.normal(size=(6, 1)), RNG.integers(0, 2, size=(6, 1)).astype(float)
    ref = float(F.binary_cross_entropy_with_logits(torch.tensor(zb), torch.tensor(yb * (1 - ls) + ls / 2)))
    got = losses.get("bce", from_logits=True, label_smoothing=ls).value(dev(zb), dev(yb))
    assert float(host(got)) == pytest.approx(ref, rel=1e-10)
    rate, counts = np.exp(RNG.normal(size=(6, 3))), RNG.poisson(3.0, size=(6, 3)).astype(float)
    ref = float(F.poisson_nll_loss(torch.tensor(rate), torch.tensor(counts), log_input=False, eps=1e-7))
    assert _val("poisson", rate, counts) == pytest.approx(ref, rel=1e-10)
    a, b = RNG.normal(size=(6, 3)), RNG.normal(size=(6, 3))
    ref = -float(F.cosine_similarity(torch.tensor(a), torch.tensor(b), dim=-1).mean())
    assert _val("cosine_similarity", a, b) == pytest.approx(ref, rel=1e-10)
    # torch's soft-margin-free focal is not in core: its BCE times the focal factor, from its own sigmoid
    pt_p = torch.sigmoid(torch.tensor(zb))
    bce = F.binary_cross_entropy_with_logits(torch.tensor(zb), torch.tensor(yb), reduction="none")
    p_t = torch.tensor(yb) * pt_p + (1 - torch.tensor(yb)) * (1 - pt_p)
    ref = float(((1 - p_t) ** 2 * bce).mean())
    got = losses.get("binary_focal_crossentropy", from_logits=True).value(dev(zb), dev(yb))
    assert float(host(got)) == pytest.approx(ref, rel=1e-10)


@pytest.mark.parametrize(
    "loss",
    [
        '{type = "categorical_focal_crossentropy", gamma = 1.0, label_smoothing = 0.1}',
        '"categorical_hinge"',
        '{type = "categorical_crossentropy", from_logits = true, label_smoothing = 0.2}',
    ],
)
def test_new_losses_train_and_evaluate_from_a_spec(loss, tmp_path):
    from helpers import load_spec
    from nnctl import run

    sets = [
        f"train.loss={loss}",
        "train.epochs=3",
        'train.metrics=["accuracy", "auc", "pr_auc", "top_k_categorical_accuracy", "mean_iou", "f1_weighted", '
        '"precision_micro", "f2", "crossentropy"]',
    ]
    if "from_logits" in loss:
        sets.append('model.layers[1].activation="linear"')  # the output layer
    s = load_spec("iris_mlp.toml", tmp_path, *sets)
    done = run.train(s)
    assert np.isfinite(done["metrics"]["loss"]) and 0 <= done["metrics"]["val_auc"] <= 1
    out = run.evaluate(s.output.checkpoint)
    assert out["top_k_categorical_accuracy"] == 1.0  # 3 classes: always in the top 5
    assert 0 <= out["mean_iou"] <= 1 and 0 <= out["crossentropy"]


@pytest.mark.parametrize("name", UNFUSED)
def test_float32_stays_float32_with_weights(name):
    loss = losses.get(name)
    p = _prediction(loss, (N, K)).astype(np.float32)
    y = _targets(loss, p).astype(np.float32)
    value, grad = loss.value_grad(dev(p), dev(y), dev(np.full(N, 2.0)))
    assert host(value).dtype == np.float32 and grad.dtype == np.float32
