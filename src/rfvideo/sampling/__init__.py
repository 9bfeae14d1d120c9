"""rfvideo.sampling: flow-matching schedules, conversions, and samplers (pure functions, no Lightning)."""

from rfvideo.sampling.chunkwise import chunk_loop, context_pass, sample_chunk, sample_chunkwise, stream_chunks
from rfvideo.sampling.compile import compile_cached, uncompile
from rfvideo.sampling.euler import EulerTrajectory, euler_sample_cfg, euler_sigmas
from rfvideo.sampling.flow import add_noise, eps_from_flow, expand_sigma, flow_from_x0, x0_from_flow
from rfvideo.sampling.rollout import RolloutOutput, draw_exit_steps, rollout
from rfvideo.sampling.schedule import FlowMatchSchedule, shift_sigma

__all__ = [
    "EulerTrajectory",
    "FlowMatchSchedule",
    "RolloutOutput",
    "add_noise",
    "chunk_loop",
    "compile_cached",
    "context_pass",
    "draw_exit_steps",
    "eps_from_flow",
    "euler_sample_cfg",
    "euler_sigmas",
    "expand_sigma",
    "flow_from_x0",
    "rollout",
    "sample_chunk",
    "sample_chunkwise",
    "shift_sigma",
    "stream_chunks",
    "uncompile",
    "x0_from_flow",
]
