"""Contract examples for the convolution, pooling and normalisation layers:
(spec config, batch input shapes, check options)."""

# (N, T) padding masks: sample 0 has 3 real steps of 5, sample 1 all 5; a third row is all padding
MASK = [[True, True, True, False, False], [True, True, True, True, True]]
MASK3 = MASK + [[False] * 5]

EXAMPLES = {
    "Conv2D": [
        ({"filters": 3, "kernel_size": 3}, [(2, 5, 5, 2)], {}),
        ({"filters": 2, "kernel_size": [3, 2], "strides": [2, 1], "use_bias": False}, [(2, 6, 5, 2)], {}),
        ({"filters": 2, "kernel_size": 3, "dilation_rate": 2}, [(2, 7, 6, 2)], {}),
        ({"filters": 2, "kernel_size": 3, "padding": "same"}, [(2, 4, 5, 2)], {}),  # odd kernel
        ({"filters": 2, "kernel_size": 2, "padding": "same"}, [(2, 4, 5, 2)], {}),  # even kernel: pad bottom/right
        ({"filters": 2, "kernel_size": [4, 3], "strides": 2, "padding": "same"}, [(2, 7, 6, 3)], {}),
        ({"filters": 2, "kernel_size": 3, "strides": 2, "dilation_rate": 2, "padding": "same"}, [(2, 6, 7, 1)], {}),
        ({"filters": 2, "kernel_size": 1, "activation": "relu"}, [(2, 3, 3, 3)], {}),  # 1x1: im2col is a view
    ],
    "Conv1D": [
        ({"filters": 3, "kernel_size": 3}, [(2, 7, 2)], {}),
        ({"filters": 2, "kernel_size": 2, "strides": 2, "padding": "same"}, [(2, 7, 3)], {}),
        ({"filters": 2, "kernel_size": 3, "dilation_rate": 2, "padding": "same"}, [(2, 6, 2)], {}),
    ],
    "ZeroPadding2D": [
        ({"padding": 1}, [(2, 3, 4, 2)], {}),
        ({"padding": [1, 2]}, [(2, 3, 3, 1)], {}),
        ({"padding": [[0, 2], [1, 0]]}, [(2, 3, 3, 2)], {}),
    ],
    "UpSampling2D": [({"size": 2}, [(2, 3, 2, 2)], {}), ({"size": [1, 3]}, [(2, 2, 2, 1)], {})],
    "MaxPooling2D": [
        ({"pool_size": 2}, [(2, 4, 6, 2)], {}),
        ({"pool_size": 3, "strides": 2}, [(2, 7, 5, 2)], {}),  # overlapping windows
        ({"pool_size": 2, "padding": "same"}, [(2, 5, 3, 2)], {}),
        ({"pool_size": [3, 2], "strides": 1, "padding": "same"}, [(2, 4, 4, 1)], {}),
    ],
    "AveragePooling2D": [
        ({"pool_size": 2}, [(2, 5, 4, 2)], {}),
        ({"pool_size": 3, "strides": 2, "padding": "same"}, [(2, 6, 5, 2)], {}),
    ],
    "MaxPooling1D": [
        ({"pool_size": 2}, [(2, 7, 3)], {}),
        ({"pool_size": 3, "strides": 1, "padding": "same"}, [(2, 5, 2)], {}),
    ],
    "AveragePooling1D": [
        ({"pool_size": 3, "strides": 2}, [(2, 7, 2)], {}),
        ({"pool_size": 2, "padding": "same"}, [(2, 5, 2)], {}),
    ],
    "GlobalAveragePooling2D": [({}, [(2, 3, 4, 3)], {})],
    "GlobalMaxPooling2D": [({}, [(2, 3, 4, 3)], {})],
    "GlobalAveragePooling1D": [
        ({}, [(2, 5, 3)], {}),
        ({}, [(2, 5, 3)], {"mask": MASK}),
        ({}, [(3, 5, 2)], {"mask": MASK3}),
    ],
    "GlobalMaxPooling1D": [({}, [(2, 5, 3)], {}), ({}, [(3, 5, 2)], {"mask": MASK3})],
    "BatchNormalization": [
        ({}, [(6, 4)], {"training": True}),
        ({}, [(3, 4, 3, 2)], {"training": True}),
        ({"center": False}, [(2, 5, 3)], {"training": True, "mask": MASK}),
        ({"scale": False, "moving_mean_initializer": "glorot_uniform"}, [(2, 3, 3, 2)], {}),  # inference
        ({"momentum": 0.9, "epsilon": 0.01}, [(2, 5, 3)], {}),
    ],
    "LayerNormalization": [
        ({}, [(3, 5)], {}),
        ({"center": False}, [(2, 4, 6)], {}),
        ({"scale": False}, [(2, 3, 2, 4)], {}),
    ],
}
