"""Reference anchor shift of Dynamic Gaussian Anchoring (DESIGN §4), the oracle of the fused kernel."""
from __future__ import annotations

import torch

from ...mixture.normalise import Normaliser, denormalise_means, normalise
from ...mixture.state import MixtureState
from ..hddc_estep.reference import hddc_estep

EPS = 1e-6


def normalise_tokens(c: torch.Tensor,      # [B, U, Dc]
                     shift: torch.Tensor,  # [U, Dc]
                     scale: torch.Tensor   # [U]
                     ) -> torch.Tensor:    # [U, B, Dc] in the mixture's coordinates
    return normalise(c.transpose(0, 1), shift, scale)


def anchor_log_resp(c: torch.Tensor, state: MixtureState, shift: torch.Tensor,
                    scale: torch.Tensor) -> torch.Tensor:  # [B, U, K]
    """Log-responsibilities of every token's unit mixture (no gradient)."""
    with torch.no_grad():
        log_resp, _ = hddc_estep(normalise_tokens(c.detach(), shift, scale), state)
    return log_resp.transpose(0, 1)


def anchor_assign(c: torch.Tensor, state: MixtureState, shift: torch.Tensor,
                  scale: torch.Tensor) -> torch.Tensor:  # [B, U] int64
    """Most responsible component ``k*`` of every token (no gradient)."""
    return anchor_log_resp(c, state, shift, scale).argmax(-1)


def anchor_shift(c: torch.Tensor,        # [B, U, Dc]
                 state: MixtureState,    # G = U, normalised coordinates
                 shift: torch.Tensor,    # [U, Dc]
                 scale: torch.Tensor,    # [U]
                 align,                  # "adaptive" or a float λ
                 align_max: float) -> torch.Tensor:  # [B, U, Dc]
    """``c' = c + λ (μ_{k*} − c)`` with ``μ_{k*}`` in token coordinates and, for ``align="adaptive"``,
    ``λ = align_max · exp(−‖c − μ‖₁ / (‖c‖₁ + ε))`` per (sample, unit). Computed in float32 (float64
    for float64 input) and returned in ``c``'s dtype; gradients flow to ``c`` (also through λ), none to the
    mixture."""
    with torch.autocast(c.device.type, enabled=False):   # the shift is computed in float32, also under AMP
        return _anchor_shift(c, state, shift, scale, align, align_max)


def _anchor_shift(c, state, shift, scale, align, align_max):
    dt = torch.promote_types(c.dtype, torch.float32)
    k = anchor_assign(c, state, shift, scale)                                   # [B, U]
    mu_n = _selected_means(state, k, dt)                                        # [B, U, D]
    mu = denormalise_means(mu_n.transpose(0, 1), shift.to(dt), scale).transpose(0, 1).detach()   # [B, U, D]
    cf = c.to(dt)
    if align == "adaptive":
        lam = align_max * torch.exp(-(cf - mu).abs().sum(-1, keepdim=True)
                                    / (cf.abs().sum(-1, keepdim=True) + EPS))
    else:
        lam = float(align)
    return (cf + lam * (mu - cf)).to(c.dtype)


def _selected_means(state: MixtureState, k: torch.Tensor,  # k: [B, U] component indices
                    dt: torch.dtype) -> torch.Tensor:       # [B, U, D] normalised coordinates
    U, K, D = state.means.shape
    return torch.gather(state.means.to(dt).unsqueeze(0).expand(k.shape[0], U, K, D), 2,
                        k[..., None, None].expand(-1, -1, 1, D)).squeeze(2)


def published_anchor_shift(c: torch.Tensor,       # [B, U, Dc]
                           state: MixtureState,   # G = U, fitted on min-max normalised tokens
                           align_max: float) -> torch.Tensor:  # [B, U, Dc]
    """The published code's anchor shift (DESIGN §6a), kept for comparisons (plain PyTorch, no kernel): the
    batch is normalised per unit by its own ``(c − max) / (max − min)`` (over the batch and the token dims,
    ``Normaliser.fit_minmax``), ``k*`` is chosen in those coordinates, and the mean ``μ_{k*}`` *in those
    coordinates* is mixed into the raw token with one λ for the whole batch,
    ``λ = align_max · exp(−mean |(c − μ) / c|)``. Our only change: ``|c| + ε`` in the denominator, so an exact
    zero of a ReLU token drives λ toward 0 instead of making it NaN. Gradients flow to ``c`` (also through λ)."""
    with torch.autocast(c.device.type, enabled=False):
        cf = c.to(torch.promote_types(c.dtype, torch.float32))
        lam, mu = published_lambda(cf, state, align_max)
        return (cf + lam * (mu - cf)).to(c.dtype)


def published_lambda(c: torch.Tensor,       # [B, U, Dc], float32 or wider
                     state: MixtureState,   # G = U, fitted on min-max normalised tokens
                     align_max: float) -> tuple[torch.Tensor, torch.Tensor]:   # λ [], μ_{k*} [B, U, Dc]
    """The published rule's one λ of the batch and the selected means (normalised coordinates, detached) that
    ``published_anchor_shift`` mixes into ``c``. Tokens of either sign spread over several units make the
    mean of ``|c − μ| / |c|`` large (a token near 0 weighs heavily), and then λ is all but 0."""
    norm = Normaliser.fit_minmax(c.detach().transpose(0, 1))
    mu = _selected_means(state, anchor_assign(c, state, norm.shift, norm.scale), c.dtype).detach()
    return align_max * torch.exp(-((c - mu).abs() / (c.abs() + EPS)).mean()), mu
