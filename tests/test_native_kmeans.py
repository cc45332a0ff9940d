"""The Lloyd step of the initial partition: the native op (``torch.ops.dga_fast.kmeans_assign``,
csrc/core/kmeans_core.*) and the reference (``mixture.init.kmeans_step``) against the row-by-row oracle
(``ops/kmeans/naive.py``): hypothesis shapes (one row, one centre, odd sizes, rows across the op's 2048-row
chunks, empty clusters), float32 / float64, data scaled 1e-4 … 1e4; a group's results alone or in a batch and at
any thread count; validation, the fake and the dispatch; Lloyd on both paths."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st_

from dga_fast import native, ops
from dga_fast.mixture.init import kmeans_step, lloyd
from dga_fast.ops.kmeans import naive

pytestmark = pytest.mark.skipif(not native.available(), reason="dga_fast._C not built (DGA_FAST_NO_EXT=1)")


def _inputs(G, n, K, D, scale, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    x = scale * torch.randn(G, n, D, generator=g, dtype=torch.float64)
    c = scale * torch.randn(G, K, D, generator=g, dtype=torch.float64)
    return x.to(dtype), c.to(dtype)


def _check_against_oracle(got, want, x, c, tol):
    labels, counts, sums = got
    w_labels, w_counts, w_sums = want
    # a label differs from the oracle's only where two centres are equally near within rounding
    d = ((x.double().unsqueeze(2) - c.double().unsqueeze(1)) ** 2).sum(-1)              # [G, n, K]
    chosen = d.gather(2, labels.unsqueeze(-1)).squeeze(-1)
    best = d.gather(2, w_labels.unsqueeze(-1)).squeeze(-1)
    assert torch.all(chosen <= best + tol * (1 + d.amax(-1)))
    same = labels == w_labels
    if bool(same.all()):
        torch.testing.assert_close(counts.double(), w_counts, rtol=0, atol=0)
        top = float(w_sums.abs().max()) if w_sums.numel() else 0.0
        torch.testing.assert_close(sums.double(), w_sums, rtol=tol, atol=tol * max(1.0, top))
    assert torch.equal(counts.double().sum(1), torch.full_like(w_counts.sum(1), x.shape[1]))


@settings(max_examples=25, deadline=None)
@given(st_.integers(1, 3), st_.sampled_from([1, 2, 37, 2049]), st_.integers(1, 11), st_.sampled_from([1, 2, 7, 32]),
       st_.sampled_from([1e-4, 1.0, 1e4]), st_.sampled_from([torch.float32, torch.float64]), st_.integers(0, 2**16))
def test_kmeans_step_matches_the_oracle(G, n, K, D, scale, dtype, seed):
    x, c = _inputs(G, n, K, D, scale, dtype, seed)
    if n > 200:   # the oracle is slow: check the chunk-crossing case on the reference's labels, sums in float64
        want = kmeans_step(x.double(), c.double())
    else:
        want = naive.kmeans_assign(x, c)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for name, got in (("native", torch.ops.dga_fast.kmeans_assign(x, c)), ("reference", kmeans_step(x, c))):
        assert got[0].dtype == torch.int64 and got[1].dtype == got[2].dtype == dtype, name
        _check_against_oracle(got, want, x, c, tol)


def test_kmeans_step_of_a_group_does_not_depend_on_the_batch_or_the_threads():
    x, c = _inputs(5, 4100, 6, 7, 1.0, torch.float32, 3)
    full = torch.ops.dga_fast.kmeans_assign(x, c)
    alone = torch.ops.dga_fast.kmeans_assign(x[2:3].contiguous(), c[2:3].contiguous())
    for a, b in zip(full, alone):
        assert torch.equal(a[2], b[0])
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        for a, b in zip(full, torch.ops.dga_fast.kmeans_assign(x, c)):
            assert torch.equal(a, b)
    finally:
        torch.set_num_threads(threads)


def test_kmeans_step_rejects_bad_input():
    x, c = _inputs(2, 5, 3, 4, 1.0, torch.float32, 0)
    op = torch.ops.dga_fast.kmeans_assign
    with pytest.raises(TypeError, match="x must be float32 or float64"):
        op(x.half(), c.half())
    with pytest.raises(TypeError, match="centers must be Double"):
        op(x.double(), c)
    with pytest.raises(ValueError, match="centers must be \\[G, K, D\\]"):
        op(x, c[:, :, :3])
    with pytest.raises(ValueError, match="centers must be \\[G, K, D\\]"):
        op(x, c[:, :0])
    with pytest.raises(ValueError, match="x must be \\[G, N, D\\]"):
        op(x[0], c)
    with pytest.raises(ValueError, match="same device"):
        op(x, c.to("meta"))
    labels, counts, sums = op(x.to("meta"), c.to("meta"))   # the fake
    assert labels.shape == (2, 5) and labels.dtype == torch.int64 and counts.shape == (2, 3) and sums.shape == (2, 3, 4)


def test_lloyd_dispatch_and_both_paths(set_backend, monkeypatch):
    x, c = _inputs(3, 300, 4, 5, 1.0, torch.float64, 1)
    called = []
    real = torch.ops.dga_fast.kmeans_assign
    monkeypatch.setattr(torch.ops.dga_fast, "kmeans_assign", lambda *a: called.append(1) or real(*a))
    set_backend("reference")
    ref_labels, ref_centers = lloyd(x, c, 10, step=ops.kmeans_assign)
    assert not called
    set_backend("auto")
    nat_labels, nat_centers = lloyd(x, c, 10, step=ops.kmeans_assign)
    assert called
    assert torch.equal(nat_labels, ref_labels)
    torch.testing.assert_close(nat_centers, ref_centers, rtol=1e-12, atol=1e-12)


@settings(max_examples=15, deadline=None)
@given(st_.integers(1, 4), st_.sampled_from([1, 5, 300, 2049]), st_.integers(1, 9), st_.sampled_from([1, 3, 32]),
       st_.sampled_from([torch.float32, torch.float64]), st_.integers(0, 12), st_.integers(0, 2**16))
def test_lloyd_loop_equals_the_loop_of_steps(G, n, K, D, dtype, max_iter, seed):
    """The native loop (``kmeans_lloyd``: each group stops at its own fixed point) gives bit for bit the labels and
    centres of the loop of native steps (``lloyd`` with ``kmeans_assign``, stopping when no group changes)."""
    x, c = _inputs(G, n, K, D, 1.0, dtype, seed)
    c = 0.3 * c                                   # seeds inside the data: clusters fill, some may empty
    seeds = c.clone()
    want = lloyd(x, c, max_iter, step=torch.ops.dga_fast.kmeans_assign)
    got = torch.ops.dga_fast.kmeans_lloyd(x, c, max_iter)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert torch.equal(c, seeds)                  # the seeds are not modified


def test_lloyd_loop_rejects_bad_input_and_has_a_fake():
    x, c = _inputs(2, 5, 3, 4, 1.0, torch.float32, 0)
    op = torch.ops.dga_fast.kmeans_lloyd
    with pytest.raises(ValueError, match="max_iter must be >= 0"):
        op(x, c, -1)
    with pytest.raises(TypeError, match="centers must be Double"):
        op(x.double(), c, 3)
    with pytest.raises(ValueError, match="centers must be \\[G, K, D\\]"):
        op(x, c[:1], 3)
    labels, centers = op(x.to("meta"), c.to("meta"), 3)
    assert labels.shape == (2, 5) and labels.dtype == torch.int64 and centers.shape == (2, 3, 4)


def test_initial_partition_takes_the_native_loop(monkeypatch):
    from dga_fast._rng import UnitStreams
    from dga_fast.mixture.init import initial_partition
    x, _ = _inputs(4, 200, 3, 5, 1.0, torch.float32, 2)
    called = []
    real = torch.ops.dga_fast.kmeans_lloyd
    monkeypatch.setattr(torch.ops.dga_fast, "kmeans_lloyd", lambda *a: called.append(1) or real(*a))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        a = initial_partition(x, 3, "kmeans++", UnitStreams(0, [0, 1, 2, 3]), step=ops.kmeans_assign,
                              loop=ops.kmeans_lloyd)
    finally:
        torch.set_num_threads(threads)
    b = initial_partition(x, 3, "kmeans++", UnitStreams(0, [0, 1, 2, 3]), step=ops.kmeans_assign)
    assert called and torch.equal(a, b)
