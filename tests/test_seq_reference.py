"""Sequence layers against PyTorch CPU with the weights copied across (the Keras <-> PyTorch layout of
nnctl/layers/recurrent.py and attention.py), and padding-mask invariance (no PyTorch needed)."""

import numpy as np
import pytest

from helpers import dev, host
from nnctl import backend as B
from nnctl.layers import layer_class
from nnctl.testing import build_layer


def make(type_name, shapes, dtype=np.float32, seed=0, random_bias=True, **config):
    """Build a layer on the host for a batch whose per-sample shapes are ``shapes``, biases made non-zero, then
    move its parameters and state to the device."""
    layer = layer_class(type_name)(name="l", **config)
    rng = np.random.default_rng(seed)
    build_layer(layer, shapes, dtype, rng, np.random.default_rng(seed + 1))
    if random_bias:
        for k, v in layer.params.items():
            if k.endswith("bias"):
                v[...] = rng.normal(scale=0.5, size=v.shape)
    layer.params = {k: dev(v) for k, v in layer.params.items()}
    layer.state = {k: dev(v) for k, v in layer.state.items()}
    layer.init_grads()
    return layer


def _as_list(y):
    return list(y) if isinstance(y, (list, tuple)) else [y]


# ------------------------------------------------------------------------------------------------ torch
def _torch():
    return pytest.importorskip("torch")


def _t(a):
    torch = _torch()
    return torch.from_numpy(np.ascontiguousarray(a))


def _gru_perm(a, u):
    """Keras GRU blocks (z, r, h) -> PyTorch (r, z, n) along the last axis."""
    return np.concatenate([a[..., u : 2 * u], a[..., :u], a[..., 2 * u :]], axis=-1)


def _torch_rnn(kind, layer, f, u, bidirectional=False):
    """A PyTorch RNN/LSTM/GRU carrying ``layer``'s weights (a Bidirectional's under forward_/backward_)."""
    torch = _torch()
    cls = {"SimpleRNN": torch.nn.RNN, "LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU}[kind]
    net = cls(f, u, batch_first=True, bidirectional=bidirectional)
    p = {k: host(v) for k, v in layer.params.items()}
    with torch.no_grad():
        for prefix, suffix in [("forward_", ""), ("backward_", "_reverse")] if bidirectional else [("", "")]:
            W, R, b = p[prefix + "kernel"], p[prefix + "recurrent_kernel"], p[prefix + "bias"]
            if kind == "GRU":
                W, R, b_ih, b_hh = _gru_perm(W, u), _gru_perm(R, u), _gru_perm(b[0], u), _gru_perm(b[1], u)
            else:
                b_ih, b_hh = b, np.zeros_like(b)
            getattr(net, "weight_ih_l0" + suffix).copy_(_t(W.T))
            getattr(net, "weight_hh_l0" + suffix).copy_(_t(R.T))
            getattr(net, "bias_ih_l0" + suffix).copy_(_t(b_ih))
            getattr(net, "bias_hh_l0" + suffix).copy_(_t(b_hh))
    return net


@pytest.mark.torch
@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU"])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_recurrent_matches_torch(kind, go_backwards):
    _torch()
    N, T, F, U = 4, 7, 5, 6
    n_states = 2 if kind == "LSTM" else 1
    rng = np.random.default_rng(1)
    x = rng.normal(size=(N, T, F)).astype(np.float32)
    states = [rng.normal(size=(N, U)).astype(np.float32) for _ in range(n_states)]
    layer = make(
        kind, [(T, F)] + [(U,)] * n_states, units=U, return_sequences=True, return_state=True, go_backwards=go_backwards
    )
    xd, sd = dev(x), [dev(s) for s in states]
    out, *fin = host(layer.forward(xd, *sd)[0])
    net = _torch_rnn(kind, layer, F, U)
    xt = _t(x[:, ::-1] if go_backwards else x).requires_grad_(True)
    st = [_t(s)[None].requires_grad_(True) for s in states]
    ref_out, ref_state = net(xt, tuple(st) if kind == "LSTM" else st[0])
    ref_fin = list(ref_state) if kind == "LSTM" else [ref_state]
    np.testing.assert_allclose(out, ref_out.detach().numpy(), rtol=1e-5, atol=1e-5)
    for a, b in zip(fin, ref_fin):
        np.testing.assert_allclose(a, b[0].detach().numpy(), rtol=1e-5, atol=1e-5)
    # gradients of sum(r * out) + sum(r_h * h_T): parameters, input and initial states
    r = rng.normal(size=out.shape).astype(np.float32)
    rh = rng.normal(size=(N, U)).astype(np.float32)
    _, cache = layer.forward(xd, *sd)
    in_grads = host(layer.backward([dev(r), dev(rh)] + [None] * (n_states - 1), cache))
    ((ref_out * _t(r)).sum() + (ref_fin[0][0] * _t(rh)).sum()).backward()
    dx = in_grads[0][:, ::-1] if go_backwards else in_grads[0]
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-4, atol=1e-5)
    for g, s in zip(in_grads[1:], st):
        np.testing.assert_allclose(g, s.grad[0].numpy(), rtol=1e-4, atol=1e-5)
    gW = host(layer.grads["kernel"])
    ref_gW = net.weight_ih_l0.grad.numpy().T
    if kind == "GRU":
        gW = _gru_perm(gW, U)
    np.testing.assert_allclose(gW, ref_gW, rtol=1e-4, atol=1e-4)
    gR = host(layer.grads["recurrent_kernel"])
    if kind == "GRU":
        gR = _gru_perm(gR, U)
    np.testing.assert_allclose(gR, net.weight_hh_l0.grad.numpy().T, rtol=1e-4, atol=1e-4)
    if kind == "GRU":
        np.testing.assert_allclose(_gru_perm(host(layer.grads["bias"])[1], U), net.bias_hh_l0.grad.numpy(), atol=1e-4)


@pytest.mark.torch
def test_bidirectional_lstm_matches_torch():
    torch = _torch()
    N, T, F, U = 3, 6, 4, 5
    x = np.random.default_rng(2).normal(size=(N, T, F)).astype(np.float32)
    layer = make("Bidirectional", [(T, F)], layer={"type": "LSTM", "units": U, "return_sequences": True})
    y = host(layer.forward(dev(x))[0])
    net = _torch_rnn("LSTM", layer, F, U, bidirectional=True)
    with torch.no_grad():
        ref = net(_t(x))[0].numpy()
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.torch
@pytest.mark.parametrize("case", ["self", "self_masked_causal", "cross"])
def test_multihead_attention_matches_torch(case):
    torch = _torch()
    N, Tq, Tv, H, kd = 3, 5, 7, 2, 4
    E = H * kd  # PyTorch: query width = embed_dim = H * head_dim, value_dim = key_dim, output width E
    Dk, Dv = (E, E) if case != "cross" else (3, 6)
    rng = np.random.default_rng(3)
    q = rng.normal(size=(N, Tq, E)).astype(np.float32)
    cross = case == "cross"
    v = rng.normal(size=(N, Tv, Dv)).astype(np.float32) if cross else q
    k = rng.normal(size=(N, Tv, Dk)).astype(np.float32) if cross else q
    causal = case == "self_masked_causal"
    shapes = [(Tq, E), (Tv, Dv), (Tv, Dk)] if cross else [(Tq, E)]
    layer = make("MultiHeadAttention", shapes, num_heads=H, key_dim=kd, causal=causal)
    mask = None
    if causal:
        mask = np.arange(Tq)[None, :] < np.array([5, 3, 4])[:, None]
    y = host(layer.forward(*(dev(a) for a in ((q, v, k) if cross else (q,))), mask=dev(mask))[0])

    p = {name: host(a) for name, a in layer.params.items()}
    net = torch.nn.MultiheadAttention(E, H, bias=True, batch_first=True, kdim=Dk, vdim=Dv)
    with torch.no_grad():
        if net._qkv_same_embed_dim:
            kernels = [p[f"{n}_kernel"].reshape(-1, E).T for n in ("query", "key", "value")]
            net.in_proj_weight.copy_(_t(np.concatenate(kernels)))
        else:
            for n, t in (("query", "q"), ("key", "k"), ("value", "v")):
                getattr(net, f"{t}_proj_weight").copy_(_t(p[f"{n}_kernel"].reshape(-1, E).T))
        net.in_proj_bias.copy_(_t(np.concatenate([p[f"{n}_bias"].reshape(-1) for n in ("query", "key", "value")])))
        net.out_proj.weight.copy_(_t(p["output_kernel"].reshape(E, -1).T))
        net.out_proj.bias.copy_(_t(p["output_bias"]))
        kw = {"need_weights": False}
        if mask is not None:
            kw["key_padding_mask"] = _t(~mask)
        if causal:
            kw["attn_mask"] = _t(~np.tril(np.ones((Tq, Tv if cross else Tq), dtype=bool)))
        ref = net(_t(q), _t(k), _t(v), **kw)[0].numpy()
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------------ masks
def _padding_invariance(type_name, config, x, lengths, out_seq=True):
    """Padded batch with a mask vs each sample alone at its true length: same real outputs, same gradients."""
    N, T, F = x.shape
    mask = np.arange(T)[None, :] < np.asarray(lengths)[:, None]
    layer = make(type_name, [(T, F)], dtype=np.float64, **config)
    y, cache = layer.forward(dev(x), mask=dev(mask))
    y = host(_as_list(y)[0])
    rng = np.random.default_rng(5)
    dy = rng.normal(size=y.shape)
    if out_seq:
        dy *= mask[:, :, None]  # the loss sees real positions only
    dx = host(layer.backward(dev(dy), cache)[0])
    grads = {k: host(v).copy() for k, v in layer.grads.items()}
    total = {k: np.zeros_like(v) for k, v in grads.items()}
    for i, L in enumerate(lengths):
        yi, ci = layer.forward(dev(x[i : i + 1, :L]))
        yi = host(_as_list(yi)[0])
        np.testing.assert_allclose(y[i, :L] if out_seq else y[i], yi[0], rtol=1e-10, atol=1e-12)
        dxi = host(layer.backward(dev(dy[i : i + 1, :L] if out_seq else dy[i : i + 1]), ci)[0])
        np.testing.assert_allclose(dx[i, :L], dxi[0], rtol=1e-9, atol=1e-12)
        np.testing.assert_array_equal(dx[i, L:], 0)  # padding gets no gradient
        for k in total:
            total[k] += host(layer.grads[k])
    for k in grads:
        np.testing.assert_allclose(grads[k], total[k], rtol=1e-9, atol=1e-12, err_msg=k)


def _padded(N=4, T=6, F=3, lengths=(6, 3, 1, 4), seed=4):
    x = np.random.default_rng(seed).normal(size=(N, T, F))
    for i, L in enumerate(lengths):
        x[i, L:] = 100.0  # garbage in the padding: it must not leak
    return x, list(lengths)


@pytest.mark.parametrize(
    "type_name,config",
    [
        ("LSTM", {"units": 4, "return_sequences": True}),
        ("GRU", {"units": 4, "return_sequences": True}),
        ("SimpleRNN", {"units": 4, "return_sequences": True}),
        ("Bidirectional", {"layer": {"type": "LSTM", "units": 3, "return_sequences": True}}),
        ("Bidirectional", {"layer": {"type": "GRU", "units": 3, "return_sequences": True}, "merge_mode": "mul"}),
    ],
)
def test_recurrent_padding_invariance(type_name, config):
    _padding_invariance(type_name, config, *_padded())


@pytest.mark.parametrize(
    "type_name,config",
    [
        ("LSTM", {"units": 4}),
        ("GRU", {"units": 4, "go_backwards": True}),
        ("Bidirectional", {"layer": {"type": "LSTM", "units": 3}, "merge_mode": "sum"}),
    ],
)
def test_recurrent_last_state_padding_invariance(type_name, config):
    _padding_invariance(type_name, config, *_padded(), out_seq=False)


@pytest.mark.parametrize("config", [{"num_heads": 2, "key_dim": 3}, {"num_heads": 3, "key_dim": 2, "causal": True}])
def test_attention_padding_invariance(config):
    _padding_invariance("MultiHeadAttention", config, *_padded(F=4))


# ------------------------------------------------------------------------------------------------ misc
SEQ_LAYERS = [
    ("SimpleRNN", {"units": 3, "return_sequences": True}, [(5, 2)]),
    ("LSTM", {"units": 3, "return_state": True}, [(5, 2)]),
    ("GRU", {"units": 3, "activation": "relu"}, [(5, 2)]),
    ("Bidirectional", {"layer": {"type": "LSTM", "units": 2, "return_sequences": True}}, [(5, 2)]),
    ("MultiHeadAttention", {"num_heads": 2, "key_dim": 3, "causal": True}, [(5, 4)]),
    ("PositionalEncoding", {}, [(5, 4)]),
    ("PositionEmbedding", {}, [(5, 4)]),
]


@pytest.mark.parametrize("type_name,config,shapes", SEQ_LAYERS, ids=[t for t, _, _ in SEQ_LAYERS])
def test_float32_stays_float32(type_name, config, shapes):
    layer = make(type_name, shapes, **config)
    rng = np.random.default_rng(0)
    xs = [dev(rng.normal(size=(3, *s)).astype(np.float32)) for s in shapes]
    mask = dev(np.arange(5)[None] < np.array([[5], [2], [4]]))
    y, cache = layer.forward(*xs, training=True, mask=mask)
    assert all(o.dtype == np.float32 for o in _as_list(y))
    ones_like = B.xp.ones_like
    grads = layer.backward([ones_like(o) for o in y] if isinstance(y, list) else ones_like(y), cache)
    assert all(g is None or g.dtype == np.float32 for g in grads)
    assert all(g.dtype == np.float32 for g in layer.grads.values())


def test_embedding_ids_mask_and_range():
    layer = make("Embedding", [(4,)], input_dim=5, output_dim=2, mask_zero=True)
    ids = np.array([[1.0, 4.0, 0.0, 0.0], [3.0, 3.0, 3.0, 2.0]], dtype=np.float32)  # float ids are cast
    y, cache = layer.forward(dev(ids))
    np.testing.assert_array_equal(host(y), host(layer.params["embeddings"])[ids.astype(int)])
    np.testing.assert_array_equal(host(layer.compute_mask(None, [dev(ids)])), ids != 0)
    assert layer.backward(B.xp.ones_like(y), cache) == (None,)
    np.testing.assert_array_equal(host(layer.grads["embeddings"])[:, 0], [2, 1, 1, 3, 1])  # repeated ids accumulate
    # ids are checked on the host, once per dataset (Model.check_input), not per batch on the device
    assert layer.check_input(ids) is None
    assert "sample 2: token id 5 is outside the table of Embedding 'l', which takes ids 0 to 4" in layer.check_input(
        np.array([[1, 1, 1, 1], [4, 5, 1, 1]])
    )
    assert "token id -1" in layer.check_input(np.array([[-1.0, 1, 1, 1]]))


def test_positional_encoding_values():
    layer = make("PositionalEncoding", [(3, 4)])
    y = host(layer.forward(dev(np.zeros((1, 3, 4), dtype=np.float32)))[0])[0]
    t = 2.0
    np.testing.assert_allclose(y[2], [np.sin(t), np.cos(t), np.sin(t / 100), np.cos(t / 100)], rtol=1e-6)


@pytest.mark.parametrize(
    "type_name,config,shapes,match",
    [
        ("LSTM", {"units": 2}, [(4,)], "timesteps, features"),
        ("LSTM", {"units": 2}, [(4, 3), (2,)], "initial-state"),
        ("GRU", {"units": 2}, [(4, 3), (3,)], "initial states must have shape"),
        ("Bidirectional", {"layer": {"type": "Dense", "units": 2}}, None, "recurrent layer"),
        ("Bidirectional", {"layer": {"type": "GRU", "units": 2}, "merge_mode": "max"}, None, "merge_mode"),
        ("MultiHeadAttention", {"num_heads": 2, "key_dim": 2}, [(4, 3), (5, 3), (6, 3)], "same number of steps"),
        ("PositionEmbedding", {"sequence_length": 3}, [(4, 3)], "more than sequence_length"),
    ],
)
def test_impossible_shapes_and_configs_raise(type_name, config, shapes, match):
    with pytest.raises(ValueError, match=match):
        make(type_name, shapes or [(4, 3)], **config)


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_recurrent_tapes_do_not_share_buffers(kind):
    """A second forward before the first backward must not disturb the first tape (buffers are pooled)."""
    layer = make(kind, [(5, 3)], units=4, return_sequences=True)
    rng = np.random.default_rng(0)
    x1, x2 = dev(rng.normal(size=(2, 3, 5, 3)).astype(np.float32))
    g = dev(rng.normal(size=(3, 5, 4)).astype(np.float32))
    y1, c1 = layer.forward(x1)
    y1 = host(y1)
    dx1 = host(layer.backward(g, c1)[0])
    ref = {k: host(v).copy() for k, v in layer.grads.items()}
    for _ in range(3):  # tapes dropped and reused
        y1b, c1 = layer.forward(x1)
        y2, c2 = layer.forward(x2)
        layer.backward(g, c2)
        dx1b = layer.backward(g, c1)[0]
        np.testing.assert_array_equal(host(y1b), y1)
        np.testing.assert_array_equal(host(dx1b), dx1)
        for k in ref:
            np.testing.assert_array_equal(host(layer.grads[k]), ref[k])
        del c1, c2
