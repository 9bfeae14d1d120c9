"""rfvideo.rewards: the reward contract, reward models and the weighted ensemble."""

from rfvideo.rewards.aesthetic import AestheticMLP, AestheticReward
from rfvideo.rewards.base import FrameReward, Reward, validate_video
from rfvideo.rewards.clip_score import ClipScoreReward, ClipSimilarityReward
from rfvideo.rewards.ensemble import Normalization, RewardEnsemble, RewardOutput
from rfvideo.rewards.frames import FramePolicy, FrameSelector
from rfvideo.rewards.hps import HPSv2Reward, hf_to_open_clip, open_clip_to_hf
from rfvideo.rewards.image_reward import (
    ImageReward,
    ImageRewardMLP,
    convert_image_reward_state_dict,
    load_blip_tokenizer,
)
from rfvideo.rewards.pickscore import PickScoreReward
from rfvideo.rewards.preprocess import CLIP_MEAN, CLIP_STD, ImagePreprocess, Letterbox, clean_prompt_open_clip
from rfvideo.rewards.video_reward import (
    CallableVideoReward,
    FrameSampling,
    VideoPreprocess,
    VideoReward,
    smart_resize_size,
)
from rfvideo.rewards.videoalign import Qwen2VLVideoReward, patchify_video
from rfvideo.rewards.weight_free import ColorfulnessReward, MotionReward, TemporalFlickerReward, colorfulness

__all__ = [
    "ImageReward",
    "ImageRewardMLP",
    "convert_image_reward_state_dict",
    "load_blip_tokenizer",
    "CallableVideoReward",
    "FrameSampling",
    "VideoPreprocess",
    "VideoReward",
    "smart_resize_size",
    "Qwen2VLVideoReward",
    "patchify_video",
    "AestheticMLP",
    "AestheticReward",
    "CLIP_MEAN",
    "CLIP_STD",
    "ClipScoreReward",
    "ClipSimilarityReward",
    "colorfulness",
    "ColorfulnessReward",
    "FramePolicy",
    "FrameReward",
    "FrameSelector",
    "hf_to_open_clip",
    "HPSv2Reward",
    "ImagePreprocess",
    "Letterbox",
    "clean_prompt_open_clip",
    "MotionReward",
    "Normalization",
    "open_clip_to_hf",
    "PickScoreReward",
    "Reward",
    "RewardEnsemble",
    "RewardOutput",
    "TemporalFlickerReward",
    "validate_video",
]
