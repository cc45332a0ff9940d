"""Plain-PyTorch reference implementations of every op: the test oracle and the CPU path."""
from .anchor import anchor_assign, anchor_log_resp, anchor_shift
from .estep import hddc_estep
from .skip_block import skip_dropout_concat_norm_silu
from .split_filter import filter_components, mixture_spread, split_components
from ..mixture.normalise import group_sums as group_moments

__all__ = ["anchor_assign", "anchor_log_resp", "anchor_shift", "group_moments", "hddc_estep", "filter_components", "mixture_spread",
           "split_components", "skip_dropout_concat_norm_silu"]
