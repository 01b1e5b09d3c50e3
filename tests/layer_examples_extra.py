"""Contract examples for the layers of issue 17 (depthwise, separable and transposed convolutions,
shape, merge, noise, group normalisation, wrappers): (spec config, batch input shapes, check options)."""

# (N, T) padding mask: sample 0 has 3 real steps of 5, sample 1 all 5
MASK = [[True, True, True, False, False], [True, True, True, True, True]]

EXAMPLES = {
    "DepthwiseConv2D": [
        ({"kernel_size": 3}, [(2, 5, 5, 2)], {}),
        ({"kernel_size": [3, 2], "depth_multiplier": 2, "strides": [2, 1]}, [(2, 6, 5, 2)], {}),
        ({"kernel_size": 2, "padding": "same", "use_bias": False}, [(2, 4, 5, 3)], {}),
        ({"kernel_size": 3, "dilation_rate": 2, "padding": "same", "depth_multiplier": 2, "activation": "relu"},
         [(2, 5, 6, 1)], {}),
    ],
    "DepthwiseConv1D": [
        ({"kernel_size": 3}, [(2, 7, 2)], {}),
        ({"kernel_size": 2, "strides": 2, "padding": "same", "depth_multiplier": 3}, [(2, 7, 2)], {}),
    ],
    "SeparableConv2D": [
        ({"filters": 3, "kernel_size": 3}, [(2, 5, 5, 2)], {}),
        ({"filters": 2, "kernel_size": 2, "depth_multiplier": 2, "strides": 2, "padding": "same"}, [(2, 5, 4, 3)],
         {}),
        ({"filters": 2, "kernel_size": 3, "dilation_rate": 2, "use_bias": False}, [(2, 6, 6, 2)], {}),
    ],
    "SeparableConv1D": [
        ({"filters": 3, "kernel_size": 3}, [(2, 7, 2)], {}),
        ({"filters": 2, "kernel_size": 2, "depth_multiplier": 2, "padding": "same"}, [(2, 6, 3)], {}),
    ],
    "Conv2DTranspose": [
        ({"filters": 2, "kernel_size": 3}, [(2, 3, 4, 2)], {}),
        ({"filters": 2, "kernel_size": 3, "strides": 2}, [(2, 3, 3, 2)], {}),
        ({"filters": 3, "kernel_size": 3, "strides": 2, "padding": "same"}, [(2, 3, 2, 2)], {}),
        ({"filters": 2, "kernel_size": 4, "strides": 2, "padding": "same", "use_bias": False}, [(2, 3, 3, 1)], {}),
        ({"filters": 2, "kernel_size": 1, "strides": 2, "padding": "same"}, [(2, 2, 3, 2)], {}),  # kernel < stride
        ({"filters": 2, "kernel_size": [3, 2], "strides": [2, 3], "output_padding": [1, 2]}, [(2, 2, 3, 2)], {}),
        ({"filters": 2, "kernel_size": 3, "strides": 2, "padding": "same", "output_padding": 1}, [(2, 3, 3, 1)], {}),
        ({"filters": 2, "kernel_size": 2, "dilation_rate": 2, "activation": "tanh"}, [(2, 3, 3, 2)], {}),
    ],
    "Conv1DTranspose": [
        ({"filters": 2, "kernel_size": 3, "strides": 2}, [(2, 4, 3)], {}),
        ({"filters": 3, "kernel_size": 4, "strides": 3, "padding": "same"}, [(2, 3, 2)], {}),
    ],
}
