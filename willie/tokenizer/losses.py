"""Tokenizer training losses: reconstruction, GAN (hinge D, non-saturating G), R1, LeCAM and
VQGAN's adaptive adversarial weight. Small pure functions; the training stage composes them.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from einops import reduce
from torch import Tensor, nn


def reconstruction_loss(recon: Tensor, target: Tensor, kind: Literal["l1", "l2"] = "l1") -> Tensor:
    """Mean absolute (`l1`) or squared (`l2`) error."""
    if kind == "l1":
        return F.l1_loss(recon, target)
    if kind == "l2":
        return F.mse_loss(recon, target)
    raise ValueError(f"reconstruction loss kind must be 'l1' or 'l2', got {kind!r}")


def code_change_loss(codes: Tensor) -> Tensor:
    """codes [B, D, t, h, w] (FSQ, straight-through) -> mean squared change of each code from
    the latent frame before. Its value counts only codes that changed (equal codes cost 0, and
    so does their gradient); through the straight-through rounding, a changed code pulls both
    latents toward each other: the encoder learns to keep a still place's code still."""
    return (codes[:, :, 1:] - codes[:, :, :-1]).pow(2).mean()


def hinge_d_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """mean(relu(1 - real)) + mean(relu(1 + fake)): zero once real ≥ 1 and fake ≤ -1."""
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


def non_saturating_g_loss(fake_logits: Tensor) -> Tensor:
    """-log sigmoid(fake) = softplus(-fake): strong gradients while D still wins."""
    return F.softplus(-fake_logits).mean()


def r1_penalty(real_logits: Tensor, real_inputs: Tensor) -> Tensor:
    """Mean over the batch of ||∇_x D(x)||² at real inputs (Mescheder et al. 2018).

    `real_inputs` must have required grad before D ran on them; the graph is kept so the
    penalty itself can be back-propagated into D.
    """
    (grad,) = torch.autograd.grad(real_logits.sum(), real_inputs, create_graph=True)
    return reduce(grad.square(), "b ... -> b", "sum").mean()


class LeCAM(nn.Module):
    """LeCAM regularization (Tseng et al. 2021): keep D's logits near EMAs of the other side.

    penalty = mean(relu(real - ema_fake)²) + mean(relu(ema_real - fake)²). The EMAs are
    buffers, so they are saved and restored with the module's state dict.
    """

    ema_real: Tensor
    ema_fake: Tensor

    def __init__(self, *, decay: float = 0.999) -> None:
        super().__init__()
        self.decay = decay
        self.register_buffer("ema_real", torch.zeros(()))
        self.register_buffer("ema_fake", torch.zeros(()))

    @torch.no_grad()
    def update(self, real_logits: Tensor, fake_logits: Tensor) -> None:
        self.ema_real.lerp_(real_logits.detach().float().mean(), 1 - self.decay)
        self.ema_fake.lerp_(fake_logits.detach().float().mean(), 1 - self.decay)

    def penalty(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        return (
            F.relu(real_logits - self.ema_fake).square().mean()
            + F.relu(self.ema_real - fake_logits).square().mean()
        )


def adaptive_weight(
    rec_loss: Tensor, g_loss: Tensor, last_layer: Tensor, max_weight: float = 1e4
) -> Tensor:
    """VQGAN's balance: ||∇_last rec|| / (||∇_last g|| + 1e-4), detached and clamped to
    [0, max_weight], so the adversarial gradient at the decoder's output matches the
    reconstruction gradient in size."""
    (rec_grad,) = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)
    (g_grad,) = torch.autograd.grad(g_loss, last_layer, retain_graph=True)
    weight = rec_grad.norm() / (g_grad.norm() + 1e-4)
    return weight.clamp(0.0, max_weight).detach()
