"""torch.compile(fullgraph=True) over a function that calls the three fused ops, forward and backward, with the
reference backend and with the Triton custom ops (Triton's interpreter on CPU)."""
import pytest
import torch

from dga_fast import ops
from helpers import random_state

DEV = "cuda" if torch.cuda.is_available() else "cpu"
# aot_eager traces forward and backward through AOTAutograd (fake implementations included) without code
# generation; on a GPU the real inductor backend is used
COMPILER = "inductor" if DEV == "cuda" else "aot_eager"


def _three_ops_case():
    st = random_state(2, 3, 5, 2, seed=0).to(device=DEV, dtype=torch.float32)
    g = torch.Generator().manual_seed(0)
    shift, scale = torch.randn(2, 5, generator=g).to(DEV), (0.5 + torch.rand(2, generator=g)).to(DEV)
    x = torch.randn(2, 7, 5, generator=g).to(DEV)
    c = (torch.randn(4, 2, 5, generator=g).to(DEV) * scale[:, None] + shift).requires_grad_()
    h = torch.randn(2, 4, 3, 3, generator=g).to(DEV).requires_grad_()
    skip = torch.randn(2, 4, 3, 3, generator=g).to(DEV).requires_grad_()
    keep = (torch.rand(2, 4, generator=g) > 0.3).float().to(DEV)
    w, b = torch.ones(8, device=DEV), torch.zeros(8, device=DEV)

    def f(x, c, h, skip):
        _, ll = ops.hddc_estep(x, st)
        out = ops.anchor_shift(c, st, shift, scale, "adaptive", 0.1)
        _, y = ops.skip_dropout_concat_norm_silu(h, skip, keep, 0.2, w, b, 2)
        return ll.sum() + out.square().sum() + y.square().sum()

    return f, (x, c, h, skip)


@pytest.mark.parametrize("backend", ["reference", "triton"])
def test_compile_fullgraph_three_ops(backend, set_backend):
    if backend == "triton":
        pytest.importorskip("triton")
    set_backend(backend)
    torch._dynamo.reset()
    f, args = _three_ops_case()
    want = f(*args)
    g_want = torch.autograd.grad(want, args[1:])
    got = torch.compile(f, fullgraph=True, backend=COMPILER)(*args)
    g_got = torch.autograd.grad(got, args[1:])
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
    for a, e in zip(g_got, g_want):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-5)
