"""The native normaliser statistics (``torch.ops.dga_fast.group_moments``, csrc/core/moments_core.h) against the
PyTorch path (``mixture.normalise.group_sums``), their validation and dispatch."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st_

from dga_fast import native, ops
from dga_fast.mixture.normalise import Normaliser, group_sums

pytestmark = pytest.mark.skipif(not native.available(), reason="dga_fast._C not built (DGA_FAST_NO_EXT=1)")


@settings(max_examples=30, deadline=None)
@given(st_.integers(1, 3), st_.sampled_from([1, 2, 17, 300]), st_.sampled_from([1, 5, 33]),
       st_.sampled_from([1e-4, 1.0, 1e4]), st_.sampled_from([torch.float32, torch.float64]), st_.integers(0, 2**16))
def test_group_moments_match_the_pytorch_path(G, N, D, scale, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    x = (scale * (3 + torch.randn(G, N, D, generator=g, dtype=torch.float64))).to(dtype)
    shift, dev2, sq = torch.ops.dga_fast.group_moments(x)
    r_shift, r_dev2, r_sq = group_sums(x)
    assert shift.dtype == dev2.dtype == sq.dtype == torch.float64
    # both in float64 over the same rows: they differ only in the order of the last additions
    torch.testing.assert_close(shift, r_shift, rtol=1e-12, atol=1e-15 * scale)
    torch.testing.assert_close(sq, r_sq, rtol=1e-12, atol=0.0)
    torch.testing.assert_close(dev2, r_dev2, rtol=1e-9, atol=1e-12 * float(r_sq.max()))
    a, b = Normaliser.fit(x, moments=ops.group_moments), Normaliser.fit(x)
    assert torch.equal(a.collapsed, b.collapsed)
    torch.testing.assert_close(a.scale, b.scale, rtol=1e-6, atol=0.0)


def test_group_moments_of_a_constant_group_are_exact():
    x = torch.full((2, 1000, 3), 0.1, dtype=torch.float64)
    shift, dev2, _ = torch.ops.dga_fast.group_moments(x)
    assert torch.equal(shift, torch.full((2, 3), 0.1, dtype=torch.float64)) and torch.equal(dev2, torch.zeros(2))


def test_group_moments_rejects_bad_input():
    op = torch.ops.dga_fast.group_moments
    with pytest.raises(TypeError, match="x must be float32 or float64"):
        op(torch.zeros(1, 2, 3, dtype=torch.float16))
    with pytest.raises(ValueError, match="x must be \\[G, N, D\\]"):
        op(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="NaN or Inf"):
        op(torch.tensor([[[1.0, float("nan")]]]))
    with pytest.raises(ValueError, match="NaN or Inf"):
        ops.group_moments(torch.tensor([[[1.0, float("inf")]]]))


def test_group_moments_dispatch(set_backend, monkeypatch):
    x = torch.randn(2, 9, 4)
    called = []
    real = torch.ops.dga_fast.group_moments
    monkeypatch.setattr(torch.ops.dga_fast, "group_moments", lambda *a: called.append(1) or real(*a))
    set_backend("reference")
    ops.group_moments(x)
    assert not called
    set_backend("auto")
    ops.group_moments(x)
    assert called
