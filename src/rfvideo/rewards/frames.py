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
    """A frame-selection policy; `scored_frames(F)` gives the sorted pixel-frame indices to score."""

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
        """Whether `scored_frames` draws from a generator: then draw once (`RewardEnsemble.plan_frames`) and
        pass the plan on (`forward(..., plan=...)`), never draw again."""
        return self.policy == "random"

    def scored_frames(self, num_pixel_frames: int, generator: torch.Generator | None = None) -> list[int]:
        """Sorted indices in `[0, num_pixel_frames)` of the frames image rewards score.

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
    """One step's frame choice, drawn once and shared by the decode and the ensemble; validated here, once.

    `decoded` is a contiguous run ending at the clip's last frame, because a causal VAE decodes a tail
    (`WanVAE.decode_last`); `selected` is what image rewards score and lies inside `decoded`.

    Raises:
        ValueError: `decoded` is not a non-empty contiguous ascending run from a frame >= 0, or `selected` is
            empty, not ascending and distinct, or not inside `decoded` (the values are named).
    """

    decoded: list[int]
    """Ascending pixel frames to decode: `decoded[0] .. clip_length - 1`."""
    selected: list[int]
    """Ascending pixel frames image rewards score."""

    def __post_init__(self) -> None:
        decoded, selected = [int(i) for i in self.decoded], [int(i) for i in self.selected]
        if not decoded or decoded[0] < 0 or decoded != list(range(decoded[0], decoded[0] + len(decoded))):
            raise ValueError(
                f"decoded frames must be a contiguous ascending run from a frame >= 0, got {decoded}"
            )
        if not selected or any(b <= a for a, b in zip(selected, selected[1:])):
            raise ValueError(f"selected frames must be ascending, distinct and not empty, got {selected}")
        if selected[0] < decoded[0] or selected[-1] > decoded[-1]:
            raise ValueError(f"selected frames {selected} are not all in the decoded frames {decoded}")
        object.__setattr__(self, "decoded", decoded)
        object.__setattr__(self, "selected", selected)

    @property
    def clip_length(self) -> int:
        """Pixel frames in the whole clip (the decoded run ends at its last frame)."""
        return self.decoded[-1] + 1

    @property
    def scored_positions(self) -> list[int]:
        """Where the selected frames sit in the decoded video (`video[:, scored_positions]`)."""
        return [f - self.decoded[0] for f in self.selected]
