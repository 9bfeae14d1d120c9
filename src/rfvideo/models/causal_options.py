"""The causal options of the chunk-wise Wan generator, in one object shared by the model config, the KV
cache and the YAML loaders.

Window semantics: with `W = local_attn_size` and `S = sink_size`, a chunk whose last frame is `e - 1`
sees the sink frames `[0, S)` plus the `W - S` most recent frames `[e - (W - S), e)` (its own chunk
included); `W = -1` is global attention.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = [
    "ATTENTION_BACKENDS",
    "EVICTIONS",
    "PARTIAL_EVICTIONS",
    "RECACHE_SINKS",
    "RECACHE_VISIBILITIES",
    "ROPE_MODES",
    "SINK_FOLDS",
    "CausalOptions",
]

ROPE_MODES = ("absolute", "relative")
EVICTIONS = ("drop", "ema")
ATTENTION_BACKENDS = ("auto", "sdpa", "flex")
RECACHE_VISIBILITIES = ("causal", "all_held")
RECACHE_SINKS = ("reencode", "keep", "resink")
SINK_FOLDS = ("on_write", "before_attend")
PARTIAL_EVICTIONS = ("ema", "overwrite")


@dataclass(frozen=True, kw_only=True)
class CausalOptions:
    """How the generator is causal: chunking, window, sinks, eviction, RoPE layout, attention backend."""

    num_frames_per_chunk: int = 3
    """Latent frames generated together (they attend to each other bidirectionally)."""
    local_attn_size: int = -1
    """Frames a chunk sees including itself and the sinks; -1 = global attention."""
    sink_size: int = 0
    """Leading latent frames kept as attention sinks when the window rolls."""
    sink_eviction: str = "drop"
    """"drop" (evicted frames are discarded) or "ema" (folded into the sinks, see `kv_cache.py`)."""
    sink_ema_decay: float = 0.99
    """Decay of the EMA-sink update, in [0, 1]."""
    rope_mode: str = "absolute"
    """"absolute" (keys rotated at their frame index) or "relative" (rotated on read, unbounded length)."""
    attention_backend: str = "auto"
    """"auto" (SDPA), "sdpa" or "flex" (flex attention's block mask for "block_causal")."""
    recache_visibility: str = "causal"
    """Prompt-switch re-cache (`CausalWanTransformer.recache`): "causal" (each held frame sees the held
    frames it saw when it was written) or "all_held" (every held frame sees every other held frame, later
    ones included: LongLive's re-cache, whose block mask its cached attention path never reads)."""
    recache_sinks: str = "reencode"
    """Re-cache of the sink frames: "reencode" (under the new prompt, like every held frame) or "keep"
    (once the window has rolled, i.e. a frame was evicted, the sinks keep the K/V written under the old
    prompt and the re-encoded frames attend to those: LongLive's `global_sink: true`), or "resink" (LongLive's
    interactive config, `global_sink: false`: once more than `local_attn_size` frames were written, the
    cache restarts from the last `local_attn_size` frames: they are re-encoded, each seeing every other
    (needs `recache_visibility="all_held"`), at their absolute RoPE positions, the first `sink_size` of
    them become the sinks and the old sinks are dropped; `KVCache.prepare_recache`). Before the window
    rolls all three re-encode every held frame."""
    sink_fold: str = "on_write"
    """When EMA sinks absorb evicted frames: "on_write" (when the chunk that pushes them out of the window
    is written, `KVCache.end_write`; that chunk itself attends to the sinks before the fold) or
    "before_attend" (in the first call of the chunk that needs the room, before it attends: Reward
    Forcing (Lu)). Only read with `sink_eviction="ema"`."""
    partial_eviction: str = "ema"
    """EMA rule per eviction: "ema" (every evicted frame j folds into sink slot `j % sink_size`) or
    "overwrite" (Reward Forcing (Lu): when exactly `sink_size` frames leave at once the i-th folds into
    sink i; any other count *overwrites* the first `min(count, sink_size)` sinks with the oldest evicted
    frames). Only read with `sink_eviction="ema"`."""

    def __post_init__(self) -> None:
        for name in ("num_frames_per_chunk", "local_attn_size", "sink_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an int, got {value!r}")
        if self.num_frames_per_chunk < 1:
            raise ValueError(f"num_frames_per_chunk must be >= 1, got {self.num_frames_per_chunk}")
        if self.sink_size < 0:
            raise ValueError(f"sink_size must be >= 0, got {self.sink_size}")
        if self.local_attn_size != -1 and self.local_attn_size - self.sink_size < self.num_frames_per_chunk:
            raise ValueError(
                f"local_attn_size ({self.local_attn_size}) must be -1 or >= sink_size ({self.sink_size}) + "
                f"num_frames_per_chunk ({self.num_frames_per_chunk})"
            )
        if self.rope_mode not in ROPE_MODES:
            raise ValueError(f"rope_mode must be one of {ROPE_MODES}, got {self.rope_mode!r}")
        if self.sink_eviction not in EVICTIONS:
            raise ValueError(f"sink_eviction must be one of {EVICTIONS}, got {self.sink_eviction!r}")
        if not 0.0 <= float(self.sink_ema_decay) <= 1.0:
            raise ValueError(f"sink_ema_decay must be in [0, 1], got {self.sink_ema_decay}")
        if self.attention_backend not in ATTENTION_BACKENDS:
            raise ValueError(
                f"attention_backend must be one of {ATTENTION_BACKENDS}, got {self.attention_backend!r}"
            )
        for name, allowed in (
            ("recache_visibility", RECACHE_VISIBILITIES),
            ("recache_sinks", RECACHE_SINKS),
            ("sink_fold", SINK_FOLDS),
            ("partial_eviction", PARTIAL_EVICTIONS),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.recache_sinks == "resink" and self.recache_visibility != "all_held":
            # the re-encoded frames include evicted ones whose original visibility no held frame shares
            raise ValueError(
                f"recache_sinks='resink' (LongLive's global_sink: false) re-encodes with every frame seeing "
                f"every other: needs recache_visibility='all_held', got {self.recache_visibility!r}"
            )
        lu_path = self.sink_fold == "before_attend" or self.partial_eviction == "overwrite"
        if self.sink_eviction == "ema" and lu_path and self.sink_size == 0:
            # Reward Forcing (Lu)'s code rotates queries at negative RoPE positions without sinks
            raise ValueError(
                f"sink_fold={self.sink_fold!r} / partial_eviction={self.partial_eviction!r} "
                "(Reward Forcing's EMA path) need sink_size >= 1, got 0"
            )

    @property
    def window_frames(self) -> int | None:
        """Non-sink frames visible to a chunk including itself (`W - S`); None for global attention."""
        return None if self.local_attn_size == -1 else self.local_attn_size - self.sink_size

    def rope_frames_needed(self, num_latent_frames: int | None) -> int | None:
        """RoPE frame positions a run of `num_latent_frames` latent frames uses (None: an endless run).

        The one place of the rule every length check applies (the model's input check, the stream's and
        the CLI's preflight): with relative RoPE and a rolling window the keys are rotated inside the
        window, so `local_attn_size` positions serve any length; otherwise (absolute RoPE, or global
        attention, where every frame stays visible) a frame's position is its index.

        Returns:
            The count of positions (compare with the config's `rope_max_seq_len`), or None when the run
            is endless and the positions are unbounded (absolute RoPE or global attention).
        """
        if self.rope_mode == "relative" and self.local_attn_size != -1:
            window = self.local_attn_size
            return window if num_latent_frames is None else min(window, num_latent_frames)
        return num_latent_frames

    def to_config(self) -> dict[str, Any]:
        """The flat config keys (as stored in the model's `config.json`)."""
        return asdict(self)

    @classmethod
    def from_config(cls, config: Any) -> CausalOptions:
        """Read the options from a flat config (a mapping or a diffusers `FrozenDict`)."""
        keys = cls.__dataclass_fields__
        return cls(**{k: config[k] for k in keys if k in config})
