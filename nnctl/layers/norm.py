"""Normalisation layers: BatchNormalization (per channel, over the batch) and LayerNormalization (per sample).

Both normalise x_hat = (x - mu) / sqrt(var + eps) and return y = gamma * x_hat + beta; they differ in
the axes mu and var are taken over. The channel axis is last (NHWC / NTC), as in Keras.
"""

from __future__ import annotations

from nnctl import backend as B
from nnctl import initializers
from nnctl.fields import Fraction, PositiveFloat
from nnctl.initializers import InitializerName
from nnctl.layers.base import Layer, register


def _check_last_axis(layer, axis, shape):
    # Keras counts the batch axis, so the last axis is -1 or len(shape)
    if axis not in (-1, len(shape)):
        raise ValueError(
            f"{type(layer).__name__} normalises the last (channel) axis only: axis must be -1, "
            f"found {axis!r} for input shape {tuple(shape)}"
        )


def _assign(grads, name, value):
    if name in grads:
        grads[name][...] = value


@register()
class BatchNormalization(Layer):
    """Per-channel normalisation over the batch: y = gamma * (x - mu) / sqrt(var + eps) + beta.

    x is (N, F), (N, T, F) or (N, H, W, C); mu, var, gamma, beta are (C,) over every axis but the last.
    Training: mu and var are the (biased) batch statistics, masked steps of an (N, T) mask excluded, and
    moving = momentum * moving + (1 - momentum) * batch. Inference, or trainable=False as in Keras:
    mu, var are the moving statistics. Backward in training, with M counted rows and w the mask (1 without):
    dx = gamma / sqrt(var + eps) * (g - w * (sum g + x_hat * sum g x_hat) / M).
    """

    def __init__(
        self,
        axis: int = -1,
        momentum: Fraction = 0.99,
        epsilon: PositiveFloat = 1e-3,
        center: bool = True,
        scale: bool = True,
        beta_initializer: InitializerName = "zeros",
        gamma_initializer: InitializerName = "ones",
        moving_mean_initializer: InitializerName = "zeros",
        moving_variance_initializer: InitializerName = "ones",
        **kw,
    ):
        super().__init__(**kw)
        self.axis, self.momentum, self.epsilon, self.center, self.scale = axis, momentum, epsilon, center, scale
        self.beta_initializer, self.gamma_initializer = beta_initializer, gamma_initializer
        self.moving_mean_initializer = moving_mean_initializer
        self.moving_variance_initializer = moving_variance_initializer

    def build(self, input_shapes, ctx):
        shape = input_shapes[0]
        if len(shape) < 1:
            raise ValueError("BatchNormalization needs an input with a channel axis")
        _check_last_axis(self, self.axis, shape)
        if not 0 <= self.momentum <= 1:
            raise ValueError(f"momentum must lie in [0, 1], found {self.momentum!r}")
        c = (shape[-1],)
        if self.scale:
            self.add_param("gamma", initializers.initialize(self.gamma_initializer, c, ctx.init_rng))
        if self.center:
            self.add_param("beta", initializers.initialize(self.beta_initializer, c, ctx.init_rng))
        self.add_state("moving_mean", initializers.initialize(self.moving_mean_initializer, c, ctx.init_rng))
        self.add_state("moving_variance", initializers.initialize(self.moving_variance_initializer, c, ctx.init_rng))
        return shape

    def forward(self, x, training=False, mask=None):
        xp = B.xp
        c = x.shape[-1]
        x2 = x.reshape(-1, c)  # rows = every position of every sample
        gamma, beta = self.params.get("gamma"), self.params.get("beta")
        if not (training and self.trainable):
            inv = 1 / xp.sqrt(self.state["moving_variance"] + self.epsilon)
            a = inv if gamma is None else gamma * inv
            b = -self.state["moving_mean"] * a
            if beta is not None:
                b += beta
            # one fused pass; backward recomputes x_hat from x
            return (x2 * a + b).reshape(x.shape), ("inference", x2, inv)
        w = None
        if mask is not None and x.ndim == 3:
            w = B.asarray(mask).reshape(-1, 1).astype(x.dtype)
            m = xp.maximum(w.sum(), 1)
            mean = (x2 * w).sum(axis=0) / m
            xhat = x2 - mean
            var = (xhat * xhat * w).sum(axis=0) / m
        else:
            m = x2.shape[0]
            mean = x2.mean(axis=0)
            xhat = x2 - mean
            var = (xhat * xhat).mean(axis=0)
        inv = 1 / xp.sqrt(var + self.epsilon)
        xhat *= inv
        y = xhat * gamma if gamma is not None else xhat.copy()
        if beta is not None:
            y += beta
        mom = self.momentum
        for key, stat in (("moving_mean", mean), ("moving_variance", var)):
            s = self.state[key]
            s *= mom
            s += (1 - mom) * stat
        return y.reshape(x.shape), ("training", xhat, inv, w, m)

    def backward(self, g, cache):
        g2 = g.reshape(-1, g.shape[-1])
        gamma = self.params.get("gamma")
        scale = cache[2] if gamma is None else gamma * cache[2]
        if cache[0] == "inference":
            _, x2, inv = cache
            dgamma = (g2 * ((x2 - self.state["moving_mean"]) * inv)).sum(axis=0) if gamma is not None else None
            dbeta = g2.sum(axis=0) if "beta" in self.params else None
            dx = g2 * scale
        else:
            _, xhat, _, w, m = cache
            dbeta = g2.sum(axis=0)
            dgamma = (g2 * xhat).sum(axis=0)
            corr = xhat * (dgamma / m)
            corr += dbeta / m
            if w is not None:
                corr *= w  # only counted rows moved the statistics
            dx = g2 - corr
            dx *= scale
        _assign(self.grads, "gamma", dgamma)
        _assign(self.grads, "beta", dbeta)
        return (dx.reshape(g.shape),)


@register()
class LayerNormalization(Layer):
    """Per-sample normalisation over the last axis: y = gamma * (x - mu) / sqrt(var + eps) + beta.

    x is (..., F); mu, var are taken over F for each position; gamma, beta are (F,).
    Backward with gx = gamma * g: dx = (gx - mean_F(gx) - x_hat * mean_F(gx * x_hat)) / sqrt(var + eps).
    """

    def __init__(
        self,
        axis: int = -1,
        epsilon: PositiveFloat = 1e-3,
        center: bool = True,
        scale: bool = True,
        beta_initializer: InitializerName = "zeros",
        gamma_initializer: InitializerName = "ones",
        **kw,
    ):
        super().__init__(**kw)
        self.axis, self.epsilon, self.center, self.scale = axis, epsilon, center, scale
        self.beta_initializer, self.gamma_initializer = beta_initializer, gamma_initializer

    def build(self, input_shapes, ctx):
        shape = input_shapes[0]
        if len(shape) < 1:
            raise ValueError(f"{type(self).__name__} needs an input with a feature axis")
        _check_last_axis(self, self.axis, shape)
        c = (shape[-1],)
        if self.scale:
            self.add_param("gamma", initializers.initialize(self.gamma_initializer, c, ctx.init_rng))
        if self.center:
            self.add_param("beta", initializers.initialize(self.beta_initializer, c, ctx.init_rng))
        return shape

    #: axes of ``_grouped(x)`` that the statistics are taken over
    stat_axes: tuple[int, ...] = (-1,)

    def _grouped(self, a):
        """The view of ``a`` whose ``stat_axes`` hold one normalisation group (here: the features)."""
        return a

    def forward(self, x, training=False, mask=None):
        xp = B.xp
        xg = self._grouped(x)
        xhat = xg - xg.mean(axis=self.stat_axes, keepdims=True)
        inv = 1 / xp.sqrt((xhat * xhat).mean(axis=self.stat_axes, keepdims=True) + self.epsilon)
        xhat *= inv
        xhat = xhat.reshape(x.shape)
        gamma, beta = self.params.get("gamma"), self.params.get("beta")
        y = xhat * gamma if gamma is not None else xhat.copy()
        if beta is not None:
            y += beta
        return y, (xhat, inv)

    def backward(self, g, cache):
        xhat, inv = cache
        f = g.shape[-1]
        g2, h2 = g.reshape(-1, f), xhat.reshape(-1, f)
        _assign(self.grads, "gamma", (g2 * h2).sum(axis=0))
        _assign(self.grads, "beta", g2.sum(axis=0))
        gx = self._grouped(g * self.params["gamma"] if "gamma" in self.params else g)
        hg = self._grouped(xhat)
        dx = gx - gx.mean(axis=self.stat_axes, keepdims=True)
        dx -= hg * (gx * hg).mean(axis=self.stat_axes, keepdims=True)
        dx *= inv
        return (dx.reshape(g.shape),)
