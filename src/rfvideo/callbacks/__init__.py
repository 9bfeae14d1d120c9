"""rfvideo.callbacks."""

from rfvideo.callbacks.prediction_writer import VideoPredictionWriter
from rfvideo.callbacks.progress import StepRichProgressBar
from rfvideo.callbacks.vbench import VBenchCallback, load_prompt_suite, prompts_from_full_info
from rfvideo.callbacks.video_logger import VideoLogger

__all__ = [
    "StepRichProgressBar",
    "VBenchCallback",
    "VideoLogger",
    "VideoPredictionWriter",
    "load_prompt_suite",
    "prompts_from_full_info",
]
