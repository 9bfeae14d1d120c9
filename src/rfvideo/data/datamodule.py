"""`RFVideoDataModule`: prompts, latents or ODE trajectories in the batch format of docs/interfaces.md.

Index order, rank sharding, tail handling and resume live in `ResumableBatchSampler` (plain Python);
this file wires it to Lightning. The train dataloader is a small iterable around a `DataLoader` (not a
`DataLoader` itself), so Lightning never swaps its sampler for a `DistributedSampler`.

Resume: Lightning stores `state_dict()` in the checkpoint and calls `load_state_dict()` before
building dataloaders. The train loader speaks Lightning's stateful-loader protocol too (its
`state_dict` / `load_state_dict` are the data module's), so Lightning knows a mid-epoch resume is exact
and does not warn that the "dataloader is not resumable". The position is `consumed`, the global
number of training samples the loop has taken in the current epoch, counted in
`on_before_batch_transfer` (i.e. when a batch reaches the training step, not when a worker prefetches
it). The resumed epoch yields exactly the positions of
the epoch order after `consumed`; later epochs start from 0.

Prediction (`rfvideo predict`): `predict_prompts` gives a prompt file; each prompt is generated
`predict_samples_per_prompt` times, batches `{"prompt", "sample_index", "seed"}` with
`seed = predict_seed + index` (index: position in the prompt-major list), so a video's file name
`{prompt}-{sample_index}.mp4` and its seed do not depend on the number of ranks or the batch size.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from typing import Any

import lightning.pytorch as pl
import torch

from rfvideo.data.collate import IndexedDataset, SubsetDataset, collate_samples
from rfvideo.data.prompts import EmbeddingLookup, PromptDataset, load_prompts
from rfvideo.data.sampler import ResumableBatchSampler
from rfvideo.data.shards import ShardedTensorDataset

__all__ = ["RFVideoDataModule", "ResumableLoader"]


class ResumableLoader:
    """Iterable of batches: a `DataLoader` over `batch_sampler`, re-seeded per epoch.

    Args:
        dataset: Map-style dataset of sample dicts.
        batch_sampler: Order, sharding and resume position.
        collate_fn: Samples -> batch dict.
        num_workers: Data-loader worker processes (each gets whole batches from the sampler).
        epoch_fn: Returns the current epoch when iteration starts (e.g. from the trainer).
        pin_memory: Passed to `DataLoader`.
        state_fn: The position to checkpoint (Lightning calls `state_dict`); None: nothing to save.
        load_fn: Restores a position saved by `state_fn` (Lightning calls `load_state_dict`).
    """

    def __init__(
        self,
        dataset: torch.utils.data.Dataset,
        batch_sampler: ResumableBatchSampler,
        collate_fn: Callable[[list[dict[str, Any]]], dict[str, Any]],
        *,
        num_workers: int = 0,
        epoch_fn: Callable[[], int] | None = None,
        pin_memory: bool = False,
        state_fn: Callable[[], dict[str, Any]] | None = None,
        load_fn: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.dataset = dataset
        self.state_fn = state_fn
        self.load_fn = load_fn
        self.batch_sampler = batch_sampler
        self.collate_fn = collate_fn
        self.num_workers = num_workers
        self.epoch_fn = epoch_fn
        self.pin_memory = pin_memory

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def state_dict(self) -> dict[str, Any]:
        """The resume position (Lightning's stateful data-loader protocol)."""
        return self.state_fn() if self.state_fn is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue from a position `state_dict` returned (called before the resumed epoch iterates)."""
        if state_dict and self.load_fn is not None:
            self.load_fn(state_dict)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self.epoch_fn is not None:
            self.batch_sampler.set_epoch(self.epoch_fn())
        loader = torch.utils.data.DataLoader(
            self.dataset,
            batch_sampler=self.batch_sampler,
            collate_fn=self.collate_fn,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=False,
        )
        yield from loader


class _PredictDataset(torch.utils.data.Dataset):
    """Prompt-major list of `(prompt, sample_index)` pairs with their seeds (see module docstring)."""

    def __init__(self, prompts: list[str], samples_per_prompt: int, seed: int) -> None:
        self.items = [(p, i) for p in prompts for i in range(samples_per_prompt)]
        self.seed = seed

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        prompt, i = self.items[index]
        return {"prompt": prompt, "sample_index": i, "seed": self.seed + index}


class RFVideoDataModule(pl.LightningDataModule):
    """Training/validation data for both recipes.

    Exactly one training source: a prompt file (stage 2, reward training) or a shard directory of
    latents / ODE trajectories (stage 1, or latent-space regularisers). Validation comes from
    `val_prompts` / `val_shards`, or else from a seeded `val_split` of the training source.

    Args:
        train_prompts: Prompt file (.txt / .jsonl / .csv).
        train_shards: Shard directory written by `ShardWriter` (trajectories or latents).
        val_prompts: Separate validation prompt file.
        val_shards: Separate validation shard directory.
        val_split: Validation samples taken from the training source when no val source is given:
            a fraction in (0, 1) or a count; 0 disables validation.
        prompt_field: JSON field / CSV column of the prompt.
        on_empty: Empty prompts: "skip" (counted, warned) or "error".
        prompt_embeddings: Precomputed embeddings joined by prompt: a `PromptEmbeddingStore`
            directory or any object with `get(prompts) -> (embeds, mask)`; adds `prompt_embeds`.
        batch_size: Samples per batch and rank.
        val_batch_size: Validation batch size (default: `batch_size`).
        num_workers: Data-loader workers per rank.
        seed: Seed of the per-epoch shuffle and of the validation split.
        shuffle: Shuffle the training order each epoch.
        drop_last: Drop the incomplete last global step instead of padding by wrap-around.
        pin_memory: Pin host memory of batches.
        predict_prompts: Prompt file for `predict` (see module docstring).
        predict_samples_per_prompt: Videos per prompt in `predict` (VBench: 5).
        predict_seed: Seed of the first predicted video.
    """

    def __init__(
        self,
        *,
        train_prompts: str | None = None,
        train_shards: str | None = None,
        val_prompts: str | None = None,
        val_shards: str | None = None,
        val_split: float | int = 0.0,
        prompt_field: str = "prompt",
        on_empty: str = "skip",
        prompt_embeddings: str | EmbeddingLookup | None = None,
        batch_size: int = 1,
        val_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
        pin_memory: bool = False,
        predict_prompts: str | None = None,
        predict_samples_per_prompt: int = 1,
        predict_seed: int = 0,
    ) -> None:
        super().__init__()
        if (train_prompts is None) == (train_shards is None):
            raise ValueError(
                f"give exactly one of train_prompts / train_shards, got {train_prompts!r} / {train_shards!r}"
            )
        if val_prompts is not None and val_shards is not None:
            raise ValueError("give at most one of val_prompts / val_shards")
        # a config parser may hand a count over as a float (3 -> 3.0): whole numbers >= 1 are counts
        if (
            isinstance(val_split, bool)
            or not isinstance(val_split, (int, float))
            or not (0 <= val_split < 1 or float(val_split).is_integer())
            or val_split < 0
        ):
            raise ValueError(f"val_split must be a fraction in [0, 1) or a count >= 0, got {val_split!r}")
        for name, v in (("batch_size", batch_size), ("val_batch_size", val_batch_size or 1)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"num_workers must be an int >= 0, got {num_workers!r}")
        n_per = predict_samples_per_prompt
        if isinstance(n_per, bool) or not isinstance(n_per, int) or n_per < 1:
            raise ValueError(f"predict_samples_per_prompt must be a positive int, got {n_per!r}")
        self.predict_prompts, self.predict_samples_per_prompt = predict_prompts, n_per
        self.predict_seed = int(predict_seed)
        self.train_prompts, self.train_shards = train_prompts, train_shards
        self.val_prompts, self.val_shards, self.val_split = val_prompts, val_shards, val_split
        self.prompt_field, self.on_empty = prompt_field, on_empty
        self.prompt_embeddings = prompt_embeddings
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.num_workers, self.seed, self.shuffle = num_workers, int(seed), shuffle
        self.drop_last, self.pin_memory = drop_last, pin_memory
        self.train_dataset: torch.utils.data.Dataset | None = None
        self.val_dataset: torch.utils.data.Dataset | None = None
        self._lookup: EmbeddingLookup | None = None
        self._train_sampler: ResumableBatchSampler | None = None
        # Training position: global samples consumed in `_epoch` (see module docstring).
        self._epoch = 0
        self._consumed = 0
        self._resume: tuple[int, int] | None = None
        if val_prompts is None and val_shards is None and not val_split:
            # No validation data: hide `val_dataloader` from Lightning (its is_overridden check reads the
            # attribute), so a run without validation does not warn "You passed in a val_dataloader but
            # have no validation_step" on every start.
            self.val_dataloader = None  # type: ignore[assignment]

    # ------------------------------------------------------------------ datasets
    def _dataset(self, prompts: str | None, shards: str | None) -> torch.utils.data.Dataset:
        if shards is not None:
            return ShardedTensorDataset(shards)
        assert prompts is not None
        loaded = load_prompts(prompts, field=self.prompt_field, on_empty=self.on_empty)
        if not loaded.prompts:
            raise ValueError(f"prompt file {prompts!r} holds no non-empty prompt")
        return PromptDataset(loaded.prompts)

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        full = self._dataset(self.train_prompts, self.train_shards)
        if self.val_prompts is not None or self.val_shards is not None:
            self.train_dataset = IndexedDataset(full)
            self.val_dataset = IndexedDataset(self._dataset(self.val_prompts, self.val_shards))
        elif self.val_split:
            n = len(full)  # type: ignore[arg-type]
            n_val = round(self.val_split * n) if self.val_split < 1 else int(self.val_split)
            if not 0 < n_val < n:
                raise ValueError(f"val_split {self.val_split!r} leaves {n_val} of {n} samples for validation")
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed)).tolist()
            # indices refer to the training source in both splits
            indexed = IndexedDataset(full)
            self.val_dataset = SubsetDataset(indexed, sorted(perm[:n_val]))
            self.train_dataset = SubsetDataset(indexed, sorted(perm[n_val:]))
        else:
            self.train_dataset = IndexedDataset(full)
        if isinstance(self.prompt_embeddings, (str, os.PathLike)):
            from rfvideo.models.embedding_precompute import PromptEmbeddingStore

            self._lookup = PromptEmbeddingStore(self.prompt_embeddings)
        else:
            self._lookup = self.prompt_embeddings

    # ------------------------------------------------------------------ loaders
    def _world(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is None:
            return 1, 0
        return int(trainer.world_size), int(trainer.global_rank)

    def _current_epoch(self) -> int:
        trainer = self.trainer
        return int(trainer.current_epoch) if trainer is not None else self._epoch

    def train_dataloader(self) -> ResumableLoader:
        if self.train_dataset is None:
            self.setup("fit")
        world, rank = self._world()
        sampler = ResumableBatchSampler(
            len(self.train_dataset),  # type: ignore[arg-type]
            batch_size=self.batch_size,
            num_replicas=world,
            rank=rank,
            shuffle=self.shuffle,
            seed=self.seed,
            drop_last=self.drop_last,
        )
        if self._resume is not None:
            sampler.set_resume(*self._resume)
        self._train_sampler = sampler
        return ResumableLoader(
            self.train_dataset,  # type: ignore[arg-type]
            sampler,
            functools.partial(collate_samples, embeddings=self._lookup),
            num_workers=self.num_workers,
            epoch_fn=self._current_epoch,
            pin_memory=self.pin_memory,
            state_fn=self.state_dict,
            load_fn=self.load_state_dict,
        )

    def predict_dataloader(self) -> ResumableLoader:
        if self.predict_prompts is None:
            raise ValueError("predict needs data.init_args.predict_prompts (a prompt file)")
        loaded = load_prompts(self.predict_prompts, field=self.prompt_field, on_empty=self.on_empty)
        if not loaded.prompts:
            raise ValueError(f"prompt file {self.predict_prompts!r} holds no non-empty prompt")
        dataset = _PredictDataset(loaded.prompts, self.predict_samples_per_prompt, self.predict_seed)
        world, rank = self._world()
        # Every video exactly once: rank r takes positions r, r + W, ... (prediction needs no lockstep, so
        # no wrap-around padding that would generate a video twice).
        local = list(range(len(dataset)))[rank::world]
        batches = [local[i : i + self.val_batch_size] for i in range(0, len(local), self.val_batch_size)]
        return ResumableLoader(dataset, batches, collate_samples, num_workers=self.num_workers)  # type: ignore[arg-type]

    def val_dataloader(self) -> ResumableLoader | list[Any]:
        if self.train_dataset is None:
            self.setup("validate")
        if self.val_dataset is None:
            return []
        world, rank = self._world()
        # Validation: fixed order, padded by wrap-around so every rank runs the same batch count.
        sampler = ResumableBatchSampler(
            len(self.val_dataset),  # type: ignore[arg-type]
            batch_size=self.val_batch_size,
            num_replicas=world,
            rank=rank,
            shuffle=False,
        )
        return ResumableLoader(
            self.val_dataset,  # type: ignore[arg-type]
            sampler,
            functools.partial(collate_samples, embeddings=self._lookup),
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
        )

    # ------------------------------------------------------------------ position and resume
    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        trainer = self.trainer
        if trainer is not None and trainer.training and not trainer.sanity_checking:
            epoch = int(trainer.current_epoch)
            if epoch != self._epoch:
                self._epoch, self._consumed = epoch, 0
            self._consumed += len(batch["prompt"]) * self._world()[0]
        return batch

    def state_dict(self) -> dict[str, Any]:
        """Training position: `{"epoch", "consumed" (global samples this epoch), "seed"}`."""
        return {"epoch": self._epoch, "consumed": self._consumed, "seed": self.seed}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume: the next training epoch `epoch` starts after its first `consumed` samples."""
        if int(state_dict.get("seed", self.seed)) != self.seed:
            raise ValueError(
                f"checkpoint data seed {state_dict['seed']!r} != configured seed {self.seed!r}: "
                "the epoch order would differ, so the resume position is meaningless"
            )
        epoch, consumed = int(state_dict["epoch"]), int(state_dict["consumed"])
        self._epoch, self._consumed = epoch, consumed
        self._resume = (epoch, consumed)
        if self._train_sampler is not None:
            self._train_sampler.set_resume(epoch, consumed)
