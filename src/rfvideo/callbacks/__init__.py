"""rfvideo.callbacks."""

from rfvideo.callbacks.vbench import VBenchCallback, load_prompt_suite, prompts_from_full_info
from rfvideo.callbacks.video_logger import VideoLogger

__all__ = ["VBenchCallback", "VideoLogger", "load_prompt_suite", "prompts_from_full_info"]
