"""rfvideo.data: prompt sets, sample shards, the batch sampler, video IO, latent precompute, DataModule."""

from rfvideo.data.collate import IndexedDataset, SubsetDataset, collate_samples
from rfvideo.data.datamodule import ResumableLoader, RFVideoDataModule
from rfvideo.data.precompute import PrecomputeReport, list_videos, precompute_latents
from rfvideo.data.prompts import LoadedPrompts, PromptDataset, load_prompts
from rfvideo.data.sampler import ResumableBatchSampler
from rfvideo.data.shards import ShardedTensorDataset, ShardWriter
from rfvideo.data.video_io import (
    VideoReadError,
    VideoTooShortError,
    frame_indices,
    read_video,
    resize_center_crop,
    write_video,
)

__all__ = [
    "IndexedDataset",
    "LoadedPrompts",
    "PrecomputeReport",
    "PromptDataset",
    "RFVideoDataModule",
    "ResumableBatchSampler",
    "ResumableLoader",
    "ShardWriter",
    "ShardedTensorDataset",
    "SubsetDataset",
    "VideoReadError",
    "VideoTooShortError",
    "collate_samples",
    "frame_indices",
    "list_videos",
    "load_prompts",
    "precompute_latents",
    "read_video",
    "resize_center_crop",
    "write_video",
]
