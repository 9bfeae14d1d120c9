"""Per-GPU memory estimate of one reward-forcing training step from the experiment YAMLs alone.

Only the models' `config.json` files are read (or a published preset, `--preset wan2.1-t2v-1.3b`, when the
folders are not downloaded): modules are built on the meta device (parameter counts) or under
FakeTensorMode (the activation peak of the gradient chunk, counted by torch's MemTracker), so the estimate
works before any weight is downloaded and allocates nothing at real size.

What is counted per GPU (batch b = the data module's batch_size):
- generator weights, its EMA copy, gradients and AdamW's two moments (fp32 like the weights); with LoRA the
  weights are the frozen base plus the adapters, and EMA, gradients and moments exist for the adapters only;
  DDP keeps full replicas; FSDP2 (per block, then the root) shards all four by the world size and adds
  one gathered block (weights + gradient in the compute dtype) and the root's own parameters;
- activations of the chunk that carries the gradient (the rollout keeps grad only from the last chunk),
  measured on fake tensors with and without activation checkpointing;
- the rollout's KV cache (self-attention K/V of every held frame plus the cross-attention K/V of the text);
- the frozen VAE, text encoder and ImageReward, as weights only.
Not counted: the VAE decode and reward forward activations, the allocator's fragmentation / CUDA context.

Only the fake step depends on the model, LoRA rank and checkpointing; the world size and strategy change
the per-GPU share of the states only. `estimate_grid` therefore counts one step per (LoRA rank,
checkpointing) and derives every (strategy, world size) row by arithmetic (`shard_estimate`).

This file is the arithmetic over a generator builder and shapes; `config.py` reads them from the YAMLs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = [
    "STRATEGIES",
    "GeneratorProfile",
    "MemoryEstimate",
    "check_positive",
    "estimate_grid",
    "estimate_memory",
    "format_table",
    "profile_generator",
    "shard_estimate",
]

STRATEGIES = ("ddp", "fsdp")
_GIB = 1024**3


_PROFILES: dict[tuple[Any, ...], GeneratorProfile] = {}
"""Profiles already counted in this process, by (builder's config, shapes, dtype, rank): a CLI call or
notebook cell that asks again for the same config gets the same numbers without re-running the fake steps."""


@dataclass(frozen=True)
class GeneratorProfile:
    """What one fake step says about the generator; independent of world size and strategy."""

    param_bytes: int
    """All parameters as stored (the base plus any adapters)."""
    trainable_bytes: int
    """Parameters that train (all of them, or the adapters only)."""
    block_numel: int
    """Parameters of the largest block (FSDP gathers one block at a time)."""
    block_trainable_numel: int
    root_numel: int
    """Parameters outside the blocks (FSDP's root unit)."""
    activations: int
    activations_checkpointed: int
    lora_rank: int | None = None


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per GPU of one training step. `total(checkpointing)` sums the rows."""

    strategy: str
    world_size: int
    weights: int
    ema: int
    grads: int
    optimizer: int
    gathered: int
    """FSDP only: one unsharded block (weights + gradient, compute dtype) plus the root's parameters."""
    activations: int
    activations_checkpointed: int
    kv_cache: int
    frozen: dict[str, int | None] = field(default_factory=dict)
    lora_rank: int | None = None
    """None: full fine-tuning; else LoRA adapters of this rank train alone."""

    def total(self, checkpointing: bool = True) -> int:
        """Expected peak in bytes (frozen parts whose size is unknown count as 0)."""
        act = self.activations_checkpointed if checkpointing else self.activations
        fixed = self.weights + self.ema + self.optimizer + self.gathered + self.kv_cache
        # The peak is either inside backward (activations + the gradients made so far) or after it (all
        # gradients, activations freed).
        return fixed + max(act, self.grads) + sum(v for v in self.frozen.values() if v)

    def rows(self) -> list[tuple[str, float | None]]:
        """(name, GiB) rows for printing; None where a part could not be sized."""
        what = "generator" if self.lora_rank is None else f"generator (base + LoRA r{self.lora_rank})"
        rows: list[tuple[str, float | None]] = [
            (f"{what} weights", self.weights / _GIB),
            ("EMA (trainable parameters)", self.ema / _GIB),
            ("gradients", self.grads / _GIB),
            ("AdamW state", self.optimizer / _GIB),
        ]
        if self.strategy == "fsdp":
            rows.append(("FSDP gathered block + root", self.gathered / _GIB))
        rows += [
            ("activations + grads so far (no checkpointing)", self.activations / _GIB),
            ("activations + grads so far (checkpointing)", self.activations_checkpointed / _GIB),
            ("rollout KV cache", self.kv_cache / _GIB),
        ]
        rows += [(f"{k} (frozen weights)", None if v is None else v / _GIB) for k, v in self.frozen.items()]
        rows += [
            ("TOTAL with checkpointing", self.total(True) / _GIB),
            ("TOTAL without checkpointing", self.total(False) / _GIB),
        ]
        return rows


def check_positive(**values: int) -> None:
    """Raise a `ValueError` naming the first value that is not > 0."""
    for name, v in values.items():
        if v <= 0:
            raise ValueError(f"{name} {v} must be > 0")


def profile_generator(
    build_generator: Any,
    *,
    latent_shape: tuple[int, int, int, int, int],
    text_shape: tuple[int, int, int],
    compute_dtype: torch.dtype | None = torch.bfloat16,
    lora_rank: int | None = None,
) -> GeneratorProfile:
    """Parameter counts (meta device) and the activation peaks with and without checkpointing (fake step).

    Args:
        build_generator: zero-argument callable returning the `CausalWanTransformer`.
        latent_shape: `(b c f h w)` of the chunk that carries the gradient.
        text_shape: `(b n d)` of the prompt embeddings.
        compute_dtype: mixed-precision compute dtype (None: fp32 everywhere).
        lora_rank: LoRA adapters of this rank train alone (None: full fine-tuning).
    """
    from rfvideo.memory.fake_step import _adapters_stay_put, add_lora, depth_extrapolated_peak

    if lora_rank is not None:
        check_positive(lora_rank=lora_rank)
    key = getattr(build_generator, "cache_key", None)
    if key is not None:
        key = (key, tuple(latent_shape), tuple(text_shape), str(compute_dtype), lora_rank)
        if key in _PROFILES:
            return _PROFILES[key]
    with torch.device("meta"):
        meta = build_generator()
        if lora_rank is not None:
            with _adapters_stay_put():
                meta = add_lora(meta, lora_rank)
    params = list(meta.parameters())
    blocks = list(meta.blocks)
    in_blocks = {id(p) for b in blocks for p in b.parameters()}
    acts = [
        depth_extrapolated_peak(
            build_generator, len(blocks), latent_shape, text_shape, checkpointing=ck,
            autocast_dtype=compute_dtype, lora_rank=lora_rank,
        ).activations
        for ck in (False, True)
    ]  # fmt: skip
    profile = GeneratorProfile(
        param_bytes=sum(p.numel() * p.element_size() for p in params),
        trainable_bytes=sum(p.numel() * p.element_size() for p in params if p.requires_grad),
        block_numel=max(sum(p.numel() for p in b.parameters()) for b in blocks),
        block_trainable_numel=max(sum(p.numel() for p in b.parameters() if p.requires_grad) for b in blocks),
        root_numel=sum(p.numel() for p in params if id(p) not in in_blocks),
        activations=acts[0],
        activations_checkpointed=acts[1],
        lora_rank=lora_rank,
    )
    if key is not None:
        _PROFILES[key] = profile
    return profile


def shard_estimate(
    profile: GeneratorProfile,
    *,
    strategy: str,
    world_size: int,
    kv_cache: int,
    compute_dtype: torch.dtype | None = torch.bfloat16,
    ema: bool = True,
    frozen: Mapping[str, int | None] | None = None,
) -> MemoryEstimate:
    """The per-GPU estimate of `profile` under `strategy` on `world_size` GPUs (arithmetic only).

    DDP keeps every state whole on each GPU. FSDP divides weights, EMA, gradients and AdamW state by the world
    size and adds one gathered block plus the root in the compute dtype. Activations and the KV cache belong
    to the GPU's own batch and do not change with the world size.
    """
    check_positive(world_size=world_size)
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r} (use one of {STRATEGIES})")
    shard = world_size if strategy == "fsdp" else 1
    csize = torch.empty((), dtype=compute_dtype or torch.float32).element_size()
    gathered = 0
    if strategy == "fsdp":
        gathered = (profile.block_numel + profile.block_trainable_numel + profile.root_numel) * csize
    w, tr = profile.param_bytes, profile.trainable_bytes
    return MemoryEstimate(
        strategy=strategy,
        world_size=world_size,
        weights=-(-w // shard),
        ema=-(-tr // shard) if ema else 0,
        grads=-(-tr // shard),
        optimizer=-(-2 * tr // shard),
        gathered=gathered,
        activations=profile.activations,
        activations_checkpointed=profile.activations_checkpointed,
        kv_cache=kv_cache,
        frozen=dict(frozen or {}),
        lora_rank=profile.lora_rank,
    )


def _shapes(
    build_generator: Any, *, batch_size: int, num_latent_frames: int, latent_size: tuple[int, int],
    text_shape: tuple[int, int], compute_dtype: torch.dtype | None,
) -> tuple[tuple[int, int, int, int, int], tuple[int, int, int], int]:  # fmt: skip
    """(latent shape of the gradient chunk, text shape, KV-cache bytes) of a rollout."""
    check_positive(batch_size=batch_size, num_latent_frames=num_latent_frames)
    with torch.device("meta"):
        meta = build_generator()
    cfg = meta.config
    k = int(meta.num_frames_per_chunk)
    p_t, p_h, p_w = cfg.patch_size
    h, wd = latent_size
    tokens_per_frame = (h // p_h) * (wd // p_w)
    inner = cfg.num_attention_heads * cfg.attention_head_dim
    cdt = compute_dtype or next(meta.parameters()).dtype
    csize = torch.empty((), dtype=cdt).element_size()
    # KV cache: a global cache holds every frame of the rollout; a local one the sinks + window (+ a chunk).
    causal = meta._causal
    if causal.local_attn_size is None or causal.local_attn_size < 0:
        held = num_latent_frames
    else:
        held = min(num_latent_frames, causal.sink_size + 2 * causal.local_attn_size + k)
    self_kv = 2 * cfg.num_layers * batch_size * held * tokens_per_frame * inner * csize
    cross_kv = 2 * cfg.num_layers * batch_size * text_shape[0] * inner * csize
    latent_shape = (batch_size, cfg.in_channels, min(k, num_latent_frames) * p_t, h, wd)
    return latent_shape, (batch_size, text_shape[0], text_shape[1]), self_kv + cross_kv


def estimate_memory(
    build_generator: Any,
    *,
    batch_size: int,
    num_latent_frames: int,
    latent_size: tuple[int, int],
    text_shape: tuple[int, int],
    world_size: int = 1,
    strategy: str = "ddp",
    compute_dtype: torch.dtype | None = torch.bfloat16,
    ema: bool = True,
    frozen: Mapping[str, int | None] | None = None,
    lora_rank: int | None = None,
) -> MemoryEstimate:
    """Estimate one step's per-GPU peak for a generator built by `build_generator()` (nothing allocated).

    Args:
        build_generator: zero-argument callable returning the `CausalWanTransformer`.
        batch_size: videos per GPU.
        num_latent_frames: latent frames of a rollout.
        latent_size: `(h, w)` latent height and width.
        text_shape: `(n, d)` tokens and width of the prompt embeddings.
        world_size: GPUs (> 0).
        strategy: "ddp" (full replicas) or "fsdp" (FSDP2 per block).
        compute_dtype: mixed-precision compute dtype (None: fp32 everywhere).
        ema: the module keeps an EMA copy of the trainable parameters.
        frozen: weight bytes of frozen parts (VAE, text encoder, reward), None for an unknown size.
        lora_rank: LoRA adapters of this rank train alone (None: full fine-tuning).
    """
    check_positive(world_size=world_size)
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r} (use one of {STRATEGIES})")
    latent_shape, tshape, kv = _shapes(
        build_generator, batch_size=batch_size, num_latent_frames=num_latent_frames, latent_size=latent_size,
        text_shape=text_shape, compute_dtype=compute_dtype,
    )  # fmt: skip
    profile = profile_generator(
        build_generator, latent_shape=latent_shape, text_shape=tshape, compute_dtype=compute_dtype,
        lora_rank=lora_rank,
    )  # fmt: skip
    return shard_estimate(
        profile, strategy=strategy, world_size=world_size, kv_cache=kv, compute_dtype=compute_dtype, ema=ema,
        frozen=frozen,
    )  # fmt: skip


def estimate_grid(
    build_generator: Any,
    *,
    world_sizes: Sequence[int],
    strategies: Sequence[str],
    lora_ranks: Sequence[int | None],
    batch_size: int,
    num_latent_frames: int,
    latent_size: tuple[int, int],
    text_shape: tuple[int, int],
    compute_dtype: torch.dtype | None = torch.bfloat16,
    ema: bool = True,
    frozen: Mapping[str, int | None] | None = None,
) -> list[MemoryEstimate]:
    """`estimate_memory` for every (LoRA rank, strategy, world size), one fake step per (rank,
    checkpointing); the other arguments are `estimate_memory`'s.

    Returns:
        `MemoryEstimate`s ordered by LoRA rank, then strategy, then world size.
    """
    latent_shape, tshape, kv = _shapes(
        build_generator, batch_size=batch_size, num_latent_frames=num_latent_frames, latent_size=latent_size,
        text_shape=text_shape, compute_dtype=compute_dtype,
    )  # fmt: skip
    out = []
    for rank in lora_ranks:
        profile = profile_generator(
            build_generator, latent_shape=latent_shape, text_shape=tshape, compute_dtype=compute_dtype,
            lora_rank=rank,
        )  # fmt: skip
        out += [
            shard_estimate(
                profile,
                strategy=s,
                world_size=ws,
                kv_cache=kv,
                compute_dtype=compute_dtype,
                ema=ema,
                frozen=frozen,
            )  # fmt: skip
            for s in strategies
            for ws in world_sizes
        ]
    return out


def format_table(estimates: Sequence[MemoryEstimate]) -> str:
    """Markdown table of `total` GiB per GPU: a row per (strategy, GPUs), a column per (LoRA, ckpt)."""
    ranks = list(dict.fromkeys(e.lora_rank for e in estimates))
    keys = list(dict.fromkeys((e.strategy, e.world_size) for e in estimates))
    by = {(e.lora_rank, e.strategy, e.world_size): e for e in estimates}
    head = ["strategy", "GPUs"]
    for r in ranks:
        name = "full fine-tune" if r is None else f"LoRA r{r}"
        head += [f"{name}, checkpointing", f"{name}, no checkpointing"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * (2 * len(ranks))]
    for s, ws in keys:
        cells = [s.upper(), str(ws)]
        for r in ranks:
            e = by.get((r, s, ws))
            cells += ["" if e is None else f"{e.total(ck) / _GIB:.1f} GiB" for ck in (True, False)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
