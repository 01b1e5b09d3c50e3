"""The GAN's alternating updates: ``d_steps`` discriminator steps, then ``g_steps`` generator steps, per round.

A discriminator step takes a real batch x and a fake batch G(z), z drawn on the host from the latent
distribution; real and fake pass through D separately (each with its own BatchNormalization statistics) and
D's gradients are summed before its optimizer steps. A generator step scores G(z) with D, backpropagates
through D (whose weights are not stepped) into G, and steps G; the first one of a round reuses the last
discriminator step's fake batch, as PyTorch's DCGAN example does. A conditional GAN (``classes``) gives G
the one-hot label beside z and D the one-hot label as extra channels (broadcast over every axis but the
last); fakes take the labels of the real batch they are scored with. With ``wgan_gp`` each discriminator
step adds the gradient penalty at x_hat = a x + (1 - a) G(z); its parameter gradient needs the mixed
second derivative grad_theta grad_x D, taken without double backprop as a central difference of two
parameter gradients along the unit directions u_i = g_i / ||g_i|| (g_i = grad_x D(x_hat_i)):
  d/dtheta GP = sum_i w_i (grad_theta grad_x D(x_hat_i)) u_i
              ~ (grad_theta sum_i w_i D(x_hat_i + eps u_i) - grad_theta sum_i w_i D(x_hat_i - eps u_i)) / (2 eps)
with w_i = 2 lambda (||g_i|| - 1) / N and eps = machine epsilon^(1/3) (the error is O(eps^2) plus rounding
over eps). The three passes share D's random state (dropout masks). ``snapshot``/``restore`` capture every
bit of state (both models, both optimizers, the data-order and latent generators, each layer's RNG).
"""

from __future__ import annotations

import math
import time

import numpy as np

from nnctl import backend as B
from nnctl import gan_losses, optimizers
from nnctl.errors import TrainingDiverged
from nnctl.graph import Model
from nnctl.spec_sections import GanTrain, Generator, TrainSection
from nnctl.train import BatchProgress, Hooks


def draw_latent(rng: np.random.Generator, kind: str, n: int, dim: int, dtype) -> np.ndarray:
    """z on the host (the same numbers on CPU and GPU): N(0, 1) or U(-1, 1)."""
    z = rng.standard_normal((n, dim)) if kind == "normal" else rng.uniform(-1.0, 1.0, (n, dim))
    return z.astype(dtype)


def with_labels(z: np.ndarray, labels, classes: int) -> np.ndarray:
    """G's input: z, then (conditional GAN, ``classes`` > 0) the one-hot label (host arrays)."""
    if not classes:
        return z
    return np.concatenate([z, np.eye(classes, dtype=z.dtype)[labels]], axis=1)


class GanTrainer:
    """Alternating updates of a built, on-device (G, D) pair; ``snapshot``/``restore`` capture every bit of state."""

    def __init__(
        self,
        g: Model,
        d: Model,
        g_opt: optimizers.Optimizer,
        d_opt: optimizers.Optimizer,
        train_cfg: TrainSection,
        latent: Generator,
        seed: int,
        hooks: Hooks | None = None,
    ):
        self.g, self.d, self.g_opt, self.d_opt, self.cfg = g, d, g_opt, d_opt, train_cfg
        gan = train_cfg.gan if train_cfg.gan is not None else GanTrain()
        self.kind, self.d_steps, self.g_steps = gan.loss, int(gan.d_steps), int(gan.g_steps)
        self.real_target = 1.0 - float(gan.label_smoothing)
        self.latent_dim, self.latent = int(latent.latent_dim), latent.latent
        self.classes = int(latent.classes or 0)  # 0: unconditional
        self.gp_weight = float(gan.gradient_penalty)
        self.gp_step = float(np.finfo(d.dtype).eps) ** (1 / 3)
        self.hooks = hooks or Hooks()
        self.data_rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(3,))))
        self.latent_rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(5,))))
        g_opt.init_slots(g.flat_params.size, g.dtype)
        d_opt.init_slots(d.flat_params.size, d.dtype)
        self.d_sigmoid = d.output_activation() == "sigmoid"  # scores are then the logits under the sigmoid
        self._acc = B.xp.zeros_like(d.flat_grads)
        self.epoch, self.history = 0, {}

    # -- steps --------------------------------------------------------------------------------------
    def _fake(self, n: int, labels=None):
        z = draw_latent(self.latent_rng, self.latent, n, self.latent_dim, self.g.dtype)
        z = with_labels(z, labels, self.classes)
        return self.g.forward(B.asarray(z), training=True)  # G's caches stay for a generator step on this batch

    def _conditioned(self, x, labels):
        """D's input: the sample, then (conditional GAN) the one-hot label as extra channels."""
        if not self.classes:
            return x
        xp = B.xp
        onehot = B.asarray(np.eye(self.classes, dtype=x.dtype)[labels])
        onehot = onehot.reshape((len(x),) + (1,) * (x.ndim - 2) + (self.classes,))
        return xp.concatenate([x, xp.broadcast_to(onehot, x.shape[:-1] + (self.classes,))], axis=-1)

    def _sample_part(self, dx):
        """dL/d(sample) out of dL/d(D's input): the label channels dropped."""
        return B.xp.ascontiguousarray(dx[..., : -self.classes]) if self.classes else dx

    def _score(self, x):
        out = self.d.forward(x, training=True)
        return self.d.logits() if self.d_sigmoid else out

    def _backward_d(self, grad):
        return self.d.backward(grad, at=self.d.logits_node() if self.d_sigmoid else None)

    def d_step(self, x_real, labels=None):
        """One discriminator update on a real batch and a fresh fake one: (loss, real hits, fake hits, fake)."""
        d = self.d
        fake = self._fake(len(x_real), labels)
        # real and fake pass through D separately (each with its own batch statistics); gradients are summed
        s_real = self._score(self._conditioned(x_real, labels))
        v_real, g_real = gan_losses.real_term(self.kind, s_real, self.real_target)
        real_hits = (s_real > 0).sum()
        self._backward_d(g_real)
        self._acc[...] = d.flat_grads
        s_fake = self._score(self._conditioned(fake, labels))
        v_fake, g_fake = gan_losses.fake_term(self.kind, s_fake)
        fake_hits = (s_fake < 0).sum()
        self._backward_d(g_fake)
        d.flat_grads += self._acc
        value = v_real + v_fake
        if self.kind == "wgan_gp":
            self._acc[...] = d.flat_grads
            penalty, grad = self.penalty(x_real, fake, labels)
            d.flat_grads[...] = self._acc + grad
            value = value + penalty
        if d.has_regularization():
            value = value + d.regularization(add_grads=True)
        self.d_opt.step(d.flat_params, d.flat_grads, d.slices.values())
        return value, real_hits, fake_hits, fake

    def penalty(self, x_real, fake, labels=None):
        """(GP value, dGP/dtheta_D as a new flat array) at x_hat between ``x_real`` and ``fake`` (module docstring)."""
        a = self.latent_rng.uniform(0.0, 1.0, (len(x_real),) + (1,) * (x_real.ndim - 1)).astype(x_real.dtype)
        a = B.asarray(a)
        x_hat = a * x_real + (1 - a) * fake
        return self.penalty_at(x_hat, labels)

    def penalty_at(self, x_hat, labels=None):
        """(GP value, dGP/dtheta_D) at the points ``x_hat``; D's parameter gradients are left overwritten."""
        xp, d = B.xp, self.d
        rngs = d.rng_states()
        s = self._score(self._conditioned(x_hat, labels))
        gx = self._sample_part(self._backward_d(xp.ones_like(s)))
        value, w, u = gan_losses.penalty(gx, self.gp_weight)
        eps = x_hat.dtype.type(self.gp_step)
        sides = []
        for sign in (1, -1):
            d.set_rng_states(rngs)  # the same dropout masks in all three passes
            self._score(self._conditioned(x_hat + (sign * eps) * u, labels))
            self._backward_d(w)
            sides.append(d.flat_grads.copy())
        return value, (sides[0] - sides[1]) / (2 * eps)

    def g_step(self, n: int, fake=None, labels=None):
        """One generator update through D (D's weights untouched): the generator loss."""
        g = self.g
        if fake is None:
            fake = self._fake(n, labels)
        value, grad = gan_losses.generator_loss(self.kind, self._score(self._conditioned(fake, labels)))
        g.backward(self._sample_part(self._backward_d(grad)))
        if g.has_regularization():
            value = value + g.regularization(add_grads=True)
        self.g_opt.step(g.flat_params, g.flat_grads, g.slices.values())
        return value

    # -- epochs -------------------------------------------------------------------------------------
    def run_epoch(self, x, y=None) -> dict:
        """One pass of D over the real data; {} when stopped between batches (state: the last finished epoch)."""
        xp, hooks = B.xp, self.hooks
        n = len(x)
        bs = n if isinstance(self.cfg.batch_size, str) else min(int(self.cfg.batch_size), n)
        order = self.data_rng.permutation(n) if self.cfg.shuffle else np.arange(n)
        n_batches = math.ceil(n / bs)
        d_losses, g_losses, real_hits, fake_hits = [], [], [], []
        g_seen = 0
        t0 = time.perf_counter()
        buf = np.empty((bs, *x.shape[1:]), dtype=x.dtype)
        for b in range(n_batches):
            if hooks.should_stop is not None and hooks.should_stop():
                return {}
            idx = order[b * bs : (b + 1) * bs]
            xb = B.asarray(np.take(x, idx, axis=0, out=buf[: len(idx)]), dtype=self.d.input_dtype)
            lb = None if y is None else y[idx]
            value, hits_r, hits_f, fake = self.d_step(xb, lb)
            d_losses.append(value * len(idx))
            real_hits.append(hits_r)
            fake_hits.append(hits_f)
            if (b + 1) % self.d_steps == 0:
                for k in range(self.g_steps):
                    g_losses.append(self.g_step(len(idx), fake if k == 0 else None, lb) * len(idx))
                    g_seen += len(idx)
            if hooks.between_batches is not None:
                hooks.between_batches()
            if hooks.on_batch is not None:
                done = min((b + 1) * bs, n)
                hooks.on_batch(
                    BatchProgress(
                        self.epoch + 1,
                        b + 1,
                        n_batches,
                        done,
                        t0,
                        lambda d=d_losses, k=done: float(B.to_numpy(xp.stack(d).sum())) / k,
                    )
                )
        # one host read per epoch
        sums = B.to_numpy(
            xp.stack(
                [
                    xp.stack(d_losses).sum(),
                    xp.stack(g_losses).sum() if g_losses else xp.zeros((), dtype=self.d.dtype),
                    xp.stack(real_hits).sum().astype(self.d.dtype),
                    xp.stack(fake_hits).sum().astype(self.d.dtype),
                ]
            )
        ).astype(np.float64)
        if not np.all(np.isfinite(sums[:2])) and self.cfg.stop_on_nan:
            which = "d_loss" if not np.isfinite(sums[0]) else "g_loss"
            raise TrainingDiverged(
                f"training diverged: {which} is {sums[0] if which == 'd_loss' else sums[1]} at epoch {self.epoch + 1}"
            )
        seconds = time.perf_counter() - t0
        return {
            "d_loss": sums[0] / n,
            "g_loss": sums[1] / g_seen if g_seen else float("nan"),
            "d_real_accuracy": sums[2] / n,
            "d_fake_accuracy": sums[3] / n,
            "seconds": seconds,
            "samples_per_second": n / seconds if seconds > 0 else 0.0,
        }

    def fit(self, x, epochs: int, on_epoch_end=None, y=None) -> None:
        """Train until ``epochs`` epochs have run in total (counting resumed ones) or a stop request.

        ``y``: a conditional GAN's int64 class labels of ``x`` (host array)."""
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            while self.epoch < epochs:
                logs = self.run_epoch(x, y)
                if not logs:
                    break
                self.epoch += 1
                for k, v in logs.items():
                    self.history.setdefault(k, []).append(float(v))
                if on_epoch_end is not None:
                    on_epoch_end(self.epoch, logs)

    # -- state for checkpoints and resume -----------------------------------------------------------
    @staticmethod
    def _model_snapshot(model: Model, opt: optimizers.Optimizer) -> dict:
        return {
            "flat_params": B.to_numpy(model.flat_params).copy(),
            "frozen": {k: B.to_numpy(v).copy() for k, v in model.named_params().items() if k not in model.slices},
            "model_state": {k: B.to_numpy(v).copy() for k, v in model.named_state().items()},
            "slots": {k: B.to_numpy(v).copy() for k, v in opt.slots.items()},
            "iterations": opt.iterations,
            "layer_rngs": model.rng_states(),
        }

    @staticmethod
    def _model_restore(model: Model, opt: optimizers.Optimizer, snap: dict) -> None:
        model.flat_params[...] = B.asarray(snap["flat_params"])
        params, state = model.named_params(), model.named_state()
        for k, v in snap["frozen"].items():
            params[k][...] = B.asarray(v)
        for k, v in snap["model_state"].items():
            state[k][...] = B.asarray(v)
        for k, v in snap["slots"].items():
            opt.slots[k] = B.xp.asarray(v).copy()
        opt.iterations = int(snap["iterations"])
        model.set_rng_states(snap["layer_rngs"])

    def snapshot(self) -> dict:
        """Host copy of everything needed to resume exactly after the last finished epoch."""
        return {
            "generator": self._model_snapshot(self.g, self.g_opt),
            "discriminator": self._model_snapshot(self.d, self.d_opt),
            "epoch": self.epoch,
            "history": {k: list(v) for k, v in self.history.items()},
            "data_rng": self.data_rng.bit_generator.state,
            "latent_rng": self.latent_rng.bit_generator.state,
        }

    def restore(self, snap: dict) -> None:
        self._model_restore(self.g, self.g_opt, snap["generator"])
        self._model_restore(self.d, self.d_opt, snap["discriminator"])
        self.epoch = int(snap["epoch"])
        self.history = {k: list(v) for k, v in snap["history"].items()}
        self.data_rng.bit_generator.state = snap["data_rng"]
        self.latent_rng.bit_generator.state = snap["latent_rng"]
