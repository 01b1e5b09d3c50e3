"""GroupNormalization: per-sample normalisation over groups of channels (channels last, as Keras)."""

from __future__ import annotations

from nnctl.fields import PositiveInt
from nnctl.layers.base import register
from nnctl.layers.norm import LayerNormalization


@register()
class GroupNormalization(LayerNormalization):
    """Normalise each sample over every position of each group of C/G adjacent channels:
    y = gamma * (x - mu_g) / sqrt(var_g + eps) + beta.

    x is (N, ..., C) with C divisible by ``groups`` G; group g holds channels [g*C/G, (g+1)*C/G) (Keras's
    and PyTorch's order); mu_g, var_g (biased) are per sample and group; gamma, beta are (C,). G = 1 is
    LayerNormalization over all non-batch axes, G = C instance normalisation. Backward with gx = gamma * g,
    means over each group: dx = (gx - mean(gx) - x_hat * mean(gx * x_hat)) / sqrt(var_g + eps).
    LayerNormalization's code with the statistics over (positions, channels of a group) of an
    (N, S, G, C/G) view.
    """

    stat_axes = (1, 3)

    def __init__(self, groups: PositiveInt = 32, **kw):
        super().__init__(**kw)
        self.groups = groups

    def build(self, input_shapes, ctx):
        shape = input_shapes[0]
        if len(shape) >= 1:
            g, c = self.groups, shape[-1]
            if not isinstance(g, int) or isinstance(g, bool) or g < 1 or g > c or c % g:
                raise ValueError(f"groups must be a positive integer that divides the {c} channels, found {g!r}")
        return super().build(input_shapes, ctx)

    def _grouped(self, a):
        return a.reshape(a.shape[0], -1, self.groups, a.shape[-1] // self.groups)  # (N, S, G, C/G)
