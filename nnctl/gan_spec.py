"""The cross-field rules of a GAN spec (``train.mode = "gan"``): two layer lists, one score out, no supervised keys.

The keys themselves are typed in ``nnctl.spec_sections`` (``Generator``, ``Discriminator``, ``GanTrain``);
``spec.validate`` calls ``check`` in GAN mode and ``misplaced`` otherwise, and reports every problem at once.
"""

from __future__ import annotations

import copy

from nnctl.build import check_layers
from nnctl.fields import check_keys, fields_of
from nnctl.losses import output_activation
from nnctl.spec_model import Spec
from nnctl.spec_sections import GanTrain

MODELS = ("generator", "discriminator")
#: keys of an ordinary spec that a GAN run has no use for, with what to write instead
SUPERVISED_ONLY = {
    ("train", "loss"): "set train.gan.loss (non_saturating, hinge or wgan_gp)",
    ("train", "optimizer"): "set train.gan.generator_optimizer and train.gan.discriminator_optimizer",
    ("train", "metrics"): "a GAN run logs d_loss, g_loss, d_real_accuracy and d_fake_accuracy itself",
    ("train", "early_stopping"): "GAN losses do not measure sample quality, so nothing to stop on",
    ("train", "lr_schedule"): "not supported for GANs; set each optimizer's learning_rate",
    ("train", "save_best"): "GAN losses do not rank epochs; use train.save_every",
    ("train", "tensorboard"): "not written for GAN runs yet; nnctl plot reads the run folder",
    ("model", "layers"): "write the layers under model.generator.layers and model.discriminator.layers",
    ("model", "input_shape"): "the discriminator's input is the data's sample shape",
    ("model", "init_from"): "not supported for GANs",
    ("model", "decode"): "not a sequence model",
    ("data", "validation"): "a GAN run has no validation loss",
    ("data", "augment"): "augmenting only real samples teaches the discriminator to spot augmentation",
}


def is_gan(spec: dict | Spec) -> bool:
    """Whether a spec (a typed Spec, or a raw or stored dict) asks for adversarial training."""
    if isinstance(spec, Spec):
        return spec.train.mode == "gan"
    train = spec.get("train")
    return isinstance(train, dict) and train.get("mode") == "gan"


def misplaced(spec: dict) -> list[str]:
    """Problems of an ordinary spec that carries GAN-only keys."""
    found = [f"model.{m}" for m in MODELS if spec.get("model", {}).get(m) is not None]
    found += ["train.gan"] if spec.get("train", {}).get("gan") is not None else []
    return [f'{key}: only read with train.mode = "gan"; add it or remove {key}' for key in found]


def check(spec: dict, raw: dict) -> list[str]:
    """Problems of a GAN spec (``spec`` validated by section, ``raw`` as written); fills train.gan's defaults."""
    problems = []
    for (section, key), instead in SUPERVISED_ONLY.items():
        table = raw.get(section)
        if isinstance(table, dict) and table.get(key) not in (None, [], False):
            problems.append(f'{section}.{key}: not used with train.mode = "gan"; {instead}')
    model = spec.get("model", {})
    for name in MODELS:
        net = model.get(name)
        if net is None:
            problems.append(f'model.{name}: required with train.mode = "gan" (a table with layers = [...])')
            continue
        if not isinstance(net.get("layers"), list):
            continue  # already reported by the section check
        prefix = f"model.{name}.layers"
        net["layers"], found = check_layers(net["layers"])
        problems += [_renamed(p, prefix) for p in found]
        if name == "discriminator" and not found and net["layers"]:
            act, units = output_activation(net["layers"][-1])
            where = f"{prefix}[-1] ({net['layers'][-1]['name']})"
            if units is not None and units != 1:
                problems.append(
                    f"{where}: the discriminator outputs one score per sample; expected 1 unit, found {units}"
                )
            if act is not None and act not in ("linear", "sigmoid"):
                problems.append(
                    f"{where}: the discriminator's score is a logit; expected no activation (or sigmoid), found {act!r}"
                )
    train = spec.get("train", {})
    if train.get("gan") is None:
        train["gan"], _ = _defaults(GanTrain)
    gan = train["gan"]
    if gan.get("loss") in ("hinge", "wgan_gp") and gan.get("label_smoothing"):
        problems.append(
            f"train.gan.label_smoothing: applies to the non_saturating loss only; expected 0 with "
            f"loss = {gan['loss']!r}, found {gan['label_smoothing']}"
        )
    if gan.get("loss") == "wgan_gp":
        problems += _per_sample_critic(model.get("discriminator"))
    classes = (model.get("generator") or {}).get("classes")
    if isinstance(classes, int) and classes < 2:
        problems.append(f"model.generator.classes: a conditional GAN needs at least 2 classes, found {classes}")
    return problems


#: layers that mix the samples of a batch, so that grad_x D(x_hat_i) is not one sample's gradient
BATCH_COUPLED = ("BatchNormalization",)


def _per_sample_critic(net) -> list[str]:
    """The gradient penalty is per sample: a critic with batch statistics is refused (Gulrajani et al., 4)."""
    layers = net.get("layers") if isinstance(net, dict) else None
    out = []
    for i, layer in enumerate(layers if isinstance(layers, list) else []):
        if isinstance(layer, dict) and layer.get("type") in BATCH_COUPLED:
            out.append(
                f"model.discriminator.layers[{i}] ({layer.get('name', layer['type'])}): expected no "
                f"{layer['type']} with loss = 'wgan_gp' (batch statistics couple the samples whose gradient "
                f"norms the penalty takes), found one; use LayerNormalization or none"
            )
    return out


def _renamed(problem: str, prefix: str) -> str:
    """A layer-list problem (``model.layers[2].units: ...``) under the GAN model's own path."""
    return prefix + problem[len("model.layers") :] if problem.startswith("model.layers") else problem


def _defaults(cls) -> tuple[dict, list[str]]:
    fields = fields_of(cls)
    out, problems = check_keys({}, fields, "")
    out.update({k: copy.deepcopy(f.default) for k, f in fields.items() if not f.required})
    return out, problems
