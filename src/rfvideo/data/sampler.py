"""Deterministic, rank-sharded, resumable batch order (no Lightning, no torch.distributed).

Every epoch draws one global permutation of the `N` samples from `(seed, epoch)`, the same on every
rank. The permutation is cut into *global steps* of `world_size * batch_size` positions; in each step
rank r takes positions r, r + W, r + 2W, ... (interleaved). So after k steps the samples consumed by
all ranks together are exactly the first `k * W * B` positions of the epoch order, and the training
position is one number, `consumed` (global samples consumed in this epoch), that stays valid when the
world size or batch size changes on resume.

Data-loader workers receive whole batches from the sampler (it is a `batch_sampler`), so workers
never duplicate or lose a sample, and `DataLoader` yields batches in sampler order.

Tail handling, when `N` is not a multiple of `W * B`:
- `drop_last=False` (default): the order is padded by wrapping around to its own start until it
  fills whole global steps; the first few samples of the epoch order are then seen twice. Every rank
  runs the same number of full batches (DDP needs lockstep; constant batch shapes).
- `drop_last=True`: the incomplete last global step is dropped; those (random, epoch-dependent)
  samples are seen in other epochs.
When `N` is a multiple of `W * B` every sample is seen exactly once per epoch in both modes.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

__all__ = ["ResumableBatchSampler"]


def _positive_int(name: str, v: int, minimum: int = 1) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {v!r}")


class ResumableBatchSampler:
    """Yields this rank's batches (lists of dataset indices) for the current epoch.

    Args:
        num_samples: Dataset size N.
        batch_size: Samples per batch and rank B.
        num_replicas: World size W.
        rank: This rank, 0 .. W-1.
        shuffle: Permute per epoch (else the identity order).
        seed: Seed of the permutation; the same on every rank.
        drop_last: Drop the incomplete last global step instead of padding by wrap-around.
    """

    def __init__(
        self,
        num_samples: int,
        *,
        batch_size: int,
        num_replicas: int = 1,
        rank: int = 0,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        _positive_int("num_samples", num_samples)
        _positive_int("batch_size", batch_size)
        _positive_int("num_replicas", num_replicas)
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be an int in [0, {num_replicas}), got {rank!r}")
        if drop_last and num_samples < batch_size * num_replicas:
            raise ValueError(
                f"drop_last with {num_samples} samples < batch_size {batch_size} x world size "
                f"{num_replicas} leaves no batch"
            )
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.num_replicas = num_replicas
        self.rank = rank
        self.shuffle = shuffle
        self.seed = int(seed)
        self.drop_last = drop_last
        self.epoch = 0
        self._resume: tuple[int, int] | None = None

    @property
    def step_size(self) -> int:
        """Samples consumed per global step, W * B."""
        return self.batch_size * self.num_replicas

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order `__iter__` yields."""
        _positive_int("epoch", epoch, 0)
        self.epoch = epoch

    def set_resume(self, epoch: int, consumed: int) -> None:
        """Start epoch `epoch` after its first `consumed` global samples (later epochs start at 0).

        `consumed` is the count of a run with any world/batch size: the remaining positions are
        re-split over this sampler's ranks (and padded or dropped to whole global steps as in the
        module docstring).
        """
        _positive_int("epoch", epoch, 0)
        _positive_int("consumed", consumed, 0)
        self._resume = (epoch, consumed)

    def permutation(self, epoch: int) -> list[int]:
        """The epoch's order of all N samples, identical on every rank."""
        if not self.shuffle:
            return list(range(self.num_samples))
        g = torch.Generator()
        # (seed, epoch) -> one 63-bit seed; distinct pairs give distinct seeds for epoch < 2**31.
        g.manual_seed((self.seed * 2**31 + epoch) % 2**63)
        return torch.randperm(self.num_samples, generator=g).tolist()

    def _fit_to_steps(self, order: list[int], cycle: list[int]) -> list[int]:
        """Pad `order` by wrapping over `cycle`, or truncate it, to whole global steps."""
        rest = len(order) % self.step_size
        if rest == 0:
            return order
        if self.drop_last:
            return order[: len(order) - rest]
        need = self.step_size - rest
        return order + [cycle[i % len(cycle)] for i in range(need)]

    def epoch_order(self, epoch: int) -> list[int]:
        """The epoch's global order after padding/dropping: a multiple of W * B positions."""
        perm = self.permutation(epoch)
        return self._fit_to_steps(perm, perm)

    def remaining_order(self) -> list[int]:
        """Global positions still to run in the current epoch (all ranks), honouring `set_resume`."""
        perm = self.permutation(self.epoch)
        order = self._fit_to_steps(perm, perm)
        if self._resume is not None and self._resume[0] == self.epoch and self._resume[1] > 0:
            consumed = self._resume[1]
            if consumed >= self.num_samples:
                order = []  # only padding was left
            elif consumed % self.step_size == 0:
                # same step size as the saved run: exactly the rest of the uninterrupted epoch
                order = order[consumed:]
            else:
                # world or batch size changed: the unconsumed samples, padded (or dropped) to whole
                # steps by wrapping over themselves, so consumed samples never come back
                rest = perm[consumed:]
                order = self._fit_to_steps(rest, rest) if rest else []
        return order

    def __iter__(self) -> Iterator[list[int]]:
        local = self.remaining_order()[self.rank :: self.num_replicas]
        for i in range(0, len(local), self.batch_size):
            yield local[i : i + self.batch_size]

    def __len__(self) -> int:
        """Batches of this rank in a *full* epoch (what Lightning's loops count against)."""
        return len(self.epoch_order(self.epoch)) // self.step_size
