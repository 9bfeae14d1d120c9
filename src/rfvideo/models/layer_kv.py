"""Per-layer handles on a `KVCache`: a block hands its handle this call's keys and values and gets back
what to attend over; the handle reads and writes that layer's slots, so the block returns hidden states
only and the model's forward stays a loop over blocks.

- `ChunkKV`: one cached forward of a chunk (`CausalWanTransformer.forward`, "cached" mode), following the
  call's `CachePlan`.
- `RecacheKV`: `CausalWanTransformer.recache`, which re-encodes the held frames in place.

Shapes (einops): `b` batch, `l` tokens of this call, `l'` tokens attended over, `n` text tokens, `H` heads,
`d` head dim.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from rfvideo.models.kv_cache import CachePlan, KVCache

__all__ = ["ChunkKV", "LayerKV", "RecacheKV", "Rotate"]

Rotate = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""`rotate(x (b l H d), cos (l d), sin (l d)) -> (b l H d)`: the model's RoPE."""


class LayerKV:
    """One layer's handle on the cache (what a block is given); subclasses say how `self_kv` reads and
    writes.

    Args:
        cache: The cache.
        layer: The block's index.
        rotate: The model's RoPE function.
    """

    def __init__(self, cache: KVCache, layer: int, *, rotate: Rotate) -> None:
        self.cache, self.layer, self.rotate = cache, layer, rotate
        # relative RoPE stores unrotated keys and rotates them on read
        self.relative = cache.rope_mode == "relative"

    def self_kv(
        self, k: torch.Tensor, v: torch.Tensor, rope_q: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys (rotated) and values `(b l' H d)` to attend over, from this call's unrotated `k`, `v`
        `(b l H d)` and their RoPE `rope_q` (cos, sin `(l d)`)."""
        raise NotImplementedError

    def cross_kv(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Cached cross-attention K, V `(b n H d)`; None under grad (recomputed so the text path trains)."""
        return None if torch.is_grad_enabled() else self.cache.get_cross(self.layer)

    def store_cross(self, k: torch.Tensor, v: torch.Tensor) -> None:
        """Keep the cross-attention K, V `(b n H d)` the block used, unless the cache holds them already."""
        if self.cache.get_cross(self.layer) is None:
            self.cache.set_cross(self.layer, k, v)


class ChunkKV(LayerKV):
    """Handle of one layer during one cached forward: stores this call's K/V where its `CachePlan` says
    (when it writes, or into the free tail for a one-slice read) and returns context + own K/V.

    Args:
        cache: The cache.
        layer: The block's index.
        plan: The call's `CachePlan` (shared by every layer of the call).
        rotate: The model's RoPE function.
        rope_ctx: cos, sin `(l d)` of the visible context ("relative" RoPE only; None otherwise).
        rope_read: cos, sin `(l d)` of context + own frames ("relative" RoPE only).
        snapshot: Copy the visible context now (gradient checkpointing recomputes the block later, when
            the cache may hold other frames).
    """

    def __init__(
        self,
        cache: KVCache,
        layer: int,
        plan: CachePlan,
        *,
        rotate: Rotate,
        rope_ctx: tuple[torch.Tensor, torch.Tensor] | None,
        rope_read: tuple[torch.Tensor, torch.Tensor] | None,
        snapshot: bool = False,
    ) -> None:
        super().__init__(cache, layer, rotate=rotate)
        self.plan, self.rope_ctx, self.rope_read = plan, rope_ctx, rope_read
        self._snapshot: tuple[torch.Tensor, torch.Tensor] | None = None
        self._snapped = snapshot and not plan.own_in_buffer
        if self._snapped:
            ctx = cache.context(layer, plan)
            self._snapshot = None if ctx is None else (ctx[0].clone(), ctx[1].clone())

    def self_kv(
        self, k: torch.Tensor, v: torch.Tensor, rope_q: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys (rotated) and values `(b l' H d)` to attend over, from this call's unrotated `k`, `v`
        `(b l H d)` and their RoPE `rope_q`; stores `k`, `v` when the call writes."""
        plan, cache, layer = self.plan, self.cache, self.layer
        # a gradient-checkpoint recompute runs the block twice: the layer's slots are written once
        first = layer not in plan.written
        if plan.own_in_buffer:
            if first:
                cache.store_own(layer, plan, k if self.relative else self.rotate(k, *rope_q), v)
                plan.written.add(layer)
            keys, values = cache.context_and_own(layer, plan)
            if self.relative:
                assert self.rope_read is not None
                keys = self.rotate(keys, *self.rope_read)
            return keys, values
        k_rot = self.rotate(k, *rope_q)
        if plan.write and first:
            cache.store_own(layer, plan, (k if self.relative else k_rot).detach(), v.detach())
            plan.written.add(layer)
        ctx = self._snapshot if self._snapped else cache.context(layer, plan)
        if ctx is None:
            return k_rot, v
        ck, cv = ctx
        if self.relative:
            assert self.rope_ctx is not None
            ck = self.rotate(ck, *self.rope_ctx)
        return torch.cat([ck.to(k_rot.dtype), k_rot], 1), torch.cat([cv.to(v.dtype), v], 1)


class RecacheKV(LayerKV):
    """Handle of one layer during `recache`: the forward runs over the re-encoded held frames (with the
    mask of `recache_visibility`); their keys and values overwrite the held ones and are attended as is.

    With `keep_sinks` (`recache_sinks="keep"` after the window rolled) the forward runs over the non-sink
    held frames only, and the sinks' stored K/V (old prompt) are prepended to what they attend over.

    Args:
        cache: The cache.
        layer: The block's index.
        rotate: The model's RoPE function.
        keep_sinks: Re-encode the non-sink frames only and attend to the stored sinks.
        rope_sinks: cos, sin `(l d)` of the sink frames (relative RoPE with `keep_sinks`; stored keys are
            unrotated there).
    """

    def __init__(
        self,
        cache: KVCache,
        layer: int,
        *,
        rotate: Rotate,
        keep_sinks: bool = False,
        rope_sinks: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        super().__init__(cache, layer, rotate=rotate)
        self.keep_sinks, self.rope_sinks = keep_sinks, rope_sinks

    def self_kv(
        self, k: torch.Tensor, v: torch.Tensor, rope_q: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Overwrite the held frames' K/V with this call's and return what they attend over."""
        k_rot = self.rotate(k, *rope_q)
        if not self.keep_sinks:
            self.cache.overwrite_held(self.layer, k if self.relative else k_rot, v)
            return k_rot, v
        ns = self.cache.held_sink_frames()
        sk, sv = (
            torch.cat(kv, 1)
            for kv in zip(*(self.cache.frame_kv(self.layer, j) for j in range(ns)), strict=True)
        )
        if self.relative:
            assert self.rope_sinks is not None
            sk = self.rotate(sk, *self.rope_sinks)
        self.cache.overwrite_held(self.layer, k if self.relative else k_rot, v, sinks=False)
        return torch.cat([sk.to(k_rot.dtype), k_rot], 1), torch.cat([sv.to(v.dtype), v], 1)

    def cross_kv(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """None: the cross-attention K/V are rebuilt from the new text (`recache` resets them first)."""
        return None
