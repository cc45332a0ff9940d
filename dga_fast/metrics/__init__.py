"""Disentanglement metrics (NumPy / scikit-learn, disentanglement_lib protocols; see each docstring).

Every metric takes a representation — a function images → ``[B, U]`` together with a dataset that provides
``sample_factors(n, rng)`` and ``images_from_factors(f)``, or (except FactorVAE) precomputed
``(reps [N, U], factors [N, F])`` arrays — and a seed (an int, as ``numpy.random.RandomState(seed)``, or a
``RandomState`` / ``Generator`` to draw from); sample counts default to DESIGN §7. ``sample_factors`` receives a
``RandomState`` that also has ``Generator.integers``: datasets written for disentanglement_lib
(``random_state.randint``) and for NumPy's newer API (``rng.integers``) both work.
TAD takes binary attributes (CelebA). ``anchor_purity`` scores a generative model's DyGA regions (it
generates images). ``factor_fidelity`` reads the factors off a model's reconstructions with a probe trained on
real images. ``fid`` compares generated images with the dataset's (Inception features, or a network
passed in).
"""
from .anchor_purity import anchor_purity
from .beta_vae import beta_vae_score
from .dci import dci
from .factor_fidelity import factor_fidelity
from .factor_vae import factor_vae_score
from .fid import fid
from .infomec import infomec
from .mig import mig
from .modularity import modularity_explicitness
from .sap import sap
from .tad import tad

__all__ = ["anchor_purity", "beta_vae_score", "dci", "factor_fidelity", "factor_vae_score", "fid", "infomec", "mig", "modularity_explicitness", "sap", "tad"]
