"""``torch.library`` custom op over the Triton launch function of ``hddc_estep`` (``triton.py``): a fake (meta)
implementation so ``torch.compile`` keeps whole graphs, and registered autograd. Imported by
``ops.registry.triton_available`` the first time a Triton path is taken, so importing dga_fast never needs Triton."""
from __future__ import annotations

import torch
from torch import Tensor

from ... import estep_grad


@torch.library.custom_op("dga_fast::hddc_estep", mutates_args=())
def hddc_estep(x: Tensor,           # [G, N, D]
               means: Tensor,       # [G, K, D]
               components: Tensor,  # [G, K, D, DM]
               w: Tensor,           # [G, K, DM]
               inv_b: Tensor,       # [G, K]
               const: Tensor        # [G, K]
               ) -> tuple[Tensor, Tensor]:
    from .triton import hddc_estep_fwd
    return hddc_estep_fwd(x, means, components, w, inv_b, const)


@hddc_estep.register_fake
def _hddc_estep_fake(x, means, components, w, inv_b, const):
    G, N, _ = x.shape
    K = means.shape[1]
    return x.new_empty(G, N, K, dtype=torch.float32), x.new_empty(G, N, dtype=torch.float32)


hddc_estep.register_autograd(estep_grad.backward, setup_context=estep_grad.setup_context)


