"""Models with several named inputs and outputs: the weighted total loss, float64 gradients end to end, named
CSV column groups and npz arrays, one-line errors, old checkpoints, and train/evaluate/predict from the CLI."""

import csv
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from helpers import outputs_at
from nnctl import backend as B
from nnctl import run
from nnctl import spec as spec_mod
from nnctl.assemble import make_heads
from nnctl.build import build_model
from nnctl.checkpoint import Checkpoint
from nnctl.data import load_dataset
from nnctl.errors import DataError, SpecError
from nnctl.scoring import evaluate_model

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"


def two_io_spec(data: dict | None = None, dtype: str = "float32", **changes) -> dict:
    """Inputs a (3 features) and b (2 features); outputs reg = Dense(2) on tanh(Dense(a)) and cls =
    softmax(Dense(3)) on [reg, tanh(Dense(b))]: reg is an output that also feeds cls."""
    raw = {
        "seed": 3,
        "dtype": dtype,
        "data": data or {"train": "unused.csv"},
        "model": {
            "inputs": {"a": {"shape": [3]}, "b": {"shape": [2]}},
            "layers": [
                {"type": "Dense", "name": "ha", "units": 4, "activation": "tanh", "inputs": ["a"]},
                {"type": "Dense", "name": "reg", "units": 2},
                {"type": "Dense", "name": "hb", "units": 3, "activation": "tanh", "inputs": ["b"]},
                {"type": "Concatenate", "name": "cat", "inputs": ["reg", "hb"]},
                {"type": "Dense", "name": "cls", "units": 3, "activation": "softmax"},
            ],
            "outputs": {
                "reg": {"layer": "reg", "loss": "mse", "weight": 0.7, "metrics": ["mae"]},
                "cls": {
                    "layer": "cls",
                    "loss": "sparse_categorical_crossentropy",
                    "weight": 1.3,
                    "metrics": ["accuracy"],
                },
            },
        },
        "train": {"epochs": 1},
    }
    for path, value in changes.items():
        section, key = path.split("__")
        raw[section][key] = value
    return spec_mod.validate(raw)


def batch(n=7, seed=0):
    rng = np.random.default_rng(seed)
    x = {"a": rng.normal(size=(n, 3)), "b": rng.normal(size=(n, 2))}
    y = {"reg": rng.normal(size=(n, 2)), "cls": rng.integers(0, 3, n)}
    return x, y


def built(dtype="float32"):
    s = two_io_spec(dtype=dtype)
    model = build_model(s, (3,), s.seed)
    model.to_device()
    return s, model, make_heads(s, model)


def numpy_forward(model, x):
    """The two outputs from the weights with NumPy alone (tanh, softmax written out)."""
    w = {k: B.to_numpy(v).astype(np.float64) for k, v in model.named_params().items()}
    ha = np.tanh(x["a"] @ w["ha/kernel"] + w["ha/bias"])
    reg = ha @ w["reg/kernel"] + w["reg/bias"]
    hb = np.tanh(x["b"] @ w["hb/kernel"] + w["hb/bias"])
    z = np.concatenate([reg, hb], axis=1) @ w["cls/kernel"] + w["cls/bias"]
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return reg, e / e.sum(axis=1, keepdims=True)


def test_total_loss_is_the_weighted_sum_of_the_outputs_losses():
    s, model, heads = built()
    x, y = batch()
    logs = evaluate_model(model, None, x, y, [], "", 0, heads=heads)
    reg, p = numpy_forward(model, x)
    mse = np.mean((reg - y["reg"]) ** 2)
    ce = -np.mean(np.log(p[np.arange(len(p)), y["cls"]]))
    assert logs["reg_loss"] == pytest.approx(mse, rel=1e-5)
    assert logs["cls_loss"] == pytest.approx(ce, rel=1e-5)
    assert logs["loss"] == pytest.approx(0.7 * mse + 1.3 * ce, rel=1e-5)
    assert logs["reg_mae"] == pytest.approx(np.mean(np.abs(reg - y["reg"])), rel=1e-5)
    assert logs["cls_accuracy"] == pytest.approx(np.mean(p.argmax(1) == y["cls"]))


def test_float64_gradients_of_two_inputs_and_two_outputs_match_finite_differences():
    s, model, heads = built("float64")
    assert {h.name: h.fused for h in heads.heads} == {"reg": False, "cls": True}
    x, y = batch(5, seed=1)
    xd = model.device_inputs(x)
    yd = {"reg": B.asarray(y["reg"]), "cls": B.asarray(y["cls"])}

    def loss() -> float:
        return float(heads.value(model.forward(xd), yd)[0])

    model.flat_grads[...] = 0
    total, parts = heads.value_grad(model.forward(xd, training=True), yd)
    assert float(total) == pytest.approx(0.7 * float(parts["reg"]) + 1.3 * float(parts["cls"]))
    analytic = B.to_numpy(model.flat_grads).copy()
    numeric = np.zeros_like(analytic)
    flat, eps = model.flat_params, 1e-6
    for i in range(flat.size):
        keep = float(flat[i])
        flat[i] = keep + eps
        up = loss()
        flat[i] = keep - eps
        down = loss()
        flat[i] = keep
        numeric[i] = (up - down) / (2 * eps)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-9)


def write_csv(path, n=40, seed=0, extra_rows=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, 3)).round(4)
    b = rng.normal(size=(n, 2)).round(4)
    r = np.stack([a[:, 0] - b[:, 1], a[:, 1] + 0.5 * a[:, 2]], axis=1).round(4)
    c = (a.sum(1) > 0).astype(int) + (b[:, 0] > 0.5)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["c", "a1", "a2", "a3", "r1", "b1", "b2", "r2"])
        for i in range(n):
            w.writerow([c[i], *a[i], r[i, 0], *b[i], r[i, 1]])
    return a, b, r, c


CSV_DATA = {"inputs": {"a": ["a1", "a2", "a3"], "b": ["b1", "b2"]}, "targets": {"reg": ["r1", "r2"], "cls": ["c"]}}


def test_csv_column_groups_feed_named_inputs_and_targets(tmp_path):
    a, b, r, c = write_csv(tmp_path / "t.csv")
    s = two_io_spec({"train": str(tmp_path / "t.csv"), **CSV_DATA})
    ds = load_dataset(s)
    np.testing.assert_allclose(ds.x_train["a"], a, rtol=1e-6)
    np.testing.assert_allclose(ds.x_train["b"], b, rtol=1e-6)
    np.testing.assert_allclose(ds.y_train["reg"], r, rtol=1e-6)
    np.testing.assert_array_equal(ds.y_train["cls"], c)
    assert ds.y_train["cls"].dtype.kind == "i"


def test_npz_named_arrays_feed_inputs_and_targets_by_name_and_by_default(tmp_path):
    rng = np.random.default_rng(2)
    arrays = {
        "a": rng.normal(size=(12, 3)),
        "bee": rng.normal(size=(12, 2)),
        "reg": rng.normal(size=(12, 2)),
        "labels": rng.integers(0, 3, 12),
    }
    np.savez(tmp_path / "t.npz", **arrays)
    s = two_io_spec({"train": str(tmp_path / "t.npz"), "inputs": {"b": "bee"}, "targets": {"cls": "labels"}})
    ds = load_dataset(s)
    np.testing.assert_allclose(ds.x_train["a"], arrays["a"].astype(np.float32))  # "a": the array of its name
    np.testing.assert_allclose(ds.x_train["b"], arrays["bee"].astype(np.float32))
    np.testing.assert_allclose(ds.y_train["reg"], arrays["reg"].astype(np.float32))
    np.testing.assert_array_equal(ds.y_train["cls"], arrays["labels"])


def test_hdf5_named_arrays_feed_inputs_and_targets(tmp_path):
    import h5py

    rng = np.random.default_rng(4)
    arrays = {
        "a": rng.normal(size=(9, 3)),
        "b": rng.normal(size=(9, 2)),
        "r": rng.normal(size=(9, 2)),
        "cls": rng.integers(0, 3, 9),
    }
    with h5py.File(tmp_path / "t.h5", "w") as f:
        for k, v in arrays.items():
            f[k] = v
    ds = load_dataset(two_io_spec({"train": str(tmp_path / "t.h5"), "targets": {"reg": "r"}}))
    np.testing.assert_allclose(ds.x_train["b"], arrays["b"].astype(np.float32))
    np.testing.assert_allclose(ds.y_train["reg"], arrays["r"].astype(np.float32))
    np.testing.assert_array_equal(ds.y_train["cls"], arrays["cls"])


def test_one_unnamed_input_with_named_outputs_reads_the_other_csv_columns(tmp_path):
    """Without model.inputs the one input is every column no target names, in file order."""
    a, b, r, c = write_csv(tmp_path / "t.csv")
    s = two_io_spec(
        {"train": str(tmp_path / "t.csv"), "targets": CSV_DATA["targets"]},
        model__inputs=None,
        model__layers=[
            {"type": "Dense", "name": "reg", "units": 2},
            {"type": "Dense", "name": "cls", "units": 3, "activation": "softmax", "inputs": ["input"]},
        ],
    )
    ds = load_dataset(s)
    np.testing.assert_allclose(ds.x_train, np.concatenate([a, b], axis=1), rtol=1e-6)
    model = run.model_for_data(s, ds)
    assert model.output_shapes == {"reg": (2,), "cls": (3,)}


def test_two_named_inputs_and_one_output_use_train_loss_and_metrics(tmp_path):
    write_csv(tmp_path / "t.csv")
    s = two_io_spec(
        {"train": str(tmp_path / "t.csv"), "inputs": CSV_DATA["inputs"], "target": "r1"},
        model__outputs=None,
        train__metrics=["mae"],
    )
    s.model.layers[-1].update(units=1, activation="linear")
    s = outputs_at(s, str(tmp_path / "one.h5"), str(tmp_path / "one.run"))
    done = run.train(s)
    assert set(done["metrics"]) >= {"loss", "mae"} and not any(k.endswith("_loss") for k in done["metrics"])


def test_npz_arrays_of_different_lengths_are_refused(tmp_path):
    rng = np.random.default_rng(2)
    np.savez(
        tmp_path / "t.npz",
        a=rng.normal(size=(12, 3)),
        b=rng.normal(size=(11, 2)),
        reg=rng.normal(size=(12, 2)),
        cls=rng.integers(0, 3, 12),
    )
    with pytest.raises(DataError, match=r"data\.inputs\.b: expected 12 rows \(as data\.inputs\.a\), found 11"):
        load_dataset(two_io_spec({"train": str(tmp_path / "t.npz")}))


def test_a_csv_column_group_naming_a_missing_column_is_refused(tmp_path):
    write_csv(tmp_path / "t.csv")
    data = {"train": str(tmp_path / "t.csv"), **CSV_DATA, "inputs": {"a": ["a1", "a2", "a4"], "b": ["b1", "b2"]}}
    with pytest.raises(DataError, match=r"data\.inputs\.a: column 'a4' is not in the header; did you mean"):
        load_dataset(two_io_spec(data))


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {
                "model__layers": [
                    {"type": "Dense", "name": "h", "units": 2, "inputs": ["aa"]},
                    {"type": "Dense", "name": "g", "units": 2, "inputs": ["b"]},
                ]
            },
            r"model\.layers\[0\]\.inputs: 'aa': no such layer or model input; did you mean 'a'\?",
        ),
        (
            {
                "model__layers": [{"type": "Dense", "name": "h", "units": 2, "inputs": ["a"]}],
                "model__outputs": {"y": {"layer": "h"}},
            },
            r"model\.inputs\.b: never used",
        ),
        (
            {"model__outputs": {"y": {"layer": "clss", "loss": "mse"}}},
            r"model\.outputs\.y\.layer: 'clss' is not a layer of model\.layers; did you mean 'cls'\?",
        ),
        (
            {"model__outputs": {"y": {"layer": "reg", "metrics": ["accuracy"]}}},
            r"model\.outputs\.y\.metrics\[0\]: accuracy needs a classification loss",
        ),
        ({"model__outputs": {"y": {"layer": "reg", "wieght": 2}}}, r"model\.outputs\.y\.wieght: unknown key"),
    ],
)
def test_spec_mistakes_are_one_line_errors(change, message):
    with pytest.raises(SpecError, match=message):
        two_io_spec(**change)


def test_old_checkpoint_still_loads_and_predicts_as_before():
    """tests/fixtures/old_layout_iris.h5 was written by nnctl before named inputs/outputs existed; its
    predictions then are in old_layout_iris_predict.csv."""
    restored = run.restore(FIXTURES / "old_layout_iris.h5", "cpu")
    assert not restored.model.named_inputs and not restored.model.named_outputs
    rows = list(csv.DictReader(open(ROOT / "examples" / "data" / "iris-test.csv")))
    x = np.array([[float(r[k]) for k in ("sepal_length", "sepal_width", "petal_length", "petal_width")] for r in rows])
    p, labels = run.predict(restored, x)
    want = list(csv.DictReader(open(FIXTURES / "old_layout_iris_predict.csv")))
    assert [str(v) for v in labels] == [r["prediction"] for r in want]
    np.testing.assert_allclose(
        p, [[float(r[f"proba_{c}"]) for c in ("setosa", "versicolor", "virginica")] for r in want], atol=2e-6
    )
    result = run.evaluate(FIXTURES / "old_layout_iris.h5", str(ROOT / "examples" / "data" / "iris-test.csv"), "cpu")
    assert result["samples"] == 30 and result["accuracy"] == 1.0


SPEC_TOML = """
name = "tiny"
seed = 0
[data]
train = "{data}"
test = "{data}"
validation = {{ split = 0.25 }}
[data.inputs]
a = ["a1", "a2", "a3"]
b = ["b1", "b2"]
[data.targets]
reg = ["r1", "r2"]
cls = ["c"]
[model.inputs.a]
shape = [3]
[model.inputs.b]
shape = [2]
[[model.layers]]
type = "Dense"
name = "ha"
units = 8
activation = "tanh"
inputs = ["a"]
[[model.layers]]
type = "Dense"
name = "reg_out"
units = 2
[[model.layers]]
type = "Concatenate"
name = "cat"
inputs = ["ha", "b"]
[[model.layers]]
type = "Dense"
name = "cls_out"
units = 3
activation = "softmax"
[model.outputs.reg]
layer = "reg_out"
loss = "mse"
weight = 2.0
metrics = ["mae"]
[model.outputs.cls]
layer = "cls_out"
loss = "sparse_categorical_crossentropy"
weight = 0.5
metrics = ["accuracy"]
[train]
epochs = 3
batch_size = 16
early_stopping = {{ monitor = "val_cls_loss", patience = 5 }}
[output]
checkpoint = "{out}"
"""


def nnctl(*args):
    return subprocess.run([sys.executable, "-m", "nnctl", *map(str, args)], capture_output=True, text=True, timeout=300)


def test_cli_trains_evaluates_and_predicts_a_two_input_two_output_spec(tmp_path):
    write_csv(tmp_path / "d.csv", n=48)
    spec_path = tmp_path / "tiny.toml"
    ckpt = tmp_path / "tiny.h5"
    spec_path.write_text(SPEC_TOML.format(data=tmp_path / "d.csv", out=ckpt))
    r = nnctl("train", spec_path, "--json")
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines()]
    epoch = next(e for e in events if e["event"] == "epoch")
    for key in (
        "loss",
        "reg_loss",
        "cls_loss",
        "reg_mae",
        "cls_accuracy",
        "val_loss",
        "val_reg_loss",
        "val_cls_accuracy",
    ):
        assert key in epoch, key
    assert epoch["val_loss"] == pytest.approx(2.0 * epoch["val_reg_loss"] + 0.5 * epoch["val_cls_loss"], rel=1e-5)
    assert Checkpoint(ckpt).attrs["format_version"] == 2  # an nnctl without named outputs refuses it
    assert Checkpoint(FIXTURES / "old_layout_iris.h5").attrs["format_version"] == 1
    history = Checkpoint(ckpt).history
    assert len(history["reg_loss"]) == 3 and len(history["val_cls_accuracy"]) == 3

    r = nnctl("evaluate", ckpt, "--json")
    assert r.returncode == 0, r.stderr
    ev = json.loads(r.stdout)
    assert ev["samples"] == 48
    assert ev["loss"] == pytest.approx(2.0 * ev["reg_loss"] + 0.5 * ev["cls_loss"], rel=1e-5)
    assert {"reg_mae", "cls_accuracy"} <= set(ev)
    text = nnctl("evaluate", ckpt)
    assert text.returncode == 0 and "cls_accuracy" in text.stdout

    r = nnctl("predict", ckpt, tmp_path / "d.csv", "--format", "jsonl")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(rows) == 48 and set(rows[0]) == {"reg", "cls"}
    assert len(rows[0]["reg"]) == 2 and rows[0]["cls"] in (0, 1, 2)
    r = nnctl("predict", ckpt, tmp_path / "d.csv", "--proba")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "reg_0,reg_1,cls,cls_proba_0,cls_proba_1,cls_proba_2"
    # the JSON predictions are the model's: evaluate's regression error from them with NumPy
    _, _, y_reg, _ = write_csv(tmp_path / "again.csv", n=48)
    mae = np.mean(np.abs(np.array([row["reg"] for row in rows]) - y_reg))
    assert mae == pytest.approx(ev["reg_mae"], rel=1e-4)
    for flag in (["--top-k", "1"], ["--score"], ["--reconstruct"]):  # a flag it cannot honour is refused, not ignored
        r = nnctl("predict", ckpt, tmp_path / "d.csv", *flag)
        assert r.returncode == 2 and r.stderr.count("error:") == 1 and flag[0] in r.stderr, r.stderr


def test_cli_reports_a_missing_column_in_one_line_with_exit_2(tmp_path):
    write_csv(tmp_path / "d.csv")
    spec_path = tmp_path / "tiny.toml"
    spec_path.write_text(SPEC_TOML.format(data=tmp_path / "d.csv", out=tmp_path / "x.h5").replace('"b2"]', '"b3"]'))
    r = nnctl("train", spec_path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "data.inputs.b: column 'b3' is not in the header" in lines[0], r.stderr


def test_shipped_recommender_beats_the_global_mean(tmp_path):
    s = spec_mod.load(ROOT / "specs" / "recommender.toml")
    s = outputs_at(s, str(tmp_path / "rec.h5"), str(tmp_path / "rec.run"))
    run.train(s)
    result = run.evaluate(tmp_path / "rec.h5", device="cpu")
    train = np.loadtxt(ROOT / "examples" / "data" / "ratings-train.csv", delimiter=",", skiprows=1)
    test = np.loadtxt(ROOT / "examples" / "data" / "ratings-test.csv", delimiter=",", skiprows=1)
    baseline = float(np.sqrt(np.mean((test[:, 2] - train[:, 2].mean()) ** 2)))
    assert result["rmse"] < 0.6 * baseline, (result["rmse"], baseline)


def test_shipped_localisation_trains_and_reports_box_iou(tmp_path):
    """One epoch of specs/localisation.toml: both outputs learn something (accuracy above chance, IoU above
    that of the box covering the whole image)."""
    s = spec_mod.load(ROOT / "specs" / "localisation.toml", ["train.epochs=2"])
    s = outputs_at(s, str(tmp_path / "loc.h5"), str(tmp_path / "loc.run"))
    run.train(s)
    result = run.evaluate(tmp_path / "loc.h5", device="cpu")
    boxes = np.load(ROOT / "examples" / "data" / "shapes-test.npz")["boxes"]
    whole = np.mean(np.prod(boxes[:, 2:] - boxes[:, :2], axis=1))  # IoU of the [0, 1] box with each true box
    assert result["bbox_box_iou"] > whole + 0.2
    assert result["shape_accuracy"] > 0.45


def test_summary_dot_draws_each_named_input():
    r = nnctl("summary", ROOT / "specs" / "recommender.toml", "--format", "dot")
    assert r.returncode == 0, r.stderr
    assert '"user" [label="user\\n(None, 1)", shape=ellipse];' in r.stdout
    assert '"input" [' not in r.stdout and '"item" -> "item_vec";' in r.stdout


def test_a_stop_inside_an_epoch_resumes_to_the_same_weights_and_epoch_metrics(tmp_path):
    from nnctl.assemble import make_loss, make_optimizer, model_for_data
    from nnctl.train import Hooks, Trainer

    write_csv(tmp_path / "t.csv", n=40)
    s = two_io_spec(
        {"train": str(tmp_path / "t.csv"), **CSV_DATA}, dtype="float64", train__batch_size=4, train__epochs=2
    )
    ds = load_dataset(s)

    def trainer(stop_after=None):
        model = model_for_data(s, ds)
        model.to_device()
        calls = []
        hooks = Hooks(should_stop=(lambda: calls.append(1) or len(calls) > stop_after) if stop_after else None)
        return Trainer(
            model,
            make_loss(s),
            make_optimizer(s),
            s.train,
            "regression",
            2,
            s.seed,
            hooks=hooks,
            heads=make_heads(s, model),
        )

    whole = trainer()
    whole.fit(ds.x_train, ds.y_train, 2)
    first = trainer(stop_after=13)  # stops inside epoch 2 (10 batches an epoch)
    first.fit(ds.x_train, ds.y_train, 2)
    assert first.state.epoch == 1 and first.progress is not None and first.progress.batch == 3
    snap = first.snapshot()
    assert snap["position"]["preds"].shape == (12, 5)  # both outputs side by side: 2 + 3 columns
    again = trainer()
    again.restore(snap)
    again.fit(ds.x_train, ds.y_train, 2)
    np.testing.assert_array_equal(B.to_numpy(again.model.flat_params), B.to_numpy(whole.model.flat_params))
    for key in ("loss", "reg_mae", "cls_accuracy"):
        assert again.state.history[key] == whole.state.history[key], key


@pytest.mark.mpi
def test_two_mpi_ranks_train_a_two_output_model_as_one_process(tmp_path):
    import importlib.util
    import shutil

    bin_dir = pathlib.Path(sys.executable).parent
    mpiexec = shutil.which("mpiexec", path=str(bin_dir)) or shutil.which("mpiexec")
    console = shutil.which("nnctl", path=str(bin_dir)) or shutil.which("nnctl")
    if mpiexec is None or console is None or importlib.util.find_spec("mpi4py") is None:
        pytest.skip("needs mpiexec, mpi4py and the nnctl console script: pip install nnctl[mpi]")
    write_csv(tmp_path / "d.csv", n=48)
    spec_path = tmp_path / "tiny.toml"
    spec_path.write_text(SPEC_TOML.format(data=tmp_path / "d.csv", out=tmp_path / "one.h5"))
    # on the CPU: two ranks on one machine's single (or emulated) GPU are refused, one rank per GPU
    one = nnctl("train", spec_path, "--device", "cpu")
    assert one.returncode == 0, one.stderr
    two = subprocess.run(
        [mpiexec, "-n", "2", console, "train", spec_path, "--out", tmp_path / "two.h5", "--device", "cpu"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert two.returncode == 0, two.stderr
    a, b = Checkpoint(tmp_path / "one.h5"), Checkpoint(tmp_path / "two.h5")
    for k, v in a.weights.items():
        np.testing.assert_allclose(b.weights[k], v, rtol=1e-5, atol=1e-6)
    for key in ("loss", "reg_loss", "cls_loss", "reg_mae", "cls_accuracy", "val_cls_loss"):
        np.testing.assert_allclose(b.history[key], a.history[key], rtol=1e-5, err_msg=key)
