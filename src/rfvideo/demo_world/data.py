"""Data modules of the demo world: prompts (stage 2) and saved ODE trajectories (stage 1).

Batches follow docs/interfaces.md: `{"prompt": list[str], "index": (b,), "trajectory": (b s f c h w),
"trajectory_timesteps": (b s)}`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from rfvideo.demo_world.world import all_specs, split_specs

__all__ = ["DemoPromptDataModule", "EpochShuffleSampler", "PromptListDataset", "TrajectoryFileDataModule"]


class EpochShuffleSampler(Sampler[int]):
    """A permutation drawn from `(seed, epoch)`: Lightning calls `set_epoch`, so a run resumed at an epoch
    boundary sees exactly the order an uninterrupted run sees."""

    def __init__(self, n: int, *, seed: int = 0) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())


class PromptListDataset(Dataset):
    def __init__(self, prompts: list[str], *, length: int | None = None) -> None:
        if not prompts:
            raise ValueError("prompt list is empty")
        self.prompts = prompts
        self.length = length or len(prompts)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"prompt": self.prompts[i % len(self.prompts)], "index": i}


class DemoPromptDataModule(L.LightningDataModule):
    """Training prompts of the demo world (held-out combinations excluded unless `split="all"`)."""

    def __init__(
        self, *, batch_size: int = 2, epoch_length: int = 16, split: str = "train", seed: int = 0
    ) -> None:
        super().__init__()
        if split not in ("train", "held_out", "all"):
            raise ValueError(f"split must be 'train', 'held_out' or 'all', got {split!r}")
        self.batch_size, self.epoch_length, self.split, self.seed = batch_size, epoch_length, split, seed

    def prompts(self) -> list[str]:
        train, held = split_specs()
        specs = {"train": train, "held_out": held, "all": all_specs()}[self.split]
        return [s.prompt for s in specs]

    def train_dataloader(self) -> DataLoader:
        ds = PromptListDataset(self.prompts(), length=self.epoch_length)
        sampler = EpochShuffleSampler(len(ds), seed=self.seed)
        return DataLoader(ds, batch_size=self.batch_size, sampler=sampler, drop_last=True)

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(PromptListDataset(self.prompts()), batch_size=self.batch_size)


class TrajectoryFileDataModule(L.LightningDataModule):
    """ODE trajectories saved by `rfvideo.modules.trajectories.generate_trajectories` in one `.pt` file
    (`{"prompt": list, "trajectory": (N s f c h w), "timesteps": (s,)}`), loaded with weights_only."""

    def __init__(self, *, path: str, batch_size: int = 2, seed: int = 0) -> None:
        super().__init__()
        self.path, self.batch_size, self.seed = path, batch_size, seed
        self.data: dict[str, Any] | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.data is None:
            p = Path(self.path)
            if not p.is_file():
                raise ValueError(f"trajectory file {p} does not exist; run `rfvideo trajectories` first")
            self.data = torch.load(p, weights_only=True)

    def train_dataloader(self) -> DataLoader:
        self.setup()
        assert self.data is not None
        d = self.data

        class _DS(Dataset):
            def __len__(self) -> int:
                return len(d["prompt"])

            def __getitem__(self, i: int) -> dict[str, Any]:
                return {
                    "prompt": d["prompt"][i],
                    "index": i,
                    "trajectory": d["trajectory"][i],
                    "trajectory_timesteps": d["timesteps"],
                }

        sampler = EpochShuffleSampler(len(d["prompt"]), seed=self.seed)
        return DataLoader(_DS(), batch_size=self.batch_size, sampler=sampler, drop_last=True)
