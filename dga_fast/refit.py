"""The refit of Dynamic Gaussian Anchoring as a pipeline of small stages over ``MixtureState`` (DESIGN §4):

    subset → seed (k-means++) → EM → split rounds (test → split → EM) → filter → merge → final EM → filter

Every rule is decided per unit, so that a unit's mixture is the one it would get fitted alone:
- random draws come from ``UnitStreams`` seeded by ``(seed, unit)``; the search subset is drawn from a stream
  seeded by ``seed`` alone (the same rows for every unit, whatever the batch);
- EM stops per unit (``fit_em``); a split round runs EM only on the units that split, and a unit leaves the
  rounds when nothing of it splits; merge rounds leave a unit alone once it merges nothing;
- a collapsed unit (constant tokens up to rounding, ``Normaliser.collapsed``) gets one Gaussian and takes no part.

The structure search: a component is split when its own points prefer two Gaussians to one along its principal
axis (``SplitByBIC``, a classification BIC); after the last split round, pairs are merged when one Gaussian
explains them better than their two fitted Gaussians along the line through the two means and the split test
would not split their union again, so split and merge do not undo each other; slices of one Gaussian that
no pair joins are merged as a whole chain. ``SplitBySpread`` is the earlier rule (spread above a threshold).

Every variance is floored per unit (``Normaliser.variance_floor``): at ``noise_floor`` of the unit's spread, at
the tokens' own rounding relative to their magnitude, and at what the refit's arithmetic resolves, so that no
split is justified by structure below the precision the tokens actually have.
"""
from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass

import torch

from . import ops
from ._rng import UnitStreams, unit_seed
from .distributed import LOCAL, Reducer
from .mixture import MixtureState, MStepConfig, fit_em, init_state, initial_partition, responsibilities
from .mixture.merge import kept_targets, merge_components
from .mixture.reduce import sum_samples
from .mixture.axis_split import principal_axis_test


# ---------------------------------------------------------------------------------------------- split rules
@dataclass(frozen=True)
class SplitScores:
    score: torch.Tensor                  # [G, K] larger splits first; a candidate has score > threshold
    counts: torch.Tensor                 # [G, K] int64, compared with the minimum count
    threshold: float
    offsets: torch.Tensor | None = None  # [G, K, 2] children's positions along q₁ (None: ±√a₁)


@dataclass(frozen=True)
class SplitByBIC:
    """Split a component when the classification BIC of its own points along its principal axis prefers two
    Gaussians (``mixture.axis_split``); both children must get ``min_count`` points; the largest gain first;
    the children start at the two classes' means."""
    iters: int = 10

    def scores(self, ctx: "RefitContext", x, labels, state: MixtureState,
               floor: torch.Tensor | None = None) -> SplitScores:
        floor = ctx.floor if floor is None else floor
        t = principal_axis_test(x, labels, state, ctx.S, floor, iters=self.iters, reducer=ctx.reducer,
                                kernels=ops.AXIS)
        score = torch.where(torch.isfinite(t.gain) & (t.gain > 0), t.gain, torch.full_like(t.gain, -1.0))
        return SplitScores(score=score, counts=t.smaller.round().long(), threshold=0.0, offsets=t.offsets)


@dataclass(frozen=True)
class SplitBySpread:
    """The earlier rule: split a component when the mean distance of its hard-assigned points to its mean,
    relative to the unit's spread, exceeds ``threshold``; each child needs ``min_count`` points (so the parent
    twice that); the widest first; children at ``μ ± √a₁ q₁``."""
    threshold: float = 0.05

    def scores(self, ctx: "RefitContext", x, labels, state: MixtureState,
               floor: torch.Tensor | None = None) -> SplitScores:
        R = ctx.reducer
        counts, spread = ops.mixture_spread(x, labels, state.means)
        if R.world > 1:   # per-rank means of distances -> global: sum the sums and the counts
            sums = R.sum(spread.to(torch.float64) * counts)
            counts = R.sum(counts)
            spread = (sums / counts.clamp_min(1)).to(spread.dtype)
        unit_spread = R.sum(x.norm(dim=-1).sum(1)) / ctx.S                          # [G]
        return SplitScores(score=spread / unit_spread.unsqueeze(1), counts=torch.div(counts, 2, rounding_mode="floor"),
                           threshold=self.threshold)


@dataclass(frozen=True)
class SplitByCoinFlip:
    """The published code's split decision (DESIGN §6a), kept for comparisons: a component is a candidate when
    its relative spread (``SplitBySpread``) exceeds ``threshold`` *or* a coin with probability ``p`` says so.
    Each call (a split round, or the merge's union test) draws new coins, for all units of the batch together,
    from a stream seeded by the refit's ``seed`` and the call's number: reproducible, the same on every rank,
    but a unit no longer gets the mixture it would get fitted alone."""
    threshold: float = 0.5
    p: float = 0.5

    def scores(self, ctx: "RefitContext", x, labels, state: MixtureState,
               floor: torch.Tensor | None = None) -> SplitScores:
        base = SplitBySpread(self.threshold).scores(ctx, x, labels, state)
        ctx.coin_calls = getattr(ctx, "coin_calls", 0) + 1
        gen = torch.Generator().manual_seed(unit_seed(ctx.cfg.seed, 1_000_003 + ctx.coin_calls))
        heads = (torch.rand(base.score.shape, generator=gen, dtype=torch.float64) < self.p).to(base.score.device)
        score = torch.where(heads, base.score.clamp_min(self.threshold) + 1.0, base.score)
        return dataclasses.replace(base, score=score)


def split_rule(split, split_threshold: float):
    """``"bic"`` / ``"spread"`` / ``"coin"`` (the last two with ``split_threshold``; ``"coin"`` is the
    published rule, ``SplitByCoinFlip``) or a rule object with a ``scores`` method."""
    if split == "bic":
        return SplitByBIC()
    if split == "spread":
        return SplitBySpread(float(split_threshold))
    if split == "coin":
        return SplitByCoinFlip(float(split_threshold))
    if hasattr(split, "scores"):
        return split
    raise ValueError(f"split must be 'bic', 'spread', 'coin' or a split rule object, got {split!r}")


# ---------------------------------------------------------------------------------------------- the pipeline
@dataclass(frozen=True)
class RefitConfig:
    init_components: int
    max_components: int
    em_iters: int
    tol: float
    min_cluster_size: int
    max_split_rounds: int
    merge: bool
    search_samples: int | None
    seed: int
    noise_floor: float
    mstep: MStepConfig
    split: object
    final_em_iters: int = 1


class RefitContext:
    """What the stages share: all tokens ``x [G, N, D]`` (normalised, this rank's), the unit ids, their random
    streams, the variance floor of every unit (``floor [G]``, default ``noise_floor``; DynamicGaussianAnchoring
    passes ``Normaliser.variance_floor``), the reducer, the search size ``S``, the last E-step on the subset, and
    the refit's record."""

    def __init__(self, x: torch.Tensor, units: torch.Tensor, cfg: RefitConfig, reducer: Reducer = LOCAL,
                 progress: bool = False, floor: torch.Tensor | None = None):
        self.x, self.cfg, self.reducer = x, cfg, reducer
        self.units = units
        self.G = x.shape[0]
        self.n_local = x.shape[1]
        sizes = reducer.sizes(self.n_local)
        self.N, self.offset = sum(sizes), sum(sizes[:reducer.rank])
        self.S = self.N                          # set by search_subset
        self.floor = (torch.full((self.G,), cfg.noise_floor, dtype=x.dtype, device=x.device) if floor is None
                      else floor.to(device=x.device, dtype=x.dtype))
        if self.floor.shape != (self.G,):
            raise ValueError(f"floor must have shape [{self.G}] (one variance per unit), got {tuple(self.floor.shape)}")
        self.streams = UnitStreams(cfg.seed, units.tolist())
        self.log_resp: torch.Tensor | None = None
        n_split_rounds = cfg.max_split_rounds
        self.timer = _StageTimer(4 + n_split_rounds + int(cfg.merge) + 1, progress and reducer.rank == 0)
        zeros = lambda: torch.zeros(self.G, dtype=torch.int64)   # noqa: E731  per unit of the batch
        # per unit: components added by splits, removed for low mass (n_filtered), removed by merges
        self.info = {"n_split": zeros(), "n_filtered": zeros(), "n_merged": zeros(), "split_rounds": zeros(),
                     "em_iters": 0,
                     "stages": self.timer.stages, "world_size": reducer.world}

    def em(self, state: MixtureState, x: torch.Tensor, groups: torch.Tensor | None = None,
           max_iter: int | None = None):
        """EM on ``groups`` (default all) of ``x`` (the subset or all rows), at most ``max_iter`` (default
        ``em_iters``) M-steps; returns the ``EMResult`` of those groups. The M-step's minimum mass is
        ``min_cluster_size`` tokens of the whole data, scaled to the rows EM sees (at least 2)."""
        fl = self.floor if groups is None else self.floor[groups]
        n = self.reducer.sum_int(x.shape[1])
        cfg = dataclasses.replace(self.cfg.mstep, min_mass=max(self.cfg.min_cluster_size * n / self.N, 2.0))
        res = fit_em(x, state, cfg, fl, ops.hddc_estep, max_iter=self.cfg.em_iters if max_iter is None else max_iter,
                     tol=self.cfg.tol, reducer=self.reducer, kernels=ops.MSTEP)
        self.info["em_iters"] += int(res.n_iter.max()) if res.n_iter.numel() else 0
        return res


def search_subset(ctx: RefitContext) -> torch.Tensor:
    """The rows of the structure search: ``search_samples`` global rows drawn by a stream seeded by ``seed``
    (the same for every unit, in global order; this rank's share), or all rows."""
    cfg, N = ctx.cfg, ctx.N
    S = N if cfg.search_samples is None else min(N, cfg.search_samples)
    ctx.S = S
    ctx.info["search_samples"] = S
    if S == N:
        return ctx.x
    gen = torch.Generator().manual_seed(cfg.seed)
    pick = torch.randperm(N, generator=gen)[:S].sort().values - ctx.offset
    pick = pick[(pick >= 0) & (pick < ctx.n_local)]
    return ctx.x[:, pick.to(ctx.x.device)]


def seed_state(ctx: RefitContext, xs: torch.Tensor) -> MixtureState:
    """k-means++ seeding and Lloyd on the subset, from every unit's own stream, then one M-step."""
    s_offset = sum(ctx.reducer.sizes(xs.shape[1])[:ctx.reducer.rank])
    K = ctx.cfg.init_components
    labels = initial_partition(xs, K, "kmeans++", ctx.streams, reducer=ctx.reducer, offset=s_offset,
                               step=ops.kmeans_assign, loop=ops.kmeans_lloyd)
    return check_stage(init_state(xs, labels, K, ctx.cfg.mstep, ctx.floor, reducer=ctx.reducer, kernels=ops.MSTEP),
                       "seed")


def em_stage(ctx: RefitContext, state: MixtureState, xs: torch.Tensor) -> MixtureState:
    res = ctx.em(state, xs)
    ctx.log_resp = res.log_resp
    return check_stage(res.state, "em")


def split_round(ctx: RefitContext, state: MixtureState, xs: torch.Tensor,
                todo: torch.Tensor) -> tuple[MixtureState, torch.Tensor]:
    """One round over the units ``todo`` (state padded to ``max_components``): score, split, EM on the units
    that split. Returns the new state and the units that split."""
    cfg = ctx.cfg
    sub = state.index_groups(todo)
    x_t = xs[todo]
    labels = ctx.log_resp[todo].argmax(-1)
    sc = cfg.split.scores(ctx, x_t, labels, sub, ctx.floor[todo])
    min_count = max(cfg.min_cluster_size * ctx.S / ctx.N, 3.0)
    new, n_split = ops.split_components(sub, sc.score, sc.counts, sc.threshold, cfg.max_components, min_count,
                                        sc.offsets)
    did = n_split > 0
    if not bool(did.any()):
        return state, todo[did]
    idx = todo[did]
    ctx.info["n_split"][idx.cpu()] += n_split[did].cpu()
    ctx.info["split_rounds"][idx.cpu()] += 1
    grown = new.index_groups(did.nonzero().squeeze(1))
    # a split round's EM only has to settle the children (the final EM polishes): a third of the budget
    res = ctx.em(grown.resize(grown.used_slots()), x_t[did], idx, max_iter=max(cfg.em_iters // 3, 1))
    fitted = res.state.resize(cfg.max_components)
    state = state.scatter_groups(idx, fitted)
    lr = ctx.log_resp
    K = max(lr.shape[-1], res.log_resp.shape[-1])
    ctx.log_resp = _pad_slots(lr, K)
    ctx.log_resp[idx] = _pad_slots(res.log_resp, K)
    return check_stage(state, "split"), idx


def split_rounds(ctx: RefitContext, state: MixtureState, xs: torch.Tensor) -> MixtureState:
    """Split rounds until no unit splits or ``max_split_rounds``; each unit leaves when nothing of it splits."""
    state = state.resize(ctx.cfg.max_components)
    todo = torch.arange(ctx.G, device=xs.device)
    for _ in range(ctx.cfg.max_split_rounds):
        state, todo = split_round(ctx, state, xs, todo)
        if todo.numel() == 0:
            ctx.timer.done("split (none)")
            break
        ctx.timer.done("split+em")
    return state.resize(state.used_slots())


def filter_stage(ctx: RefitContext, state: MixtureState, log_resp: torch.Tensor, n_data: int) -> MixtureState:
    """Drop components with soft mass below ``min_cluster_size``, or that are the most responsible component of
    fewer tokens than that (counted in tokens of the whole data): an anchor no token is assigned to anchors
    nothing (a wide, light component behind a tight one holds soft mass from the tails and wins no token)."""
    soft = ctx.reducer.sum(sum_samples(responsibilities(log_resp)))                   # [G, K]
    win = torch.zeros_like(soft).scatter_add_(1, log_resp.argmax(-1), torch.ones_like(log_resp[..., 0]))
    mass = torch.minimum(soft, ctx.reducer.sum(win)) * (ctx.N / n_data)
    state = ops.filter_components(state, mass[..., :state.K], float(ctx.cfg.min_cluster_size))
    return check_stage(state.resize(state.used_slots()), "filter")


class UnionSplitTest:
    """The merge's last word on its candidates: the split test on the union of the points hard-assigned to the
    slots that merge (under the merged Gaussian) must not want to split it. Accepted merges relabel their
    points."""

    def __init__(self, ctx: RefitContext, xs: torch.Tensor, labels: torch.Tensor):
        self.ctx, self.xs, self.labels = ctx, xs, labels

    def __call__(self, merged: MixtureState, to: torch.Tensor, recv: torch.Tensor) -> torch.Tensor:
        g = recv.any(1).nonzero().squeeze(1)                  # only the groups with candidates are tested
        labels = torch.gather(to[g], 1, self.labels[g])
        sc = self.ctx.cfg.split.scores(self.ctx, self.xs[g], labels, merged.index_groups(g).to(dtype=self.xs.dtype),
                                       self.ctx.floor[g])
        ok = torch.zeros_like(recv)
        ok[g] = recv[g] & ~(sc.score > sc.threshold)
        self.labels = torch.gather(kept_targets(to, ok), 1, self.labels)
        return ok


def merge_stage(ctx: RefitContext, state: MixtureState, xs: torch.Tensor) -> MixtureState:
    """Merge pairs that one Gaussian explains better than their two fitted Gaussians along the line through
    their means (``mixture.merge``, which says why fitted and not hard-assigned statistics), and whose union the
    split test would not split again (``UnionSplitTest``), then compact."""
    log_resp, _ = ops.hddc_estep(xs, state)
    labels = log_resp.argmax(-1)
    state, n_merged = merge_components(state, ctx.S, ctx.cfg.mstep, ctx.floor,
                                       verify=UnionSplitTest(ctx, xs, labels), kernels=ops.MSTEP)
    ctx.info["n_merged"] += n_merged.cpu()
    state = ops.filter_components(state, state.weights() * ctx.N, 0.0)
    return check_stage(state.resize(state.used_slots()), "merge")


def refit_mixtures(ctx: RefitContext) -> tuple[MixtureState, torch.Tensor]:
    """The whole pipeline on ``ctx.x``; returns the state (padded to ``max_components``) and the mean
    per-sample log-likelihood ``[G]`` of the final EM."""
    cfg = ctx.cfg
    xs = search_subset(ctx)
    state = seed_state(ctx, xs)
    ctx.timer.done("init")
    state = em_stage(ctx, state, xs)
    ctx.timer.done("em")
    state = split_rounds(ctx, state, xs)
    state = filter_stage(ctx, state, ctx.log_resp, ctx.S)
    ctx.timer.done("filter")
    if cfg.merge:
        state = merge_stage(ctx, state, xs)
        ctx.timer.done("merge")
    res = ctx.em(state, ctx.x, max_iter=cfg.final_em_iters)
    state = filter_stage(ctx, res.state, res.log_resp, ctx.N)
    ctx.timer.done("final em")
    ctx.timer.close()
    # every component lost other than by a merge: the filter stages' and the M-steps' minimum mass
    seeded = torch.full_like(ctx.info["n_split"], cfg.init_components)
    ctx.info["n_filtered"] = seeded + ctx.info["n_split"] - ctx.info["n_merged"] - state.active.sum(1).cpu()
    return state.resize(cfg.max_components), res.log_likelihood


def single_component(G: int, K: int, D: int, dmax: int, floor: float, *, dtype, device) -> MixtureState:
    """One Gaussian at the origin (of normalised coordinates) with variance ``floor`` per unit: the mixture of
    a collapsed unit."""
    st = MixtureState.empty(G, K, D, dmax, dtype=dtype, device=device)
    st.active[:, 0] = True
    st.log_weights[:, 0] = 0.0
    st.noise[:, 0] = floor
    if dmax >= 1 and D > 1:   # a one-dimensional subspace along the first axis (d = 0 for 1-D tokens)
        st.dims[:, 0] = 1
        st.eigvals[:, 0, 0] = floor
        st.components[:, 0, 0, 0] = 1.0
    return st


# ---------------------------------------------------------------------------------------------- helpers
def _pad_slots(log_resp: torch.Tensor, K: int) -> torch.Tensor:
    if log_resp.shape[-1] == K:
        return log_resp
    pad = log_resp.new_full(log_resp.shape[:-1] + (K - log_resp.shape[-1],), float("-inf"))
    return torch.cat([log_resp, pad], -1)


def check_stage(state: MixtureState, stage: str) -> MixtureState:
    """With ``DGA_FAST_CHECK_STAGES=1`` (the tests set it): every active component of a stage's output is finite,
    with positive variances, and every group keeps a component; else a no-op."""
    if os.environ.get("DGA_FAST_CHECK_STAGES", "0") != "1":
        return state
    act = state.active
    bad = []
    for name in ("means", "components", "eigvals", "noise", "log_weights"):
        t = getattr(state, name)
        ok = torch.isfinite(t.reshape(t.shape[0], t.shape[1], -1)).all(-1)
        if bool((act & ~ok).any()):
            bad.append(name)
    if bool((act & ~(state.noise > 0)).any()) or bool((act.unsqueeze(-1) & ~(state.eigvals > 0)).any()):
        bad.append("variances <= 0")
    if state.G and not bool(act.any(1).all()):
        bad.append("a group without components")
    if bad:
        raise AssertionError(f"refit stage {stage!r} produced a bad mixture: {', '.join(bad)}")
    return state


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
