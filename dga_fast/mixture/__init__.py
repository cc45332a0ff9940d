"""Batched HDDC mixture core: G mixtures (one per latent unit) fitted at once, padded over components."""
from .criteria import bic, icl, n_free_params
from .dims import bic_dims, cattell_dims, default_d_max
from .em import EMResult, fit_em, init_state, responsibilities
from .init import initial_partition, kmeans_plusplus, lloyd
from .merge import merge_components
from .mstep import D_SELECT, MODELS, MStepConfig, m_step, scatter_matrices
from .state import MixtureState

__all__ = ["MixtureState", "MStepConfig", "EMResult", "MODELS", "D_SELECT", "m_step", "scatter_matrices",
           "fit_em", "init_state", "responsibilities", "initial_partition", "kmeans_plusplus", "lloyd", "cattell_dims",
           "bic_dims", "default_d_max", "n_free_params", "bic", "icl", "merge_components"]
