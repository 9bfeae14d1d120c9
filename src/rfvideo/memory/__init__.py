"""Per-GPU memory estimate of one training step, from the configs alone (no real weights, no allocation)."""

from rfvideo.memory.estimate import (
    GeneratorProfile,
    MemoryEstimate,
    estimate_from_config,
    estimate_memory,
    estimate_table,
    format_table,
    profile_generator,
    shard_estimate,
)
from rfvideo.memory.fake_step import StepPeak, add_lora, depth_extrapolated_peak, generator_step_peak
from rfvideo.memory.presets import PRESETS

__all__ = [
    "PRESETS",
    "GeneratorProfile",
    "MemoryEstimate",
    "StepPeak",
    "add_lora",
    "depth_extrapolated_peak",
    "estimate_from_config",
    "estimate_memory",
    "estimate_table",
    "format_table",
    "generator_step_peak",
    "profile_generator",
    "shard_estimate",
]
