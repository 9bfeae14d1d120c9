"""The EMA copy of the generator: how it is made and how it follows the trained weights.

With LoRA the copy shares the generator's frozen base tensors (no second copy of the base) and only its
adapters are averaged.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from rfvideo.models.lora import is_adapter_key

__all__ = ["ema_copy", "ema_update_"]


def ema_copy(model: nn.Module, *, share_frozen: bool) -> nn.Module:
    """A frozen, eval-mode deep copy of `model`.

    With `share_frozen` its frozen parameters are the model's own Parameter objects (the deepcopy memo
    hands them back): only the trainable ones are copied.
    """
    memo = {id(p): p for p in model.parameters() if not p.requires_grad} if share_frozen else {}
    ema = copy.deepcopy(model, memo).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    return ema


@torch.no_grad()
def ema_update_(ema: nn.Module, model: nn.Module, decay: float, *, adapters_only: bool) -> None:
    """`ema <- d ema + (1 - d) w` for every parameter (adapters only with LoRA); buffers are copied."""
    pairs = zip(ema.named_parameters(), model.named_parameters(), strict=True)
    for (name, pe), (_, p) in pairs:
        if adapters_only and not is_adapter_key(name):
            continue
        pe.lerp_(p.detach().to(pe.dtype), 1.0 - decay)
    for be, b in zip(ema.buffers(), model.buffers(), strict=True):
        be.copy_(b)
