"""rfvideo.pipeline: a trained causal generator -> video, in diffusers' conventions, and as a live stream."""

from rfvideo.pipeline.output import OUTPUT_TYPES, RFVideoPipelineOutput
from rfvideo.pipeline.pipeline import RFVideoPipeline
from rfvideo.pipeline.presets import PRESETS, InferencePreset, apply_preset, get_preset, read_folder_preset
from rfvideo.pipeline.scheduler import FewStepFlowScheduler

__all__ = [
    "OUTPUT_TYPES",
    "PRESETS",
    "FewStepFlowScheduler",
    "InferencePreset",
    "RFVideoPipeline",
    "RFVideoPipelineOutput",
    "apply_preset",
    "get_preset",
    "read_folder_preset",
]
