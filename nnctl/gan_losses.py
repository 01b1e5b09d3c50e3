"""Adversarial losses on the discriminator's scores (logits) s, averaged over the batch, with their gradients.

non_saturating (Goodfellow et al. 2014, the -log D trick), with sigma the sigmoid and t = 1 - smoothing:
  L_D = mean(softplus(s_real) - t s_real) + mean(softplus(s_fake))    dL/ds = (sigma(s) - target) / N
  L_G = mean(softplus(-s_fake))                                        dL/ds = (sigma(s) - 1) / N
hinge (Lim and Ye 2017; Miyato et al. 2018):
  L_D = mean(relu(1 - s_real)) + mean(relu(1 + s_fake))                L_G = -mean(s_fake)
softplus(x) = max(x, 0) + log1p(exp(-|x|)) never overflows. Scores are (N, 1); values are 0-d device arrays.
"""

from __future__ import annotations

from nnctl import backend as B
from nnctl.ops.activations import sigmoid

KINDS = ("non_saturating", "hinge")


def softplus(x):
    xp = B.xp
    return xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))


def real_term(kind: str, s_real, target: float = 1.0):
    """(value, gradient) of L_D's real half; ``target`` < 1 is one-sided label smoothing (non_saturating)."""
    n = s_real.dtype.type(s_real.size)
    if kind == "hinge":
        return B.xp.maximum(1 - s_real, 0).sum() / n, -(1 - s_real > 0).astype(s_real.dtype) / n
    t = s_real.dtype.type(target)
    return (softplus(s_real) - t * s_real).sum() / n, (sigmoid(s_real) - t) / n


def fake_term(kind: str, s_fake):
    """(value, gradient) of L_D's fake half: the discriminator wants fakes scored as fake."""
    n = s_fake.dtype.type(s_fake.size)
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
    if kind == "hinge":
        return -s_fake.sum() / n, B.xp.full_like(s_fake, -1) / n
    return softplus(-s_fake).sum() / n, (sigmoid(s_fake) - 1) / n
