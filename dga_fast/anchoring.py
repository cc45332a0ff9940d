"""DynamicGaussianAnchoring: per-unit HDDC mixtures with dynamic split / filter / merge, and the anchor
shift of tokens toward the mean of their most responsible Gaussian (DESIGN §4)."""
from __future__ import annotations

import time

import torch
from torch import nn

from . import distributed as dist_
from . import ops
from ._validation import (check_choice, check_float_tensor, check_not_constant, check_positive_float,
                          check_positive_int)
from .mixture import (D_SELECT, MODELS, MixtureState, MStepConfig, default_d_max, fit_em,
                      init_state, initial_partition, merge_components, responsibilities)

_STATE_FIELDS = ("means", "components", "eigvals", "noise", "log_weights", "dims", "active")


class DynamicGaussianAnchoring(nn.Module):
    """Dynamic Gaussian Anchoring of ``num_units`` latent units, each a token of ``unit_dim`` dims.

    ``refit(tokens [N, U, Dc])`` normalises every unit (centre, one isotropic scale; the statistics are
    stored and reused at use time), then fits all units' HDDC mixtures at once: k-means++ → EM → up to
    ``max_split_rounds`` of (split → EM) → filter → merge (if ``merge``) → EM. ``forward(tokens [B, U, Dc])``
    shifts every token toward the mean of its most responsible Gaussian (identity before the first
    refit). All mixture state lives in buffers, so ``state_dict``/``load_state_dict`` and ``.to()`` work.

    The structure search (init, EM, split, filter, merge) runs on a seeded random subset of
    ``search_samples`` tokens (``None``: all), the final EM on all tokens: the search only has to find how
    many Gaussians each unit needs and roughly where, which a few thousand tokens show as well as all of
    them, at a fraction of the cost.

    ``split_threshold`` is the spread of a component (mean distance of its hard-assigned points to its
    mean) relative to the spread of its unit (mean distance of the unit's points to their mean).
    """

    def __init__(self, num_units: int, unit_dim: int, init_components: int = 8, max_components: int = 32,
                 em_iters: int = 30, split_threshold: float = 0.05, min_cluster_size: int = 10,
                 max_split_rounds: int = 3, merge: bool = True, align="adaptive", align_max: float = 0.1,
                 seed: int = 0, model: str = "AkjBkQkDk", d_select: str = "cattell", threshold: float = 0.2,
                 d_max: int | None = None, tol: float = 1e-4, noise_floor: float = 1e-6,
                 search_samples: int | None = 2048, progress: bool = False):
        super().__init__()
        check_positive_int("num_units", num_units)
        check_positive_int("unit_dim", unit_dim)
        check_positive_int("init_components", init_components)
        check_positive_int("max_components", max_components)
        if max_components < init_components:
            raise ValueError(f"max_components ({max_components}) must be >= init_components "
                             f"({init_components})")
        check_positive_int("em_iters", em_iters)
        check_positive_float("split_threshold", split_threshold, allow_zero=True)
        check_positive_int("min_cluster_size", min_cluster_size)
        check_positive_int("max_split_rounds", max_split_rounds, minimum=0)
        if align != "adaptive":
            check_positive_float("align", align, allow_zero=True)
            if float(align) > 1.0:
                raise ValueError(f"align must be 'adaptive' or a float in [0, 1], got {align}")
        check_positive_float("align_max", align_max, allow_zero=True)
        check_choice("model", model, MODELS)
        check_choice("d_select", d_select, D_SELECT)
        check_positive_float("threshold", threshold)
        check_positive_float("tol", tol)
        check_positive_float("noise_floor", noise_floor)
        if d_max is not None:
            check_positive_int("d_max", d_max)
        if search_samples is not None:
            check_positive_int("search_samples", search_samples, minimum=2)
        self.num_units, self.unit_dim = num_units, unit_dim
        self.init_components, self.max_components = init_components, max_components
        self.em_iters, self.split_threshold = em_iters, float(split_threshold)
        self.min_cluster_size, self.max_split_rounds = min_cluster_size, max_split_rounds
        self.merge, self.align, self.align_max = bool(merge), align, float(align_max)
        self.seed, self.tol, self.noise_floor = int(seed), float(tol), float(noise_floor)
        self.search_samples, self.progress = search_samples, progress
        self.d_max = default_d_max(unit_dim, d_max)
        self.cfg = MStepConfig(model=model, d_select=d_select, threshold=float(threshold), d_max=self.d_max,
                               min_mass=float(min_cluster_size))
        empty = MixtureState.empty(num_units, max_components, unit_dim, self.d_max)
        for name in _STATE_FIELDS:
            self.register_buffer("mix_" + name, getattr(empty, name))
        self.register_buffer("norm_shift", torch.zeros(num_units, unit_dim))
        self.register_buffer("norm_scale", torch.ones(num_units))
        self.register_buffer("_fitted", torch.zeros((), dtype=torch.bool))
        self.register_buffer("n_refits", torch.zeros((), dtype=torch.int64))
        self.last_refit: dict = {}

    # ------------------------------------------------------------------ properties
    @property
    def fitted(self) -> bool:
        return bool(self._fitted)

    @property
    def state(self) -> MixtureState:
        """The mixtures (``G = num_units``) in normalised coordinates."""
        return MixtureState(**{n: getattr(self, "mix_" + n) for n in _STATE_FIELDS})

    @property
    def n_components(self) -> torch.Tensor:  # [U]
        return self.mix_active.sum(1)

    @property
    def active(self) -> torch.Tensor:  # [U, Kmax]
        return self.mix_active

    @property
    def means(self) -> torch.Tensor:  # [U, Kmax, Dc] in token coordinates (zeros for inactive slots)
        m = self.mix_means * self.norm_scale[:, None, None] + self.norm_shift[:, None, :]
        return torch.where(self.mix_active.unsqueeze(-1), m, torch.zeros_like(m))

    def extra_repr(self) -> str:
        return (f"num_units={self.num_units}, unit_dim={self.unit_dim}, init_components="
                f"{self.init_components}, max_components={self.max_components}, merge={self.merge}, "
                f"align={self.align!r}, align_max={self.align_max}, fitted={self.fitted}")

    # ------------------------------------------------------------------ validation
    def _check_tokens(self, tokens, name: str = "tokens") -> torch.Tensor:
        check_float_tensor(name, tokens, 3)
        if tokens.shape[1] != self.num_units or tokens.shape[2] != self.unit_dim:
            raise ValueError(f"{name} must have shape [N, {self.num_units}, {self.unit_dim}] "
                             f"(num_units, unit_dim), got {tuple(tokens.shape)}")
        return tokens

    def _require_fitted(self, what: str):
        if not self.fitted:
            raise RuntimeError(f"{what} needs a fitted mixture: call refit(tokens) first")

    # ------------------------------------------------------------------ refit
    @torch.no_grad()
    def refit(self, tokens: torch.Tensor,  # [N, U, Dc]
              distributed: bool | None = None) -> "DynamicGaussianAnchoring":
        """Fit the mixtures of all units on ``tokens [N, U, Dc]`` (see the class docstring).

        ``distributed`` (default: whether a ``torch.distributed`` group of more than one rank is initialised):
        ``tokens`` is this rank's share, and the mixtures are fitted to all ranks' tokens together, as one
        process would fit them to the ranks' tokens concatenated in rank order, without moving tokens between
        ranks (``dga_fast.distributed``). Every rank must call it; all end with the same buffers."""
        self._check_tokens(tokens)
        if distributed is None:
            distributed = dist_.is_active()
        R = dist_.Reducer() if distributed else dist_.LOCAL
        n_local = tokens.shape[0]
        sizes = R.sizes(n_local)
        N, offset = sum(sizes), sum(sizes[:R.rank])
        if N < max(self.init_components, 2):
            raise ValueError(f"tokens has {N} samples{' over all ranks' if R.world > 1 else ''}, fewer than "
                             f"init_components={self.init_components}")
        dt = torch.float64 if tokens.dtype == torch.float64 else torch.float32
        x = tokens.detach().to(device=self.mix_means.device, dtype=dt).transpose(0, 1).contiguous()
        if R.world == 1:
            check_not_constant("tokens", x, group_dim_name="latent unit")
        t0 = time.perf_counter()
        shift = R.sum(x.sum(1)) / N                                        # [U, Dc] (= x.mean(1) in one process)
        x = x - shift.unsqueeze(1)
        scale = (R.sum(x.square().sum(-1).sum(1)) / (N * self.unit_dim)).sqrt()   # [U]
        if R.world > 1 and not bool((scale > 0).all()):
            bad = torch.nonzero(~(scale > 0)).flatten().tolist()
            raise ValueError(f"tokens is constant (zero variance) over all ranks for latent unit {bad[:8]}; "
                             "a mixture cannot be fitted to constant data")
        x = x / scale[:, None, None]
        U = self.num_units
        floor = torch.full((U,), self.noise_floor, dtype=dt, device=x.device)
        gen = torch.Generator().manual_seed(self.seed)
        # the structure search runs on a seeded random subset (the same global rows whatever the number of
        # ranks, in their global order); the final EM on every token
        S = N if self.search_samples is None else min(N, self.search_samples)
        if S < N:
            pick = torch.randperm(N, generator=gen)[:S].sort().values - offset
            pick = pick[(pick >= 0) & (pick < n_local)]
            xs = x[:, pick.to(x.device)]
        else:
            xs = x
        s_offset = sum(R.sizes(xs.shape[1])[:R.rank])                      # this rank's first subset row
        n_stages = 3 + self.max_split_rounds + (1 if self.merge else 0) + 1
        timer = _StageTimer(n_stages, self.progress and R.rank == 0)
        info = {"n_split": torch.zeros(U, dtype=torch.int64), "n_merged": torch.zeros(U, dtype=torch.int64),
                "em_iters": 0, "search_samples": S, "stages": timer.stages, "world_size": R.world}

        def em(state, data):
            res = fit_em(data, state, self.cfg, floor, max_iter=self.em_iters, tol=self.tol, reducer=R)
            info["em_iters"] += int(res.n_iter.max())
            return res

        labels = initial_partition(xs, self.init_components, "kmeans++", gen, reducer=R, offset=s_offset)
        state = init_state(xs, labels, self.init_components, self.cfg, floor, reducer=R)
        timer.done("init")
        res = em(state, xs)
        timer.done("em")
        unit_spread = R.sum(xs.norm(dim=-1).sum(1)) / S                     # [U]
        for _ in range(self.max_split_rounds):
            state = res.state.resize(self.max_components)
            counts, spread = ops.mixture_spread(xs, res.log_resp.argmax(-1), state.means)
            if R.world > 1:   # per-rank means of distances -> global: sum the sums and the counts
                sums = R.sum(spread.to(torch.float64) * counts)
                counts = R.sum(counts)
                spread = (sums / counts.clamp_min(1)).to(spread.dtype)
            state, n_split = ops.split_components(state, spread / unit_spread.unsqueeze(1), counts,
                                                  self.split_threshold, self.max_components,
                                                  2 * self.min_cluster_size * S / N)
            if not bool(n_split.any()):
                timer.done("split (none)")
                break
            info["n_split"] += n_split.cpu()
            res = em(state.resize(state.used_slots()), xs)
            timer.done("split+em")
        mass = R.sum(responsibilities(res.log_resp).sum(1)) * (N / S)        # [U, K] in tokens of x
        state = ops.filter_components(res.state, mass, float(self.min_cluster_size))
        state = state.resize(state.used_slots())
        timer.done("filter")
        if self.merge:
            state, n_merged = merge_components(state, S, self.cfg, floor)
            info["n_merged"] += n_merged.cpu()
            state = ops.filter_components(state, state.weights() * N, 0.0)
            state = state.resize(state.used_slots())
            timer.done("merge")
        res = em(state, x)
        mass = R.sum(responsibilities(res.log_resp).sum(1))
        state = ops.filter_components(res.state, mass, float(self.min_cluster_size))
        timer.done("final em")
        timer.close()
        state = state.resize(self.max_components)
        for name in _STATE_FIELDS:
            getattr(self, "mix_" + name).copy_(getattr(state, name))
        self.norm_shift.copy_(shift)
        self.norm_scale.copy_(scale)
        self._fitted.fill_(True)
        self.n_refits += 1
        info.update(seconds=time.perf_counter() - t0, n_components=self.n_components.cpu(),
                    log_likelihood=res.log_likelihood.cpu())
        self.last_refit = info
        return self

    # ------------------------------------------------------------------ use
    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # [B, U, Dc] -> [B, U, Dc]
        """Anchor shift ``c' = c + λ (μ_{k*} − c)``; the identity before the first refit."""
        self._check_tokens(tokens)
        if not self.fitted:
            return tokens
        return ops.anchor_shift(tokens, self.state, self.norm_shift, self.norm_scale, self.align,
                                self.align_max)

    @torch.no_grad()
    def assign(self, tokens: torch.Tensor) -> torch.Tensor:  # [B, U] int64
        """Index of the most responsible component of every token."""
        self._check_tokens(tokens)
        self._require_fitted("assign")
        return ops.anchor_assign(tokens, self.state, self.norm_shift, self.norm_scale)

    @torch.no_grad()
    def responsibilities(self, tokens: torch.Tensor) -> torch.Tensor:  # [B, U, Kmax]
        """Posterior probability of every component slot (0 for inactive slots)."""
        self._check_tokens(tokens)
        self._require_fitted("responsibilities")
        return ops.anchor_log_resp(tokens, self.state, self.norm_shift, self.norm_scale).exp()


class _StageTimer:
    """Seconds per refit stage (``stages``: list of ``(name, seconds)``) and an optional progress bar."""

    def __init__(self, total: int, progress: bool):
        self.stages: list = []
        self._t = time.perf_counter()
        self._bar = None
        if progress:
            from tqdm.auto import tqdm
            self._bar = tqdm(total=total, desc="DyGA refit", leave=False)

    def done(self, name: str):
        now = time.perf_counter()
        self.stages.append((name, round(now - self._t, 4)))
        self._t = now
        if self._bar is not None:
            self._bar.set_postfix_str(name)
            self._bar.update()

    def close(self):
        if self._bar is not None:
            self._bar.close()
