"""What `RFVideoPipeline.__call__` returns, in diffusers' output conventions.

Legend: `b` videos, `F` pixel frames, `H W` pixel height/width, `c f h w` latent channels / frames / size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from diffusers.utils import BaseOutput

from rfvideo.utils.timings import GenerationTimings

__all__ = ["OUTPUT_TYPES", "RFVideoPipelineOutput"]

#: `output_type` values and what `frames` then holds.
OUTPUT_TYPES = {
    "np": "float32 numpy array (b F H W 3) in [0, 1] (diffusers' video layout)",
    "pil": "list (b) of lists (F) of PIL images",
    "pt": "float32 tensor (b F 3 H W) in [0, 1]",
    "latent": "clean latents (b c f h w), undecoded",
}


@dataclass
class RFVideoPipelineOutput(BaseOutput):
    """`frames` in the requested `output_type` (see `OUTPUT_TYPES`) and where the seconds went."""

    frames: Any
    timings: GenerationTimings = field(default_factory=GenerationTimings)
