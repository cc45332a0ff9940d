"""benchmarks/ablation.py end to end at the smoke budget on a small untrained first stage: pieces train and
score resumably, a second call reuses the scores, and pieces merge into one table."""
import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


@pytest.fixture(scope="module")
def first_stage(tmp_path_factory):
    from dga_fast.nn import FirstStage
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("fs") / "first_stage"
    FirstStage(image_size=16, ch=8, ch_mult=(1, 2), num_res_blocks=1, num_codes=16).save(d)
    return d


def test_study_pieces_resume_and_merge(first_stage, tmp_path, capsys):
    import ablation
    common = ["--first-stage", str(first_stage), "--budget", "smoke", "--runs-dir", str(tmp_path / "runs"),
              "--seeds", "0"]
    assert ablation.main(common + ["--variants", "baseline,published", "--out", str(tmp_path / "a")]) == 0
    a = json.loads((tmp_path / "a.json").read_text())
    assert {r["variant"] for r in a["runs"]} == {"baseline", "published"}
    names = ["floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation"]
    for r in a["runs"]:
        assert r["step"] == 4 and 0 <= r["factor_vae"] <= 1 and 0 <= r["anchor_purity"] <= 1
        assert len(r["n_components"]) == 3 and r["images"] == 4 * 4     # 4 steps of the smoke budget's batch 4
        assert list(r["informativeness_per_factor"]) == names and list(r["factor_fidelity"]) == names
    # what DyGA did at the last refit, from the run's log: nothing without anchoring (and none of the published
    # variant's refits, one per epoch of 48 images, falls in its 4 steps)
    assert all(r["refits"] == 0 and r["shift_rel"] is None and r["components_mean"] is None for r in a["runs"])
    # --eval-samples: the same runs scored on more samples, stored beside the budget's scores, never merged with them
    assert ablation.main(common + ["--variants", "baseline", "--eval-samples", "100", "--out",
                                   str(tmp_path / "a100")]) == 0
    a100 = json.loads((tmp_path / "a100.json").read_text())
    scores = tmp_path / "runs" / "synthetic-shapes" / "baseline-seed0" / "scores"
    assert a100["runs"][0]["eval_samples"] == 100 and (scores / "step_0000004-samples100.json").is_file()
    assert a["runs"][0]["eval_samples"] == 40 and "metrics on 100 samples" in a100["what"]
    with pytest.raises(SystemExit, match="metric samples"):
        ablation.main(["--merge", str(tmp_path / "a.json"), str(tmp_path / "a100.json"), "--out", str(tmp_path / "m")])
    # benchmarks/metric_noise.py scores a stored run as the study did: its seed 0 gives the study's numbers
    import metric_noise
    base_run = tmp_path / "runs" / "synthetic-shapes" / "baseline-seed0"
    assert metric_noise.main([str(base_run), "--seeds", "0,1", "--budget", "smoke", "--out",
                              str(tmp_path / "noise.json")]) == 0
    noise = json.loads((tmp_path / "noise.json").read_text())[str(base_run)]
    stored = [r for r in a["runs"] if r["variant"] == "baseline"][0]
    for k in metric_noise.SCORES:
        assert noise[k]["values"][0] == pytest.approx(stored[k], abs=1e-9) and noise[k]["std"] >= 0
    run = tmp_path / "runs" / "synthetic-shapes" / "published-seed0"
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["model"]["anchoring"]["shift"] == "published" and cfg["train"]["refit_schedule"] == "epoch"
    assert cfg["model"]["skip_dropout"] == 0.2
    base = json.loads((tmp_path / "runs" / "synthetic-shapes" / "baseline-seed0" / "config.json").read_text())
    assert base["model"]["anchoring"] is None and base["model"]["skip_dropout"] == 0.0
    # the same piece again: nothing retrained, the stored scores come back
    stamp = (run / "scores" / "step_0000004.json").stat().st_mtime_ns
    assert ablation.main(common + ["--variants", "published", "--out", str(tmp_path / "b")]) == 0
    assert (run / "scores" / "step_0000004.json").stat().st_mtime_ns == stamp
    b = json.loads((tmp_path / "b.json").read_text())
    assert b["runs"][0]["factor_vae"] == [r for r in a["runs"] if r["variant"] == "published"][0]["factor_vae"]
    assert ablation.main(common + ["--variants", "dyga+skip_dropout", "--curve", "--out", str(tmp_path / "c")]) == 0
    c = json.loads((tmp_path / "c.json").read_text())
    assert [r["step"] for r in c["runs"]] == [2, 4]                # every checkpoint scored
    assert c["runs"][-1]["refits"] == 2 and c["runs"][-1]["shift_rel"] > 0   # refits at steps 2 and 4
    assert 1 <= c["runs"][-1]["components_mean"] <= 4
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"      # the learning curves
    assert ablation.main(["--merge", str(tmp_path / "a.json"), str(tmp_path / "c.json"), "--out",
                          str(tmp_path / "all")]) == 0
    s = json.loads((tmp_path / "all.json").read_text())["summary"]["synthetic-shapes"]
    assert list(s) == ["baseline", "dyga+skip_dropout", "published"]
    assert s["baseline"]["factor_vae"]["n"] == 1
    md = (tmp_path / "all.md").read_text()
    assert "| baseline |" in md and "dyga+skip_dropout" in md and "difference" in md
    # paired by seed: the variant's score minus the baseline's of the same seed
    pairs = json.loads((tmp_path / "all.json").read_text())["paired"]["synthetic-shapes"]
    by = {r["variant"]: r for r in a["runs"]}
    want = by["published"]["factor_vae"] - by["baseline"]["factor_vae"]
    assert pairs["published"]["factor_vae"]["mean"] == pytest.approx(want, abs=1e-12)
    assert pairs["published"]["factor_vae"]["wins"] == int(want > 0) and "| published − baseline |" in md


def test_study_bad_input(tmp_path):
    import ablation
    with pytest.raises(SystemExit):
        ablation.main(["--budget", "smoke", "--out", str(tmp_path / "x")])          # no first stage
    with pytest.raises(FileNotFoundError, match="first-stage"):
        ablation.main(["--first-stage", str(tmp_path / "nope"), "--out", str(tmp_path / "x")])
    with pytest.raises(SystemExit, match="unknown variants"):
        ablation.main(["--first-stage", str(tmp_path), "--variants", "dyga,magic", "--out", str(tmp_path / "x")])


def test_a_run_of_another_budget_is_not_continued(first_stage, tmp_path):
    import ablation
    runs = tmp_path / "runs" / "synthetic-shapes" / "baseline-seed0"
    args = ["--first-stage", str(first_stage), "--budget", "smoke", "--runs-dir", str(tmp_path / "runs"),
            "--seeds", "0", "--variants", "baseline", "--out", str(tmp_path / "a")]
    assert ablation.main(args) == 0
    cfg = json.loads((runs / "config.json").read_text())
    cfg["study"]["budget"] = "cpu"
    (runs / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="another --runs-dir"):
        ablation.main(args)


def test_variant_options_reach_the_model_config(first_stage):
    """Every variant's switches land in the run's configs: anchoring and skip dropout, the published DyGA, and a
    tuned variant's DyGA options on top of the preset's."""
    import study_job
    from dga_fast.nn import FirstStage
    fs = FirstStage.load(first_stage)
    cfg = {v: study_job._configs({"budget": "smoke", "variant": v, "seed": 3}, fs) for v in study_job.VARIANTS}
    assert cfg["baseline"][0]["anchoring"] is None and cfg["baseline"][0]["skip_dropout"] == 0.0
    assert cfg["skip_dropout"][0]["anchoring"] is None and cfg["skip_dropout"][0]["skip_dropout"] == 0.2
    strong, _ = cfg["dyga+skip_dropout@align0.5"]
    plain, train = cfg["dyga+skip_dropout"]
    assert cfg["dyga"][0]["anchoring"] == plain["anchoring"] and cfg["dyga"][0]["skip_dropout"] == 0.0
    assert plain["anchoring"].get("align_max", 0.1) == 0.1          # the preset keeps DyGA's default
    assert strong["anchoring"] == {**plain["anchoring"], "align_max": 0.5} and strong["skip_dropout"] == 0.2
    fixed, _ = cfg["dyga+skip_dropout@fixed0.3"]
    assert fixed["anchoring"] == {**plain["anchoring"], "align": 0.3} and fixed["skip_dropout"] == 0.2
    assert cfg["published"][0]["anchoring"]["shift"] == "published" and train["seed"] == 3


def test_pieces_of_different_first_stages_are_not_merged(tmp_path):
    import ablation
    row = {"dataset": "synthetic-shapes", "variant": "baseline", "seed": 0, "step": 4, "budget": "smoke",
           **{k: 0.5 for k in ablation.METRICS}}
    for name, fp, seed in (("a", "f" * 64, 0), ("b", "f" * 64, 1), ("c", "e" * 64, 2)):
        (tmp_path / f"{name}.json").write_text(json.dumps({"first_stage_fingerprint": fp,
                                                           "runs": [{**row, "seed": seed}]}))
    assert ablation.main(["--merge", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--out",
                          str(tmp_path / "ab")]) == 0
    assert json.loads((tmp_path / "ab.json").read_text())["first_stage_fingerprint"] == "f" * 64
    with pytest.raises(SystemExit, match="different first stages"):
        ablation.main(["--merge", str(tmp_path / "a.json"), str(tmp_path / "c.json"), "--out", str(tmp_path / "ac")])


def test_divergence_sweep_and_probe_run_end_to_end(first_stage, tmp_path):
    """benchmarks/divergence_sweep.py trains and summarises its runs (the guard replayed on every step's loss);
    benchmarks/divergence_probe.py continues one of them from a checkpoint and records every layer's numbers."""
    import divergence_probe
    import divergence_sweep
    out = tmp_path / "sweep"
    assert divergence_sweep.main(["--first-stage", str(first_stage), "--budget", "smoke", "--dataset",
                                  "synthetic-squares", "--lrs", "1e-3", "--seeds", "0", "--steps", "4",
                                  "--runs-dir", str(tmp_path / "runs"), "--model", "qk_norm=true",
                                  "--out", str(out)]) == 0
    row = json.loads(out.with_suffix(".json").read_text())["rows"][0]
    assert row["finished"] and row["diverged"] is False and row["model"] == {"qk_norm": True}
    run = tmp_path / "runs" / "lr0.001" / "synthetic-squares" / "baseline-seed0"
    assert json.loads((run / "config.json").read_text())["model"]["qk_norm"] is True
    assert divergence_probe.main(["--run", str(run), "--from-step", "2", "--steps", "1", "--first-stage",
                                  str(first_stage), "--work", str(tmp_path / "work"), "--out",
                                  str(tmp_path / "probe.json")]) == 0
    rows = json.loads((tmp_path / "probe.json").read_text())["rows"]
    assert [r["step"] for r in rows] == [3]
    r = rows[0]
    assert r["loss"] > 0 and r["grad"]["unet.out.2"] > 0 and r["update"] and r["act"]["unet"] > 0
    assert all(v <= 8 ** 0.5 + 1e-3 for v in r["attn"].values())   # qk_norm: |logit| <= sqrt(d_head) (gains 1)
