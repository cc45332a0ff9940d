"""Datasets: synthetic latent-unit tokens (the image datasets arrive with the model issue)."""
from .tokens import UnitTokens, make_unit_tokens, spread_levels

__all__ = ["UnitTokens", "make_unit_tokens", "spread_levels"]
