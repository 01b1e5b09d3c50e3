"""A GAN in one ordinary nnctl checkpoint: both models' arrays under ``generator.`` / ``discriminator.`` names.

Layout (``nnctl.checkpoint``'s, so every reader and check applies):
  /weights/generator.<layer>/<p>, /weights/discriminator.<layer>/<p>   and the same under /state and /resume
  /optimizer   attrs type = "gan", iterations = the generator's steps, config = {"generator": {type, config,
               iterations}, "discriminator": {...}}; /optimizer/slots/generator.<slot>/..., discriminator.<slot>/...
  /resume/info epoch, history and every RNG state (data order, latent draws, each layer's)
  /spec        the resolved spec with train.mode = "gan" (how generate, evaluate and predict tell it apart)
"""

from __future__ import annotations

import numpy as np

from nnctl import backend as B
from nnctl.checkpoint import Checkpoint, load_into, named_from_flat, save
from nnctl.errors import CheckpointError, SpecError
from nnctl.gan_models import build_generator, named_config
from nnctl.gan_spec import MODELS, is_gan
from nnctl.graph import Model
from nnctl.spec_model import ModelFacts, Spec
from nnctl.spec_table import to_plain


def _prefixed(prefix: str, named: dict) -> dict:
    return {f"{prefix}.{k}": v for k, v in named.items()}


def _unprefixed(prefix: str, named: dict) -> dict:
    head = prefix + "."
    return {k[len(head) :]: v for k, v in named.items() if k.startswith(head)}


def write_checkpoint(path, spec: Spec, trainer, prep, snap: dict, facts: ModelFacts | None = None) -> None:
    """Write ``snap`` (a ``GanTrainer.snapshot``) as the weights to use and the state to resume."""
    weights, state, slots, optimizer_config, rngs = {}, {}, {}, {}, {}
    for which, model in (("generator", trainer.g), ("discriminator", trainer.d)):
        part = snap[which]
        shapes = {k: tuple(v.shape) for k, v in model.named_params().items()}
        named = named_from_flat(part["flat_params"], model.slices, shapes)
        named.update(part["frozen"])
        weights.update(_prefixed(which, named))
        state.update(_prefixed(which, part["model_state"]))
        for slot, flat in part["slots"].items():
            slots[f"{which}.{slot}"] = _prefixed(which, named_from_flat(flat, model.slices, shapes))
        name, config = named_config(getattr(spec.train.gan, f"{which}_optimizer"))
        optimizer_config[which] = {"type": name, "config": config, "iterations": part["iterations"]}
        rngs[which] = part["layer_rngs"]
    info = {
        "epoch": snap["epoch"],
        "history": snap["history"],
        "data_rng": snap["data_rng"],
        "latent_rng": snap["latent_rng"],
        "layer_rngs": rngs,
        "iterations": {m: snap[m]["iterations"] for m in MODELS},
    }
    save(
        path,
        spec=spec.to_dict(),
        weights=weights,
        state=state,
        prep_arrays=prep.to_arrays(),
        history=snap["history"],
        seed=spec.seed,
        epoch=snap["epoch"],
        best_epoch=None,
        optimizer={
            "type": "gan",
            "iterations": snap["generator"]["iterations"],
            "config": optimizer_config,
            "slots": slots,
        },
        resume={"weights": weights, "state": state, "info": info},
        facts=facts.to_dict() if facts is not None else None,
    )


def open_gan(path, verb: str) -> Checkpoint:
    """The checkpoint at ``path``, refused with one line unless a GAN spec wrote it."""
    ck = Checkpoint(path)
    if not is_gan(ck.spec):
        raise CheckpointError(
            f"{path}: not a GAN checkpoint (its spec trains one model, train.mode = "
            f"{ck.spec.get('train', {}).get('mode', 'supervised')!r}); {verb} needs a checkpoint "
            f'written by a spec with train.mode = "gan"'
        )
    return ck


def model_differences(spec: Spec, stored: dict, shape=None, stored_shape=None) -> list[str]:
    """What differs between a GAN spec (for samples of ``shape``) and the spec stored in a checkpoint it
    would resume (for samples of ``stored_shape``)."""
    out = []
    if spec.dtype != stored.get("dtype"):
        out.append(f"dtype {stored.get('dtype')!r} -> {spec.dtype!r}")
    if shape != stored_shape:
        out.append(f"sample shape {stored_shape} -> {shape}")
    for which in MODELS:
        a, b = to_plain(getattr(spec.model, which)), stored.get("model", {}).get(which) or {}
        for key in ("latent_dim", "latent", "classes", "layers"):
            if key in a and a.get(key) != b.get(key):
                out.append(f"model.{which}.{key} differs")
    return out


def read_snapshot(path, spec: Spec, trainer, facts: ModelFacts) -> dict:
    """The --resume state of a GAN checkpoint, in ``GanTrainer.snapshot``'s form, checked against ``spec``."""
    ck = open_gan(path, "--resume with a GAN spec")
    stored = ModelFacts.from_stored(ck.model_facts, ck.spec)
    diff = model_differences(spec, ck.spec, facts.sample_shape, stored.sample_shape)
    if diff:
        raise SpecError(f"--resume {path}: the spec's models differ from the checkpoint's: " + "; ".join(diff))
    if ck.resume is None:
        raise CheckpointError(f"{path}: holds no resume state")
    info = ck.resume["info"]
    snap = trainer.snapshot()
    try:
        for which, model in (("generator", trainer.g), ("discriminator", trainer.d)):
            load_into(
                model, _unprefixed(which, ck.resume["weights"]), _unprefixed(which, ck.resume["state"]), str(path)
            )
            slots = {}
            for slot in snap[which]["slots"]:
                named = ck.optimizer["slots"].get(f"{which}.{slot}")
                if named is None:
                    raise CheckpointError(f"{path}: /optimizer/slots/{which}.{slot} is missing")
                slots[slot] = _flat(model, _unprefixed(which, named), f"{path}: /optimizer/slots/{which}.{slot}")
            part = snap[which]
            part.update(
                flat_params=B.to_numpy(model.flat_params).copy(),
                slots=slots,
                iterations=int(info["iterations"][which]),
                layer_rngs=info["layer_rngs"][which],
                frozen={k: B.to_numpy(v).copy() for k, v in model.named_params().items() if k not in model.slices},
                model_state={k: B.to_numpy(v).copy() for k, v in model.named_state().items()},
            )
        snap.update(
            epoch=int(info["epoch"]), history=info["history"], data_rng=info["data_rng"], latent_rng=info["latent_rng"]
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: /resume/info is incomplete ({type(exc).__name__}: {exc})") from None
    return snap


def _flat(model: Model, named: dict, where: str) -> np.ndarray:
    flat = np.zeros(model.flat_params.size, dtype=model.dtype)
    for key, sl in model.slices.items():
        if key not in named:
            raise CheckpointError(f"{where}/{key} is missing")
        if named[key].size != sl.stop - sl.start:
            raise CheckpointError(f"{where}/{key} has {named[key].size} values, the model expects {sl.stop - sl.start}")
        flat[sl] = named[key].ravel()
    return flat


def load_generator(path, device: str = "auto") -> tuple[Checkpoint, Model, Spec]:
    """(checkpoint, generator with its weights on the device, stored spec) of a GAN checkpoint."""
    B.use(device)
    ck = open_gan(path, "nnctl generate")
    try:
        spec = Spec.from_dict(ck.spec, str(path))
        g = build_generator(spec)
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{path}: /spec: the stored generator cannot be built ({type(exc).__name__})") from None
    load_into(g, _unprefixed("generator", ck.weights), _unprefixed("generator", ck.state), str(path))
    g.to_device()
    return ck, g, spec
