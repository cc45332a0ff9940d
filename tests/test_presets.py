"""The `paper` preset against the README's hyperparameter table (issue 14), and one training step of it."""
import ast
import re
from pathlib import Path

import pytest
import torch

from dga_fast import AnchoredDiffusion
from dga_fast.presets import PRESETS

README = Path(__file__).resolve().parents[1] / "README.md"


def paper_table():
    """Rows ``(path, official, ours, note)`` of the README's paper-preset table and its parameter counts."""
    text = README.read_text()
    section = text[text.index("### The paper preset"):]
    section = section[:section.index("\n### ", 5)]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and re.fullmatch(r"`[a-z_.]+`", cells[0]):
            rows.append((cells[0].strip("`"), cells[1].strip("`"), cells[2].strip("`"), cells[3]))
    counts = {k: int(v.replace(",", "")) for k, v in re.findall(r"(\w+) parameters: ([\d,]+)", section)}
    return rows, counts


def lookup(path: str):
    node = PRESETS["paper"]
    for part in path.split("."):
        node = node[part]
    return node


def plain(v):
    return list(v) if isinstance(v, (tuple, list)) else v


def test_every_row_of_the_table_is_the_preset():
    rows, _ = paper_table()
    assert len(rows) >= 25
    for path, official, ours, note in rows:
        assert plain(lookup(path)) == plain(ast.literal_eval(ours)), path
        if not note.lower().startswith("difference"):
            assert plain(ast.literal_eval(official)) == plain(ast.literal_eval(ours)), path


@pytest.fixture(scope="module")
def paper_model():
    torch.manual_seed(0)
    return AnchoredDiffusion(**PRESETS["paper"]["model"])


def test_parameter_counts(paper_model):
    _, counts = paper_table()
    n = lambda mod: sum(p.numel() for p in mod.parameters())   # noqa: E731
    assert counts == {"Trainable": n(paper_model) - n(paper_model.first_stage),
                      "Extractor": n(paper_model.encoder), "UNet": n(paper_model.unet),
                      "Frozen": n(paper_model.first_stage)}
    assert isinstance(paper_model.encoder, __import__("dga_fast").nn.PaperFeatureExtractor)
    assert paper_model.diffusion_shape == (3, 16, 16)


def test_one_training_step_on_cpu_at_a_reduced_batch(paper_model, tmp_path):
    from dga_fast.data import SyntheticShapes
    from dga_fast.train import fit
    data = SyntheticShapes(64)
    x = data.get_batch(torch.arange(4))[0]
    paper_model.fit_latent_scale(paper_model.first_stage.encode(x))
    before = {k: v.clone() for k, v in paper_model.unet.state_dict().items()}
    h = fit(paper_model, data, None, **{**PRESETS["paper"]["train"], "steps": 1, "batch_size": 2, "progress": False})
    assert h["step"] == 1 and torch.isfinite(torch.tensor(h["losses"][0][1]))
    assert any(not torch.equal(before[k], v) for k, v in paper_model.unet.state_dict().items())
