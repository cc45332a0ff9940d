"""``qk_norm``: the attention blocks' queries and keys LayerNorm-ed per head, so the softmax's logits do not grow with
the weights (the attention-logit growth that makes runs diverge at large learning rates)."""
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dga_fast import AnchoredDiffusion
from dga_fast.nn.unet import AttentionBlock
from helpers import TINY


def _cross_weights(blk, h, cond):
    blk.record = True
    blk(h, cond)
    return blk.last_cross_attention


@settings(max_examples=12, deadline=None)
@given(heads=st.integers(1, 4), d=st.integers(2, 9), hw=st.integers(1, 5), units=st.integers(1, 6),
       cond_dim=st.integers(1, 7), seed=st.integers(0, 2**16))
def test_scaling_the_query_and_key_weights_leaves_qk_normed_attention_unchanged(heads, d, hw, units, cond_dim,
                                                                                 seed):
    torch.manual_seed(seed)
    C = heads * d
    h = torch.randn(2, C, hw, hw + 1, dtype=torch.float64)
    cond = torch.randn(2, units, cond_dim, dtype=torch.float64)
    for qk_norm in (True, False):
        blk = AttentionBlock(C, cond_dim, heads, qk_norm=qk_norm).double()
        weights = []
        for scale in (1e3, 1e3):   # x1000, then x1000 again: queries and keys far above LayerNorm's eps both times
            with torch.no_grad():
                for lin in (blk.qkv, blk.q, blk.kv):
                    lin.bias.zero_()
                blk.q.weight.mul_(scale)
                blk.kv.weight[:C].mul_(scale)       # the keys' half; the values are untouched
            weights.append(_cross_weights(blk, h, cond))
        before, after = weights
        if qk_norm:   # LayerNorm(c·x) = LayerNorm(x) up to its eps
            torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)
        elif units > 1:   # without it the logits grow with the weights: the softmax sharpens
            assert float(after.amax(-1).mean()) >= float(before.amax(-1).mean()) - 1e-9


def test_qk_norm_model_trains_saves_and_loads(tmp_path):
    from dga_fast.data import SyntheticShapes
    from dga_fast.train import fit
    torch.manual_seed(0)
    m = AnchoredDiffusion(**{**TINY, "anchoring": None}, qk_norm=True)
    assert m.config["qk_norm"] is True and any("qk_norms.0.weight" in k for k in m.state_dict())
    h = fit(m, SyntheticShapes(16), tmp_path / "run", steps=6, batch_size=4, refit_every=100, refit_warmup=100,
            ckpt_every=6, progress=False)
    assert all(torch.isfinite(torch.tensor([v for _, v in h["losses"]])))
    back = AnchoredDiffusion.load(tmp_path / "run")
    assert back.config["qk_norm"] is True
    for k, v in m.state_dict().items():
        torch.testing.assert_close(back.state_dict()[k], v.to(back.state_dict()[k].device))
    old = {k: v for k, v in m.config.items() if k != "qk_norm"}        # a config written before qk_norm
    assert AnchoredDiffusion.from_config(old).config["qk_norm"] is False
