"""Neural-network building blocks of the EncDiff-style model."""
from .encoder import FeatureExtractor, PaperFeatureExtractor, UnitMLP
from .first_stage import FirstStage
from .quantize import VectorQuantizer
from .schedule import DiffusionSchedule
from .skip_dropout import DecoderInput, SkipDropout
from .unet import AttentionBlock, ResBlock, UNet, norm_groups, timestep_embedding

__all__ = ["FeatureExtractor", "PaperFeatureExtractor", "UnitMLP", "FirstStage", "VectorQuantizer", "DiffusionSchedule", "SkipDropout", "DecoderInput", "UNet", "ResBlock",
           "AttentionBlock", "norm_groups", "timestep_embedding"]
