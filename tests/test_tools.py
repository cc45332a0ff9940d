"""The benchmark harness, the demo and the backend switch run end to end (small sizes)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dga_fast import ops
from dga_fast.data import SyntheticShapes
from dga_fast.demo import run_anchor_demo, run_training_demo

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_small_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "throughput.py"), "--size", "small",
                           "--repeats", "1", "--loop-units", "1", "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    res = json.loads(out.read_text())
    provs = {(r["family"], r["provider"]) for r in res["rows"]}
    assert {("refit", "dga_fast"), ("refit", "sklearn-gmm-full"), ("refit", "loop-mvn"),
            ("estep", "dga_fast-reference"), ("estep", "full-covariance")} <= provs
    assert all(r["check"]["ok"] for r in res["rows"])
    assert all(r["median_s"] > 0 for r in res["rows"])
    assert res["torch"] == torch.__version__ and "device" in res
    assert {s["baseline"] for s in res["speedups"]} >= {"sklearn-gmm-full", "loop-mvn", "full-covariance"}
    from dga_fast import native
    if native.available():   # the C++ ops beside their references, with their speed-ups
        assert {("plans-split_plan", "native"), ("plans-filter_plan", "native"),
                ("plans-mixture_spread", "native"), ("estep-kernel", "native"), ("estep", "dga_fast-native")} <= provs
        assert {s["family"] for s in res["speedups"] if s["provider"] == "native"} == {
            "plans-split_plan", "plans-filter_plan", "plans-mixture_spread", "estep-kernel"}
    # plain batched EM at a fixed K against its peers (gmm-gpu is optional)
    assert {("em", "dga_fast"), ("em", "dga_fast-reference"), ("em", "sklearn-gmm-full"), ("hddc", "dga_fast"),
            ("hddc", "sklearn-gmm-full")} <= provs
    assert all(r["check"]["n_iter"] == 20 for r in res["rows"] if r["family"] == "hddc")   # the same iterations
    try:
        import gmm_gpu  # noqa: F401
        assert ("em", "gmm-gpu") in provs and "units_with_nan_labels" in next(
            r["check"] for r in res["rows"] if r["provider"] == "gmm-gpu")
    except ImportError:
        assert "gmm-gpu rows skipped" in proc.stdout
    assert {("train", "pixel"), ("train", "latent"), ("train", "refit")} <= provs
    assert all(r["check"]["items_per_s"] > 0 for r in res["rows"] if r["family"] == "train" and r["mode"] == "step")
    assert any(s["family"] == "train" and s["baseline"] == "pixel" for s in res["speedups"])
    step = [r for r in res["rows"] if r["family"] == "step"]       # the study recipe's training step
    assert [(r["provider"], r["mode"]) for r in step] == [("conv-peak", "1t"), ("tiny-latent-b16", "1t"),
                                                          ("tiny-latent-b16-fast", "1t")]
    assert step[1]["check"]["items_per_s"] > 0 and step[1]["check"]["batch"] == 16
    assert all(r["check"]["gflop_per_s"] > 0 for r in step)
    assert "speed-up refit" in proc.stdout


def test_anchor_demo_writes_plots_and_summary(tmp_path):
    s = run_anchor_demo(tmp_path, units=4, tokens=1500, dim=8, n_plots=2, progress=False)
    assert len(s["plots"]) == 2
    for p in s["plots"]:
        assert (tmp_path / p).stat().st_size > 1000
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["mean_adjusted_rand_index"] >= 0.9
    assert len(summary["n_components"]) == 4


def test_backend_registry():
    """The backend is read from DGA_FAST_BACKEND once, at import (a bad value is a clear error there), and
    switched for a block by dga_fast.use_backend."""
    from dga_fast import use_backend
    before = ops.backend()
    with use_backend("reference"):
        assert ops.backend() == "reference"
        with use_backend("native"):
            assert ops.backend() == "native"
        assert ops.backend() == "reference"
    assert ops.backend() == before
    with pytest.raises(ValueError, match="backend must be one of"):
        with use_backend("bogus"):
            pass
    assert ops.backend() == before
    code = "import dga_fast.ops as o; print(o.backend())"
    env = {**os.environ, "DGA_FAST_BACKEND": "Reference"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "reference", out.stderr[-2000:]
    env["DGA_FAST_BACKEND"] = "bogus"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "DGA_FAST_BACKEND must be one of" in out.stderr


def test_training_demo_short(tmp_path):
    s = run_training_demo(tmp_path, steps=2, progress=False, n_images=2, sample_steps=2, eval_samples=40,
                          ae_steps=2, held_out=32)
    assert s["steps"] == 2
    assert set(s["evaluation"]["scores"]) >= {"mig", "dci_disentanglement", "sap", "modularity", "factor_vae"}
    assert all(0.0 <= v <= 1.0 for v in s["evaluation"]["scores"].values())
    names = list(SyntheticShapes(32).factor_names)
    assert list(s["evaluation"]["informativeness_per_factor"]) == names
    ff = s["evaluation"]["factor_fidelity"]
    assert list(ff["model"]) == names and list(ff["first_stage"]) == names and ff["images"] == 40
    for f in s["files"]:
        assert (tmp_path / f).stat().st_size > 100
    assert {"samples.png", "interchange.png", "reconstructions.png", "loss.png", "summary.json"} <= set(s["files"])
    assert s["first_stage"]["steps"] == 2 and s["first_stage"]["latent_shape"] == [3, 8, 8]
    assert 0 < s["self_reconstruction"]["ratio"] and len(s["interchange_effect_per_unit"]) == 10
    assert (tmp_path / "first_stage" / "checkpoints" / "step_0000002" / "model.safetensors").exists()
    assert (tmp_path / "checkpoints" / "step_0000002" / "model.safetensors").exists()
    # a second demo on that first stage, another diffusion seed: step 1 skipped, the cache made beside it
    again = run_training_demo(tmp_path / "again", steps=1, progress=False, n_images=2, sample_steps=2,
                              eval_samples=None, held_out=32, first_stage=tmp_path / "first_stage", train_seed=3)
    assert again["first_stage"]["reused"] == str(tmp_path / "first_stage") and again["train_seed"] == 3
    assert again["first_stage"]["held_out_psnr_db"] == pytest.approx(s["first_stage"]["held_out_psnr_db"], abs=1e-3)
    assert not (tmp_path / "again" / "first_stage").exists()
    cfg = json.loads((tmp_path / "again" / "config.json").read_text())
    assert cfg["train"]["seed"] == 3 and cfg["dataset"]["first_stage"] == str((tmp_path / "first_stage").resolve())


def test_training_demo_refuses_a_foreign_first_stage(tmp_path):
    from dga_fast.nn import FirstStage
    FirstStage(image_size=16, ch=8, ch_mult=(1, 2), num_res_blocks=1, num_codes=16).save(tmp_path / "fs")
    with pytest.raises(ValueError, match="first_stage .* needs"):
        run_training_demo(tmp_path / "d", steps=1, progress=False, eval_samples=None, first_stage=tmp_path / "fs")
    proc = subprocess.run([sys.executable, "-m", "dga_fast", "demo", "--out", str(tmp_path / "d2"), "--first-stage",
                           str(tmp_path / "missing"), "--no-progress"], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
    assert proc.returncode == 2 and "missing" in proc.stderr


def test_cli_anchors_demo_and_errors(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "dga_fast", "anchors-demo", "--out", str(tmp_path), "--units", "3",
                           "--tokens", "1200", "--dim", "8", "--no-progress"], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "mean ARI" in proc.stdout and (tmp_path / "summary.json").exists()
    proc = subprocess.run([sys.executable, "-m", "dga_fast", "train", "--dataset", "shapes3d", "--out",
                           str(tmp_path / "r"), "--data-dir", str(tmp_path / "none")],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 2 and "3dshapes.h5" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "dga_fast", "train", "--out", str(tmp_path / "r2"),
                           "--image-size", "20", "--no-progress"], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
    assert proc.returncode == 2 and "image_size" in proc.stderr


def test_evaluate_run_writes_metrics_and_plots(tmp_path):
    from dga_fast import AnchoredDiffusion
    from dga_fast.data import SyntheticShapes
    from dga_fast.train import fit
    torch.manual_seed(0)
    model = AnchoredDiffusion(image_size=16, num_units=4, unit_dim=8, base_channels=16, channel_mult=(1, 2),
                              num_res_blocks=1, attention_resolutions=(2,), num_heads=2,
                              anchoring=dict(init_components=3, min_cluster_size=4))
    fit(model, SyntheticShapes(16), tmp_path, steps=4, batch_size=8, refit_warmup=2, refit_every=2,
        refit_samples=64, progress=False,
        run_info={"dataset": {"name": "synthetic-shapes", "data_dir": None, "image_size": 16}})
    proc = subprocess.run([sys.executable, "-m", "dga_fast", "evaluate", str(tmp_path), "--samples", "200",
                           "--plots", "pacmap", "--no-progress"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert {"mig", "dci_disentanglement", "sap", "modularity", "factor_vae", "beta_vae", "infom", "infoe",
            "infoc"} <= set(m["scores"])
    assert all(0.0 <= v <= 1.0 for k, v in m["scores"].items() if k != "explicitness")
    for p in ("dci_importance.png", "mutual_information.png", "anchors_eval.png", "training.png", "pacmap_units.png"):
        assert (tmp_path / p).stat().st_size > 1000
    assert [u["unit"] for u in m["projections"]["pacmap"]] == [0, 1, 2, 3]
    names = list(SyntheticShapes(16).factor_names)
    assert list(m["per_factor"]["informativeness"]) == names
    proc = subprocess.run([sys.executable, "-m", "dga_fast", "evaluate", str(tmp_path), "--samples", "24",
                           "--metrics", "factor_fidelity", "--no-progress"], capture_output=True, text=True, cwd=ROOT,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    fidelity = json.loads((tmp_path / "metrics.json").read_text())["per_factor"]["factor_fidelity"]
    assert list(fidelity) == names and all(0.0 <= v for v in fidelity.values())
    bad = subprocess.run([sys.executable, "-m", "dga_fast", "evaluate", str(tmp_path), "--plots", "tsne"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert bad.returncode == 2 and "unknown plot" in bad.stderr
    bad = subprocess.run([sys.executable, "-m", "dga_fast", "evaluate", str(tmp_path), "--metrics", "nope"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert bad.returncode == 2 and "unknown metric" in bad.stderr


def test_structure_has_no_import_circle_between_cli_demo_evaluate():
    """cli dispatches to demo and evaluate; neither imports cli, evaluate does not import demo, and the training
    loop calls the refit schedule instead of containing it (issue 14)."""
    import ast

    def imports(name):
        tree = ast.parse((ROOT / "dga_fast" / f"{name}.py").read_text())
        return {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 1 and n.module}
    assert "cli" not in imports("demo") | imports("evaluate")
    assert "demo" not in imports("evaluate")
    assert "runs" in imports("evaluate") and "runs" in imports("cli")
    train_src = (ROOT / "dga_fast" / "train.py").read_text()
    assert "refit_anchors" not in train_src and "refit_warmup) %" not in train_src
    assert "RefitSchedule" in train_src


def test_factor_probe_reports_every_factor(tmp_path):
    """benchmarks/factor_probe.py on an untrained tiny checkpoint: one probe accuracy per factor in [0, 1], one
    eta2 per unit in [0, 1], one level mean per level of the best unit."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from factor_probe import main
    from dga_fast import AnchoredDiffusion
    from dga_fast.data import SyntheticShapes
    torch.manual_seed(0)
    AnchoredDiffusion(image_size=16, num_units=3, unit_dim=4, base_channels=8, channel_mult=(1, 2),
                      num_res_blocks=1, attention_resolutions=(2,), num_heads=2, anchoring=None).save(tmp_path / "ck")
    (row,) = main([str(tmp_path / "ck"), "--images", "90", "--out", str(tmp_path / "p.json")])
    data = SyntheticShapes(16)
    assert list(row["probe"]) == list(data.factor_names)
    assert all(0.0 <= v <= 1.0 for v in row["probe"].values())
    for name, size in zip(data.factor_names, data.factor_sizes):
        assert len(row["eta2"][name]) == 3 and all(0.0 <= e <= 1.0 for e in row["eta2"][name])
        assert len(row["level_means"][name]) <= size
    assert json.loads((tmp_path / "p.json").read_text())["rows"][0]["probe"] == row["probe"]
    with pytest.raises(ValueError, match="--images"):
        main([str(tmp_path / "ck"), "--images", "5"])


def test_preset_variant_trains_the_changed_values(tmp_path):
    """benchmarks/preset_variant.py: the run's config records the --set values, the preset itself is left as
    it was, and a malformed --set is a clear error."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from preset_variant import main
    from dga_fast.presets import PRESETS
    before = json.dumps(PRESETS["tiny"])
    rc = main(["--preset", "tiny", "--set", "model.num_units=3", "--set", 'model.encoder_norm="batch"', "--",
               "--steps", "2", "--batch-size", "4", "--out", str(tmp_path / "run"), "--no-progress"])
    assert rc == 0
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["model"]["num_units"] == 3 and cfg["model"]["encoder_norm"] == "batch"
    assert json.dumps(PRESETS["tiny"]) == before
    for bad in ("num_units=3", "optim.lr=1", "model.encoder_norm=batch"):
        with pytest.raises(ValueError, match="--set"):
            main(["--preset", "tiny", "--set", bad])
    with pytest.raises(SystemExit):   # the demo trains tiny-latent only
        main(["--command", "demo", "--preset", "tiny", "--", "--steps", "1"])


def test_sampler_check_reports_every_sampler_and_draw(tmp_path):
    """benchmarks/sampler_check.py on an untrained tiny latent checkpoint whose clamp was never fitted: one
    ratio per sampler and draw, the clamp fitted from the latents, and the checkpoint's own clamp untouched."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from sampler_check import SAMPLERS, main
    from dga_fast import AnchoredDiffusion, FirstStage
    torch.manual_seed(0)
    fs = FirstStage(image_size=16, ch=8, ch_mult=(1, 2), num_res_blocks=1, num_codes=64)
    m = AnchoredDiffusion(image_size=16, num_units=3, unit_dim=4, base_channels=8, channel_mult=(1, 2),
                          num_res_blocks=1, attention_resolutions=(2,), num_heads=2, anchoring=None, first_stage=fs)
    m.latent_scale_fitted.fill_(True)                   # as a checkpoint from before the clamp: latent_clip 0
    m.save(tmp_path / "ck")
    rows = main([str(tmp_path / "ck"), "--images", "4", "--draws", "2", "--steps", "2",
                 "--out", str(tmp_path / "s.json")])
    assert list(rows) == list(SAMPLERS)
    for draws in rows.values():
        assert len(draws) == 2 and all(d["ratio"] > 0 and 0 <= d["closer_to_other"] <= 1 for d in draws)
    assert json.loads((tmp_path / "s.json").read_text())["latent_clip"] > 0
    assert float(AnchoredDiffusion.load(tmp_path / "ck").latent_clip) == 0


def test_dyga_quality_reports_a_table_per_jitter(tmp_path, capsys):
    """benchmarks/dyga_quality.py --setting hard: one run per jitter, a row per unit with the Gaussians found
    and the ARI, the single-value units checked, and the JSON written."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from dyga_quality import main
    out = main(["--setting", "hard", "--n", "3000", "--jitter", "0.1", "0.15", "--out", str(tmp_path / "q.json")])
    assert [r["jitter"] for r in out["runs"]] == [0.1, 0.15]
    for run in out["runs"]:
        assert len(run["units"]) == 20 and run["single_value_units_one_gaussian"]
        assert all(0.0 <= u["ari"] <= 1.0 for u in run["units"])
        assert all(u["ok"] == (u["ari"] >= 0.95 and abs(u["found"] - u["levels"]) <= 0.1 * u["levels"])
                   for u in run["units"])
    assert json.loads((tmp_path / "q.json").read_text())["runs"][1]["units"] == out["runs"][1]["units"]
    assert "s0 j0.15" in capsys.readouterr().out


def test_dyga_quality_dying_setting_has_one_row_per_noise_level():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from dyga_quality import DYING_NOISE, main
    (run,) = main(["--setting", "dying", "--n", "1500"])["runs"]
    assert [u["near_collapsed"] for u in run["units"]] == [r for r in DYING_NOISE for _ in range(6)]
    assert all(u["levels"] == 1 for u in run["units"]) and run["mean_ari_multi_level"] is None


def test_profile_step_reports_the_ranges_and_operators(tmp_path):
    """benchmarks/profile_step.py: the step's ranges (encoder, anchoring, U-Net, backward, AdamW) are found in the
    profile, with operator counts and a top-operator table."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from profile_step import RANGES, main
    threads = torch.get_num_threads()
    try:
        out = main(["--batch", "2", "--steps", "1", "--threads", "1", "--out", str(tmp_path / "p.json")])
    finally:
        torch.set_num_threads(threads)
    (row,) = out["rows"]
    assert set(row["ranges_ms"]) == set(RANGES) and all(v > 0 for v in row["ranges_ms"].values())
    assert row["aten_calls_per_step"] > 100 and row["top_ops"] and row["images_per_s"] > 0
    assert json.loads((tmp_path / "p.json").read_text())["rows"][0]["batch"] == 2


def test_diffusers_peer_matches_the_tiny_latent_unet_layout():
    """The optional diffusers peer of the step rows: the same channels, levels with attention, heads and
    cross-attention width as the tiny-latent U-Net, and an output of the latents' shape."""
    pytest.importorskip("diffusers", reason="diffusers is an optional benchmark peer (make bench installs it)")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench.step import diffusers_unet
    from dga_fast.presets import PRESETS
    cfg = PRESETS["tiny-latent"]["model"]
    net = diffusers_unet(cfg, (3, 8, 8))
    assert net.config.block_out_channels == (64, 128, 128) and net.config.cross_attention_dim == cfg["unit_dim"]
    assert net.config.down_block_types == ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D")
    out = net(torch.randn(2, 3, 8, 8), torch.tensor([1, 500]), torch.randn(2, cfg["num_units"], cfg["unit_dim"])).sample
    assert out.shape == (2, 3, 8, 8)


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU the script runs for minutes: this is its CPU mode")
def test_gpu_check_prints_its_plan_and_exits_0_without_a_gpu(tmp_path):
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHON": sys.executable})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no CUDA device" in proc.stdout
    for step in ("build", "tests", "kernels", "step", "paper", "study"):
        assert f"  {step} (at most" in proc.stdout
    assert not (tmp_path / "out" / "summary.json").exists()


def test_gpu_paper_run_script_runs_with_small_numbers(tmp_path):
    """The paper-preset part of gpu_check.sh, end to end on the CPU with two steps of everything."""
    env = {**os.environ, "AE_STEPS": "2", "STEPS": "2", "BATCH": "2"}
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_paper_run.sh"), sys.executable, str(tmp_path)],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert any(r.get("event") == "refit" for r in rows) and any("images_per_s" in r for r in rows)
    assert (tmp_path / "first_stage_32" / "config.json").exists()
