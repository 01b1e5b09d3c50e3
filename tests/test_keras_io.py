"""Keras interop: Keras weights files as model.init_from, ``nnctl import`` and ``nnctl export --format keras``.

Without Keras, the tests write small files in Keras's layouts themselves with h5py (the layout is the
reference: keras.applications' weights files, Keras 3's model.weights.h5) and check the arrays and the
predictions against NumPy. Tests marked ``keras`` compare with Keras itself (pip install tensorflow-cpu keras).
"""

import json
import subprocess
import sys
import zipfile

import h5py
import numpy as np
import pytest

from helpers import ROOT, load_spec, train_spec
from nnctl import run
from nnctl import spec as spec_mod


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "nnctl", *args], capture_output=True, text=True, cwd=cwd)


def _legacy_weights(path, layers: dict[str, dict[str, np.ndarray]], suffix=":0"):
    """A keras.applications-style weights file: layer_names, and weight_names per layer group."""
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([n.encode() for n in layers])
        f.attrs["backend"], f.attrs["keras_version"] = b"tensorflow", b"2.2.4"
        for name, arrays in layers.items():
            g = f.create_group(name)
            names = [f"{name}/{k}{suffix}" for k in arrays]
            g.attrs["weight_names"] = np.array([n.encode() for n in names])
            for wname, arr in zip(names, arrays.values()):
                g.create_dataset(wname, data=arr)


def _mlp_spec(tmp_path, init_from, epochs=0):
    raw = {
        "name": "mlp",
        "seed": 0,
        "data": {"train": str(ROOT / "examples/data/iris.csv"), "target": "species"},
        "model": {
            "init_from": str(init_from),
            "layers": [
                {"type": "Dense", "name": "fc1", "units": 5, "activation": "relu", "trainable": False},
                {"type": "BatchNormalization", "name": "bn", "trainable": False},
                {"type": "Dense", "name": "head", "units": 3, "activation": "softmax"},
            ],
        },
        "train": {"loss": "categorical_crossentropy", "epochs": epochs},
        "output": {"checkpoint": str(tmp_path / "mlp.h5"), "run_dir": str(tmp_path / "run")},
    }
    path = tmp_path / "mlp.json"
    path.write_text(json.dumps(raw))
    return spec_mod.load(path, [])


def test_init_from_reads_a_legacy_keras_weights_file(tmp_path):
    rng = np.random.default_rng(0)
    fc1 = {"kernel": rng.normal(size=(4, 5)).astype(np.float32), "bias": rng.normal(size=5).astype(np.float32)}
    bn = {
        "gamma": rng.uniform(0.5, 2, 5),
        "beta": rng.normal(size=5),
        "moving_mean": rng.normal(size=5),
        "moving_variance": rng.uniform(0.5, 2, 5),
    }
    other = {"kernel": rng.normal(size=(9, 9))}  # a layer the model does not have
    _legacy_weights(tmp_path / "w.h5", {"fc1": fc1, "pool": {}, "bn": bn, "extra": other})
    events = []
    run.train(_mlp_spec(tmp_path, tmp_path / "w.h5", epochs=1), emit=events.append)
    event = next(e for e in events if e["event"] == "init_from")
    assert sorted(event["loaded"]) == sorted(
        ["fc1/kernel", "fc1/bias", "bn/gamma", "bn/beta", "bn/moving_mean", "bn/moving_variance"]
    )
    assert any(s.startswith("head/kernel") for s in event["skipped"])
    with h5py.File(tmp_path / "mlp.h5") as f:  # frozen layers keep the file's arrays through training
        np.testing.assert_array_equal(f["weights/fc1/kernel"][()], fc1["kernel"])
        np.testing.assert_allclose(f["state/bn/moving_variance"][()], bn["moving_variance"], rtol=1e-7)


def test_init_from_reads_keras3_weights_layout(tmp_path):
    """Keras 3's *.weights.h5: groups keyed by class name, the layer's name in vars' attribute, vars by index."""
    rng = np.random.default_rng(1)
    k, b = rng.normal(size=(4, 5)).astype(np.float32), rng.normal(size=5).astype(np.float32)
    with h5py.File(tmp_path / "m.weights.h5", "w") as f:
        v = f.create_group("layers/dense/vars")
        v.attrs["name"] = "fc1"
        v.create_dataset("0", data=k)
        v.create_dataset("1", data=b)
        f.create_group("layers/dense_1/vars").attrs["name"] = "unused"
    events = []
    run.train(_mlp_spec(tmp_path, tmp_path / "m.weights.h5", epochs=1), emit=events.append)
    assert sorted(next(e for e in events if e["event"] == "init_from")["loaded"]) == ["fc1/bias", "fc1/kernel"]
    with h5py.File(tmp_path / "mlp.h5") as f:
        np.testing.assert_array_equal(f["weights/fc1/kernel"][()], k)


def _legacy_model(path, rng):
    """A whole-model legacy .h5 (model.save('x.h5')): model_config JSON plus /model_weights."""
    config = {
        "class_name": "Sequential",
        "config": {
            "name": "tiny",
            "layers": [
                {
                    "class_name": "Dense",
                    "config": {
                        "name": "d1",
                        "units": 6,
                        "activation": "tanh",
                        "use_bias": True,
                        "batch_input_shape": [None, 3],
                        "kernel_constraint": None,
                        "kernel_initializer": {"class_name": "GlorotUniform", "config": {}},
                    },
                },
                {"class_name": "Dropout", "config": {"name": "drop", "rate": 0.3}},
                {"class_name": "Dense", "config": {"name": "d2", "units": 2, "activation": "softmax"}},
            ],
        },
    }
    w = {
        "d1": {"kernel": rng.normal(size=(3, 6)), "bias": rng.normal(size=6)},
        "d2": {"kernel": rng.normal(size=(6, 2)), "bias": rng.normal(size=2)},
    }
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config)
        g = f.create_group("model_weights")
        g.attrs["layer_names"] = np.array([b"d1", b"drop", b"d2"])
        for name in ("d1", "drop", "d2"):
            lg = g.create_group(name)
            arrays = w.get(name, {})
            lg.attrs["weight_names"] = np.array([f"{name}/{k}:0".encode() for k in arrays])
            for k, a in arrays.items():
                lg.create_dataset(f"{name}/{k}:0", data=a.astype(np.float32))
    return w


def test_import_legacy_model_matches_numpy(tmp_path):
    w = _legacy_model(tmp_path / "tiny.h5", np.random.default_rng(2))
    r = _cli(
        "import", str(tmp_path / "tiny.h5"), "--output", str(tmp_path / "tiny.toml"), str(tmp_path / "t.h5"), "--json"
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["layers"] == 3
    assert _cli("check", str(tmp_path / "tiny.toml")).returncode == 0
    x = np.random.default_rng(3).normal(size=(7, 3)).astype(np.float32)
    got, _ = run.predict(run.restore(tmp_path / "t.h5", "cpu"), x)
    h = np.tanh(x @ w["d1"]["kernel"].astype(np.float32) + w["d1"]["bias"].astype(np.float32))
    z = h @ w["d2"]["kernel"].astype(np.float32) + w["d2"]["bias"].astype(np.float32)
    want = np.exp(z - z.max(1, keepdims=True))
    want /= want.sum(1, keepdims=True)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def _keras_archive(path, layers, weights=b""):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("config.json", json.dumps({"class_name": "Sequential", "config": {"name": "m", "layers": layers}}))
        z.writestr("metadata.json", "{}")
        z.writestr("model.weights.h5", weights)


@pytest.mark.parametrize(
    "layer,fragment",
    [
        ({"class_name": "Lambda", "config": {"name": "code", "function": "gASVxx"}}, "Python code"),
        (
            {
                "class_name": "Conv2D",
                "config": {"name": "c", "filters": 2, "kernel_size": 3, "data_format": "channels_first"},
            },
            "data_format",
        ),
        ({"class_name": "GRU", "config": {"name": "g", "units": 2, "reset_after": False}}, "reset_after"),
        ({"class_name": "Sorcery", "config": {"name": "s"}}, "no 'Sorcery' layer"),
    ],
)
def test_import_refuses_what_nnctl_cannot_run(tmp_path, layer, fragment):
    _keras_archive(
        tmp_path / "bad.keras",
        [{"class_name": "InputLayer", "config": {"batch_shape": [None, 4, 4, 1], "name": "in"}}, layer],
    )
    r = _cli("import", str(tmp_path / "bad.keras"))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0] and layer["config"]["name"] in lines[0], lines
    assert not (tmp_path / "bad.toml").exists()


def test_weights_only_file_cannot_be_imported(tmp_path):
    _legacy_weights(tmp_path / "w.h5", {"fc1": {"kernel": np.ones((2, 2))}})
    r = _cli("import", str(tmp_path / "w.h5"))
    assert r.returncode == 2 and "init_from" in r.stderr


def test_export_then_import_round_trip(tmp_path):
    """Without Keras: the .keras nnctl writes is read back by nnctl's importer to the same predictions."""
    _, done = train_spec("iris_mlp.toml", tmp_path, "train.epochs=1")
    out = tmp_path / "iris.keras"
    r = _cli("export", done["checkpoint"], "--format", "keras", "-o", str(out), "--json")
    assert r.returncode == 0, r.stderr
    with zipfile.ZipFile(out) as z:
        assert {"config.json", "metadata.json", "model.weights.h5"} <= set(z.namelist())
    r = _cli("import", str(out), "-o", str(tmp_path / "back.toml"), str(tmp_path / "back.h5"))
    assert r.returncode == 0, r.stderr
    x = np.random.default_rng(0).normal(size=(9, 4)).astype(np.float32)
    a, _ = run.predict(run.restore(done["checkpoint"], "cpu"), x, preprocessed=True)
    b, _ = run.predict(run.restore(tmp_path / "back.h5", "cpu"), x)
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_shipped_transfer_spec_loads_the_keras_file(tmp_path):
    events = []
    s = load_spec("transfer_vgg_keras.toml", tmp_path, "train.epochs=1", "data.subset=150")
    run.train(s, emit=events.append)
    event = next(e for e in events if e["event"] == "init_from")
    assert len(event["loaded"]) == 8 and {x.split(" ")[0] for x in event["skipped"]} == {"head/kernel", "head/bias"}
    with h5py.File(ROOT / "examples/data/vgg_mini_notop.h5") as src, h5py.File(s.output.checkpoint) as ck:
        np.testing.assert_array_equal(
            src["block2_conv2/block2_conv2/kernel:0"][()], ck["weights/block2_conv2/kernel"][()]
        )


# -- against Keras itself ----------------------------------------------------------------------------
def _keras():
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return pytest.importorskip("keras", reason="needs Keras (pip install tensorflow-cpu keras)")


def _randomise(model, rng):
    """Random weights everywhere, BatchNormalization's moving statistics included (variance positive)."""
    for layer in model.layers:
        ws = layer.get_weights()
        new = [
            rng.uniform(0.5, 1.5, w.shape) if "variance" in v.path else rng.normal(0, 0.5, w.shape)
            for w, v in zip(ws, layer.weights)
        ]
        layer.set_weights([w.astype("float32") for w in new])


def _keras_models(keras):
    L = keras.layers
    seq = keras.Sequential(
        [
            keras.Input((10, 10, 3)),
            L.Conv2D(4, 3, padding="same", activation="relu", name="c1"),
            L.BatchNormalization(name="bn"),
            L.MaxPooling2D(2, name="p"),
            L.DepthwiseConv2D(3, padding="same", name="dw"),
            L.SeparableConv2D(5, 2, name="sep"),
            L.AveragePooling2D(2, name="ap"),
            L.Flatten(name="f"),
            L.Dropout(0.2, name="d"),
            L.Dense(3, activation="softmax", name="out"),
        ],
        name="cnn",
    )
    inp = keras.Input((8, 5))
    x = L.Conv1D(6, 3, padding="same", activation="gelu", name="c")(inp)
    x = L.Bidirectional(L.LSTM(4, return_sequences=True), name="bi")(x)
    a = L.MultiHeadAttention(2, 3, name="mha")(x, x)
    x = L.Add(name="add")([x, a])
    x = L.LayerNormalization(name="ln")(x)
    x = L.GRU(5, return_sequences=True, name="gru")(x)
    x = L.SimpleRNN(4, name="rnn")(x)
    y = L.Dense(4, activation="elu", name="e")(x)
    x = L.Concatenate(name="cat")([x, y])
    out = L.Dense(1, activation="sigmoid", name="out")(x)
    func = keras.Model(inp, out, name="seq")
    tokens = keras.Input((7,), dtype="int32")
    t = L.Embedding(20, 6, name="emb")(tokens)
    t = L.GlobalAveragePooling1D(name="gap")(t)
    text = keras.Model(tokens, L.Dense(2, activation="softmax", name="out")(t), name="text")
    return [(seq, (10, 10, 3)), (func, (8, 5)), (text, None)]


@pytest.mark.keras
@pytest.mark.parametrize("fmt", [".keras", ".h5"])
def test_keras_models_import_and_predict_the_same(tmp_path, fmt):
    keras = _keras()
    rng = np.random.default_rng(0)
    for model, shape in _keras_models(keras):
        _randomise(model, rng)
        path = tmp_path / f"{model.name}{fmt}"
        model.save(path)
        r = _cli("import", str(path), "-o", str(tmp_path / f"{model.name}.toml"), str(tmp_path / f"{model.name}.n.h5"))
        assert r.returncode == 0, r.stderr
        x = rng.integers(0, 20, (9, 7)) if shape is None else rng.normal(size=(9, *shape)).astype("float32")
        want = model.predict(x, verbose=0)
        got, _ = run.predict(run.restore(tmp_path / f"{model.name}.n.h5", "cpu"), x)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=model.name)


@pytest.mark.keras
@pytest.mark.parametrize(
    "name,shape",
    [
        ("iris_mlp.toml", (4,)),
        ("digits_cnn.toml", None),
        ("resnet_small.toml", None),
        ("sine_lstm.toml", None),
        ("text_gru.toml", None),
    ],
)
def test_nnctl_exports_load_in_keras(tmp_path, name, shape):
    keras = _keras()
    _, done = train_spec(name, tmp_path, "train.epochs=1")
    out = tmp_path / "model.keras"
    r = _cli("export", done["checkpoint"], "--format", "keras", "-o", str(out))
    assert r.returncode == 0, r.stderr
    model = keras.saving.load_model(out)
    restored = run.restore(done["checkpoint"], "cpu")
    rng = np.random.default_rng(0)
    in_shape = tuple(restored[1].input_shape)
    if restored[2].kind == "text":
        x = rng.integers(0, 5, (6, *in_shape))
    else:
        x = rng.normal(size=(6, *in_shape)).astype("float32")
    got, _ = run.predict(restored, x, preprocessed=True)
    np.testing.assert_allclose(model.predict(x, verbose=0), got, rtol=1e-4, atol=1e-5)
