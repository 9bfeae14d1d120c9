"""Limits and knobs of `rfvideo serve`, in one dataclass (what a public demo needs bounded)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ServeSettings"]


@dataclass(kw_only=True)
class ServeSettings:
    """Server limits.

    Attributes:
        max_streams: generations that may run at once; a client asking for one more gets `busy`.
        max_ahead: chunks the server may produce beyond the last one the client acknowledged
            (flow control: a slow client slows its generation; memory per stream stays bounded).
        max_prompt_chars: longest prompt accepted (after stripping whitespace).
        max_message_chars: longest raw client text message, checked before JSON parsing.
        max_chunks: chunks per stream before it ends with `done`; None streams until stopped (or the
            generator's own limit).
        jpeg_quality: Pillow JPEG quality of the frames (1..95).
        default_seed: seed of a stream whose `start` message gives none.
    """

    max_streams: int = 2
    max_ahead: int = 2
    max_prompt_chars: int = 200
    max_message_chars: int = 4096
    max_chunks: int | None = None
    jpeg_quality: int = 85
    default_seed: int = 0

    def __post_init__(self) -> None:
        for name in ("max_streams", "max_ahead", "max_prompt_chars", "max_message_chars"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.max_chunks is not None and (not isinstance(self.max_chunks, int) or self.max_chunks < 1):
            raise ValueError(f"max_chunks must be a positive int or None, got {self.max_chunks!r}")
        if not isinstance(self.jpeg_quality, int) or not 1 <= self.jpeg_quality <= 95:
            raise ValueError(f"jpeg_quality must be an int in [1, 95], got {self.jpeg_quality!r}")
        if not isinstance(self.default_seed, int) or not 0 <= self.default_seed < 2**31:
            raise ValueError(f"default_seed must be an int in [0, 2**31), got {self.default_seed!r}")
        if self.max_message_chars < self.max_prompt_chars:
            raise ValueError(
                f"max_message_chars={self.max_message_chars} must be >= max_prompt_chars="
                f"{self.max_prompt_chars}, or a prompt within the limit could not be sent"
            )
