"""FSDP2 wrapping of the generator: activation checkpointing first, then `fully_shard` per transformer
block, then the root (torchtitan order). Used by `VideoGeneratorModule.configure_model` under Lightning's
`ModelParallelStrategy`, which works on CPU (gloo) as well as GPU.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

__all__ = ["shard_generator"]


def shard_generator(
    model: nn.Module,
    mesh: DeviceMesh,
    *,
    param_dtype: torch.dtype | None = torch.bfloat16,
    reduce_dtype: torch.dtype = torch.float32,
    activation_checkpointing: bool = True,
    reshard_after_forward: bool = True,
) -> nn.Module:
    """Shard `model` in place over the data-parallel `mesh`: one FSDP unit per entry of `model.blocks`.

    Args:
        model: a `CausalWanTransformer` (anything with a `blocks` ModuleList).
        mesh: 1-D data-parallel device mesh.
        param_dtype: compute dtype of the gathered parameters (None keeps the stored dtype).
        reduce_dtype: dtype of the gradient reduce-scatter.
        activation_checkpointing: recompute each block in backward.
        reshard_after_forward: free gathered parameters after each block's forward.
    """
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.ModuleList):
        raise ValueError(f"{type(model).__name__} has no `blocks` ModuleList to shard per block")
    if activation_checkpointing and hasattr(model, "enable_gradient_checkpointing"):
        model.enable_gradient_checkpointing()
    mp = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=reduce_dtype)
    for block in blocks:
        fully_shard(block, mesh=mesh, mp_policy=mp, reshard_after_forward=reshard_after_forward)
    fully_shard(model, mesh=mesh, mp_policy=mp, reshard_after_forward=reshard_after_forward)
    return model
