"""Neural-network building blocks of the EncDiff-style model."""
from .encoder import FeatureExtractor
from .schedule import DiffusionSchedule
from .skip_dropout import DecoderInput, SkipDropout
from .unet import AttentionBlock, ResBlock, UNet, norm_groups, timestep_embedding

__all__ = ["FeatureExtractor", "DiffusionSchedule", "SkipDropout", "DecoderInput", "UNet", "ResBlock",
           "AttentionBlock", "norm_groups", "timestep_embedding"]
