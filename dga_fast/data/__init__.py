"""Datasets: synthetic latent-unit tokens and the procedural SyntheticShapes images."""
from .synthetic_shapes import FACTOR_NAMES, FACTOR_SIZES, SyntheticShapes
from .tokens import UnitTokens, make_unit_tokens, spread_levels

__all__ = ["UnitTokens", "make_unit_tokens", "spread_levels", "SyntheticShapes", "FACTOR_NAMES",
           "FACTOR_SIZES"]
