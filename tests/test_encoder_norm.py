"""The encoder's normalisation (issue 13): every conv output and the head's hidden pre-activations are
normalised, so the head cannot slide into SiLU's flat negative side for every image at once; checkpoints made
without it ("none", the configs that lack ``encoder_norm``) still load."""
import json

import pytest
import torch
from hypothesis import given, settings, strategies as st

from dga_fast import AnchoredDiffusion
from dga_fast.nn import FeatureExtractor


@settings(deadline=None, max_examples=12)
@given(b=st.integers(2, 5), size=st.sampled_from([8, 16, 32]), units=st.integers(1, 7),
       shift=st.floats(-50, 50), seed=st.integers(0, 2**16))
def test_group_norm_head_keeps_half_the_hidden_units_live(b, size, units, shift, seed):
    torch.manual_seed(seed)
    enc = FeatureExtractor(size, 3, units, 4, channels=8, norm="group")
    with torch.no_grad():                      # push every hidden pre-activation far negative, as issue 13's run
        enc.head[1].bias.fill_(shift)
    hid = enc.head_hidden(torch.rand(b, 3, size, size) * 2 - 1)          # [B, 256]
    # LayerNorm: per image, zero mean and unit variance over the 256 features, whatever the bias
    torch.testing.assert_close(hid.mean(-1), torch.zeros(b), atol=1e-4, rtol=0)
    assert ((hid > 0).float().mean(-1) > 0.05).all()


def test_no_norm_head_can_die():
    enc = FeatureExtractor(16, 3, 2, 4, channels=8, norm="none")
    with torch.no_grad():
        enc.head[1].bias.fill_(-50.0)
    assert (enc.head_hidden(torch.rand(3, 3, 16, 16)) < 0).all()           # the failure the norm prevents


@pytest.mark.parametrize("norm", ["group", "batch", "none"])
def test_norms_build_and_train_step(norm):
    torch.manual_seed(0)
    m = AnchoredDiffusion(image_size=16, num_units=3, unit_dim=4, base_channels=8, channel_mult=(1, 2),
                          num_res_blocks=1, attention_resolutions=(2,), num_heads=2, anchoring=None,
                          encoder_norm=norm)
    assert torch.isfinite(m.loss(torch.rand(4, 3, 16, 16)))
    tokens = m.encode(torch.rand(4, 3, 16, 16))             # the U-Net's zero-init output gives no grad yet:
    (tokens * torch.randn_like(tokens)).sum().backward()   # a random upstream gradient on the tokens
    assert m.encoder.head[1].weight.grad.abs().sum() > 0
    kinds = {type(x).__name__ for x in m.encoder.modules()}
    assert {"group": {"GroupNorm", "LayerNorm"}, "batch": {"BatchNorm2d", "BatchNorm1d"},
            "none": set()}[norm] <= kinds
    if norm == "none":
        assert not kinds & {"GroupNorm", "LayerNorm", "BatchNorm2d", "BatchNorm1d"}


def test_bad_norm():
    with pytest.raises(ValueError, match="encoder norm"):
        FeatureExtractor(16, norm="layer")


def test_config_without_encoder_norm_loads_as_none(tmp_path):
    m = AnchoredDiffusion(image_size=16, num_units=2, unit_dim=4, base_channels=8, channel_mult=(1, 2),
                          num_res_blocks=1, attention_resolutions=(2,), num_heads=2, anchoring=None,
                          encoder_norm="none")
    m.save(tmp_path / "ck")
    cfg_path = tmp_path / "ck" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    del cfg["model"]["encoder_norm"]                # as written before issue 13
    cfg_path.write_text(json.dumps(cfg))
    back = AnchoredDiffusion.load(tmp_path / "ck")
    assert back.config["encoder_norm"] == "none"
    x = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(back.encode(x), m.encode(x))


@settings(deadline=None, max_examples=8)
@given(b=st.integers(2, 6), units=st.integers(1, 5), scale=st.floats(1e-3, 1e3), seed=st.integers(0, 2**16))
def test_unit_norm_standardises_every_unit_over_the_batch(b, units, scale, seed):
    """unit_norm="batch": in training each unit has zero mean and unit variance over the batch, whatever the
    head's scale (a unit cannot shrink to a constant); eval uses the running statistics; the model saves and
    loads it."""
    torch.manual_seed(seed)
    enc = FeatureExtractor(16, 3, units, 4, channels=8, unit_norm="batch")
    with torch.no_grad():
        enc.head[-1].weight.mul_(scale)
    x = torch.rand(b, 3, 16, 16)
    raw = enc.head(enc.conv(x))                                             # [B, U], the oracle
    ref = (raw - raw.mean(0)) / (raw.var(0, unbiased=False) + 1e-5).sqrt()
    torch.testing.assert_close(enc.latent_units(x), ref, atol=1e-4, rtol=1e-4)
    enc.eval()
    rm, rv = enc.unit_norm.running_mean, enc.unit_norm.running_var
    torch.testing.assert_close(enc.latent_units(x), (raw - rm) / (rv + 1e-5).sqrt(), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("kind", ["batch", "whiten"])
def test_unit_norm_in_the_model_and_bad_values(tmp_path, kind):
    m = AnchoredDiffusion(image_size=16, num_units=3, unit_dim=4, base_channels=8, channel_mult=(1, 2),
                          num_res_blocks=1, attention_resolutions=(2,), num_heads=2, anchoring=None,
                          unit_norm=kind)
    assert torch.isfinite(m.loss(torch.rand(4, 3, 16, 16)))
    m.eval()
    m.save(tmp_path / "ck")
    back = AnchoredDiffusion.load(tmp_path / "ck").eval()      # the running statistics came back too
    assert back.config["unit_norm"] == kind
    x = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(back.encode(x), m.encode(x))
    with pytest.raises(ValueError, match="unit_norm"):
        FeatureExtractor(16, unit_norm="layer")
    with pytest.raises(ValueError, match="unit_norm"):
        AnchoredDiffusion(image_size=16, encoder_arch="paper", unit_norm="batch", anchoring=None)
