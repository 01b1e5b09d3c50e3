"""The layer contract and the registry that maps spec ``type`` names to layer classes.

Layouts: a user writes Keras shapes without the batch axis, and the arrays a layer sees are
(batch, *shape) in the same order: images (N, H, W, C), sequences (N, T, F). NHWC keeps the
channel axis last, so an im2col patch matrix times a (KH*KW*C, F) kernel is one contiguous
matrix product whose result is already NHWC.

Contract of a layer (``Layer`` below):
- ``__init__(**config)``: keyword arguments are exactly the spec keys the layer accepts; the spec
  validator reads them from the signature, so a new keyword is a new spec key with no other edit.
- ``build(input_shapes, ctx) -> output shape`` (a tuple, or a list of tuples for several outputs)
  creates named host arrays in ``self.params`` (trainable) and ``self.state`` (not trained, saved),
  initial weights drawn from ``ctx.init_rng``. ``ctx`` is a ``BuildContext``; the layer stores it and
  what it holds (``dtype``, ``rng``, ``input_grads_needed``, ``name``) itself, together with its input and
  output shapes: nothing is set on a layer from outside.
- ``forward(*inputs, training, mask) -> (output, cache)``: the cache is returned, never kept.
- ``backward(grad_output, cache) -> tuple of input gradients`` (``None`` for a non-differentiable
  input such as token ids); it *assigns* every ``self.grads[name]`` (one node owns one layer, so
  nothing accumulates into them; assignment with ``out=`` avoids a zeroing pass per step).
- ``compute_mask(mask, inputs)`` returns the (N, T) padding mask of the output (default: passed on).
- ``get_config()`` returns the spec entry that rebuilds the layer.
"""

from __future__ import annotations

import dataclasses
import functools
import typing

import numpy as np

from nnctl import backend as B
from nnctl.fields import Field, params_of, validate_kwargs
from nnctl.registry import Registry
from nnctl.regularizers import RegularizerName, coefficients

LAYERS: Registry[type[Layer]] = Registry("layer type")


def register(*aliases: str):
    """Class decorator: make a layer available to specs under its class name and ``aliases``."""

    def deco(cls):
        return LAYERS.add(cls.__name__, cls, *aliases)

    return deco


def layer_class(type_name: str) -> type[Layer]:
    """The layer class a spec's ``type`` names; UnknownName listing the known types."""
    return LAYERS.get(type_name)


def layer_params(cls) -> dict[str, Field]:
    """The spec keys a layer class accepts: its keyword arguments (over the whole class chain)."""
    return params_of(cls)


def _checked(init):
    """Wrap a layer's ``__init__`` so that the outermost call validates its keywords (ConfigError)."""

    @functools.wraps(init)
    def checked_init(self, *args, **kwargs):
        if not self.__dict__.get("_arguments_checked"):
            self.__dict__["_arguments_checked"] = True
            validate_kwargs(type(self), kwargs)
        init(self, *args, **kwargs)

    return checked_init


@dataclasses.dataclass(frozen=True)
class BuildContext:
    """What a layer is built with, given by the model (or a wrapping layer) to ``Layer.build``."""

    #: the layer's own generator (dropout masks, noise), kept for training; one stream per spec entry (the
    #: model's streams are ``rowshare.RowShare``s: the data-parallel strategy sets their shares, not the layer's)
    rng: np.random.Generator
    #: initial weights, drawn during build only (one generator along the whole model, in node order)
    init_rng: np.random.Generator
    dtype: np.dtype = np.dtype(np.float32)
    #: per input, whether backward must return its gradient (not for the model input: saves a product)
    input_grads_needed: tuple[bool, ...] = (True,)
    name: str | None = None

    def child(self, name: str | None, n_inputs: int | None = None) -> BuildContext:
        """The context of a sublayer (a wrapper's inner layer): its own name, the same generators and dtype,
        every one of ``n_inputs`` input gradients needed when given."""
        grads = self.input_grads_needed if n_inputs is None else (True,) * n_inputs
        return dataclasses.replace(self, name=name, input_grads_needed=grads)


def _storing(build):
    """Wrap a layer's ``build`` so that the layer stores its context and shapes before and after it runs."""

    @functools.wraps(build)
    def storing_build(self, input_shapes, ctx):
        if not isinstance(ctx, BuildContext):
            raise TypeError(
                f"{type(self).__name__}.build takes a BuildContext (nnctl.layers.base), found {type(ctx).__name__}; "
                "build a layer alone with nnctl.testing.build_layer"
            )
        self.ctx = ctx
        self.dtype, self.rng, self.input_grads_needed = np.dtype(ctx.dtype), ctx.rng, tuple(ctx.input_grads_needed)
        if ctx.name is not None:
            self.name = ctx.name
        self.input_shapes = [tuple(s) for s in input_shapes]
        out = build(self, input_shapes, ctx)
        self.output_shape = out if isinstance(out, list) else tuple(int(d) for d in out)
        return out

    return storing_build


#: a channels-last sample's axes by spatial rank, as shape errors name them
CHANNELS_LAST = {1: "(steps, channels)", 2: "(height, width, channels)", 3: "(depth, height, width, channels)"}


def expect_input(layer, shape, words: str) -> None:
    """Refuse an input whose sample shape (no batch axis) has not the axes ``words`` names, e.g.
    ``"(steps, channels)"``: one message for every layer that checks its input's rank."""
    if len(shape) != len([axis for axis in words.strip("()").split(",") if axis.strip()]):
        raise ValueError(f"{type(layer).__name__} expects input of shape {words}, found {tuple(shape)}")


class Layer:
    """Base layer: named parameters, state and gradients, and the forward/backward contract."""

    #: True when the ``activation`` key is applied to this layer's output (Dense, convolutions): the entry
    #: becomes this layer's node and an Activation node after it. Such a layer's forward returns a fresh
    #: array that its cache does not keep. Recurrent layers keep ``activation`` as their cell function.
    activation_follows = False
    #: True when ``forward_in_place(x)`` may overwrite x at inference (ReLU); the graph's fusion pass
    #: allows it where x is a fresh output that nothing else reads
    in_place_at_inference = False
    #: which inputs need a gradient (from the BuildContext: not the model input, so backward may return None)
    input_grads_needed: tuple[bool, ...] = (True,)
    #: True when forward wants one padding mask per input (a list) instead of the first input's mask
    mask_per_input = False
    #: True when the layer's work runs as slices of the batch (nnctl/threads.py): a model with one holds the
    #: slice pool around its forward and backward, so the slices run side by side (convolutions, pooling)
    slices_batch = False
    #: the layer's own random generator (dropout masks, noise), from the BuildContext; in a model, one of
    #: ``Model.streams`` (a RowShare, whose share a data-parallel strategy sets per batch: nothing replaces it)
    rng: typing.Any
    #: what the layer was built with (set by build)
    ctx: BuildContext

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = _checked(cls.__dict__["__init__"])
        if "build" in cls.__dict__:
            cls.build = _storing(cls.__dict__["build"])

    def __init__(
        self,
        name: str | None = None,
        trainable: bool = True,
        inputs: str | list[str] | None = None,
        kernel_regularizer: RegularizerName | None = None,
        bias_regularizer: RegularizerName | None = None,
    ):
        self.name = name
        self.trainable = trainable
        self.inputs = inputs
        self.kernel_regularizer = kernel_regularizer
        self.bias_regularizer = bias_regularizer
        self.params: dict = {}
        self.grads: dict = {}
        self.state: dict = {}
        self.dtype = np.dtype(np.float32)  # until build: the context's
        self.input_shapes: list[tuple] = []
        self.output_shape: typing.Any = None  # set by build: a tuple, or a list of tuples

    # -- contract ---------------------------------------------------------------------------
    @_storing
    def build(self, input_shapes: list[tuple], ctx: BuildContext):
        return input_shapes[0]

    def forward(self, *inputs, training: bool = False, mask=None):
        raise NotImplementedError

    def backward(self, grad, cache) -> tuple:
        raise NotImplementedError

    def forward_in_place(self, x):
        """Inference output written into ``x`` (only where ``in_place_at_inference``)."""
        raise NotImplementedError

    def compute_mask(self, mask, inputs):
        return mask

    def get_config(self) -> dict:
        """Every constructor argument with its current value, as the spec entry that rebuilds it."""
        cfg = {"type": type(self).__name__}
        for key in layer_params(type(self)):
            val = getattr(self, key, None)
            if val is not None:
                cfg[key] = val
        return cfg

    # -- helpers for subclasses --------------------------------------------------------------
    def add_param(self, name: str, value: np.ndarray) -> None:
        """Register a trainable parameter (host array in the model dtype; moved to the device later)."""
        self.params[name] = np.ascontiguousarray(value, dtype=self.dtype)

    def add_state(self, name: str, value: np.ndarray) -> None:
        self.state[name] = np.ascontiguousarray(value, dtype=self.dtype)

    def regularizer(self, param: str) -> dict | None:
        """The L1/L2 penalty on a parameter: ``kernel_regularizer`` for kernels, ``bias_regularizer`` for biases."""
        if param.endswith("bias") or param == "beta":
            return coefficients(self.bias_regularizer)
        if param in ("gamma",):
            return None
        return coefficients(self.kernel_regularizer)

    @property
    def xp(self):
        return B.xp

    def init_grads(self) -> None:
        """Give every parameter a gradient array (the model gives views into its flat buffer instead)."""
        self.grads = {k: B.xp.zeros(v.shape, dtype=v.dtype) for k, v in self.params.items()}

    def check_input(self, x: np.ndarray) -> str | None:
        """What is wrong with host array ``x`` as this layer's input straight from the data, or None.

        Checked once per dataset on the host (Model.check_input), never per batch on the device."""
        return None

    def param_count(self) -> int:
        """Parameters and saved state (BatchNorm's moving statistics count as non-trainable, as in Keras)."""
        return int(sum(int(np.prod(p.shape)) for p in (*self.params.values(), *self.state.values())))

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r})"
