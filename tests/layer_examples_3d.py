"""Contract examples for the volumetric layers (nnctl/layers/conv3d.py): (spec config, batch input shapes, options)."""

EXAMPLES = {
    "Conv3D": [
        ({"filters": 2, "kernel_size": 3}, [(2, 4, 5, 4, 2)], {}),
        ({"filters": 3, "kernel_size": [2, 3, 1], "strides": [1, 2, 1], "use_bias": False}, [(2, 3, 5, 3, 2)], {}),
        ({"filters": 2, "kernel_size": 2, "dilation_rate": [2, 1, 1]}, [(2, 4, 3, 3, 1)], {}),
        ({"filters": 2, "kernel_size": 2, "padding": "same"}, [(2, 3, 4, 3, 2)], {}),  # even kernel: pad at the end
        (
            {"filters": 2, "kernel_size": 3, "strides": 2, "padding": "same", "activation": "tanh"},
            [(2, 5, 4, 3, 1)],
            {},
        ),
    ],
    "MaxPooling3D": [
        ({"pool_size": 2}, [(2, 4, 4, 2, 2)], {}),
        ({"pool_size": 3, "strides": 2}, [(2, 5, 5, 3, 1)], {}),  # overlapping windows
        ({"pool_size": [2, 2, 1], "padding": "same"}, [(2, 3, 5, 2, 2)], {}),
    ],
    "AveragePooling3D": [
        ({"pool_size": 2}, [(2, 4, 2, 4, 2)], {}),
        ({"pool_size": 3, "strides": 2, "padding": "same"}, [(2, 4, 5, 3, 1)], {}),
    ],
    "UpSampling3D": [({"size": 2}, [(2, 2, 3, 2, 2)], {}), ({"size": [1, 2, 3]}, [(2, 2, 2, 1, 1)], {})],
    "ZeroPadding3D": [
        ({"padding": 1}, [(2, 2, 3, 2, 2)], {}),
        ({"padding": [[0, 1], [2, 0], [1, 1]]}, [(2, 2, 2, 2, 1)], {}),
    ],
}
