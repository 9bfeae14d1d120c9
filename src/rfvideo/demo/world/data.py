"""The demo world's prompts through the production data path: `RFVideoDataModule` over a prompt file.

Only a convenience for configs and tests that want "the world's prompts" without writing a file: the file
is written once (one prompt a line, the split's prompts cycled to `epoch_length` lines), and everything
else (order, resume, sharding across ranks) is `rfvideo.data`'s. Stage-1 trajectories are shards read by
`RFVideoDataModule(train_shards=...)` directly.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from rfvideo.data import RFVideoDataModule
from rfvideo.demo.world.world import all_specs, split_specs

__all__ = ["DemoPromptDataModule", "world_prompts"]


def world_prompts(split: str = "train") -> list[str]:
    """The prompts of a split: "train", "held_out" (unseen colour x direction pairs) or "all"."""
    if split not in ("train", "held_out", "all"):
        raise ValueError(f"split must be 'train', 'held_out' or 'all', got {split!r}")
    train, held = split_specs()
    return [s.prompt for s in {"train": train, "held_out": held, "all": all_specs()}[split]]


class DemoPromptDataModule(RFVideoDataModule):
    """`RFVideoDataModule` over the world's prompts of `split`, `epoch_length` prompts an epoch.

    Args:
        batch_size: prompts per batch.
        epoch_length: prompts per epoch (the split's prompts cycled).
        split: "train", "held_out" or "all".
        seed: shuffle seed.
        prompt_dir: folder of the prompt file (default: a new temporary folder).
    """

    def __init__(
        self,
        *,
        batch_size: int = 2,
        epoch_length: int = 16,
        split: str = "train",
        seed: int = 0,
        prompt_dir: str | None = None,
    ) -> None:
        prompts = world_prompts(split)
        if epoch_length < 1:
            raise ValueError(f"epoch_length must be >= 1, got {epoch_length}")
        folder = Path(prompt_dir) if prompt_dir else Path(tempfile.mkdtemp(prefix="rfvideo-demo-prompts-"))
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{split}_{epoch_length}.txt"
        path.write_text("\n".join(prompts[i % len(prompts)] for i in range(epoch_length)) + "\n")
        super().__init__(train_prompts=str(path), batch_size=batch_size, seed=seed, drop_last=True)
