"""Worker of tests/test_distributed.py: run on several CPU processes (gloo) by torchrun,
``python -m torch.distributed.run --standalone --nproc_per_node 2 tests/ddp_worker.py {refit,train} OUT``."""
import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from dga_fast import distributed as dist_


def same_on_all_ranks(t: torch.Tensor) -> bool:
    """Whether ``t`` is bit-identical on every rank."""
    t = t.detach().cpu()
    t = t.to(torch.uint8) if t.dtype == torch.bool else t.contiguous()
    bufs = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(bufs, t)
    return all(torch.equal(b, t) for b in bufs)


def refit(out: Path):
    from safetensors.torch import save_file

    from dga_fast import DynamicGaussianAnchoring
    from dga_fast.data import make_unit_tokens
    r, w = dist.get_rank(), dist.get_world_size()
    tokens = make_unit_tokens(4, 3000, 8, seed=3).tokens
    cuts = [0, 1300, 3000] if w == 2 else torch.linspace(0, 3000, w + 1).long().tolist()   # uneven shards
    d = DynamicGaussianAnchoring(4, 8, seed=0, search_samples=1024).refit(tokens[cuts[r]:cuts[r + 1]])
    same = {k: same_on_all_ranks(v) for k, v in d.state_dict().items()}
    if r == 0:
        save_file({k: v.contiguous() for k, v in d.state_dict().items()}, str(out / "refit.safetensors"))
        (out / "refit.json").write_text(json.dumps({"same": same, "world": d.last_refit["world_size"]}))


def train(out: Path):
    from dga_fast import AnchoredDiffusion
    from dga_fast.data import SyntheticShapes
    from dga_fast.train import fit
    torch.manual_seed(dist.get_rank())    # different initial weights per rank: DDP must start all from rank 0's
    model = AnchoredDiffusion(image_size=16, num_units=4, unit_dim=8, base_channels=16, channel_mult=(1, 2),
                              num_res_blocks=1, attention_resolutions=(2,), num_heads=2, skip_dropout=0.2,
                              anchoring=dict(init_components=3, max_components=6, em_iters=5,
                                             min_cluster_size=4))
    checks = []

    def callback(step, m):
        checks.append({"step": step, "weights": all(same_on_all_ranks(p) for p in m.parameters()),
                       "buffers": all(same_on_all_ranks(b) for b in m.buffers())})

    hist = fit(model, SyntheticShapes(16), out, steps=5, batch_size=4, refit_warmup=2, refit_every=2,
               refit_samples=40, ckpt_every=5, progress=False, callback=callback)
    if dist.get_rank() == 0:
        (out / "train.json").write_text(json.dumps({"checks": checks, "refit_steps": hist["refit_steps"],
                                                    "fitted": bool(model.anchoring.fitted)}))


if __name__ == "__main__":
    assert dist_.init_from_env("cpu"), "launch with torchrun --nproc_per_node >= 2"
    clean = False
    try:
        {"refit": refit, "train": train}[sys.argv[1]](Path(sys.argv[2]))
        clean = True
    finally:
        dist_.shutdown(clean)
    # after a clean run, leave without the interpreter's teardown: about 1 run in 15 under load, a static
    # destructor aborted a rank there ("terminate called without an active exception", no Python frame on the
    # stack, after train.json was written); a barrier before destroy_process_group did not prevent it
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
