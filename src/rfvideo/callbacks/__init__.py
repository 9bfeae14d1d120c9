"""rfvideo.callbacks."""

from rfvideo.callbacks.vbench import VBenchCallback, load_prompt_suite, prompts_from_full_info

__all__ = ["VBenchCallback", "load_prompt_suite", "prompts_from_full_info"]
