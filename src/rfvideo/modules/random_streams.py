"""The named random streams of a training step, and the seed each draws from.

Every stream is seeded from (base seed, stream, global step, micro-batch, [rank]), so a step draws the same
numbers whether the run was resumed or not, and whatever batch size or rank count the others had.
"""

from __future__ import annotations

import enum

__all__ = ["Salt", "mix_seed"]


class Salt(enum.IntEnum):
    """Which random stream of a training step a `step_generator` draws (mixed into its seed): each stream is
    independent of the others and the same after a resume."""

    ODE_STATE = 1
    """Stage 1: which trajectory state each chunk is trained on."""
    ROLLOUT_NOISE = 2
    """Stage 2: the rollout's initial noise (per rank)."""
    RENOISE = 3
    """Stage 2: the re-noising between denoising steps (per rank)."""
    EXIT_STEPS = 4
    """Stage 2: the exit step of each chunk (the same on every rank)."""
    FRAME_PLAN = 5
    """Stage 2: which pixel frames are decoded and scored (the same on every rank)."""


def mix_seed(*parts: int) -> int:
    """A deterministic 63-bit seed from integers (an FNV-style mix; the same on every rank and machine)."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h = (h ^ (int(p) & 0xFFFFFFFFFFFFFFFF)) * 0x100000001B3 & 0xFFFFFFFFFFFFFFFF
    return h & 0x7FFFFFFFFFFFFFFF
