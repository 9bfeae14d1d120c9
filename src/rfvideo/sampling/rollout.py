"""Self-rollout for training (stage 2): the chunk-wise sampler with gradient only through exit steps.

Mechanics (Self-Forcing, arXiv 2506.08009: training runs the inference rollout): each chunk runs the few-step
sampler of `chunkwise.py` from its own KV cache, exactly as at inference, but stops at an **exit step** `e`:
steps `j < e` run under no_grad, step `e` runs with grad and its x0 prediction (flow.py eq. 3) is the chunk's
output. The t = 0 context pass runs under no_grad and writes only detached tensors to the cache, so gradients
never cross chunks. Chunks before `grad_from_chunk` run entirely under no_grad (a last-frame reward needs only
the last chunk's graph; this saves most activation memory).

Legend: `b` batch, `c` latent channels, `f` latent frames, `k` frames per chunk, `h w` latent height/width,
`n d` text tokens / width, `m` number of chunks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from rfvideo.sampling.chunkwise import check_inputs, chunk_loop
from rfvideo.sampling.schedule import FlowMatchSchedule

__all__ = ["RolloutOutput", "draw_exit_steps", "rollout"]


@dataclass(kw_only=True)
class RolloutOutput:
    """Result of `rollout`."""

    latents: torch.Tensor
    """Clean latents `(b c f h w)`; chunks `>= grad_from_chunk` carry the graph of their exit step."""
    chunks: tuple[torch.Tensor, ...]
    """The same latents per chunk, `(b c k h w)` each; earlier chunks have no graph (`grad_fn is None`)."""
    exit_steps: tuple[int, ...]
    """Exit step index per chunk `(m,)`, into `schedule.timesteps`."""
    exit_timesteps: torch.Tensor
    """Shifted timestep at which each chunk's output was predicted, float32 `(m,)`."""
    grad_from_chunk: int
    """First chunk whose output requires grad (if grad is enabled at all)."""


def draw_exit_steps(
    num_chunks: int, num_steps: int, generator: torch.Generator, *, per_chunk: bool = False
) -> tuple[int, ...]:
    """Draw exit steps uniformly from `0..num_steps-1` with a CPU generator.

    Seed `generator` identically on every rank (e.g. from the global step) so all ranks agree.
    With `per_chunk=False` one step is drawn and shared by all chunks (Self-Forcing's default).
    """
    n = num_chunks if per_chunk else 1
    steps = torch.randint(0, num_steps, (n,), generator=generator, device=generator.device).tolist()
    return tuple(steps) if per_chunk else tuple(steps * num_chunks)


def rollout(
    model: Any,
    noise: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    *,
    schedule: FlowMatchSchedule,
    generator: torch.Generator | None = None,
    exit_step: int | Sequence[int] | None = None,
    exit_generator: torch.Generator | None = None,
    exit_per_chunk: bool = False,
    grad_from_chunk: int = 0,
    kv_cache: Any | None = None,
) -> RolloutOutput:
    """Generate a video chunk by chunk with grad only through each chunk's exit-step prediction.

    Args:
        model: a `CausalWanTransformer` (docs/interfaces.md "Generator").
        noise: initial noise `(b c f h w)`, `f % k == 0`.
        encoder_hidden_states: text embeddings `(b n d)`.
        schedule: the few-step schedule.
        generator: draws the re-noising noise; same draw order as `stream_chunks` up to each exit step.
        exit_step: the exit step (one int for all chunks, or one per chunk); overrides `exit_generator`.
        exit_generator: draws the exit step(s) (see `draw_exit_steps`) when `exit_step` is None.
        exit_per_chunk: draw an independent exit step per chunk instead of one shared step.
        grad_from_chunk: chunks with index `< grad_from_chunk` run fully under no_grad.
        kv_cache: a cache from `model.new_kv_cache`; reset before use. None creates one.

    Returns:
        A `RolloutOutput`. Call it under `torch.enable_grad()` (the default) to get a graph.

    Raises:
        ValueError: bad shapes, no way to choose exit steps, an exit step out of range, or a
            `grad_from_chunk` out of `[0, m]`.
    """
    num_chunks = check_inputs(model, noise, encoder_hidden_states)
    num_steps = schedule.num_steps
    if not 0 <= grad_from_chunk <= num_chunks:
        raise ValueError(
            f"grad_from_chunk={grad_from_chunk} must lie in [0, {num_chunks}] (number of chunks)"
        )
    if exit_step is not None:
        exits = (
            (int(exit_step),) * num_chunks if isinstance(exit_step, int) else tuple(int(e) for e in exit_step)
        )
        if len(exits) != num_chunks:
            raise ValueError(f"exit_step has {len(exits)} entries, expected one per chunk ({num_chunks})")
    elif exit_generator is not None:
        exits = draw_exit_steps(num_chunks, num_steps, exit_generator, per_chunk=exit_per_chunk)
    else:
        raise ValueError("rollout needs exit_step or exit_generator (seeded identically on every rank)")
    if any(not 0 <= e < num_steps for e in exits):
        raise ValueError(f"exit steps {exits} must lie in [0, {num_steps}) for a {num_steps}-step schedule")

    loop = chunk_loop(
        model,
        noise,
        encoder_hidden_states,
        schedule=schedule,
        generator=generator,
        kv_cache=kv_cache,
        exit_steps=exits,
        grad_from_chunk=grad_from_chunk,
    )
    outputs = [x0 for _, x0 in loop]
    timesteps = schedule.timesteps
    return RolloutOutput(
        latents=torch.cat(outputs, dim=2),
        chunks=tuple(outputs),
        exit_steps=exits,
        exit_timesteps=torch.stack([timesteps[e] for e in exits]),
        grad_from_chunk=grad_from_chunk,
    )
