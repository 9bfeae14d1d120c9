"""Collation into the batch format of docs/interfaces.md, and an index-tagging dataset wrapper.

Shapes (einops): `b` batch, `s` trajectory steps, `f c h w` latent frames/channels/height/width,
`n` text tokens, `d` text width.

Batch: `{"prompt": list[str], "index": (b,), "prompt_embeds": (b n d) and "prompt_mask": (b n)
when an embedding lookup is given, "latents": (b f c h w), "trajectory": (b s f c h w),
"trajectory_timesteps": (s,)}`; any other tensor field is stacked, any other scalar field becomes a
list (str) or tensor (int/float/bool).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from rfvideo.data.prompts import EmbeddingLookup

__all__ = ["IndexedDataset", "SubsetDataset", "collate_samples"]

# Fields shared by the whole batch: stored per sample, collated to one copy.
_SHARED = ("trajectory_timesteps",)


class IndexedDataset(torch.utils.data.Dataset):
    """Adds `"index"` (the position in `dataset`) to every sample."""

    def __init__(self, dataset: torch.utils.data.Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {**self.dataset[index], "index": int(index)}


class SubsetDataset(torch.utils.data.Dataset):
    """The samples of `dataset` at `indices` (a validation split); keeps the parent's indices."""

    def __init__(self, dataset: torch.utils.data.Dataset, indices: Sequence[int]) -> None:
        self.dataset = dataset
        self.indices = list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.dataset[self.indices[index]]


def collate_samples(
    samples: Sequence[Mapping[str, Any]], embeddings: EmbeddingLookup | None = None
) -> dict[str, Any]:
    """Collate sample dicts into one batch dict (see module docstring).

    Args:
        samples: Dicts with the same fields, each with `"prompt"`.
        embeddings: Optional lookup joined by prompt: adds `prompt_embeds` and `prompt_mask`.

    Raises:
        ValueError: Empty batch, mismatched fields, or per-sample trajectory timesteps that differ.
    """
    if not samples:
        raise ValueError("cannot collate an empty batch")
    names = list(samples[0])
    batch: dict[str, Any] = {}
    for name in names:
        if any(name not in s for s in samples):
            raise ValueError(f"field {name!r} missing from some samples of the batch")
        values = [s[name] for s in samples]
        first = values[0]
        if name in _SHARED and isinstance(first, torch.Tensor):
            if any(not torch.equal(v, first) for v in values[1:]):
                raise ValueError(f"{name!r} differs between samples of one batch; it must be shared")
            batch[name] = first
        elif isinstance(first, torch.Tensor):
            batch[name] = torch.stack(values)
        elif isinstance(first, str):
            batch[name] = list(values)
        elif isinstance(first, (bool, int, float)):
            batch[name] = torch.tensor(values)
        else:
            batch[name] = list(values)
    if "prompt" not in batch:
        raise ValueError(f"samples carry no 'prompt' field (fields: {names})")
    if embeddings is not None:
        embeds, mask = embeddings.get(batch["prompt"])
        batch["prompt_embeds"], batch["prompt_mask"] = embeds, mask
    return batch
