"""UnitWhitening (unit_norm="whiten"): the Newton–Schulz inverse square root against an eigendecomposition
oracle, whitened batches, eval mode on running statistics, gradients with a random upstream gradient."""
import torch
from hypothesis import given, settings, strategies as hs

from dga_fast.nn.unit_whitening import UnitWhitening, whitening_matrix


def _oracle(cov):
    w, v = torch.linalg.eigh(cov.double())
    return (v * w.rsqrt()) @ v.T


@settings(max_examples=15, deadline=None)
@given(U=hs.integers(1, 12), seed=hs.integers(0, 2 ** 16), spread=hs.floats(0.1, 10.0))
def test_whitening_matrix_matches_the_eigendecomposition(U, seed, spread):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(U, U, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(a)
    evals = torch.exp(torch.rand(U, generator=g, dtype=torch.float64) * 1.0) * spread   # condition <= e
    cov = (q * evals) @ q.T
    ref = _oracle(cov)
    torch.testing.assert_close(whitening_matrix(cov, 30), ref, rtol=1e-6, atol=1e-9 * float(ref.abs().max()))


@settings(max_examples=10, deadline=None)
@given(B=hs.integers(20, 70), U=hs.integers(1, 9), seed=hs.integers(0, 2 ** 16))
def test_training_batches_come_out_white_and_eval_uses_running_statistics(B, U, seed):
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(U, U, generator=g, dtype=torch.float64) * 0.5 + torch.eye(U, dtype=torch.float64)
    s = torch.randn(B, U, generator=g, dtype=torch.float64) @ mix + 3.0   # correlated, offset units
    m = UnitWhitening(U, iters=40, eps=0.0, momentum=1.0).double().train()
    out = m(s)
    cov = torch.cov(out.T, correction=0).reshape(U, U)
    torch.testing.assert_close(out.mean(0), torch.zeros(U, dtype=torch.float64), rtol=0, atol=1e-9)
    torch.testing.assert_close(cov, torch.eye(U, dtype=torch.float64), rtol=0, atol=1e-6)
    m.eval()                                                       # momentum 1: the last batch's statistics
    torch.testing.assert_close(m(s), out.detach(), rtol=0, atol=1e-9)


def test_gradient_with_a_random_upstream_gradient():
    g = torch.Generator().manual_seed(0)
    s = (torch.randn(9, 4, generator=g, dtype=torch.float64) @ torch.randn(4, 4, generator=g,
                                                                          dtype=torch.float64)).requires_grad_()
    m = UnitWhitening(4).double().train()
    assert torch.autograd.gradcheck(lambda x: m(x), (s,), eps=1e-6, atol=1e-5)
    up = torch.randn(9, 4, generator=g, dtype=torch.float64)
    (gr,) = torch.autograd.grad((m(s) * up).sum(), s)
    assert torch.isfinite(gr).all()


def test_encoder_option_and_bad_input():
    import pytest

    from dga_fast.nn.encoder import FeatureExtractor
    enc = FeatureExtractor(16, 3, 5, 4, channels=8, unit_norm="whiten").train()
    u = enc.latent_units(torch.rand(12, 3, 16, 16) * 2 - 1)
    c = torch.cov(u.detach().T, correction=0)
    assert float((c - torch.eye(5)).abs().max()) < 0.05            # 8 Newton-Schulz steps: nearly white
    with pytest.raises(ValueError, match="unit_norm"):
        FeatureExtractor(16, 3, 5, 4, unit_norm="zca")
    with pytest.raises(ValueError, match="shape"):
        UnitWhitening(5)(torch.zeros(3, 4))
