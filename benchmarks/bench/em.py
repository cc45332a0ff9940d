"""Row families ``em`` and ``hddc``. ``em``: plain batched EM at one fixed K (``--em-k``, default 8) on the refit family's tokens, all
units at once, each provider on the same normalised tokens and with at most 100 EM iterations:

- ``dga_fast``: the batched HDDC core (k-means++ and Lloyd per unit, then ``fit_em``: E-step on the native CPU
  op or the Triton kernel, per-unit stop at ``|ΔLL| / (1 + |LL|) < 1e-4``); ``dga_fast-reference``: the same with
  ``use_backend("reference")``;
- ``gmm-gpu`` (PyPI ``gmm-gpu``, optional: ``pip install --no-deps gmm-gpu``): the peer built for this job, many
  full-covariance GMMs fitted as one ``[B, N, D]`` tensor (k-means++ and k-means, then EM; stop at
  ``|ΔLL| < 1e-3``); its NaN labels are counted and reported, not hidden;
- ``sklearn-gmm-full``: ``GaussianMixture(K, covariance_type="full")`` per unit, summed over units.

K is not the true number of levels of most units, so the ARI against the true levels is reported for information;
a row's check is that its labels are finite (gmm-gpu's row passes with its NaN count reported: it is the peer's
result).

``hddc``: the ``HDDC`` estimator against scikit-learn on one large mixture (see ``family_hddc``)."""
from __future__ import annotations

import torch

from .harness import SIZES, Case

MAX_ITER = 100
HDDC_ITERS = 20


def _tokens(args, device):
    from dga_fast.data import hard_setting, make_published_tokens, make_unit_tokens
    from dga_fast.mixture.normalise import Normaliser

    sz = SIZES[args.size]
    U, N, D = sz["units"], sz["tokens"], sz["dim"]
    data = (make_published_tokens(hard_setting(U), n=N, dim=D, seed=args.seed) if args.tokens == "published"
            else make_unit_tokens(U, N, D, seed=args.seed))
    x = data.tokens.transpose(0, 1).contiguous().float().to(device)         # [U, N, D]
    return Normaliser.fit(x)(x), data.labels.numpy()


def _dga_em(x, K, seed):
    """Hard labels [U, N] and the largest iteration count of the batched HDDC EM."""
    from dga_fast import ops
    from dga_fast.mixture import MStepConfig, fit_em, init_state, initial_partition
    from dga_fast.mixture.dims import default_d_max

    U, _, D = x.shape
    cfg = MStepConfig(d_max=default_d_max(D, None), min_mass=2.0)
    floor = x.new_full((U,), 1e-6)
    labels = initial_partition(x, K, "kmeans++", torch.Generator().manual_seed(seed))
    res = fit_em(x, init_state(x, labels, K, cfg, floor, kernels=ops.MSTEP), cfg, floor, ops.hddc_estep,
                 max_iter=MAX_ITER, tol=1e-4, kernels=ops.MSTEP)
    return res.log_resp.argmax(-1), int(res.n_iter.max())


def family_em(args, device) -> list[Case]:
    import numpy as np
    from sklearn.metrics import adjusted_rand_score
    from sklearn.mixture import GaussianMixture

    from dga_fast import use_backend

    K = args.em_k
    x, labels = _tokens(args, device)
    U, N, D = x.shape
    note = f"{U} units x {N} tokens x {D} dims, K={K}, at most {MAX_ITER} iterations ({args.tokens} tokens)"

    def summary(pred, iters=None):   # pred [U, N] float or int
        pred = torch.as_tensor(pred).cpu()
        nan_units = int(torch.isnan(pred.double()).any(1).sum())
        ok_units = [u for u in range(U) if not torch.isnan(pred[u].double()).any()]
        ari = [adjusted_rand_score(labels[:, u], pred[u].long().numpy()) for u in ok_units]
        out = {"units_with_nan_labels": f"{nan_units}/{U}",
               "mean_ari_vs_true_levels": round(float(np.mean(ari)), 4) if ari else None}
        return out if iters is None else {**out, "max_iters": iters}

    def run_dga():
        return _dga_em(x, K, args.seed)

    def run_dga_reference():
        with use_backend("reference"):
            return _dga_em(x, K, args.seed)

    def check_dga(out):
        s = summary(*out)
        return {"ok": s["units_with_nan_labels"] == f"0/{U}", **s}

    cases = [Case("em", "dga_fast", "fit", run_dga, check_dga, note=note),
             Case("em", "dga_fast-reference", "fit", run_dga_reference, check_dga,
                  note="the same EM with use_backend('reference')")]
    try:
        from gmm_gpu.gmm import GMM
    except ImportError:
        print("  gmm-gpu rows skipped: the optional peer is not installed (pip install --no-deps gmm-gpu==0.2.8)")
    else:
        def run_gmm_gpu():
            gm = GMM(n_components=K, max_iter=MAX_ITER, device=str(device), random_seed=args.seed + 1)
            gm.fit(x)
            return gm.predict(x), int(gm.convergence_iters.max())

        cases.append(Case("em", "gmm-gpu", "fit", run_gmm_gpu, lambda out: {"ok": True, **summary(*out)},
                          repeats=1, note="gmm_gpu.gmm.GMM(K, device=cpu): full covariances, batched over units"))
    x_np = x.cpu().numpy()

    def run_sklearn():
        return np.stack([GaussianMixture(K, covariance_type="full", max_iter=MAX_ITER, random_state=args.seed)
                         .fit_predict(x_np[u]) for u in range(U)])

    cases.append(Case("em", "sklearn-gmm-full", "fit", run_sklearn, lambda p: {"ok": True, **summary(p)},
                      repeats=1, note="GaussianMixture(K, covariance_type='full') per unit, summed over units"))
    return cases


def family_hddc(args, device) -> list[Case]:
    """``HDDC.fit`` (one mixture, the batched core with G = 1) against ``GaussianMixture(covariance_type="full")``
    at the same K and the same number of EM iterations (``tol=0``: both run exactly ``HDDC_ITERS``), on a sample
    of an 8-component Gaussian mixture in D = 32 (N = 100k; 5k at --size small)."""
    import numpy as np
    from sklearn.metrics import adjusted_rand_score
    from sklearn.mixture import GaussianMixture

    from dga_fast import HDDC

    N = {"small": 5_000, "default": 100_000, "large": 1_000_000}[args.size]
    D, K = 32, args.em_k
    g = torch.Generator().manual_seed(args.seed)
    truth = torch.randint(0, K, (N,), generator=g)
    centres = 3.0 * torch.randn(K, D, generator=g)
    scales = 0.5 + torch.rand(K, D, generator=g)          # axis-aligned, unequal spreads per component
    X = (centres[truth] + scales[truth] * torch.randn(N, D, generator=g)).numpy()
    truth = truth.numpy()
    note = f"N={N} x D={D}, K={K}, exactly {HDDC_ITERS} EM iterations (tol=0)"

    def run_hddc():
        m = HDDC(n_components=K, max_iter=HDDC_ITERS, tol=0.0, random_state=args.seed, device=device).fit(X)
        return m.predict(X), m.n_iter_

    def run_sklearn():
        m = GaussianMixture(K, covariance_type="full", max_iter=HDDC_ITERS, tol=0.0, random_state=args.seed)
        return m.fit(X).predict(X), m.n_iter_

    def check(out):
        pred, n_iter = out
        return {"ok": bool(np.isfinite(pred).all()) and n_iter == HDDC_ITERS, "n_iter": int(n_iter),
                "ari_vs_truth": round(float(adjusted_rand_score(truth, pred)), 4)}

    return [Case("hddc", "dga_fast", "fit", run_hddc, check, note=note),
            Case("hddc", "sklearn-gmm-full", "fit", run_sklearn, check, repeats=1, note=note)]
