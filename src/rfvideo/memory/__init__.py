"""Per-GPU memory estimate of one training step, from the configs alone (no real weights, no allocation)."""

from rfvideo.memory.config import estimate_from_config, estimate_table, read_experiment
from rfvideo.memory.estimate import (
    GeneratorProfile,
    MemoryEstimate,
    estimate_grid,
    estimate_memory,
    format_table,
    profile_generator,
    shard_estimate,
)
from rfvideo.memory.fake_step import StepPeak, add_lora, depth_extrapolated_peak, generator_step_peak
from rfvideo.memory.model_sizes import MODEL_SIZES

__all__ = [
    "MODEL_SIZES",
    "GeneratorProfile",
    "MemoryEstimate",
    "StepPeak",
    "add_lora",
    "depth_extrapolated_peak",
    "estimate_from_config",
    "estimate_grid",
    "estimate_memory",
    "estimate_table",
    "format_table",
    "generator_step_peak",
    "profile_generator",
    "read_experiment",
    "shard_estimate",
]
