"""Contract examples for the sequence layers: (spec config, batch input shapes, check options)."""

# (N=3, T=4): a post-padded, a pre-padded and a full row
MASK = [[True, True, True, False], [False, True, True, True], [True, True, True, True]]
MASK5 = [[True, True, True, False, False], [True, True, True, True, True]]


def _rnn(kind: str, n_states: int) -> list:
    u = 3
    states = [(3, u)] * n_states
    return [
        ({"units": u}, [(3, 4, 2)], {}),
        ({"units": u, "return_sequences": True}, [(3, 4, 2)], {}),
        ({"units": u, "return_state": True}, [(3, 4, 2)], {}),
        ({"units": u, "return_sequences": True, "return_state": True, "go_backwards": True}, [(3, 4, 2)], {}),
        ({"units": u, "return_sequences": True}, [(3, 4, 2)], {"mask": MASK}),
        ({"units": u, "go_backwards": True, "return_state": True}, [(3, 4, 2)], {"mask": MASK}),
        ({"units": u, "return_sequences": True}, [(3, 4, 2), *states], {}),
        ({"units": u, "return_state": True}, [(3, 4, 2), *states], {"mask": MASK}),
        ({"units": u, "use_bias": False, "activation": "relu"}, [(2, 3, 2)], {}),
        ({"units": u, "dropout": 0.3, "return_sequences": True}, [(3, 4, 2)], {"training": True}),
    ]


EXAMPLES = {
    "SimpleRNN": _rnn("SimpleRNN", 1),
    "LSTM": _rnn("LSTM", 2)
    + [({"units": 2, "recurrent_activation": "tanh", "unit_forget_bias": False}, [(2, 3, 2)], {})],
    "GRU": _rnn("GRU", 1) + [({"units": 2, "activation": "relu", "recurrent_activation": "tanh"}, [(2, 3, 2)], {})],
    "Bidirectional": [
        ({"layer": {"type": "GRU", "units": 2}, "merge_mode": m}, [(3, 4, 2)], {})
        for m in ("concat", "sum", "ave", "mul")
    ]
    + [
        (
            {"layer": {"type": "LSTM", "units": 2, "return_sequences": True}, "merge_mode": m},
            [(3, 4, 2)],
            {"mask": MASK},
        )
        for m in ("concat", "sum", "ave", "mul", None)
    ]
    + [
        ({"layer": {"type": "LSTM", "units": 2, "return_state": True}}, [(3, 4, 2)] + [(3, 2)] * 4, {}),
        (
            {
                "layer": {"type": "SimpleRNN", "units": 2, "return_sequences": True, "return_state": True},
                "merge_mode": "sum",
            },
            [(3, 4, 2)],
            {"mask": MASK},
        ),
    ],
    "Embedding": [
        ({"input_dim": 7, "output_dim": 3}, [(2, 5)], {"int_inputs": (0,), "int_high": 7}),
        ({"input_dim": 7, "output_dim": 3, "mask_zero": True}, [(2, 5)], {"int_inputs": (0,), "int_high": 7}),
    ],
    "PositionalEncoding": [({}, [(2, 5, 4)], {}), ({"max_wavelength": 100.0}, [(2, 3, 5)], {})],
    "PositionEmbedding": [({}, [(2, 5, 3)], {}), ({"sequence_length": 7}, [(2, 5, 3)], {})],
    "MultiHeadAttention": [
        ({"num_heads": 2, "key_dim": 3}, [(2, 5, 4)], {}),
        ({"num_heads": 2, "key_dim": 3, "causal": True}, [(2, 5, 4)], {}),
        ({"num_heads": 2, "key_dim": 2}, [(2, 5, 4)], {"mask": MASK5}),
        ({"num_heads": 2, "key_dim": 2, "use_causal_mask": True}, [(2, 5, 4)], {"mask": MASK5}),
        ({"num_heads": 2, "key_dim": 3, "value_dim": 2, "output_shape": 3}, [(2, 4, 4), (2, 6, 5)], {}),
        ({"num_heads": 1, "key_dim": 2, "use_bias": False}, [(2, 4, 3), (2, 6, 5), (2, 6, 2)], {}),
        ({"num_heads": 2, "key_dim": 2, "causal": True}, [(2, 4, 3), (2, 4, 3)], {}),
        ({"num_heads": 2, "key_dim": 2, "dropout": 0.3}, [(2, 4, 3)], {"training": True}),
    ],
}
