"""Contract examples for the core layers: (spec config, batch input shapes, check options)."""

EXAMPLES = {
    "Dense": [({"units": 3}, [(4, 5)], {}), ({"units": 2, "use_bias": False}, [(2, 3, 4)], {})],
    "Activation": [
        ({"activation": a}, [(3, 5)], {})
        for a in ("linear", "sigmoid", "tanh", "arctan", "relu", "gelu", "swish", "softmax", "softplus", "elu")
    ]
    + [({"activation": "leaky_relu", "alpha": 0.1}, [(3, 5)], {}), ({"activation": "step"}, [(3, 5)], {})],
    "ReLU": [({}, [(3, 5)], {}), ({"max_value": 0.5, "negative_slope": 0.1, "threshold": -0.2}, [(3, 5)], {})],
    "LeakyReLU": [({}, [(3, 5)], {}), ({"alpha": 0.1}, [(2, 3, 4)], {})],
    "ELU": [({"alpha": 0.7}, [(3, 5)], {})],
    "Softmax": [({}, [(3, 5)], {}), ({"axis": 1}, [(2, 3, 4)], {})],
    "PReLU": [
        ({"alpha_initializer": {"type": "random_uniform", "minval": 0.1, "maxval": 0.4}}, [(3, 5)], {}),
        ({"alpha_initializer": "ones", "shared_axes": [1]}, [(2, 3, 4)], {}),
    ],
    "Dropout": [({"rate": 0.3}, [(4, 6)], {"training": True}), ({"rate": 0.3}, [(4, 6)], {})],
    "Flatten": [({}, [(2, 3, 4, 2)], {})],
    "Reshape": [({"target_shape": [4, -1]}, [(2, 3, 4)], {})],
    "Add": [({}, [(3, 4), (3, 4), (3, 4)], {})],
    "Concatenate": [({"axis": -1}, [(3, 2), (3, 4)], {}), ({"axis": 1}, [(2, 3, 2), (2, 1, 2)], {})],
    "Cropping1D": [({"cropping": [1, 2]}, [(2, 6, 3)], {})],
}
