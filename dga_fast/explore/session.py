"""The explorer's model side, without the web: one trained run loaded once, token edits (an anchor's mean, an
interpolation between two anchors, a unit swapped in from another image), and generation with one fixed noise
draw, so that an edit shows that unit's effect only.

Tokens travel as plain nested lists ``[U][Dc]`` of float32 values (exact through JSON).
"""
from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import numpy as np
import torch


def _image_png(img: torch.Tensor) -> bytes:  # [C, H, W] in [0, 1]
    from PIL import Image
    a = (img.detach().float().clamp(0, 1).cpu() * 255).round().to(torch.uint8)
    a = a.expand(3, -1, -1) if a.shape[0] == 1 else a[:3]
    buf = io.BytesIO()
    Image.fromarray(a.permute(1, 2, 0).numpy()).save(buf, format="PNG")
    return buf.getvalue()


def _heat_png(m: torch.Tensor) -> bytes:  # [H, W] attention weights
    import matplotlib
    cmap = matplotlib.colormaps["magma"]
    m = m.detach().float().cpu()
    m = (m - m.min()) / (m.max() - m.min()).clamp_min(1e-12)
    rgb = torch.from_numpy(cmap(m.numpy())[..., :3]).permute(2, 0, 1).float()
    return _image_png(rgb)


class ExploreSession:
    """``run_dir``'s latest checkpoint and its dataset. ``steps``: DDIM steps per generated image; ``seed``: the
    one noise draw every generation uses; ``sample_tokens``: dataset images whose tokens draw the unit plots."""

    def __init__(self, run_dir, steps: int = 25, seed: int = 0, device: str = "cpu", sample_tokens: int = 512):
        from ..checkpoint import latest_checkpoint
        from ..runs import load_run
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise FileNotFoundError(f"RUN_DIR {run_dir}: no such directory")
        if latest_checkpoint(run_dir) is None:
            raise FileNotFoundError(f"RUN_DIR {run_dir} holds no checkpoint (checkpoints/step_*): train it first "
                                    f"(python -m dga_fast train --out {run_dir} ...)")
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"--steps must be an int >= 1, got {steps!r}")
        self.run_dir, self.steps, self.seed = run_dir, steps, int(seed)
        self.model, self.dataset = load_run(run_dir)
        self.model = self.model.to(device).eval()
        self.lock = threading.Lock()
        self.U, self.Dc = self.model.config["num_units"], self.model.config["unit_dim"]
        self.image_shape = (self.model.config.get("in_channels", 3), self.model.config["image_size"],
                            self.model.config["image_size"])
        self.last_seconds: float | None = None
        self._sample_tokens = sample_tokens
        self._plots: dict[int, bytes] = {}
        self._token_sample: torch.Tensor | None = None
        self._token_assign: torch.Tensor | None = None

    # ------------------------------------------------------------------ what the page shows first
    @property
    def anchoring(self):
        a = self.model.anchoring
        return a if a is not None and a.fitted else None

    def anchors(self) -> list[list[dict]]:
        """Per unit, its Gaussians: ``{"k", "weight", "mean"}`` (mean in token coordinates), heaviest first."""
        dyga = self.anchoring
        if dyga is None:
            return [[] for _ in range(self.U)]
        w = dyga.state.log_weights.exp().cpu()
        means = dyga.means.cpu()
        out = []
        for u in range(self.U):
            ks = [int(k) for k in torch.nonzero(dyga.active[u].cpu()).squeeze(1)]
            ks.sort(key=lambda k: -float(w[u, k]))
            out.append([{"k": k, "weight": round(float(w[u, k]), 4), "mean": means[u, k].tolist()} for k in ks])
        return out

    def info(self) -> dict:
        return {"run": str(self.run_dir), "units": self.U, "unit_dim": self.Dc, "image_shape": list(self.image_shape),
                "dataset_size": len(self.dataset), "steps": self.steps, "seed": self.seed,
                "anchored": self.anchoring is not None, "anchors": self.anchors(),
                "factor_names": list(getattr(self.dataset, "factor_names", []))}

    # ------------------------------------------------------------------ validation
    def check_unit(self, unit) -> int:
        if isinstance(unit, bool) or not isinstance(unit, int) or not 0 <= unit < self.U:
            raise ValueError(f"unit must be an int in [0, {self.U}), got {unit!r}")
        return unit

    def check_anchor(self, unit: int, k) -> dict:
        anchors = {a["k"]: a for a in self.anchors()[unit]}
        if not anchors:
            raise ValueError("this run has no fitted DyGA mixture: there are no anchors to click")
        if isinstance(k, bool) or not isinstance(k, int) or k not in anchors:
            raise ValueError(f"unit {unit} has anchors {sorted(anchors)}, got {k!r}")
        return anchors[k]

    def check_tokens(self, tokens, name: str = "tokens") -> torch.Tensor:  # -> [U, Dc]
        try:
            t = torch.tensor(tokens, dtype=torch.float32)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{name} must be a [{self.U}][{self.Dc}] list of numbers") from e
        if t.shape != (self.U, self.Dc) or not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} must be a [{self.U}][{self.Dc}] list of finite numbers, got shape "
                             f"{list(t.shape)}")
        return t

    def check_index(self, index) -> int:
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(self.dataset):
            raise ValueError(f"image index must be an int in [0, {len(self.dataset)}), got {index!r}")
        return index

    def decode_upload(self, data: bytes) -> torch.Tensor:  # -> [C, H, W] in [0, 1]
        from PIL import Image, UnidentifiedImageError
        try:
            img = Image.open(io.BytesIO(data))
            img.load()
        except (UnidentifiedImageError, OSError) as e:
            raise ValueError("the uploaded file is not an image PIL can read (PNG, JPEG, ...)") from e
        C, H, W = self.image_shape
        if img.size != (W, H):
            raise ValueError(f"the uploaded image is {img.size[0]}x{img.size[1]}; this model takes {W}x{H} images")
        a = np.asarray(img.convert("L" if C == 1 else "RGB"), dtype=np.float32) / 255.0
        a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
        return torch.from_numpy(np.ascontiguousarray(a))

    # ------------------------------------------------------------------ model calls
    def image(self, index: int) -> torch.Tensor:  # [C, H, W]
        from ..data.batches import get_batch
        return get_batch(self.dataset, torch.tensor([self.check_index(index)]))[0].float()

    @torch.no_grad()
    def encode(self, image: torch.Tensor) -> list:  # [C, H, W] -> tokens [U][Dc]
        with self.lock:
            return self.model.encode(image[None].to(self.model.device))[0].float().cpu().tolist()

    @torch.no_grad()
    def generate(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # [U, Dc] -> [C,H,W], [U,H,W]
        """The image of ``tokens`` (the fixed noise draw) and every unit's attention over it."""
        t0 = time.perf_counter()
        with self.lock:
            tok = tokens[None].to(self.model.device)
            img = self.model.sample(tok, steps=self.steps, generator=torch.Generator().manual_seed(self.seed))
            att = self.model.attention_maps(img, tokens=tok)
        self.last_seconds = time.perf_counter() - t0
        return img[0].cpu(), att[0].cpu()

    # ------------------------------------------------------------------ token edits
    def set_anchor(self, tokens, unit, k) -> torch.Tensor:
        t = self.check_tokens(tokens)
        u = self.check_unit(unit)
        t[u] = torch.tensor(self.check_anchor(u, k)["mean"])
        return t

    def interpolate(self, tokens, unit, a, b, frac) -> torch.Tensor:
        t = self.check_tokens(tokens)
        u = self.check_unit(unit)
        if isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0.0 <= frac <= 1.0:
            raise ValueError(f"the slider position must be a number in [0, 1], got {frac!r}")
        ma, mb = (torch.tensor(self.check_anchor(u, k)["mean"]) for k in (a, b))
        t[u] = torch.lerp(ma, mb, float(frac))
        return t

    def swap(self, tokens, tokens_b, unit) -> torch.Tensor:
        t, tb = self.check_tokens(tokens), self.check_tokens(tokens_b, "tokens_b")
        u = self.check_unit(unit)
        t[u] = tb[u]
        return t

    # ------------------------------------------------------------------ pictures
    def unit_plot(self, unit) -> bytes:
        """PNG: the unit's tokens of ``sample_tokens`` dataset images in 2-D (PCA) with its Gaussians as 2-σ
        ellipses, each labelled with its anchor index."""
        u = self.check_unit(unit)
        if u not in self._plots:
            self._plots[u] = self._draw_unit(u)
        return self._plots[u]

    def _tokens(self) -> torch.Tensor:  # [N, U, Dc]
        if self._token_sample is None:
            from ..data.batches import get_batch
            n = min(self._sample_tokens, len(self.dataset))
            idx = torch.randperm(len(self.dataset), generator=torch.Generator().manual_seed(0))[:n]
            with self.lock:
                self._token_sample = self.model.collect_tokens(get_batch(self.dataset, idx)).cpu()
        return self._token_sample

    def _assign(self) -> torch.Tensor:  # [N, U] the sample tokens' component slots, for every unit's plot
        if self._token_assign is None:
            dyga = self.anchoring
            with self.lock:
                self._token_assign = dyga.assign(self._tokens().to(dyga.means.device)).cpu()
        return self._token_assign

    def _draw_unit(self, u: int) -> bytes:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from ..viz import draw_anchored_unit, draw_unit
        tokens = self._tokens()[:, u].double()
        fig, ax = plt.subplots(figsize=(2.6, 2.6), dpi=80)
        if self.anchoring is not None:
            draw_anchored_unit(ax, self.anchoring, u, tokens, self._assign()[:, u], f"unit {u}", name_slots=True)
        else:
            draw_unit(ax, tokens, torch.zeros(len(tokens), dtype=torch.long), tokens.mean(0, keepdim=True),
                      torch.cov(tokens.T).reshape(1, self.Dc, self.Dc), f"unit {u} (no DyGA)")
        ax.set_xlabel("")
        ax.set_ylabel("")
        ax.tick_params(labelsize=6)
        buf = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buf, format="png")
        plt.close(fig)
        return buf.getvalue()

    @staticmethod
    def png(img: torch.Tensor) -> bytes:
        return _image_png(img)

    @staticmethod
    def heat_png(m: torch.Tensor) -> bytes:
        return _heat_png(m)

    def grid_png(self, images: list[torch.Tensor]) -> bytes:
        """The images side by side (one row), as the page's download."""
        from ..viz import image_grid
        from PIL import Image
        buf = io.BytesIO()
        Image.fromarray(image_grid(torch.stack([i.float() for i in images]), len(images))).save(buf, format="PNG")
        return buf.getvalue()
