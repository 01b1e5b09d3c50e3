"""ONNX export: onnxruntime on the exported file gives what ``nnctl predict`` gives, for every layer family.

The reference is onnxruntime (an independent implementation of every operator); the models are shipped
specs trained for one epoch, and small specs of the other families trained for one epoch on random
arrays (so BatchNormalization's moving statistics and every weight are away from their initial values).
Inputs are batches of a size training never used. Tolerance: float32's 1e-5 relative and 1e-6 absolute.
"""

import json
import subprocess
import sys

import numpy as np
import pytest

from helpers import ROOT, train_spec

onnx = pytest.importorskip("onnx", reason="needs onnx (pip install 'nnctl[onnx]')")
ort = pytest.importorskip("onnxruntime", reason="needs onnxruntime (pip install onnxruntime)")

from nnctl import run  # noqa: E402
from nnctl.interop.onnx_export import build_onnx, export_onnx  # noqa: E402

RTOL, ATOL = 1e-5, 1e-6


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _compare(ckpt, x, tmp_path, rtol=RTOL, atol=ATOL):
    """Export ``ckpt``, run both on ``x`` in two batch sizes; returns the ONNX model for more checks."""
    out = tmp_path / "model.onnx"
    export_onnx(ckpt, str(out))
    restored = run.restore(ckpt, "cpu")
    outputs, decoded = run.predict(restored, x)
    # what predict prints: probabilities (--proba) for classifiers, values in the target's units for regression
    want = decoded if restored[2].task == "regression" else outputs
    sess = _session(out)
    feed_type = np.int64 if sess.get_inputs()[0].type == "tensor(int64)" else np.float32
    for batch in (7, len(x)):  # neither is a training batch size
        got = np.concatenate(
            [sess.run(None, {"input": x[i : i + batch].astype(feed_type)})[0] for i in range(0, len(x), batch)]
        )
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
    return onnx.load(str(out))


def _raw_inputs(ckpt, source):
    """The rows ``nnctl predict CKPT SOURCE`` reads, before preprocessing (float32, as an ONNX user feeds)."""
    from nnctl.data.inputs import read_inputs_named

    _, model, prep, spec = run.restore(ckpt, "cpu")
    x, _ = read_inputs_named(str(source), prep, model.input_shape, (spec.data.x or "x", "x"))
    x = np.asarray(x)
    return x if x.dtype.kind in "iu" else x.astype(np.float32)


SHIPPED = [
    # spec, data to predict on, families covered
    ("iris_mlp.toml", "examples/data/iris-test.csv"),  # Dense, relu/softmax, standardised inputs
    ("digits_cnn.toml", "examples/data/digits-test.csv"),  # Conv2D, pooling, Reshape, Flatten, Dropout
    ("resnet_small.toml", "examples/data/cifar_sample/test/star"),  # BatchNorm, Add, GlobalAveragePooling2D
    ("rnn_seed.toml", "examples/data/rnn_seed.npz"),  # SimpleRNN, regression
    ("sine_lstm.toml", "examples/data/sine-test.csv"),  # LSTM, standardised target mapped back
    ("text_gru.toml", "examples/data/reviews-test.csv"),  # Embedding (mask_zero), Bidirectional GRU, masks
    ("text_transformer.toml", "examples/data/reviews-test.csv"),  # MHA, PositionalEncoding, LayerNorm, masked pooling
]


@pytest.mark.parametrize("name,source", SHIPPED, ids=[s for s, _ in SHIPPED])
def test_shipped_spec_matches_predict(name, source, tmp_path):
    s, done = train_spec(name, tmp_path, "train.epochs=1")
    x = _raw_inputs(done["checkpoint"], ROOT / source)[:40]
    _compare(done["checkpoint"], x, tmp_path)


FAMILIES = {
    "conv1d_pool1d": (
        [24, 3],
        [
            {"type": "Conv1D", "filters": 4, "kernel_size": 3, "padding": "same", "activation": "gelu"},
            {"type": "MaxPooling1D", "pool_size": 2, "padding": "same"},
            {"type": "Conv1D", "filters": 5, "kernel_size": 2, "strides": 2, "dilation_rate": 1},
            {"type": "AveragePooling1D", "pool_size": 3, "strides": 1, "padding": "same"},
            {"type": "ZeroPadding1D", "padding": [1, 2]},
            {"type": "Cropping1D", "cropping": [2, 1]},
            {"type": "UpSampling1D", "size": 2},
            {"type": "GlobalMaxPooling1D"},
            {"type": "Dense", "units": 3, "activation": "softmax"},
        ],
    ),
    "conv2d_family": (
        [9, 8, 2],
        [
            {"type": "ZeroPadding2D", "padding": [1, 1]},
            {
                "type": "Conv2D",
                "filters": 4,
                "kernel_size": [3, 2],
                "strides": [2, 1],
                "padding": "same",
                "activation": "elu",
            },
            {"type": "BatchNormalization"},
            {"type": "DepthwiseConv2D", "kernel_size": 3, "padding": "same", "activation": "relu6"},
            {"type": "SeparableConv2D", "filters": 6, "kernel_size": 2, "activation": "swish"},
            {"type": "AveragePooling2D", "pool_size": 2, "padding": "same"},
            {"type": "UpSampling2D", "size": [2, 1]},
            {"type": "GroupNormalization", "groups": 3},
            {"type": "PReLU", "alpha_initializer": "he_normal"},
            {"type": "GlobalMaxPooling2D"},
            {"type": "Dense", "units": 3, "activation": "softmax"},
        ],
    ),
    "activations_merges": (
        [6],
        [
            {"type": "Dense", "units": 8, "name": "a", "activation": "selu"},
            {"type": "Dense", "units": 8, "name": "b", "inputs": ["input"], "activation": "mish"},
            {"type": "Add", "name": "s", "inputs": ["a", "b"]},
            {"type": "Multiply", "name": "m", "inputs": ["a", "b"]},
            {"type": "Subtract", "name": "d", "inputs": ["s", "m"]},
            {"type": "Average", "name": "v", "inputs": ["a", "d"]},
            {"type": "Maximum", "name": "mx", "inputs": ["v", "b"]},
            {"type": "Minimum", "name": "mn", "inputs": ["v", "a"]},
            {"type": "Concatenate", "inputs": ["mx", "mn", "s"]},
            {"type": "LeakyReLU", "negative_slope": 0.1},
            {"type": "Dense", "units": 8, "activation": "hard_silu"},
            {"type": "ReLU", "max_value": 1.5, "negative_slope": 0.05, "threshold": 0.1},
            {"type": "Dense", "units": 8, "activation": "gelu_tanh"},
            {"type": "ELU", "alpha": 0.7},
            {"type": "Activation", "activation": "softsign"},
            {"type": "Dense", "units": 6, "activation": "softplus"},
            {"type": "RepeatVector", "n": 3},
            {"type": "Permute", "dims": [2, 1]},
            {"type": "Flatten"},
            {"type": "Dense", "units": 3, "activation": "softmax"},
        ],
    ),
    "lstm_bidirectional_states": (
        [7, 3],
        [
            {"type": "Masking", "mask_value": 0.0},
            {
                "type": "Bidirectional",
                "layer": {"type": "LSTM", "units": 4, "return_sequences": True},
                "merge_mode": "sum",
            },
            {"type": "LSTM", "units": 5, "return_sequences": True, "go_backwards": True, "activation": "relu"},
            {"type": "TimeDistributed", "layer": {"type": "Dense", "units": 4, "activation": "tanh"}},
            {"type": "GRU", "units": 4, "return_state": True, "name": "g"},
            {"type": "Concatenate", "inputs": ["g:0", "g:1"]},
            {"type": "Dense", "units": 1, "activation": "sigmoid"},
        ],
    ),
    "attention_positions": (
        [6, 8],
        [
            {"type": "PositionEmbedding"},
            {"type": "MultiHeadAttention", "num_heads": 2, "key_dim": 3, "causal": True, "name": "att"},
            {"type": "LayerNormalization", "epsilon": 1e-5},
            {
                "type": "MultiHeadAttention",
                "num_heads": 2,
                "key_dim": 4,
                "value_dim": 3,
                "output_shape": 5,
                "inputs": ["layer_normalization", "input"],
            },
            {"type": "SimpleRNN", "units": 4, "activation": "relu"},
            {"type": "Dense", "units": 2},
        ],
    ),
}


def _random_task(name, shape, layers, tmp_path, loss):
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    n = 48
    x = rng.normal(size=(n, *shape)).astype(np.float32)
    if name.startswith("lstm"):  # padded tails: whole steps of zeros, which Masking turns into a mask
        for i in range(n):
            x[i, rng.integers(3, shape[0] + 1) :] = 0.0
    y = {
        "categorical_crossentropy": rng.integers(0, 3, size=n),
        "binary_crossentropy": rng.integers(0, 2, size=n),
        "mse": rng.normal(size=(n, 2)),
    }[loss]
    np.savez(tmp_path / "data.npz", x=x, y=y)
    spec = {
        "name": name,
        "seed": 1,
        "data": {
            "train": str(tmp_path / "data.npz"),
            # padding must stay zero for Masking to see it
            "normalize": "none" if name.startswith("lstm") else "standard",
        },
        "model": {"layers": layers},
        "train": {"loss": loss, "optimizer": {"type": "adam", "learning_rate": 0.05}, "epochs": 1, "batch_size": 16},
        "output": {"checkpoint": str(tmp_path / f"{name}.h5"), "run_dir": str(tmp_path / "run")},
    }
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return path, x


@pytest.mark.parametrize("name", FAMILIES)
def test_layer_family_matches_predict(name, tmp_path):
    from nnctl import spec as spec_mod

    shape, layers = FAMILIES[name]
    loss = {"lstm_bidirectional_states": "binary_crossentropy", "attention_positions": "mse"}.get(
        name, "categorical_crossentropy"
    )
    path, x = _random_task(name, shape, layers, tmp_path, loss)
    done = run.train(spec_mod.load(path, []))
    x_new = x[:30] * 1.3  # new rows (scaled), padded steps still zero
    _compare(done["checkpoint"], x_new, tmp_path)


def test_metadata_checker_and_dynamic_batch(tmp_path):
    _, done = train_spec("iris_mlp.toml", tmp_path, "train.epochs=1")
    model = _compare(
        done["checkpoint"], _raw_inputs(done["checkpoint"], ROOT / "examples/data/iris-test.csv"), tmp_path
    )
    onnx.checker.check_model(model, full_check=True)
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["classes"]) == ["setosa", "versicolor", "virginica"]
    assert meta["task"] == "categorical" and json.loads(meta["preprocessing"])["normalize"] == "standard"
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert model.graph.output[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_from_logits_output_is_probabilities(tmp_path):
    _, done = train_spec(
        "iris_mlp.toml",
        tmp_path,
        "train.epochs=1",
        "model.layers[1].activation=linear",
        "train.loss={type = 'categorical_crossentropy', from_logits = true}",
    )
    x = _raw_inputs(done["checkpoint"], ROOT / "examples/data/iris-test.csv")
    _compare(done["checkpoint"], x, tmp_path)
    got = _session(tmp_path / "model.onnx").run(None, {"input": x})[0]
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-6)


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "nnctl", *args], capture_output=True, text=True, cwd=cwd)


def test_cli_export_matches_cli_predict(tmp_path):
    _, done = train_spec("iris_mlp.toml", tmp_path, "train.epochs=1")
    out = tmp_path / "iris.onnx"
    r = _cli("export", done["checkpoint"], "--format", "onnx", "--output", str(out), "--opset", "18", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["output"] == str(out)
    npy = tmp_path / "p.npy"
    test_csv = ROOT / "examples/data/iris-test.csv"
    r = _cli("predict", done["checkpoint"], str(test_csv), "--proba", "--format", "npy", "-o", str(npy))
    assert r.returncode == 0, r.stderr
    x = _raw_inputs(done["checkpoint"], test_csv).astype(np.float64)
    got = _session(out).run(None, {"input": x.astype(np.float32)})[0]
    # predict read float64 rows; the ONNX input is float32, so the rounding of the inputs enters once
    np.testing.assert_allclose(got, np.load(npy), rtol=1e-5, atol=1e-6)


def test_unexpressible_layer_is_refused_by_name(tmp_path):
    path, _ = _random_task(
        "dot",
        [4],
        [
            {"type": "Dense", "units": 4, "name": "p"},
            {"type": "Dense", "units": 4, "name": "q", "inputs": ["input"]},
            {"type": "Dot", "axes": 1, "inputs": ["p", "q"], "name": "similarity"},
            {"type": "Dense", "units": 3, "activation": "softmax"},
        ],
        tmp_path,
        "categorical_crossentropy",
    )
    from nnctl import spec as spec_mod

    done = run.train(spec_mod.load(path, []))
    out = tmp_path / "x.onnx"
    r = _cli("export", done["checkpoint"], "--output", str(out))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "similarity" in lines[0] and "Dot" in lines[0] and "ONNX" in lines[0]
    assert not out.exists()


def test_bad_opset_and_format(tmp_path):
    _, done = train_spec("iris_mlp.toml", tmp_path, "train.epochs=1")
    r = _cli("export", done["checkpoint"], "--opset", "7")
    assert r.returncode == 2 and "--opset" in r.stderr
    r = _cli("export", done["checkpoint"], "--format", "tflite")
    assert r.returncode == 2 and "--format" in r.stderr


def test_build_is_deterministic(tmp_path):
    _, done = train_spec("iris_mlp.toml", tmp_path, "train.epochs=1")
    restored = run.restore(done["checkpoint"], "cpu")
    a = build_onnx(restored, "a").SerializeToString()
    b = build_onnx(restored, "a").SerializeToString()
    assert a == b


@pytest.mark.parametrize("opset", [13, 21])
def test_other_opsets(opset, tmp_path):
    """Reduce ops take their axes as an attribute before opset 18 and as an input after: both forms run."""
    from nnctl import spec as spec_mod

    shape, layers = FAMILIES["conv2d_family"]
    path, x = _random_task("conv2d_family", shape, layers, tmp_path, "categorical_crossentropy")
    done = run.train(spec_mod.load(path, []))
    restored = run.restore(done["checkpoint"], "cpu")
    proto = build_onnx(restored, "x", opset)
    assert proto.opset_import[0].version == opset
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    want, _ = run.predict(restored, x[:11])
    np.testing.assert_allclose(sess.run(None, {"input": x[:11]})[0], want, rtol=RTOL, atol=ATOL)
