"""GroupNormalization: per-sample normalisation over groups of channels (channels last, as Keras)."""

from __future__ import annotations

from nnctl import backend as B
from nnctl import initializers
from nnctl.fields import PositiveFloat, PositiveInt
from nnctl.layers.base import Layer, register


@register()
class GroupNormalization(Layer):
    """Normalise each sample over every position of each group of C/G adjacent channels:
    y = gamma * (x - mu_g) / sqrt(var_g + eps) + beta.

    x is (N, ..., C) with C divisible by ``groups`` G; group g holds channels [g*C/G, (g+1)*C/G) (Keras's
    and PyTorch's order); mu_g, var_g (biased) are per sample and group; gamma, beta are (C,). G = 1 is
    LayerNormalization over all non-batch axes, G = C instance normalisation. Backward with gx = gamma * g,
    means over each group: dx = (gx - mean(gx) - x_hat * mean(gx * x_hat)) / sqrt(var_g + eps).
    """

    def __init__(self, groups: PositiveInt = 32, axis: int = -1, epsilon: PositiveFloat = 1e-3, center: bool = True,
                 scale: bool = True, beta_initializer: str = "zeros", gamma_initializer: str = "ones", **kw):
        super().__init__(**kw)
        self.groups, self.axis, self.epsilon, self.center, self.scale = groups, axis, epsilon, center, scale
        self.beta_initializer, self.gamma_initializer = beta_initializer, gamma_initializer

    def build(self, input_shapes, rng):
        shape = input_shapes[0]
        if len(shape) < 1:
            raise ValueError("GroupNormalization needs an input with a channel axis")
        if self.axis not in (-1, len(shape)):
            raise ValueError(f"GroupNormalization normalises groups of the last (channel) axis only: axis must be "
                             f"-1, found {self.axis!r} for input shape {tuple(shape)}")
        g, c = self.groups, shape[-1]
        if not isinstance(g, int) or isinstance(g, bool) or g < 1 or g > c or c % g:
            raise ValueError(f"groups must be a positive integer that divides the {c} channels, found {g!r}")
        if self.scale:
            self.add_param("gamma", initializers.initialize(self.gamma_initializer, (c,), rng))
        if self.center:
            self.add_param("beta", initializers.initialize(self.beta_initializer, (c,), rng))
        return shape

    def _grouped(self, a):
        return a.reshape(a.shape[0], -1, self.groups, a.shape[-1] // self.groups)  # (N, S, G, C/G)

    def forward(self, x, training=False, mask=None):
        xp = B.xp
        x4 = self._grouped(x)
        xhat = x4 - x4.mean(axis=(1, 3), keepdims=True)
        inv = 1 / xp.sqrt((xhat * xhat).mean(axis=(1, 3), keepdims=True) + self.epsilon)
        xhat *= inv
        xhat = xhat.reshape(x.shape)
        gamma, beta = self.params.get("gamma"), self.params.get("beta")
        y = xhat * gamma if gamma is not None else xhat.copy()
        if beta is not None:
            y += beta
        return y, (xhat, inv)

    def backward(self, g, cache):
        xhat, inv = cache
        c = g.shape[-1]
        g2, h2 = g.reshape(-1, c), xhat.reshape(-1, c)
        if "gamma" in self.grads:
            self.grads["gamma"][...] = (g2 * h2).sum(axis=0)
        if "beta" in self.grads:
            self.grads["beta"][...] = g2.sum(axis=0)
        gx = self._grouped(g * self.params["gamma"] if "gamma" in self.params else g)
        h4 = self._grouped(xhat)
        dx = gx - gx.mean(axis=(1, 3), keepdims=True)
        dx -= h4 * (gx * h4).mean(axis=(1, 3), keepdims=True)
        dx *= inv
        return (dx.reshape(g.shape),)
