"""DynamicGaussianAnchoring: per-unit HDDC mixtures with dynamic split / filter / merge, and the anchor
shift of tokens toward the mean of their most responsible Gaussian (DESIGN §4)."""
from __future__ import annotations

import time

import torch
from torch import nn

from . import distributed as dist_
from . import ops
from ._validation import check_choice, check_float_tensor, check_positive_float, check_positive_int
from .mixture import D_SELECT, MODELS, MixtureState, MStepConfig, default_d_max
from .anchor_rules import shift_rule
from .mixture.normalise import denormalise_means, token_eps
from .refit import RefitConfig, RefitContext, refit_mixtures, single_component, split_rule

_STATE_FIELDS = ("means", "components", "eigvals", "noise", "log_weights", "dims", "active")


class DynamicGaussianAnchoring(nn.Module):
    """Dynamic Gaussian Anchoring of ``num_units`` latent units, each a token of ``unit_dim`` dims.

    ``refit(tokens [N, U, Dc])`` normalises every unit (centre, one isotropic scale; the statistics are
    stored and reused at use time), then fits all units' HDDC mixtures at once with the pipeline of
    ``dga_fast.refit``: k-means++ (``init_components``) → EM → split rounds → filter → merge → EM.
    ``forward(tokens [B, U, Dc])`` shifts every token toward the mean of its most responsible Gaussian
    (identity before the first refit). All mixture state lives in buffers, so ``state_dict`` and ``.to()`` work.

    Structure search (every rule decided per unit: a unit gets the mixture it would get fitted alone):
    - ``split="bic"`` (default): a component is split in two when its own hard-assigned points prefer two
      Gaussians to one along its principal axis (a classification BIC, ``mixture.axis_split``); a round
      splits every such component (largest gain first) while ``max_components`` allows, EM refits the units
      that split, and a unit leaves the rounds when nothing of it splits (at most ``max_split_rounds``).
      ``split="spread"``: the earlier rule, relative spread above ``split_threshold``.
    - filter: components with soft mass below ``min_cluster_size`` tokens are dropped.
    - ``merge`` (after the last split): a pair is merged when one Gaussian explains it better than its two
      fitted Gaussians along the line through the two means, and the split test would not split the union of
      their points (merge and split never undo each other). A Gaussian that EM cut into slices along its axis,
      whose unions of two the split test refuses (a tail slice is truncated), is merged as the whole chain of
      its slices (``mixture.merge``). ``merge=False`` gives split/filter only.
    - a collapsed unit (constant tokens up to rounding) gets exactly one Gaussian.

    The noise floor: every variance of a unit's mixture (each component's eigenvalues and noise, and the split
    test's classes) is at least the largest of
    - ``noise_floor`` times the unit's own variance (per coordinate, after centring): structure finer than 1% of
      a unit's spread (the default 1e-4, a variance) is not an attribute value. Below it, EM cuts the curved
      segment of one value into straight pieces (on ``make_published_tokens`` at a jitter of 0.15 of the level
      gap: 45 Gaussians for 40 values at 1e-6);
    - ``(8 · eps · m)²`` where ``m`` is the RMS magnitude of the unit's tokens and ``eps`` the precision they
      actually have: that of the narrowest of bfloat16, float16, float32 and their dtype that holds every value
      (``mixture.normalise.token_eps``; tokens made in bfloat16 and cast up keep bfloat16's grid). A dying unit,
      constant up to a relative noise of a few rounding steps, then gets one Gaussian instead of one per grid
      value;
    - ``16 · eps(dtype) · Dc``: what the refit's own float32 (or float64) arithmetic resolves.
    So a unit whose scalar is constant up to a relative noise of 1e-7 … 1e-3 gets one Gaussian, while levels
    1e-3 apart (relative) with a ten times smaller noise are still found (``tests/test_dyga_precision.py``).

    The structure search runs on a seeded random subset of ``search_samples`` tokens (``None``: all; the same
    rows for every unit); the final EM, on all tokens, starts from the search's converged mixtures and takes at
    most ``final_em_iters`` M-steps (1: on the hard token set of ``benchmarks/dyga_quality.py``, six seeds at
    jitters 0.1 and 0.15, a second changed no unit's number of Gaussians and no ARI by more than 0.011, and
    each costs a pass over all tokens, the refit's most expensive).

    ``shift="published"`` reproduces the published code's normalisation and shift for comparisons
    (``anchor_rules.PublishedShift``: min-max normalisation per refit and per batch, the normalised anchor
    mixed into the raw token, one λ per batch with ``align_max`` as its 0.1; ``align`` is not used);
    ``split="coin"`` its split rule. ``"ours"`` is the default (DESIGN §4).
    """

    def __init__(self, num_units: int, unit_dim: int, init_components: int = 8, max_components: int = 32,
                 em_iters: int = 30, split_threshold: float = 0.05, min_cluster_size: int = 10,
                 max_split_rounds: int = 8, merge: bool = True, split="bic", align="adaptive", align_max: float = 0.1,
                 seed: int = 0, model: str = "AkjBkQkDk", d_select: str = "cattell", threshold: float = 0.2,
                 d_max: int | None = None, tol: float = 1e-4, noise_floor: float = 1e-4,
                 search_samples: int | None = 2048, final_em_iters: int = 1, shift: str = "ours",
                 progress: bool = False):
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
        check_positive_int("final_em_iters", final_em_iters, minimum=0)
        self.num_units, self.unit_dim = num_units, unit_dim
        self.init_components, self.max_components = init_components, max_components
        self.em_iters, self.split_threshold = em_iters, float(split_threshold)
        self.min_cluster_size, self.max_split_rounds = min_cluster_size, max_split_rounds
        self.merge, self.align, self.align_max = bool(merge), align, float(align_max)
        self.seed, self.tol, self.noise_floor = int(seed), float(tol), float(noise_floor)
        self.search_samples, self.progress = search_samples, progress
        self.final_em_iters = final_em_iters
        self.split_rule = split_rule(split, self.split_threshold)
        self.shift_rule = shift_rule(shift)
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
        m = denormalise_means(self.mix_means, self.norm_shift, self.norm_scale)
        return torch.where(self.mix_active.unsqueeze(-1), m, torch.zeros_like(m))

    def extra_repr(self) -> str:
        return (f"num_units={self.num_units}, unit_dim={self.unit_dim}, init_components="
                f"{self.init_components}, max_components={self.max_components}, merge={self.merge}, "
                f"align={self.align!r}, align_max={self.align_max}, shift={self.shift_rule.name!r}, "
                f"fitted={self.fitted}")

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
        N = sum(R.sizes(tokens.shape[0]))
        if N < max(self.init_components, 2):
            raise ValueError(f"tokens has {N} samples{' over all ranks' if R.world > 1 else ''}, fewer than "
                             f"init_components={self.init_components}")
        dt = torch.float64 if tokens.dtype == torch.float64 else torch.float32
        x = tokens.detach().to(device=self.mix_means.device, dtype=dt).transpose(0, 1).contiguous()
        t0 = time.perf_counter()
        norm = self.shift_rule.fit_normaliser(x, R, N)
        floor = norm.variance_floor(self.noise_floor, token_eps(x, reducer=R), self.unit_dim, dt)   # [U]
        x = norm(x)
        live = torch.nonzero(~norm.collapsed).squeeze(1)                  # units with something to fit
        U, K = self.num_units, self.max_components
        state = single_component(U, K, self.unit_dim, self.d_max, self.noise_floor, dtype=dt, device=x.device)
        loglik = torch.zeros(U, dtype=torch.float64, device=x.device)
        ctx = RefitContext(x[live] if live.numel() < U else x, live, self._refit_config(), R,
                           self.progress, floor=floor[live])
        if live.numel():
            fitted, ll = refit_mixtures(ctx)
            state = state.scatter_groups(live, fitted.to(dtype=dt))
            loglik[live] = ll
        for name in _STATE_FIELDS:
            getattr(self, "mix_" + name).copy_(getattr(state, name))
        self.norm_shift.copy_(norm.shift)
        self.norm_scale.copy_(norm.scale)
        self._fitted.fill_(True)
        self.n_refits += 1
        info = ctx.info
        for key in ("n_split", "n_filtered", "n_merged", "split_rounds"):   # per unit, 0 for collapsed units
            full = torch.zeros(U, dtype=torch.int64)
            full[live.cpu()] = info[key]
            info[key] = full
        info.update(seconds=time.perf_counter() - t0, n_components=self.n_components.cpu(),
                    log_likelihood=loglik.cpu(), collapsed=norm.collapsed.cpu())
        info.setdefault("search_samples", min(N, self.search_samples or N))
        self.last_refit = info
        return self

    def _refit_config(self) -> RefitConfig:
        return RefitConfig(init_components=self.init_components, max_components=self.max_components,
                           em_iters=self.em_iters, tol=self.tol, min_cluster_size=self.min_cluster_size,
                           max_split_rounds=self.max_split_rounds, merge=self.merge,
                           search_samples=self.search_samples, seed=self.seed, noise_floor=self.noise_floor,
                           mstep=self.cfg, split=self.split_rule, final_em_iters=self.final_em_iters)

    # ------------------------------------------------------------------ use
    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # [B, U, Dc] -> [B, U, Dc]
        """Anchor shift ``c' = c + λ (μ_{k*} − c)``; the identity before the first refit."""
        self._check_tokens(tokens)
        if not self.fitted:
            return tokens
        return self.shift_rule(self, tokens)

    @torch.no_grad()
    def assign(self, tokens: torch.Tensor) -> torch.Tensor:  # [B, U] int64
        """Index of the most responsible component of every token."""
        self._check_tokens(tokens)
        self._require_fitted("assign")
        return ops.anchor_assign(tokens, self.state, *self.shift_rule.use_stats(self, tokens))

    @torch.no_grad()
    def responsibilities(self, tokens: torch.Tensor) -> torch.Tensor:  # [B, U, Kmax]
        """Posterior probability of every component slot (0 for inactive slots)."""
        self._check_tokens(tokens)
        self._require_fitted("responsibilities")
        return ops.anchor_log_resp(tokens, self.state, *self.shift_rule.use_stats(self, tokens)).exp()
