"""Adversarial losses on the discriminator's scores (logits) s, averaged over the batch, with their gradients.

non_saturating (Goodfellow et al. 2014, the -log D trick), with sigma the sigmoid and t = 1 - smoothing:
  L_D = mean(softplus(s_real) - t s_real) + mean(softplus(s_fake))    dL/ds = (sigma(s) - target) / N
  L_G = mean(softplus(-s_fake))                                        dL/ds = (sigma(s) - 1) / N
hinge (Lim and Ye 2017; Miyato et al. 2018):
  L_D = mean(relu(1 - s_real)) + mean(relu(1 + s_fake))                L_G = -mean(s_fake)
wgan_gp (Gulrajani et al. 2017), a critic with an unbounded score and lambda the penalty weight:
  L_D = mean(s_fake) - mean(s_real) + lambda mean_i (||g_i|| - 1)^2,  g_i = grad_x D(x_hat_i),
  x_hat = a x_real + (1 - a) x_fake, a ~ U(0, 1) per sample             L_G = -mean(s_fake)
The penalty's parameter gradient is in ``gan_trainer`` (it needs D twice more); ``penalty`` gives the
value and the per-sample weights and directions it is built from.
softplus(x) = max(x, 0) + log1p(exp(-|x|)) never overflows. Scores are (N, 1); values are 0-d device arrays.
"""

from __future__ import annotations

from nnctl import backend as B
from nnctl.ops.activations import sigmoid

KINDS = ("non_saturating", "hinge", "wgan_gp")
#: losses whose generator loss is -mean(s_fake)
LINEAR_G = ("hinge", "wgan_gp")


def softplus(x):
    xp = B.xp
    return xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))


def real_term(kind: str, s_real, target: float = 1.0):
    """(value, gradient) of L_D's real half; ``target`` < 1 is one-sided label smoothing (non_saturating)."""
    n = s_real.dtype.type(s_real.size)
    if kind == "wgan_gp":
        return -s_real.sum() / n, B.xp.full_like(s_real, -1) / n
    if kind == "hinge":
        return B.xp.maximum(1 - s_real, 0).sum() / n, -(1 - s_real > 0).astype(s_real.dtype) / n
    t = s_real.dtype.type(target)
    return (softplus(s_real) - t * s_real).sum() / n, (sigmoid(s_real) - t) / n


def fake_term(kind: str, s_fake):
    """(value, gradient) of L_D's fake half: the discriminator wants fakes scored as fake."""
    n = s_fake.dtype.type(s_fake.size)
    if kind == "wgan_gp":
        return s_fake.sum() / n, B.xp.full_like(s_fake, 1) / n
    if kind == "hinge":
        return B.xp.maximum(1 + s_fake, 0).sum() / n, (1 + s_fake > 0).astype(s_fake.dtype) / n
    return softplus(s_fake).sum() / n, sigmoid(s_fake) / n


def discriminator_loss(kind: str, s_real, s_fake, target: float = 1.0):
    """(L_D, dL_D/ds_real, dL_D/ds_fake)."""
    (v_real, g_real), (v_fake, g_fake) = real_term(kind, s_real, target), fake_term(kind, s_fake)
    return v_real + v_fake, g_real, g_fake


def generator_loss(kind: str, s_fake):
    """(L_G, dL_G/ds_fake): the generator wants its samples scored as real."""
    n = s_fake.dtype.type(s_fake.size)
    if kind in LINEAR_G:
        return -s_fake.sum() / n, B.xp.full_like(s_fake, -1) / n
    return softplus(-s_fake).sum() / n, (sigmoid(s_fake) - 1) / n


def penalty(grad_x, weight: float):
    """(value, w, u) of the gradient penalty for the input gradients ``grad_x`` (N, ...) of D at x_hat.

    value = weight mean_i (||g_i|| - 1)^2; its derivative along g_i is w_i u_i with u_i = g_i / ||g_i||
    (zero where g_i = 0) and w_i = 2 weight (||g_i|| - 1) / N, shaped (N, 1) and like ``grad_x``."""
    xp = B.xp
    flat = grad_x.reshape(len(grad_x), -1)
    norms = xp.sqrt((flat * flat).sum(axis=1))
    n = grad_x.dtype.type(len(grad_x))
    lam = grad_x.dtype.type(weight)
    value = lam * ((norms - 1) ** 2).sum() / n
    safe = xp.where(norms > 0, norms, 1)
    u = (flat / safe[:, None]).reshape(grad_x.shape)
    w = (2 * lam * (norms - 1) / n)[:, None]
    return value, w, u
