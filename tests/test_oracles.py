"""The references of the anchor shift and the skip block (``ops/<op>/reference.py``: what their Triton kernels are
compared with in test_kernel_*.py) and the public ops on this machine's backends, against the brute-force oracles
(``ops/<op>/naive.py``: token by token with a full-covariance E-step; channel by channel GroupNorm)."""
import torch
from hypothesis import given, settings
from hypothesis import strategies as st_

from dga_fast import ops
from dga_fast.ops.anchor_shift import naive, reference
from dga_fast.ops.hddc_estep.naive import brute_estep
from helpers import random_state


def _case(B, U, K, D, dmax, seed, n_inactive, scale):
    st = random_state(U, K, D, dmax, seed=seed, n_inactive=n_inactive)          # float64
    g = torch.Generator().manual_seed(seed + 3)
    shift = scale * torch.randn(U, D, generator=g, dtype=torch.float64)
    sc = scale * (0.5 + torch.rand(U, generator=g, dtype=torch.float64))
    lab = torch.randint(0, K, (B, U), generator=g)
    mu = st.means[torch.arange(U).unsqueeze(0), lab]                               # [B, U, D] normalised
    c = (mu + 0.5 * torch.randn(B, U, D, generator=g, dtype=torch.float64)) * sc[:, None] + shift
    return st, shift, sc, c


def _clear(c, st, shift, sc, margin=1e-6):
    """[B, U]: the best component leads the second by more than ``margin`` (elsewhere a tie may go either way)."""
    x = (c.transpose(0, 1) - shift.unsqueeze(1)) / sc[:, None, None]
    lr = brute_estep(x, st)[0]
    top2 = lr.topk(min(2, lr.shape[-1]), -1).values
    lead = top2[..., 0] - top2[..., 1] if lr.shape[-1] > 1 else torch.full_like(top2[..., 0], float("inf"))
    return (lead > margin).transpose(0, 1)


@settings(max_examples=20, deadline=None)
@given(st_.tuples(st_.integers(1, 9), st_.integers(1, 3), st_.integers(1, 5), st_.sampled_from([1, 3, 7]),
                  st_.integers(1, 3)),
       st_.integers(0, 2), st_.sampled_from([1e-3, 1.0, 1e3]), st_.sampled_from(["adaptive", 0.3]),
       st_.integers(0, 2**16))
def test_anchor_shift_matches_the_oracle(shape, n_inactive, scale, align, seed):
    st, shift, sc, c = _case(*shape, seed, n_inactive, scale)
    want = naive.anchor_shift(c, st, shift, sc, align, 0.1)
    ok = _clear(c, st, shift, sc).unsqueeze(-1).expand_as(c)
    got = {"reference": reference.anchor_shift(c, st, shift, sc, align, 0.1),
           "public": ops.anchor_shift(c, st, shift, sc, align, 0.1)}
    for name, out in got.items():
        assert out.dtype == torch.float64, name
        torch.testing.assert_close(out[ok], want[ok], rtol=1e-9, atol=1e-9 * scale, msg=name)


@settings(max_examples=15, deadline=None)
@given(st_.integers(1, 3), st_.sampled_from([(2, 2, 1), (4, 4, 2), (3, 5, 4), (8, 8, 8)]), st_.integers(1, 5),
       st_.sampled_from([0.0, 0.2]), st_.sampled_from([1e-3, 1.0, 1e3]), st_.integers(0, 2**16))
def test_skip_block_matches_the_oracle(B, chans, H, p, scale, seed):
    from dga_fast.ops.skip_block import naive as skip_naive
    from dga_fast.ops.skip_block import reference as skip_reference
    Ch, Cs, groups = chans
    g = torch.Generator().manual_seed(seed)
    h = scale * torch.randn(B, Ch, H, H + 1, generator=g, dtype=torch.float64)
    skip = scale * torch.randn(B, Cs, H, H + 1, generator=g, dtype=torch.float64)
    keep = (torch.rand(B, Cs, generator=g) > 0.3).double()
    w = 1 + 0.3 * torch.randn(Ch + Cs, generator=g, dtype=torch.float64)
    b = 0.2 * torch.randn(Ch + Cs, generator=g, dtype=torch.float64)
    xw, yw = skip_naive.skip_dropout_concat_norm_silu(h, skip, keep, p, w, b, groups)
    for name, (x, y) in (("reference", skip_reference.skip_dropout_concat_norm_silu(h, skip, keep, p, w, b, groups)),
                         ("public", ops.skip_dropout_concat_norm_silu(h, skip, keep, p, w, b, groups))):
        torch.testing.assert_close(x, xw, rtol=1e-12, atol=1e-12 * scale, msg=name)
        torch.testing.assert_close(y, yw, rtol=1e-9, atol=1e-9, msg=name)
