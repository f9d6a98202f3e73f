import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from willie.tokenizer.fsq import FSQ, codebook_usage

level_lists = st.lists(st.integers(min_value=2, max_value=16), min_size=1, max_size=6)


@settings(max_examples=200, deadline=None)
@given(levels=level_lists, data=st.data())
def test_fsq_indices_roundtrip(levels: list[int], data: st.DataObject) -> None:
    fsq = FSQ(levels=levels)
    size = math.prod(levels)
    picks = data.draw(st.lists(st.integers(0, size - 1), min_size=1, max_size=64))
    indices = torch.tensor([*picks, 0, size - 1])
    codes = fsq.indices_to_codes(indices)
    assert codes.shape == (len(indices), len(levels))
    assert torch.equal(fsq.codes_to_indices(codes), indices)
    assert torch.equal(fsq.indices_to_codes(fsq.codes_to_indices(codes)), codes)


@settings(max_examples=50, deadline=None)
@given(levels=level_lists)
def test_quantized_codes_are_on_the_grid_and_use_every_level(levels: list[int]) -> None:
    fsq = FSQ(levels=levels)
    z = torch.linspace(-8, 8, 4001)[:, None].expand(-1, len(levels))  # sweeps every level
    codes = fsq.quantize(z)
    digits = fsq._scale_and_shift(codes)
    assert codes.abs().max() <= 1
    assert torch.equal(digits, digits.round())
    for d, level in enumerate(levels):
        assert digits[:, d].unique().tolist() == list(range(level))
    indices = fsq.codes_to_indices(codes)
    assert indices.min() >= 0 and indices.max() < fsq.codebook_size


def test_even_levels_use_the_half_offset_grid() -> None:
    fsq = FSQ(levels=[8, 5])
    codes = fsq.indices_to_codes(torch.arange(fsq.codebook_size))
    assert codes[:, 0].unique().tolist() == [k / 4 for k in range(-4, 4)]
    assert codes[:, 1].unique().tolist() == [k / 2 for k in range(-2, 3)]


def test_forward_gives_video_layout_codes_and_matching_indices() -> None:
    fsq = FSQ(levels=[8, 5, 5, 5])
    z = torch.randn(2, 4, 3, 5, 6) * 3
    codes, indices = fsq(z)
    assert fsq.codebook_size == 1000
    assert codes.shape == z.shape and codes.dtype == torch.float32
    assert indices.shape == (2, 3, 5, 6) and indices.dtype == torch.int64
    assert torch.equal(fsq.indices_to_codes(indices).permute(0, 4, 1, 2, 3), codes)


def test_fsq_quantizes_in_fp32_under_bf16_autocast() -> None:
    fsq = FSQ(levels=[8, 5, 5, 5])
    z = torch.randn(2, 4, 3, 4, 4) * 2
    codes_ref, indices_ref = fsq(z)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        codes, indices = fsq(z)
        codes_from_bf16, indices_from_bf16 = fsq(z.bfloat16())  # what a bf16 encoder hands over
    assert codes.dtype == torch.float32 and codes_from_bf16.dtype == torch.float32
    assert torch.equal(codes, codes_ref) and torch.equal(indices, indices_ref)
    codes_upcast, indices_upcast = fsq(z.bfloat16().float())
    assert torch.equal(codes_from_bf16, codes_upcast)
    assert torch.equal(indices_from_bf16, indices_upcast)


def test_straight_through_gradient_is_the_bound_derivative() -> None:
    fsq = FSQ(levels=[7, 4])
    z = torch.randn(3, 2, requires_grad=True)
    fsq.quantize(z).sum().backward()
    z2 = z.detach().clone().requires_grad_()
    (fsq.bound(z2) / fsq._levels.div(2, rounding_mode="floor")).sum().backward()
    assert z.grad is not None and z2.grad is not None
    assert torch.allclose(z.grad, z2.grad) and (z.grad > 0).all()


def test_codebook_usage_and_perplexity() -> None:
    uniform_over_4 = torch.tensor([0, 1, 2, 3] * 25)
    stats = codebook_usage(uniform_over_4, codebook_size=16)
    assert stats.used == 4 and stats.usage == 0.25
    assert stats.perplexity == pytest.approx(4.0)
    single = codebook_usage(torch.full((10,), 7), codebook_size=16)
    assert single.used == 1 and single.perplexity == pytest.approx(1.0)
    with pytest.raises(ValueError, match="beyond codebook_size"):
        codebook_usage(torch.tensor([16]), codebook_size=16)


def test_fsq_rejects_levels_below_two() -> None:
    with pytest.raises(ValueError, match="≥ 2"):
        FSQ(levels=[8, 1])
