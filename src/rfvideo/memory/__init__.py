"""Per-GPU memory estimate of one training step, from the configs alone (no real weights, no allocation)."""

from rfvideo.memory.estimate import MemoryEstimate, estimate_from_config, estimate_memory
from rfvideo.memory.fake_step import StepPeak, generator_step_peak

__all__ = ["MemoryEstimate", "StepPeak", "estimate_from_config", "estimate_memory", "generator_step_peak"]
