"""rfvideo.modules: the training recipes as LightningModules (one recipe per file)."""

from rfvideo.modules.base import FROZEN_PREFIXES, VideoGeneratorModule, paper_adamw
from rfvideo.modules.ode_init import ODEInitModule, trajectory_step_indices
from rfvideo.modules.pipeline_config import pipeline_from_config
from rfvideo.modules.reward_forcing import RewardForcingModule

__all__ = [
    "FROZEN_PREFIXES",
    "ODEInitModule",
    "RewardForcingModule",
    "VideoGeneratorModule",
    "paper_adamw",
    "pipeline_from_config",
    "trajectory_step_indices",
]
