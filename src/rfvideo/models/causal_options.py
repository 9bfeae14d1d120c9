"""The causal options of the chunk-wise Wan generator, in one object shared by the model config, the KV
cache and the YAML loaders.

Window semantics: with `W = local_attn_size` and `S = sink_size`, a chunk whose last frame is `e - 1`
sees the sink frames `[0, S)` plus the `W - S` most recent frames `[e - (W - S), e)` (its own chunk
included); `W = -1` is global attention.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["ATTENTION_BACKENDS", "EVICTIONS", "ROPE_MODES", "CausalOptions"]

ROPE_MODES = ("absolute", "relative")
EVICTIONS = ("drop", "ema")
ATTENTION_BACKENDS = ("auto", "sdpa", "flex")


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

    @property
    def window_frames(self) -> int | None:
        """Non-sink frames visible to a chunk including itself (`W - S`); None for global attention."""
        return None if self.local_attn_size == -1 else self.local_attn_size - self.sink_size

    def to_config(self) -> dict[str, Any]:
        """The flat config keys (as stored in the model's `config.json`)."""
        return asdict(self)

    @classmethod
    def from_config(cls, config: Any) -> CausalOptions:
        """Read the options from a flat config (a mapping or a diffusers `FrozenDict`)."""
        keys = cls.__dataclass_fields__
        return cls(**{k: config[k] for k in keys if k in config})
