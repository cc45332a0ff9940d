"""The training log carries the diagnostics of issue 13: every refit's per-unit spread, components and anchor
changes with its seconds, and the encoder / U-Net gradient norms every log_every steps."""
import json

import torch

from dga_fast import AnchoredDiffusion, DynamicGaussianAnchoring
from dga_fast.data import SyntheticShapes
from dga_fast.train import fit


def test_log_has_refit_and_gradient_diagnostics(tmp_path):
    torch.manual_seed(0)
    m = AnchoredDiffusion(image_size=16, num_units=4, unit_dim=8, base_channels=16, channel_mult=(1, 2),
                          num_res_blocks=1, attention_resolutions=(2,), num_heads=2,
                          anchoring=dict(init_components=3, min_cluster_size=4))
    fit(m, SyntheticShapes(16), tmp_path, steps=6, batch_size=8, refit_warmup=2, refit_every=2, refit_samples=96,
        log_every=3, progress=False)
    lines = [json.loads(s) for s in (tmp_path / "log.jsonl").read_text().splitlines()]
    refits = [r for r in lines if r.get("event") == "refit"]
    steps = [r for r in lines if "loss" in r]
    assert [r["step"] for r in refits] == [2, 4, 6]
    for r in refits:
        assert len(r["spread"]) == len(r["components"]) == len(r["anchor_changed"]) == 4
        assert all(s > 0 for s in r["spread"]) and all(1 <= c <= m.anchoring.max_components for c in r["components"])
        assert all(0.0 <= a <= 1.0 for a in r["anchor_changed"]) and r["refit_s"] > 0
    assert refits[0]["anchor_changed"] == [1.0] * 4          # the first refit places every anchor
    for r in refits:
        assert len(r["shift_rel"]) == 4 and all(v >= 0 for v in r["shift_rel"])
        assert all(len(r[k]) == 4 for k in ("n_split", "n_filtered", "n_merged"))
    assert [r["step"] for r in steps] == [3, 6]
    for r in steps:
        assert r["grad_norm_encoder"] >= 0 and r["grad_norm_unet"] > 0
    assert m.last_refit["components"] == refits[-1]["components"]


def test_baseline_log_has_spread_but_no_components(tmp_path):
    m = AnchoredDiffusion(image_size=16, num_units=3, unit_dim=8, base_channels=16, channel_mult=(1, 2),
                          num_res_blocks=1, attention_resolutions=(2,), num_heads=2, anchoring=None)
    fit(m, SyntheticShapes(16), tmp_path, steps=2, batch_size=4, refit_warmup=2, refit_every=2, refit_samples=32,
        log_every=1, progress=False)
    refit = [json.loads(s) for s in (tmp_path / "log.jsonl").read_text().splitlines() if "event" in s][0]
    assert len(refit["spread"]) == 3 and "components" not in refit and "anchor_changed" not in refit


def test_training_log_plot(tmp_path):
    from dga_fast.log_plot import plot_training_log, read_log
    m = AnchoredDiffusion(image_size=16, num_units=3, unit_dim=8, base_channels=16, channel_mult=(1, 2),
                          num_res_blocks=1, attention_resolutions=(2,), num_heads=2,
                          anchoring=dict(init_components=2, min_cluster_size=4))
    fit(m, SyntheticShapes(16), tmp_path, steps=4, batch_size=4, refit_warmup=2, refit_every=2, refit_samples=48,
        log_every=1, progress=False)
    with open(tmp_path / "log.jsonl", "a") as f:
        f.write('{"step": 5, "loss"')                    # a killed run's torn last line is skipped
    steps, refits = read_log(tmp_path / "log.jsonl")
    assert [r["step"] for r in steps] == [1, 2, 3, 4] and [r["step"] for r in refits] == [2, 4]
    png = plot_training_log(tmp_path)
    assert png == tmp_path / "training.png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import pytest
    with pytest.raises(FileNotFoundError, match="log.jsonl"):
        plot_training_log(tmp_path / "nothing")


def test_refit_diagnostics_known_answers():
    """``shift_rel`` is the mean ‖c' − c‖ / ‖c‖ of the refit's own tokens under the new mixture, and the
    component counts add up: components = init + split − filtered − merged, per unit."""
    torch.manual_seed(0)
    m = AnchoredDiffusion(image_size=16, num_units=3, unit_dim=8, base_channels=16, channel_mult=(1, 2),
                          num_res_blocks=1, attention_resolutions=(2,), num_heads=2,
                          anchoring=dict(init_components=6, max_components=10, min_cluster_size=30))
    x = torch.stack([SyntheticShapes(16)[i][0] for i in range(300)])
    m.refit_anchors(x)
    d = m.last_refit
    tok = m.collect_tokens(x)
    rel = ((m.anchoring(tok) - tok).norm(dim=-1) / tok.norm(dim=-1)).mean(0)
    torch.testing.assert_close(torch.tensor(d["shift_rel"]), rel.float(), rtol=1e-4, atol=1e-6)  # stored to 6 decimals
    assert any(v > 0 for v in d["shift_rel"])
    for u in range(3):
        assert d["components"][u] == 6 + d["n_split"][u] - d["n_filtered"][u] - d["n_merged"][u], d
    assert all(v >= 0 for k in ("n_split", "n_filtered", "n_merged") for v in d[k])
    assert sum(d["n_filtered"]) + sum(d["n_merged"]) > 0, d   # 300 tokens, 6 seeds, >= 30 each: some go
    big = DynamicGaussianAnchoring(3, 8, init_components=6, min_cluster_size=120, merge=False).refit(tok)
    info = big.last_refit                                     # at most 2 components of >= 120 of 300 tokens
    assert info["n_merged"].sum() == 0 and bool((big.n_components <= 2).all())
    assert torch.equal(info["n_filtered"], 6 + info["n_split"] - big.n_components), info
