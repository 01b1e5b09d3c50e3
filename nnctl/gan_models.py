"""A GAN's two models built from its spec (generator G and discriminator D), and its optimizers' names.

Below ``gan`` (the session) and ``gan_checkpoint``: both build from here, so neither imports the other back.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from nnctl import optimizers
from nnctl.build import build_model
from nnctl.errors import SpecError
from nnctl.graph import Model
from nnctl.spec_model import Spec
from nnctl.spec_sections import Discriminator, Generator, ModelSection
from nnctl.spec_table import Named


def named_config(value) -> tuple[str, dict]:
    """``"adam"`` or ``{type = "adam", ...}`` (or its ``Named``) -> (name, keyword arguments)."""
    if isinstance(value, Named):
        return value.type, dict(value.params)
    if isinstance(value, str):
        return value, {}
    return str(value.get("type", "adam")), {k: v for k, v in value.items() if k != "type"}


def make_optimizer(value) -> optimizers.Optimizer:
    name, kwargs = named_config(value)
    return optimizers.get(name, **kwargs)


def discriminator_seed(seed: int) -> int:
    """D's weights are drawn from their own stream: with G's seed, G and D's first kernels would be equal draws."""
    return int(np.random.SeedSequence(seed, spawn_key=(6,)).generate_state(1)[0])


def built(spec: Spec, which: str, input_shape, seed: int, input_grad: bool = False) -> Model:
    """One of the two models; build errors name ``model.<which>.layers[i]``."""
    net: Generator | Discriminator = getattr(spec.model, which)
    sub = dataclasses.replace(spec, model=ModelSection(layers=list(net.layers)))  # build_model reads model.layers
    try:
        return build_model(sub, tuple(input_shape), seed, input_grad=input_grad)
    except SpecError as exc:
        lines = [
            line.replace("model.layers[", f"model.{which}.layers[")
            for line in getattr(exc, "lines", None) or [str(exc)]
        ]
        err = SpecError("\nerror: ".join(lines))
        err.lines = lines
        raise err from None


def classes_of(spec: Spec) -> int:
    """A conditional GAN's number of classes; 0 for an unconditional one."""
    return int(generator_of(spec).classes or 0)


def generator_of(spec: Spec) -> Generator:
    net = spec.model.generator
    assert net is not None  # a GAN spec: the validator requires model.generator
    return net


def build_generator(spec: Spec) -> Model:
    """G on z (and, conditional, the one-hot label after it): input [latent_dim + classes]."""
    return built(spec, "generator", (generator_of(spec).latent_dim + classes_of(spec),), spec.seed)


def discriminator_input(spec: Spec, sample_shape) -> tuple:
    """D's input shape: the sample's, with ``classes`` more channels on its last axis for a conditional GAN."""
    shape = tuple(sample_shape)
    return shape[:-1] + (shape[-1] + classes_of(spec),)


def build_pair(spec: Spec, sample_shape) -> tuple[Model, Model]:
    """(G, D) for samples of ``sample_shape``: G maps z to one sample, D maps a sample to one score."""
    source = spec.source
    g = build_generator(spec)
    if tuple(g.output_shape) != tuple(sample_shape):
        raise SpecError(
            f"{source}: model.generator: outputs samples of shape {list(g.output_shape)}, but the data's "
            f"samples have shape {list(sample_shape)} ({spec.data.train})"
        )
    d = built(
        spec,
        "discriminator",
        discriminator_input(spec, sample_shape),
        discriminator_seed(spec.seed),
        input_grad=True,
    )
    if isinstance(d.output_shape, list) or tuple(d.output_shape) != (1,):
        last = d.nodes[-1].name
        raise SpecError(
            f"{source}: model.discriminator.layers[-1] ({last}): the discriminator must output one score "
            f"per sample, found output shape {list(d.output_shape)}"
        )
    if d.output_activation() not in (None, "linear", "sigmoid"):
        raise SpecError(
            f"{source}: model.discriminator.layers[-1]: expected a linear or sigmoid score, found "
            f"activation {d.output_activation()!r}"
        )
    return g, d
