"""TimeDistributed: apply any single-input, single-output layer to every step of a sequence."""

from __future__ import annotations

from nnctl.layers.base import LAYERS, Layer, layer_class, register
from nnctl.ops import activations


@register()
class TimeDistributed(Layer):
    """Apply ``layer`` (a layer spec) to each step with shared weights: y[:, t] = layer(x[:, t]).

    x (N, T, *S) is run as one batch (N*T, *S) through the inner layer and reshaped to (N, T, *S');
    the parameters and state are the inner layer's, under its own names (``kernel``, ``bias``, ...), as
    Keras's TimeDistributed. An ``activation`` on the inner layer is applied here. The (N, T) padding
    mask passes through (the inner layer sees single steps, without one).
    """

    def __init__(self, layer: dict, **kw):
        super().__init__(**kw)
        spec = dict(layer or {}) if isinstance(layer, dict) else {}
        cls = layer_class(spec.pop("type", "")) if spec.get("type", "") in LAYERS else None
        if cls is None:
            raise ValueError(
                f'TimeDistributed wraps a layer spec such as {{type = "Dense", units = 8}}, found {layer!r}'
            )
        spec = {k: v for k, v in spec.items() if k not in ("name", "inputs", "trainable")}
        self.inner = cls(name=f"{self.name}/{cls.__name__.lower()}", **spec)
        self.layer = {k: v for k, v in self.inner.get_config().items() if k not in ("name", "trainable")}
        act = getattr(self.inner, "activation", None)
        self._act = None
        if self.inner.activation_follows and act and str(act).lower() != "linear":
            alpha = getattr(self.inner, "alpha", None)
            self._act = activations.get(act, **({} if alpha is None else {"alpha": alpha}))

    def regularizer(self, param):
        return self.inner.regularizer(param)

    def check_input(self, x):
        return self.inner.check_input(x.reshape(-1, *x.shape[2:])) if x.ndim >= 2 else None

    def _bind(self):
        """Point the inner layer at this layer's arrays (the model's flat-buffer views); its generator is
        already this layer's, given by the build context (``ctx.child``)."""
        inner = self.inner
        inner.params, inner.grads, inner.state = self.params, self.grads, self.state

    def build(self, input_shapes, ctx):
        shape = input_shapes[0]
        if len(input_shapes) != 1 or len(shape) < 2:
            raise ValueError(
                f"TimeDistributed expects one input of shape (steps, ...) with at least one axis per "
                f"step, found {[tuple(s) for s in input_shapes]}"
            )
        inner = self.inner
        out = inner.build([tuple(shape[1:])], ctx.child(inner.name))
        if isinstance(out, list):
            raise ValueError(f"TimeDistributed wraps a layer with one output; {type(inner).__name__} has {len(out)}")
        self.params, self.state = dict(inner.params), dict(inner.state)
        return (shape[0], *out)

    def forward(self, x, training=False, mask=None):
        self._bind()
        n, t = x.shape[:2]
        y, cache = self.inner.forward(x.reshape(n * t, *x.shape[2:]), training=training, mask=None)
        z = y if self._act is None else self._act.forward(y)
        return z.reshape(n, t, *z.shape[1:]), (cache, y, z, x.shape)

    def backward(self, g, cache):
        inner_cache, y, z, x_shape = cache
        self._bind()
        g2 = g.reshape(-1, *g.shape[2:])
        if self._act is not None:
            g2 = self._act.backward(y, z, g2)
        (dx,) = self.inner.backward(g2, inner_cache)[:1]
        return (None if dx is None else dx.reshape(x_shape),)
