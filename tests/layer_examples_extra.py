"""Contract examples for the layers of issue 17 (depthwise, separable and transposed convolutions,
shape, merge, noise, group normalisation, wrappers): (spec config, batch input shapes, check options)."""

# (N, T) padding mask: sample 0 has 3 real steps of 5, sample 1 all 5
MASK = [[True, True, True, False, False], [True, True, True, True, True]]

EXAMPLES = {
    "DepthwiseConv2D": [
        ({"kernel_size": 3}, [(2, 5, 5, 2)], {}),
        ({"kernel_size": [3, 2], "depth_multiplier": 2, "strides": [2, 1]}, [(2, 6, 5, 2)], {}),
        ({"kernel_size": 2, "padding": "same", "use_bias": False}, [(2, 4, 5, 3)], {}),
        (
            {"kernel_size": 3, "dilation_rate": 2, "padding": "same", "depth_multiplier": 2, "activation": "relu"},
            [(2, 5, 6, 1)],
            {},
        ),
    ],
    "DepthwiseConv1D": [
        ({"kernel_size": 3}, [(2, 7, 2)], {}),
        ({"kernel_size": 2, "strides": 2, "padding": "same", "depth_multiplier": 3}, [(2, 7, 2)], {}),
    ],
    "SeparableConv2D": [
        ({"filters": 3, "kernel_size": 3}, [(2, 5, 5, 2)], {}),
        ({"filters": 2, "kernel_size": 2, "depth_multiplier": 2, "strides": 2, "padding": "same"}, [(2, 5, 4, 3)], {}),
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
    "Cropping2D": [
        ({"cropping": 1}, [(2, 4, 5, 2)], {}),
        ({"cropping": [1, 0]}, [(2, 4, 3, 1)], {}),
        ({"cropping": [[0, 2], [1, 1]]}, [(2, 4, 5, 2)], {}),
    ],
    "ZeroPadding1D": [({"padding": 2}, [(2, 3, 2)], {}), ({"padding": [0, 3]}, [(2, 4, 2)], {})],
    "UpSampling1D": [({}, [(2, 3, 2)], {}), ({"size": 3}, [(2, 2, 3)], {})],
    "Permute": [
        ({"dims": [2, 1]}, [(2, 3, 4)], {}),
        ({"dims": [3, 1, 2]}, [(2, 3, 4, 2)], {}),
        ({"dims": [1, 3, 2]}, [(2, 5, 2, 3)], {"mask": MASK}),
    ],
    "RepeatVector": [({"n": 3}, [(2, 4)], {})],
    "Masking": [({}, [(2, 5, 3)], {}), ({"mask_value": 0.5}, [(2, 4, 2, 3)], {})],
    "Multiply": [({}, [(3, 4), (3, 4)], {}), ({}, [(2, 3, 2), (2, 3, 2), (2, 3, 2)], {})],
    "Subtract": [({}, [(3, 4), (3, 4)], {})],
    "Average": [({}, [(3, 4), (3, 4), (3, 4)], {})],
    "Maximum": [({}, [(3, 4), (3, 4), (3, 4)], {})],
    "Minimum": [({}, [(3, 4), (3, 4)], {})],
    "Dot": [
        ({"axes": 1}, [(3, 4), (3, 4)], {}),
        ({"axes": 1, "normalize": True}, [(3, 4), (3, 4)], {}),
        ({"axes": [2, 2]}, [(2, 3, 4), (2, 5, 4)], {}),  # attention scores (T, S)
        ({"axes": [2, 1]}, [(2, 3, 4), (2, 4, 5)], {}),  # batched matrix product
        ({"axes": [-1, 1], "normalize": True}, [(2, 3, 4), (2, 4, 2)], {}),
        ({"axes": [1, 1]}, [(2, 3, 4), (2, 3)], {}),
    ],
    "SpatialDropout1D": [({"rate": 0.4}, [(4, 5, 6)], {"training": True}), ({"rate": 0.4}, [(2, 5, 3)], {})],
    "SpatialDropout2D": [({"rate": 0.5}, [(3, 3, 4, 5)], {"training": True}), ({"rate": 0.5}, [(2, 3, 3, 2)], {})],
    "GaussianNoise": [({"stddev": 0.3}, [(3, 5)], {"training": True}), ({"stddev": 0.3}, [(3, 5)], {})],
    "GaussianDropout": [({"rate": 0.3}, [(3, 5)], {"training": True}), ({"rate": 0.3}, [(2, 3, 4)], {})],
    "GroupNormalization": [
        ({"groups": 2}, [(3, 4, 4)], {}),
        ({"groups": 3, "center": False}, [(2, 3, 2, 6)], {}),
        ({"groups": 1, "scale": False, "epsilon": 0.1}, [(2, 3, 4)], {}),
        ({"groups": 4}, [(3, 4)], {}),  # instance normalisation of a vector: one channel per group
    ],
    "TimeDistributed": [
        ({"layer": {"type": "Dense", "units": 3, "activation": "tanh"}}, [(2, 4, 5)], {}),
        ({"layer": {"type": "Conv2D", "filters": 2, "kernel_size": 2}}, [(2, 3, 4, 4, 1)], {}),
        ({"layer": {"type": "BatchNormalization"}}, [(3, 4, 2)], {"training": True}),
        ({"layer": {"type": "Dropout", "rate": 0.5}}, [(2, 4, 3)], {"training": True}),
        ({"layer": {"type": "Flatten"}}, [(2, 5, 2, 3)], {"mask": MASK}),
    ],
    "Attention": [
        ({}, [(2, 4, 3), (2, 5, 3)], {}),
        ({"use_scale": True}, [(2, 4, 3), (2, 5, 2), (2, 5, 3)], {}),
        ({"use_causal_mask": True}, [(2, 5, 3), (2, 5, 3)], {}),
        ({"dropout": 0.3, "use_scale": True}, [(2, 4, 3), (2, 5, 3)], {"training": True}),
        ({}, [(2, 5, 3), (2, 5, 3)], {"mask": MASK}),  # one array: the query's mask (the graph passes a list)
    ],
    "AdditiveAttention": [
        ({}, [(2, 4, 3), (2, 5, 3)], {}),
        ({"use_scale": False}, [(2, 4, 3), (2, 5, 2), (2, 5, 3)], {}),
        ({"use_causal_mask": True}, [(2, 5, 3), (2, 5, 3)], {"mask": MASK}),
    ],
}
