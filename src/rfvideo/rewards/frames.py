"""Which pixel frames the image rewards score.

Reward-Forcing scores only the last frame: scoring random or all frames with an image reward favours static
video. The other policies are there to trade that off (e.g. the last chunk of a 4x-compressed VAE).

    last        [F-1]                                    (paper)
    last_chunk  the last k frames
    strided     every k-th frame counted back from the last one, so the last frame is always scored
    all         every frame
    random      k distinct frames drawn with the given torch.Generator (sorted)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

__all__ = ["FramePlan", "FrameSelector", "FramePolicy"]

FramePolicy = Literal["last", "last_chunk", "strided", "all", "random"]
_POLICIES = ("last", "last_chunk", "strided", "all", "random")


@dataclass(kw_only=True)
class FrameSelector:
    """A frame-selection policy; `pixel_frames(F)` gives the sorted pixel-frame indices to score."""

    policy: FramePolicy = "last"
    """One of last, last_chunk, strided, all, random."""
    k: int = 1
    """Chunk length (last_chunk), stride (strided) or number of frames (random)."""

    def __post_init__(self) -> None:
        if self.policy not in _POLICIES:
            raise ValueError(f"policy must be one of {_POLICIES}, got {self.policy!r}")
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")

    @property
    def is_random(self) -> bool:
        """Whether `pixel_frames` draws from a generator: then call it once and pass the drawn indices on
        (`RewardEnsemble.plan_frames` / `forward(..., selected=...)`), never draw again."""
        return self.policy == "random"

    def pixel_frames(self, num_pixel_frames: int, generator: torch.Generator | None = None) -> list[int]:
        """Sorted indices in `[0, num_pixel_frames)` of the frames to score (and so to decode).

        Args:
            num_pixel_frames: frames in the clip (`F`).
            generator: randomness of the `random` policy (ignored by the others).
        """
        n = num_pixel_frames
        if n < 1:
            raise ValueError(f"num_pixel_frames must be >= 1, got {n}")
        if self.policy == "last":
            return [n - 1]
        if self.policy == "last_chunk":
            return list(range(max(0, n - self.k), n))
        if self.policy == "strided":
            return sorted(range(n - 1, -1, -self.k))
        if self.policy == "all":
            return list(range(n))
        k = min(self.k, n)
        return sorted(torch.randperm(n, generator=generator)[:k].tolist())


@dataclass(frozen=True)
class FramePlan:
    """One step's frame choice, drawn once and shared by the decode and the ensemble.

    `decoded` is a contiguous run ending at the clip's last frame, because a causal VAE decodes a tail
    (`WanVAE.decode_last`); `selected` is what image rewards score and always lies inside `decoded`.
    """

    decoded: list[int]
    """Ascending pixel frames to decode (`forward(..., frame_indices=decoded)`)."""
    selected: list[int]
    """Ascending pixel frames image rewards score (`forward(..., selected=selected)`)."""
