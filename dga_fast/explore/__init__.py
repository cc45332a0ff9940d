"""``python -m dga_fast explore RUN_DIR``: a local page to see and steer a trained run's latent units (click a unit's
Gaussian anchors, slide between two anchors, swap a unit in from another image, see each unit's attention), served
by a small Starlette app over one loaded model (``session.ExploreSession``, ``app.make_app``)."""
from .session import ExploreSession

__all__ = ["ExploreSession"]
