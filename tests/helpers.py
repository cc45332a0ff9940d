"""Shared test helpers: random mixture states; the brute-force E-step oracle (``ops/hddc_estep/naive.py``); the tiny
AnchoredDiffusion and training settings of the training tests."""
from __future__ import annotations

import torch

from dga_fast.mixture import MixtureState
from dga_fast.ops.hddc_estep.naive import brute_estep  # noqa: F401  (the E-step oracle, re-exported for the tests)


def random_state(G: int, K: int, D: int, dmax: int, *, seed: int = 0, n_inactive: int = 0,
                 scale: float = 1.0, dtype=torch.float64) -> MixtureState:
    """A valid random MixtureState: orthonormal subspaces, d_k in [0 or 1, dmax], some inactive slots."""
    g = torch.Generator().manual_seed(seed)
    st = MixtureState.empty(G, K, D, dmax, dtype=dtype)
    dl = st.dmax
    A = torch.randn(G, K, D, D, generator=g, dtype=dtype)
    Qfull, _ = torch.linalg.qr(A)
    lo = 0 if D == 1 else 1
    hi = min(dmax, D - 1)
    dims = torch.randint(lo, max(hi, lo) + 1, (G, K), generator=g)
    j = torch.arange(dl)
    mask = j < dims.unsqueeze(-1)
    Q = Qfull[..., :dl] if D >= dl else torch.nn.functional.pad(Qfull, (0, dl - D))
    st.components = Q * mask.unsqueeze(-2).to(dtype)
    noise = (0.05 + torch.rand(G, K, generator=g, dtype=dtype)) * scale ** 2
    a = noise.unsqueeze(-1) * (1.5 + 4 * torch.rand(G, K, dl, generator=g, dtype=dtype))
    st.eigvals = torch.where(mask, a, torch.ones_like(a))
    st.noise = noise
    st.dims = dims
    st.means = 3.0 * scale * torch.randn(G, K, D, generator=g, dtype=dtype)
    active = torch.ones(G, K, dtype=torch.bool)
    if n_inactive:
        for gi in range(G):
            idx = torch.randperm(K, generator=g)[:min(n_inactive, K - 1)]
            active[gi, idx] = False
    st.active = active
    lw = torch.log(0.2 + torch.rand(G, K, generator=g, dtype=dtype))
    lw = torch.where(active, lw, torch.full_like(lw, float("-inf")))
    st.log_weights = lw - torch.logsumexp(lw, 1, keepdim=True)
    st.means = torch.where(active.unsqueeze(-1), st.means, torch.zeros_like(st.means))
    return st




def sample_mixture(st: MixtureState, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``[G, n, D]`` samples and their component labels ``[G, n]``."""
    g = torch.Generator().manual_seed(seed)
    G, K, D = st.means.shape
    probs = st.log_weights.exp()
    lab = torch.multinomial(probs.float(), n, replacement=True, generator=g)
    cov = st.covariances().double()
    L = torch.linalg.cholesky(cov + 1e-12 * torch.eye(D, dtype=torch.float64))
    eps = torch.randn(G, n, D, generator=g, dtype=torch.float64)
    Lk = L[torch.arange(G).unsqueeze(1), lab]                                   # [G,n,D,D]
    mu = st.means.double()[torch.arange(G).unsqueeze(1), lab]
    return mu + (Lk @ eps.unsqueeze(-1)).squeeze(-1), lab


def kill_after_checkpoint(cmd: list, cwd, run_dir, min_step: int, timeout: float = 240) -> int:
    """Start ``cmd``, SIGKILL it once ``run_dir`` holds a checkpoint of step >= ``min_step``; returns the latest
    checkpoint's step when it was killed (fails the test on timeout or an early exit)."""
    import signal
    import subprocess
    import time

    from dga_fast.checkpoint import latest_checkpoint

    def step():
        ck = latest_checkpoint(run_dir)
        return -1 if ck is None else int(ck.name[5:])
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + timeout
        while time.time() < deadline and step() < min_step and proc.poll() is None:
            time.sleep(0.2)
        assert step() >= 0, proc.stderr.read().decode() if proc.poll() is not None else "timeout"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    return step()


# the tiny model and training settings of the training tests (16×16 images, 4 units)
TINY = dict(image_size=16, num_units=4, unit_dim=8, base_channels=16, channel_mult=(1, 2), num_res_blocks=1,
            attention_resolutions=(2,), num_heads=2,
            anchoring=dict(init_components=3, em_iters=5, search_samples=None, min_cluster_size=4))
TRAIN = dict(batch_size=8, refit_every=5, refit_warmup=5, refit_samples=64, ckpt_every=5, progress=False,
             lr=2e-3)


def tiny(**kw):
    """The tiny AnchoredDiffusion (``TINY`` with ``kw``), initialised from seed 0."""
    from dga_fast import AnchoredDiffusion
    torch.manual_seed(0)
    return AnchoredDiffusion(**{**TINY, **kw})


def centroid(m: torch.Tensor) -> torch.Tensor:   # [n, S, S] foreground weight -> [n, 2] (x, y) in pixels
    """The weighted centre of each image of a mask batch (the procedural datasets' position tests)."""
    S = m.shape[-1]
    c = torch.arange(S, dtype=torch.float32)
    w = m.sum((1, 2))
    return torch.stack([(m.sum(1) * c).sum(1) / w, (m.sum(2) * c).sum(1) / w], 1)
