"""Frame-selection policies."""

from __future__ import annotations

import pytest
import torch

from rfvideo.rewards.frames import FrameSelector


@pytest.mark.parametrize(
    ("policy", "k", "n", "expected"),
    [
        ("last", 1, 81, [80]),
        ("last_chunk", 4, 9, [5, 6, 7, 8]),
        ("last_chunk", 12, 9, list(range(9))),
        ("strided", 4, 10, [1, 5, 9]),
        ("strided", 3, 9, [2, 5, 8]),
        ("strided", 20, 9, [8]),
        ("all", 1, 5, [0, 1, 2, 3, 4]),
        ("last", 1, 1, [0]),
    ],
)
def test_deterministic_policies(policy: str, k: int, n: int, expected: list[int]) -> None:
    assert FrameSelector(policy=policy, k=k).scored_frames(n) == expected


def test_random_is_seeded_sorted_distinct() -> None:
    sel = FrameSelector(policy="random", k=4)
    a = sel.scored_frames(20, torch.Generator().manual_seed(0))
    b = sel.scored_frames(20, torch.Generator().manual_seed(0))
    c = sel.scored_frames(20, torch.Generator().manual_seed(1))
    assert a == b and a != c
    assert a == sorted(set(a)) and len(a) == 4 and all(0 <= i < 20 for i in a)
    assert sel.scored_frames(3, torch.Generator().manual_seed(0)) == [0, 1, 2]
    draws = {i for s in range(50) for i in sel.scored_frames(20, torch.Generator().manual_seed(s))}
    assert len(draws) == 20  # every frame gets drawn


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="'first'"):
        FrameSelector(policy="first")
    with pytest.raises(ValueError, match="k must be >= 1, got 0"):
        FrameSelector(policy="strided", k=0)
    with pytest.raises(ValueError, match="num_pixel_frames must be >= 1, got 0"):
        FrameSelector().scored_frames(0)
