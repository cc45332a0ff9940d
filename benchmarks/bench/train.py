"""Row family ``train``: a training step of pixel vs latent diffusion, and one DyGA refit of the training loop."""
from __future__ import annotations

import math

import torch

from .harness import SIZES, Case, sync

def family_train(args, device) -> list[Case]:
    """One optimizer step (loss, backward, AdamW) of the ``small`` model at 64×64, pixel diffusion against
    latent diffusion on the official first stage's 16×16×3 latents (same widths, same batch; the latents come
    precomputed, as from the latent cache), and the DyGA refit (encode ``refit`` images + refit) whose cost
    the published schedule pays once per epoch."""
    from dga_fast import AnchoredDiffusion, FirstStage
    from dga_fast.data import SyntheticShapes
    from dga_fast.presets import PRESETS

    B = {"small": 2, "default": 4, "large": 64}[args.size]
    n_refit = {"small": 256, "default": 1024, "large": 10_000}[args.size]
    cfg = {**PRESETS["small"]["model"], "image_size": 64}
    ds = SyntheticShapes(64)
    g = torch.Generator().manual_seed(args.seed)
    x = ds.get_batch(torch.randint(0, len(ds), (B,), generator=g))[0].to(device)
    x_refit = ds.get_batch(torch.randint(0, len(ds), (n_refit,), generator=g))[0]
    torch.manual_seed(args.seed)
    fs = FirstStage(image_size=64).to(device).eval()
    with torch.no_grad():
        z = fs.encode(x)
    models = {"pixel": AnchoredDiffusion(**cfg).to(device),
              "latent": AnchoredDiffusion(**cfg, first_stage=fs).to(device)}
    models["latent"].fit_latent_scale(z)
    cases = []
    for name, m in models.items():
        opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-4)
        lat = z if name == "latent" else None

        def step(m=m, opt=opt, lat=lat):
            loss = m.loss(x, generator=torch.Generator(device).manual_seed(0), latents=lat)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return float(loss.detach())

        def check(loss):
            return {"ok": math.isfinite(loss), "loss": round(loss, 4), "batch": B}
        cases.append(Case("train", name, "step", step, check, items=B,
                          note=f"small model, 64x64 images, batch {B}; {'16x16x3 latents' if lat is not None else 'pixels'}"))
    lat_model = models["latent"]
    lat_model.anchoring.progress = False

    def refit():
        lat_model.refit_anchors(x_refit.to(device))
        return lat_model.last_refit

    def check_refit(d):
        return {"ok": all(math.isfinite(v) for v in d["spread"]), "components": d.get("components")}
    cases.append(Case("train", "refit", "epoch", refit, check_refit, repeats=1, warmup=False,
                      note=f"DyGA refit on {n_refit} images (encode + refit), once per epoch in the published "
                           f"schedule; an epoch of Shapes3D is 480,000 images"))
    return cases
