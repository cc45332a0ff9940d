"""The training step's fast path against the plain one: AdamW's fused implementation (``fused_optimizer``, on by
default) gives the per-parameter loop's update to rounding, on parameter shapes drawn by hypothesis and over whole
training runs, and a run checkpointed with one implementation resumes with the other."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dga_fast.data import SyntheticShapes
from dga_fast.train import TrainConfig, fit, make_optimizer
from helpers import TRAIN, tiny


shapes = st.lists(st.lists(st.integers(1, 9), min_size=0, max_size=3).map(tuple), min_size=1, max_size=4)


@settings(max_examples=15, deadline=None)
@given(shapes=shapes, steps=st.integers(1, 6), wd=st.sampled_from([0.0, 0.01]), seed=st.integers(0, 2**16))
def test_fused_adamw_is_the_loop_update(shapes, steps, wd, seed):
    """Several steps with random gradients: the fused and the loop AdamW move every parameter alike, within a
    tolerance relative to the parameter's size (the two round differently; ``lr`` 2e-3 moves a parameter by up
    to about 2e-3 a step)."""
    g = torch.Generator().manual_seed(seed)
    init = [torch.randn(s, generator=g) for s in shapes]
    grads = [[torch.randn(s, generator=g) for s in shapes] for _ in range(steps)]
    out = []
    for fused in (True, None):
        ps = [torch.nn.Parameter(p.clone()) for p in init]
        opt = torch.optim.AdamW(ps, lr=2e-3, weight_decay=wd, fused=fused)
        for gs in grads:
            for p, gr in zip(ps, gs):
                p.grad = gr.clone()
            opt.step()
        out.append(ps)
    for a, b, p0 in zip(*out, init):
        scale = max(float(p0.abs().max()), 1.0)
        torch.testing.assert_close(a.detach(), b.detach(), rtol=0, atol=1e-6 * scale)
        assert not torch.equal(a.detach(), p0)              # the step moved it


def test_make_optimizer_follows_the_switch():
    m = tiny()
    assert make_optimizer(m, TrainConfig(fused_optimizer=True)).param_groups[0]["fused"] is True
    assert not make_optimizer(m, TrainConfig(fused_optimizer=False)).param_groups[0]["fused"]


def test_training_with_the_fused_optimizer_follows_the_loop(tmp_path):
    """Ten steps with a refit: the same loss curve and weights, within float32 rounding grown over the steps."""
    data = SyntheticShapes(16)
    runs = []
    for fused in (True, False):
        m = tiny()
        h = fit(m, data, tmp_path / str(fused), steps=10, fused_optimizer=fused, **TRAIN)
        runs.append((m, [v for _, v in h["losses"]]))
    (ma, la), (mb, lb) = runs
    torch.testing.assert_close(torch.tensor(la), torch.tensor(lb), rtol=1e-3, atol=1e-5)
    for k, v in ma.state_dict().items():
        if v.is_floating_point() and not k.startswith("anchoring."):
            scale = max(float(v.abs().max()), 1.0)
            torch.testing.assert_close(v, mb.state_dict()[k], rtol=0, atol=1e-3 * scale, msg=k)


@pytest.mark.parametrize("first, then", [(False, True), (True, False)])
def test_a_run_resumes_across_optimizer_implementations(tmp_path, first, then):
    """The checkpoint's optimizer state carries on under the other implementation (its param groups name the
    one it was written with, which the resumed run keeps: the same update either way)."""
    data = SyntheticShapes(16)
    m = tiny()
    fit(m, data, tmp_path / "r", steps=5, fused_optimizer=first, **TRAIN)
    m2 = tiny()
    h = fit(m2, data, tmp_path / "r", steps=8, fused_optimizer=then, resume=True, **TRAIN)
    assert h["step"] == 8 and len(h["losses"]) == 8
    assert all(torch.isfinite(p).all() for p in m2.parameters())
