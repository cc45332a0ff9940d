"""dga_fast: Dynamic Gaussian Anchoring and Skip Dropout for diffusion-based disentangled representation
learning, with batched HDDC mixtures and fused kernels."""
from .anchoring import DynamicGaussianAnchoring
from .hddc import HDDC
from .model import AnchoredDiffusion
from .mixture import MixtureState
from .nn import FirstStage
from .ops import use_backend

__version__ = "0.1.0"
__all__ = ["AnchoredDiffusion", "DynamicGaussianAnchoring", "FirstStage", "HDDC", "MixtureState", "__version__"]
