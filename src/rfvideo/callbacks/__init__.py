"""rfvideo.callbacks."""

from rfvideo.callbacks.vbench import VBenchCallback, load_prompt_suite

__all__ = ["VBenchCallback", "load_prompt_suite"]
