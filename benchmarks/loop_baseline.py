"""A baseline that mirrors the published DyGA code's approach to the mixture refit: a full-covariance
Gaussian mixture fitted by EM with a Python loop over components, each a
``torch.distributions.MultivariateNormal``, for a fixed number of iterations per EM stage
(EM → split → filter → EM, as DESIGN §1 describes the published pipeline). One unit at a time.

It is deliberately straightforward, not deliberately slow: batched tensors inside each component's step,
``float32``, the same k-means++ seeding as dga_fast, and the same deterministic split rule (the published
code flips a coin). It is a timing baseline; its clustering quality is reported but not tuned.
"""
from __future__ import annotations

import math

import torch
from torch.distributions import MultivariateNormal

from dga_fast.mixture.init import initial_partition


def _em(x, means, covs, log_w, iters, reg):
    N, D = x.shape
    eye = torch.eye(D)
    for _ in range(iters):
        # E-step: one MultivariateNormal per component
        logp = torch.stack([MultivariateNormal(means[k], covariance_matrix=covs[k]).log_prob(x) + log_w[k]
                            for k in range(len(means))], dim=1)                 # [N, K]
        log_resp = logp - torch.logsumexp(logp, dim=1, keepdim=True)
        resp = log_resp.exp()
        # M-step: one component at a time
        new_means, new_covs, new_logw = [], [], []
        for k in range(len(means)):
            r = resp[:, k]
            nk = r.sum().clamp_min(1e-10)
            mu = (r[:, None] * x).sum(0) / nk
            z = x - mu
            cov = (r[:, None] * z).T @ z / nk + reg * eye
            new_means.append(mu)
            new_covs.append(cov)
            new_logw.append(torch.log(nk / N))
        means, covs, log_w = new_means, new_covs, new_logw
    return means, covs, log_w, log_resp


def loop_refit(x: torch.Tensor,  # [N, D] tokens of one unit, normalised
               init_components: int = 8, em_iters: int = 30, split_threshold: float = 0.05,
               min_cluster_size: int = 10, max_components: int = 32, seed: int = 0, reg: float = 1e-6):
    """EM(em_iters) → split → filter → EM(em_iters). Returns hard labels ``[N]``."""
    N, D = x.shape
    gen = torch.Generator().manual_seed(seed)
    labels = initial_partition(x.unsqueeze(0), init_components, "kmeans++", gen)[0]
    means, covs, log_w = [], [], []
    for k in range(init_components):
        pts = x[labels == k]
        mu = pts.mean(0)
        z = pts - mu
        means.append(mu)
        covs.append(z.T @ z / max(len(pts), 1) + reg * torch.eye(D))
        log_w.append(torch.tensor(math.log(max(len(pts), 1) / N)))
    means, covs, log_w, log_resp = _em(x, means, covs, log_w, em_iters, reg)
    # split: widest components by relative spread, along the principal axis
    hard = log_resp.argmax(1)
    unit_spread = x.norm(dim=1).mean()
    order = []
    for k in range(len(means)):
        pts = x[hard == k]
        if len(pts) >= 2 * min_cluster_size:
            spread = (pts - means[k]).norm(dim=1).mean() / unit_spread
            if spread > split_threshold:
                order.append((float(spread), k))
    for _, k in sorted(order, reverse=True):
        if len(means) >= max_components:
            break
        evals, evecs = torch.linalg.eigh(covs[k])
        step = evals[-1].clamp_min(0).sqrt() * evecs[:, -1]
        means.append(means[k] - step)
        covs.append(covs[k].clone())
        log_w[k] = log_w[k] - math.log(2.0)
        log_w.append(log_w[k].clone())
        means[k] = means[k] + step
    # filter
    mass = log_resp.exp().sum(0)
    keep = [k for k in range(len(means)) if k >= len(mass) or mass[k] >= min_cluster_size]
    means = [means[k] for k in keep]
    covs = [covs[k] for k in keep]
    lw = torch.stack([log_w[k] for k in keep])
    log_w = list(lw - torch.logsumexp(lw, 0))
    means, covs, log_w, log_resp = _em(x, means, covs, log_w, em_iters, reg)
    return log_resp.argmax(1)
