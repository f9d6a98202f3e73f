import pytest
import torch

from willie.tokenizer.discriminator import BlurPool3d, Discriminator
from willie.tokenizer.fsq import FSQ
from willie.tokenizer.losses import (
    LeCAM,
    adaptive_weight,
    code_change_loss,
    hinge_d_loss,
    non_saturating_g_loss,
    r1_penalty,
    reconstruction_loss,
)


def test_reconstruction_loss_l1_and_l2() -> None:
    recon, target = torch.tensor([1.0, -1.0, 3.0]), torch.tensor([0.0, 1.0, 3.0])
    assert reconstruction_loss(recon, target, "l1").item() == pytest.approx(1.0)
    assert reconstruction_loss(recon, target, "l2").item() == pytest.approx(5 / 3)
    with pytest.raises(ValueError, match="'l1' or 'l2'"):
        reconstruction_loss(recon, target, "huber")  # type: ignore[arg-type]


def test_code_change_loss_counts_only_codes_that_changed_and_pulls_those_together() -> None:
    fsq = FSQ(levels=[8, 5])
    z = torch.zeros(1, 2, 3, 1, 2)  # [B, D, t, h, w]: 3 latent frames of 1×2 tokens
    z[0, 0, 2, 0, 1] = 3.0  # one code changes in the last latent frame
    z.requires_grad_(True)
    codes, _ = fsq(z)
    loss = code_change_loss(codes)
    assert loss.item() > 0
    loss.backward()
    grad = z.grad[0, 0]
    assert grad[2, 0, 1] > 0 and grad[1, 0, 1] < 0  # the changed code and the one before
    assert (grad[:, 0, 0] == 0).all()  # a code that never changed: no pull at all
    still, _ = fsq(torch.zeros(1, 2, 3, 1, 2))
    assert code_change_loss(still).item() == 0.0


def test_hinge_d_loss_is_zero_beyond_the_margin_and_two_at_zero() -> None:
    ones = torch.ones(2, 1, 3, 4, 4)
    assert hinge_d_loss(2 * ones, -2 * ones).item() == 0.0
    assert hinge_d_loss(0 * ones, 0 * ones).item() == pytest.approx(2.0)


def test_non_saturating_g_loss_decreases_as_fake_logits_rise() -> None:
    values = [non_saturating_g_loss(torch.full((4,), x)).item() for x in (-3.0, 0.0, 3.0)]
    assert values[0] > values[1] > values[2] > 0
    assert values[1] == pytest.approx(torch.log(torch.tensor(2.0)).item())


def test_r1_penalty_of_a_linear_discriminator_is_the_squared_weight_norm() -> None:
    a = torch.nn.Parameter(torch.randn(1, 3, 4))
    x = torch.randn(5, 3, 4, requires_grad=True)
    logits = (a * x).flatten(1).sum(1)  # D(x) = Σ a·x, so ∇_x D = a for every sample
    penalty = r1_penalty(logits, x)
    assert penalty.item() == pytest.approx(a.square().sum().item(), rel=1e-6)
    penalty.backward()  # create_graph: the penalty trains D, ∂||a||²/∂a = 2a
    assert a.grad is not None and torch.allclose(a.grad, 2 * a.detach())


def test_lecam_penalty_with_known_emas() -> None:
    lecam = LeCAM(decay=0.9)
    lecam.ema_real.fill_(1.0)
    lecam.ema_fake.fill_(-1.0)
    real, fake = torch.tensor([0.5, -2.0]), torch.tensor([0.0, -3.0])
    # real term: relu([1.5, -1.0])² → mean(2.25, 0) = 1.125; fake: relu([1, 4])² → 8.5
    assert lecam.penalty(real, fake).item() == pytest.approx(9.625)


def test_lecam_update_is_an_ema_saved_in_the_state_dict() -> None:
    lecam = LeCAM(decay=0.9)
    lecam.update(torch.full((3,), 2.0), torch.full((3,), -4.0))
    assert lecam.ema_real.item() == pytest.approx(0.2)
    assert lecam.ema_fake.item() == pytest.approx(-0.4)
    restored = LeCAM(decay=0.9)
    restored.load_state_dict(lecam.state_dict())
    assert restored.ema_real.item() == pytest.approx(0.2)
    assert restored.ema_fake.item() == pytest.approx(-0.4)


def test_adaptive_weight_is_the_gradient_norm_ratio_at_the_last_layer() -> None:
    last = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    rec = (torch.tensor([3.0, 4.0]) * last).sum()  # ∇ = (3, 4), norm 5
    g = (torch.tensor([0.0, 2.0]) * last).sum()  # ∇ = (0, 2), norm 2
    weight = adaptive_weight(rec, g, last)
    assert weight.item() == pytest.approx(5 / (2 + 1e-4))
    assert not weight.requires_grad
    flat_g = (torch.zeros(2) * last).sum()
    assert adaptive_weight(rec, flat_g, last, max_weight=100.0).item() == 100.0


def test_discriminator_gives_patch_logits_with_capped_widths() -> None:
    disc = Discriminator(channels=4, max_mult=2, num_downsamples=3)
    logits = disc(torch.randn(2, 1, 17, 32, 32))
    assert logits.shape == (2, 1, 3, 4, 4)  # 17 → 9 → 5 → 3, 32 → 16 → 8 → 4
    widths = [stage.conv.out_channels for stage in disc.stages]
    assert widths == [8, 8, 8]
    assert disc(torch.randn(1, 1, 9, 16, 24)).shape == (1, 1, 2, 2, 3)


def test_patchified_discriminator_judges_the_same_clip_on_a_coarser_grid() -> None:
    disc = Discriminator(channels=4, max_mult=2, num_downsamples=3, patch_size=2)
    video = torch.randn(2, 1, 17, 32, 32, requires_grad=True)
    logits = disc(video)
    assert logits.shape == (2, 1, 3, 2, 2)  # 32 → patches of 2 → 16 → 8 → 4 → 2
    (grad,) = torch.autograd.grad(logits.sum(), video)  # R1 needs input gradients
    assert grad.shape == video.shape and grad.abs().sum() > 0


def test_discriminator_parameter_count() -> None:
    disc = Discriminator()  # channels 32, max_mult 4, 3 downsamples
    params = sum(p.numel() for p in disc.parameters())
    assert 0.5e6 < params < 2e6, params


def test_blur_pool_preserves_a_constant_clip() -> None:
    x = torch.full((1, 2, 5, 8, 8), 0.7)
    assert torch.allclose(BlurPool3d()(x), torch.full((1, 2, 3, 4, 4), 0.7))
