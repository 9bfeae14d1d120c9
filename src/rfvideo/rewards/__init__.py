"""rfvideo.rewards: the reward contract, reward models and the weighted ensemble."""

from rfvideo.rewards.base import FrameReward, Reward, validate_video
from rfvideo.rewards.ensemble import Normalization, RewardEnsemble, RewardOutput
from rfvideo.rewards.frames import FramePolicy, FrameSelector
from rfvideo.rewards.preprocess import CLIP_MEAN, CLIP_STD, ImagePreprocess
from rfvideo.rewards.weight_free import ColorfulnessReward, MotionReward, TemporalFlickerReward, colorfulness

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "ColorfulnessReward",
    "FramePolicy",
    "FrameReward",
    "FrameSelector",
    "ImagePreprocess",
    "MotionReward",
    "Normalization",
    "Reward",
    "RewardEnsemble",
    "RewardOutput",
    "TemporalFlickerReward",
    "colorfulness",
    "validate_video",
]
