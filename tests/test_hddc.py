"""HDDC estimator: exact density, scikit-learn conventions, invariances, bad input."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st_
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from sklearn.metrics import adjusted_rand_score
from sklearn.utils.estimator_checks import check_estimator

from dga_fast import HDDC


def low_rank_mixture(K=4, D=10, n=300, d=2, sep=20.0, noise=0.3, seed=0):
    rng = np.random.default_rng(seed)
    X, y = [], []
    for k in range(K):
        B = rng.standard_normal((D, d)) * 3
        mu = rng.standard_normal(D) * sep
        X.append(rng.standard_normal((n, d)) @ B.T + mu + noise * rng.standard_normal((n, D)))
        y += [k] * n
    return np.vstack(X), np.array(y)


@pytest.mark.parametrize("model", ["AkjBkQkDk", "AkBkQkDk", "ABkQkDk", "AkjBQkDk"])
@pytest.mark.parametrize("d_select", ["cattell", "bic"])
def test_score_samples_is_the_exact_mixture_density(model, d_select):
    X, y = low_rank_mixture(seed=1)
    h = HDDC(n_components=4, model=model, d_select=d_select, random_state=0).fit(X)
    comp = [np.log(w) + multivariate_normal(m, c).logpdf(X)
            for m, c, w in zip(h.means_, h.covariances_, h.weights_)]
    ref = logsumexp(np.stack(comp), axis=0)
    got = h.score_samples(X)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, ref, rtol=1e-4)
    proba = h.predict_proba(X)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-10)
    assert adjusted_rand_score(y, h.predict(X)) >= 0.99
    assert math.isclose(h.score(X), float(ref.mean()), rel_tol=1e-6)


def test_well_separated_labels_and_fit_predict_consistency():
    X, y = low_rank_mixture(K=5, D=16, n=200, seed=3)
    h = HDDC(n_components=5, random_state=0)
    labels = h.fit_predict(X)
    assert adjusted_rand_score(y, labels) >= 0.99
    np.testing.assert_array_equal(labels, h.predict(X))
    np.testing.assert_array_equal(labels, h.labels_)
    assert h.converged_ and 1 <= h.n_iter_ <= h.max_iter
    assert h.means_.shape == (5, 16) and h.covariances_.shape == (5, 16, 16) and h.dims_.shape == (5,)
    assert math.isclose(h.lower_bound_, h.score(X), rel_tol=1e-6)


def test_bic_and_icl_follow_hdclassif_convention():
    X, _ = low_rank_mixture(K=3, D=8, n=200, seed=4)
    h = HDDC(n_components=3, random_state=0).fit(X)
    ll = h.score_samples(X).sum()
    m = h._n_parameters()
    assert math.isclose(h.bic(X), 2 * ll - m * math.log(len(X)), rel_tol=1e-9)
    p = h.predict_proba(X)
    ent = -(p * np.log(np.clip(p, 1e-300, None))).sum()
    assert math.isclose(h.icl(X), h.bic(X) - 2 * ent, rel_tol=1e-6, abs_tol=1e-6)
    # BIC picks the right number of components
    bics = {k: HDDC(n_components=k, random_state=0).fit(X).bic(X) for k in (2, 3, 5)}
    assert max(bics, key=bics.get) == 3


def test_torch_in_torch_out():
    X, y = low_rank_mixture(K=3, D=6, n=100, seed=5)
    Xt = torch.tensor(X, dtype=torch.float32)
    h = HDDC(n_components=3, random_state=0).fit(Xt)
    assert isinstance(h.means_, torch.Tensor) and h.means_.dtype == torch.float32
    pred = h.predict(Xt)
    assert isinstance(pred, torch.Tensor)
    assert adjusted_rand_score(y, pred.numpy()) >= 0.99


def test_sklearn_estimator_checks():
    # Every check applicable here must pass. The array-API check is skipped by scikit-learn itself unless
    # SCIPY_ARRAY_API=1 is set (it is an opt-in environment feature, not a property of the estimator).
    results = check_estimator(HDDC(), on_fail=None)
    failed = [(r["check_name"], str(r["exception"])[:200]) for r in results if r["status"] == "failed"]
    assert not failed, failed
    skipped = {r["check_name"] for r in results if r["status"] == "skipped"}
    assert skipped <= {"check_array_api_input"}, skipped
    assert sum(r["status"] == "passed" for r in results) >= 40


@given(st_.sampled_from([1e-4, 1e-2, 1.0, 1e2, 1e4]), st_.floats(-1e3, 1e3), st_.integers(0, 50))
def test_scale_and_shift_give_the_same_clustering(scale, shift, seed):
    X, y = low_rank_mixture(K=3, D=6, n=80, seed=seed)
    base = HDDC(n_components=3, random_state=0).fit_predict(X)
    Xs = X * scale + shift
    h = HDDC(n_components=3, random_state=0).fit(Xs)
    np.testing.assert_array_equal(h.predict(Xs), base)
    assert np.isfinite(h.score_samples(Xs)).all()
    assert np.isfinite(h.covariances_).all() and np.isfinite(h.means_).all()


@given(st_.sampled_from([1e-4, 1e-2, 1.0, 1e2, 1e4]), st_.integers(0, 50))
def test_no_nan_for_any_data_scale_float32(scale, seed):
    rng = np.random.default_rng(seed)
    X = (rng.standard_normal((120, 5)) * scale).astype(np.float32)   # no cluster structure at all
    h = HDDC(n_components=4, random_state=seed).fit(X)
    for v in (h.score_samples(X), h.predict_proba(X), h.means_, h.covariances_, h.weights_):
        assert np.isfinite(v).all()


# ---------------------------------------------------------------------------------------------- bad input
def test_bad_input():
    X, _ = low_rank_mixture(K=2, D=4, n=30)
    with pytest.raises(ValueError, match="NaN|infinity|inf"):
        HDDC(n_components=2).fit(np.where(np.arange(X.size).reshape(X.shape) == 3, np.nan, X))
    with pytest.raises(ValueError, match="NaN or Inf"):
        HDDC(n_components=2).fit(torch.tensor(X).index_fill(0, torch.tensor([0]), float("inf")))
    with pytest.raises(ValueError, match="fewer than n_components"):
        HDDC(n_components=8).fit(X[:5])
    with pytest.raises(ValueError, match="constant"):
        HDDC(n_components=2).fit(np.ones((20, 3)))
    h = HDDC(n_components=2, random_state=0).fit(X)
    with pytest.raises(ValueError, match="features"):
        h.predict(X[:, :3])
    with pytest.raises(ValueError, match="features"):
        h.predict(torch.tensor(X[:, :3]))
    with pytest.raises(TypeError, match="floating-point"):
        HDDC(n_components=2).fit(torch.ones(10, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="model"):
        HDDC(model="full").fit(X)
    with pytest.raises(TypeError, match="n_components"):
        HDDC(n_components=2.5).fit(X)
    with pytest.raises(ValueError, match="tol"):
        HDDC(n_components=2, tol=-1).fit(X)
    assert HDDC(n_components=2, tol=0.0, max_iter=7).fit(X).n_iter_ == 7     # tol 0: exactly max_iter (sklearn)
