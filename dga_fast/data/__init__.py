"""Datasets: synthetic latent-unit tokens, the procedural SyntheticShapes, SyntheticSprites and SyntheticSquares images,
and loaders that read the original files of Shapes3D, MPI3D-toy, Cars3D, CelebA and any image folder."""
from .identity import FactorsAsImages
from .files import Cars3D, CelebA, ImageFolder, MPI3DToy, Shapes3D
from .factor_grid import FactorGrid
from .synthetic_shapes import FACTOR_NAMES, FACTOR_SIZES, SyntheticShapes
from .synthetic_sprites import SPRITE_FACTOR_NAMES, SPRITE_FACTOR_SIZES, SyntheticSprites
from .synthetic_squares import SQUARE_FACTOR_NAMES, SQUARE_FACTOR_SIZES, SyntheticSquares
from .subset import IndexSubset
from .published_tokens import UnitSpec, hard_setting, make_published_tokens
from .tokens import UnitTokens, make_unit_tokens, spread_levels

__all__ = ["UnitTokens", "UnitSpec", "hard_setting", "make_published_tokens", "make_unit_tokens", "spread_levels", "SyntheticShapes", "FACTOR_NAMES",
           "FactorGrid", "SyntheticSprites", "SPRITE_FACTOR_NAMES", "SPRITE_FACTOR_SIZES", "SyntheticSquares",
           "SQUARE_FACTOR_NAMES", "SQUARE_FACTOR_SIZES",
           "FACTOR_SIZES", "Shapes3D", "MPI3DToy", "Cars3D", "CelebA", "ImageFolder", "FactorsAsImages", "IndexSubset"]
