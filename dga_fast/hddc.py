"""HDDC: high-dimensional data clustering (Bouveyron, Girard & Schmid 2007) as a scikit-learn estimator
over the batched mixture core (one group)."""
from __future__ import annotations

import math
import numbers

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClusterMixin, DensityMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from . import ops
from .mixture.normalise import Normaliser, normalise
from .mixture import (D_SELECT, MODELS, MixtureState, MStepConfig, bic as _bic, default_d_max, fit_em,
                      icl as _icl, init_state, initial_partition, n_free_params)

_INITS = ("kmeans++", "random")


class HDDC(ClusterMixin, DensityMixin, BaseEstimator):
    """Gaussian mixture whose components live near low-dimensional subspaces (HDclassif's models).

    Component ``k``: mean ``μ_k``, orthonormal ``Q_k`` (``d_k`` columns), subspace variances ``a_kj``, noise
    variance ``b_k``: ``Σ_k = Q_k diag(a_k) Q_kᵀ + b_k (I − Q_k Q_kᵀ)``. Fitted by EM with k-means++
    initialisation; ``d_k`` by Cattell's scree test (``threshold``) or BIC, at most ``d_max`` (default
    ``min(D − 1, 8)``).

    Parameters follow DESIGN §3. The data are centred and scaled by one isotropic factor before fitting
    (every model here is equivariant to that, so the clustering does not depend on the data's units);
    ``noise_floor`` is relative to that scale. A component whose mass falls below ``min_cluster_size``
    is deactivated during EM; the fitted attributes then hold only the remaining components.

    NumPy input gives NumPy output; torch tensors are accepted too and give tensors back.

    Attributes: ``means_ [K, D]``, ``weights_ [K]``, ``covariances_ [K, D, D]``, ``dims_ [K]``,
    ``n_iter_``, ``converged_``, ``lower_bound_`` (mean log-likelihood per sample at the last E-step),
    ``labels_``, ``state_`` (a ``MixtureState`` with ``G = 1`` in data coordinates), ``n_features_in_``.
    """

    def __init__(self, n_components=8, model="AkjBkQkDk", d_select="cattell", threshold=0.2, d_max=None,
                 init="kmeans++", max_iter=100, tol=1e-4, min_cluster_size=2, noise_floor=1e-6, device=None,
                 random_state=None):
        self.n_components = n_components
        self.model = model
        self.d_select = d_select
        self.threshold = threshold
        self.d_max = d_max
        self.init = init
        self.max_iter = max_iter
        self.tol = tol
        self.min_cluster_size = min_cluster_size
        self.noise_floor = noise_floor
        self.device = device
        self.random_state = random_state

    # ------------------------------------------------------------------ validation helpers
    def _check_params(self):
        def _int(name, v, lo):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                raise TypeError(f"{name} must be an int, got {type(v).__name__}")
            if v < lo:
                raise ValueError(f"{name} must be >= {lo}, got {v}")

        def _pos(name, v, strict=True):
            if isinstance(v, bool) or not isinstance(v, numbers.Real):
                raise TypeError(f"{name} must be a number, got {type(v).__name__}")
            if not math.isfinite(v) or (v <= 0 if strict else v < 0):
                raise ValueError(f"{name} must be a finite number {'>' if strict else '>='} 0, got {v}")

        _int("n_components", self.n_components, 1)
        _int("max_iter", self.max_iter, 1)
        _pos("tol", self.tol, strict=False)   # 0: exactly max_iter iterations (as scikit-learn)
        _pos("threshold", self.threshold)
        _pos("min_cluster_size", self.min_cluster_size, strict=False)
        _pos("noise_floor", self.noise_floor)
        if self.d_max is not None:
            _int("d_max", self.d_max, 1)
        for name, value, choices in (("model", self.model, MODELS), ("d_select", self.d_select, D_SELECT),
                                     ("init", self.init, _INITS)):
            if value not in choices:
                raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")

    def _to_tensor(self, X, *, reset: bool):
        """Validated ``[N, D]`` float tensor, and whether the caller gave a tensor."""
        if isinstance(X, torch.Tensor):
            if X.dim() != 2:
                raise ValueError(f"X must be 2-D [n_samples, n_features], got shape {tuple(X.shape)}")
            if not X.is_floating_point():
                raise TypeError(f"X must be a floating-point tensor, got {X.dtype}")
            if X.numel() and not bool(torch.isfinite(X).all()):
                raise ValueError("X contains NaN or Inf values")
            if X.shape[0] < 1:
                raise ValueError("X has 0 samples; at least 1 is required")
            if reset:
                self.n_features_in_ = X.shape[1]
            elif X.shape[1] != self.n_features_in_:
                raise ValueError(f"X has {X.shape[1]} features, but HDDC is expecting "
                                 f"{self.n_features_in_} features as input")
            dt = torch.float64 if X.dtype == torch.float64 else torch.float32
            dev = torch.device(self.device) if self.device is not None else X.device
            return X.detach().to(device=dev, dtype=dt), True
        X = validate_data(self, X, reset=reset, dtype=[np.float64, np.float32])
        dev = torch.device(self.device) if self.device is not None else torch.device("cpu")
        return torch.from_numpy(np.require(X, requirements=["C", "W"])).to(dev), False

    @staticmethod
    def _out(t: torch.Tensor, as_tensor: bool):
        return t if as_tensor else t.detach().cpu().numpy()

    # ------------------------------------------------------------------ fit
    def fit(self, X, y=None):
        """Fit the mixture to ``X [n_samples, n_features]``; ``y`` is ignored."""
        self._fit(X)
        return self

    def fit_predict(self, X, y=None):
        """Fit, then return the labels of the final E-step (equal to ``fit(X).predict(X)``)."""
        return self._fit(X)

    def _fit(self, X):
        self._check_params()
        x, as_tensor = self._to_tensor(X, reset=True)
        N, D = x.shape
        if N < max(self.n_components, 2):
            raise ValueError(f"X has {N} sample(s), fewer than n_components={self.n_components} "
                             "(and at least 2 are needed)")
        norm = Normaliser.fit(x.unsqueeze(0), moments=ops.group_moments)        # the mixture core's normaliser
        if bool(norm.collapsed[0]):
            raise ValueError("X is constant (zero variance); a mixture cannot be fitted to constant data")
        shift, scale = norm.shift[0], float(norm.scale[0])
        xn = norm(x.unsqueeze(0)).to(x.dtype)                                   # [1, N, D]
        self._d_max = default_d_max(D, self.d_max)
        cfg = MStepConfig(model=self.model, d_select=self.d_select, threshold=float(self.threshold),
                          d_max=self._d_max, min_mass=float(max(self.min_cluster_size, 1e-12)))
        floor = torch.full((1,), float(self.noise_floor), dtype=x.dtype, device=x.device)
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        gen = torch.Generator().manual_seed(seed)
        labels = initial_partition(xn, self.n_components, self.init, gen, step=ops.kmeans_assign,
                                   loop=ops.kmeans_lloyd)
        state = init_state(xn, labels, self.n_components, cfg, floor, kernels=ops.MSTEP)
        res = fit_em(xn, state, cfg, floor, ops.hddc_estep, max_iter=self.max_iter, tol=float(self.tol),
                     kernels=ops.MSTEP)
        keep = res.state.active[0]
        self._state_n = res.state.index_slots(torch.nonzero(keep).T)        # active slots only, in order
        self._shift, self._scale = shift, scale
        self._as_tensor = as_tensor
        self.n_iter_ = int(res.n_iter[0])
        self.converged_ = bool(res.converged[0])
        self.lower_bound_ = float(res.log_likelihood[0]) - D * math.log(scale)
        st = self.state_
        self.means_ = self._out(st.means[0], as_tensor)
        self.weights_ = self._out(st.weights()[0], as_tensor)
        self.covariances_ = self._out(st.covariances()[0], as_tensor)
        self.dims_ = self._out(st.dims[0], as_tensor)
        self.n_components_ = int(keep.sum())
        labels = res.log_resp[0][:, keep].argmax(-1)
        self.labels_ = self._out(labels, as_tensor)
        return self.labels_

    # ------------------------------------------------------------------ fitted model
    @property
    def state_(self) -> MixtureState:
        """The fitted mixture (G = 1) in data coordinates."""
        check_is_fitted(self, "_state_n")
        s, sh = self._scale, self._shift
        st = self._state_n
        return MixtureState(means=st.means * s + sh, components=st.components, eigvals=st.eigvals * s * s,
                            noise=st.noise * s * s, log_weights=st.log_weights, dims=st.dims,
                            active=st.active)

    def _estep(self, X):
        check_is_fitted(self, "_state_n")
        x, as_tensor = self._to_tensor(X, reset=False)
        xn = normalise(x.to(self._state_n.dtype).unsqueeze(0), self._shift.unsqueeze(0),
                       x.new_full((1,), self._scale, dtype=self._state_n.dtype))
        log_resp, loglik = ops.hddc_estep(xn, self._state_n)
        loglik = loglik[0] - self.n_features_in_ * math.log(self._scale)   # Jacobian of the scaling
        return log_resp[0], loglik, as_tensor

    def predict(self, X):
        """Index of the most probable component of every sample."""
        log_resp, _, t = self._estep(X)
        return self._out(log_resp.argmax(-1), t)

    def predict_proba(self, X):
        """Posterior probabilities ``[n_samples, n_components_]`` (rows sum to 1)."""
        log_resp, _, t = self._estep(X)
        return self._out(log_resp.exp(), t)

    def score_samples(self, X):
        """Log-density of every sample under the fitted mixture."""
        _, loglik, t = self._estep(X)
        return self._out(loglik, t)

    def score(self, X, y=None):
        """Mean log-likelihood per sample."""
        _, loglik, _ = self._estep(X)
        return float(loglik.mean())

    def _n_parameters(self) -> float:
        return float(n_free_params(self._state_n, self.model)[0])

    def _bic_of(self, loglik: torch.Tensor) -> torch.Tensor:  # [1]
        return _bic(loglik.sum().reshape(1), self._state_n, self.model, loglik.numel())

    def bic(self, X):
        """``2·LL − m·log N`` (larger is better, HDclassif convention)."""
        _, loglik, _ = self._estep(X)
        return float(self._bic_of(loglik)[0])

    def icl(self, X):
        """BIC minus twice the classification entropy (larger is better)."""
        log_resp, loglik, _ = self._estep(X)
        return float(_icl(self._bic_of(loglik), log_resp.unsqueeze(0))[0])
