"""M-step pieces: segmented scatter matrices, dimension choice, submodels, deactivation."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st_

from dga_fast.mixture import (MODELS, MStepConfig, bic_dims, cattell_dims, default_d_max, m_step,
                              n_free_params, scatter_matrices)
from dga_fast.mixture.mstep import RESP_EPS
from dga_fast.ops.hddc_mstep import naive


@given(st_.integers(1, 3), st_.integers(1, 300), st_.integers(1, 6), st_.integers(1, 9),
       st_.booleans(), st_.integers(0, 2**16))
def test_scatter_matrices_match_dense(G, N, K, D, hard, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(G, N, D, generator=g, dtype=torch.float64) * 4
    logits = torch.randn(G, N, K, generator=g, dtype=torch.float64) * (40 if hard else 1)
    resp = torch.softmax(logits, -1)
    nk = resp.sum(1).clamp_min(1e-12)
    mu = (resp.transpose(1, 2) @ x) / nk.unsqueeze(-1)
    S = scatter_matrices(x, resp, mu)
    # the dense oracle, without the pairs at or below RESP_EPS as documented (a hard fit has some at 1e-8)
    ref = naive.mstep_scatter(x, resp, mu, RESP_EPS)
    torch.testing.assert_close(S, ref, rtol=1e-9, atol=1e-6 * float(ref.abs().max()) + 1e-12)


def test_cattell_dims_known_spectra():
    ev = torch.tensor([[10.0, 9.0, 1.0, 0.9, 0.8, 0.7],      # gaps 1,8,.1,.1,.1 -> largest j with rel>=.2 is 2
                       [5.0, 1.0, 0.99, 0.98, 0.97, 0.96],   # one big gap -> 1
                       [1.0, 1.0, 1.0, 1.0, 1.0, 1.0],        # no gap -> clamp to 1
                       [8.0, 6.0, 4.0, 2.0, 0.0, 0.0]])       # equal gaps 2,2,2,2 -> 4, capped by d_max=3
    d = cattell_dims(ev, 0.2, 3)
    assert d.tolist() == [2, 1, 1, 3]
    assert cattell_dims(ev, 0.2, 0).tolist() == [0, 0, 0, 0]


def test_bic_dims_prefers_true_rank():
    g = torch.Generator().manual_seed(0)
    D, n = 12, 4000
    for true_d in (1, 3, 5):
        basis = torch.linalg.qr(torch.randn(D, true_d, generator=g, dtype=torch.float64))[0]
        x = torch.randn(n, true_d, generator=g, dtype=torch.float64) * 3 @ basis.T \
            + 0.1 * torch.randn(n, D, generator=g, dtype=torch.float64)
        W = torch.cov(x.T)
        ev = torch.linalg.eigvalsh(W).flip(-1).reshape(1, 1, D)
        d = bic_dims(ev, torch.tensor([[float(n)]], dtype=torch.float64), torch.tensor([n]), 8,
                     torch.tensor([1e-9], dtype=torch.float64))
        assert int(d) == true_d


def _fit_one(x, model, K=3, d_max=4, seed=0):
    """One M-step from hard labels of well separated groups."""
    G, N, D = x.shape
    lab = torch.arange(N) % K
    resp = torch.nn.functional.one_hot(lab, K).to(x.dtype).expand(G, N, K).contiguous()
    cfg = MStepConfig(model=model, d_select="cattell", threshold=0.2, d_max=d_max, min_mass=2.0)
    return m_step(x, resp, cfg, torch.full((G,), 1e-9, dtype=x.dtype)), lab


@pytest.mark.parametrize("model", MODELS)
def test_m_step_submodels_against_numpy(model):
    g = torch.Generator().manual_seed(1)
    N, D, K = 600, 7, 3
    x = torch.randn(1, N, D, generator=g, dtype=torch.float64) * torch.linspace(0.5, 3, D, dtype=torch.float64)
    st, lab = _fit_one(x, model, K=K)
    X = x[0].numpy()
    pis, evs, trs = [], [], []
    for k in range(K):
        pts = X[lab.numpy() == k]
        mu = pts.mean(0)
        W = (pts - mu).T @ (pts - mu) / len(pts)
        np.testing.assert_allclose(st.means[0, k].numpy(), mu, rtol=1e-10, atol=1e-10)
        ev, vec = np.linalg.eigh(W)
        evs.append(ev[::-1])
        trs.append(np.trace(W))
        pis.append(len(pts) / N)
        # the subspace spans the top-d eigenvectors
        d = int(st.dims[0, k])
        Q = st.components[0, k, :, :d].numpy()
        P_ref = vec[:, ::-1][:, :d] @ vec[:, ::-1][:, :d].T
        np.testing.assert_allclose(Q @ Q.T, P_ref, atol=1e-8)
    d = st.dims[0].numpy()
    pis = np.array(pis)
    kept = np.array([evs[k][:d[k]].sum() for k in range(K)])
    resid = np.array([(trs[k] - kept[k]) / (D - d[k]) for k in range(K)])
    a = st.eigvals[0].numpy()
    b = st.noise[0].numpy()
    for k in range(K):
        if model == "AkjBkQkDk":
            np.testing.assert_allclose(a[k, :d[k]], evs[k][:d[k]], rtol=1e-9)
        elif model == "AkBkQkDk":
            np.testing.assert_allclose(a[k, :d[k]], kept[k] / d[k], rtol=1e-9)
        elif model == "ABkQkDk":
            np.testing.assert_allclose(a[k, :d[k]], (pis * kept).sum() / (pis * d).sum(), rtol=1e-9)
        if model == "AkjBQkDk":
            np.testing.assert_allclose(b[k], (pis * (np.array(trs) - kept)).sum() / (pis * (D - d)).sum(),
                                       rtol=1e-9)
        else:
            np.testing.assert_allclose(b[k], resid[k], rtol=1e-9)
        assert (a[k, d[k]:] == 1.0).all(), "padded subspace variances are 1.0"
    np.testing.assert_allclose(st.weights()[0].numpy(), pis, rtol=1e-12)


def test_m_step_deactivates_light_components_without_nan():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 50, 4, generator=g, dtype=torch.float64)
    resp = torch.zeros(2, 50, 3, dtype=torch.float64)
    resp[:, :, 0] = 1.0
    resp[:, 0, 0], resp[:, 0, 1] = 0.0, 1.0              # component 1: mass 1 < min_mass
    cfg = MStepConfig(d_max=2, min_mass=2.0)
    st = m_step(x, resp, cfg, torch.full((2,), 1e-6, dtype=torch.float64))
    assert st.active.tolist() == [[True, False, False]] * 2
    for t in st.tensors().values():
        if t.is_floating_point():
            assert not torch.isnan(t).any()
    assert torch.isneginf(st.log_weights[:, 1:]).all()
    torch.testing.assert_close(st.log_weights[:, 0], torch.zeros(2, dtype=torch.float64))


def test_m_step_one_dimensional_data():
    x = torch.cat([torch.randn(1, 100, 1, dtype=torch.float64) - 5, torch.randn(1, 100, 1, dtype=torch.float64) + 5], 1)
    resp = torch.nn.functional.one_hot((torch.arange(200) >= 100).long(), 2).double().unsqueeze(0)
    st = m_step(x, resp, MStepConfig(d_max=default_d_max(1, None)), torch.full((1,), 1e-6, dtype=torch.float64))
    assert st.dims.tolist() == [[0, 0]]
    np.testing.assert_allclose(st.noise[0].numpy(), [x[0, :100].var(unbiased=False), x[0, 100:].var(unbiased=False)])


def test_free_parameter_counts():
    st, _ = _fit_one(torch.randn(1, 300, 6, dtype=torch.float64), "AkjBkQkDk", K=3, d_max=2)
    d = st.dims[0].double()
    K, D = 3, 6
    rho = K * D + K - 1
    tau = float((d * (D - (d + 1) / 2)).sum())
    expect = {"AkjBkQkDk": rho + tau + float(d.sum()) + K, "AkBkQkDk": rho + tau + 2 * K,
              "ABkQkDk": rho + tau + 1 + K, "AkjBQkDk": rho + tau + float(d.sum()) + 1}
    for model, m in expect.items():
        assert math.isclose(float(n_free_params(st, model)[0]), m)
