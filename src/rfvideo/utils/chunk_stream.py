"""The continuity rule of every streamed decoder: a chunk continues the video its stream started.

Legend: `b` batch, `c` latent channels, `f` latent frames, `h w` latent size.
"""

from __future__ import annotations

__all__ = ["check_chunk_continues"]


def check_chunk_continues(
    shape: tuple[int, int, int, int, int],
    stream_shape: tuple[int, int, int, int] | None,
    frame_offset: int | None,
    next_frame: int,
) -> None:
    """Refuse a chunk `(b c f h w)` = `shape` that does not continue the stream: another batch, channel count
    or latent size than the first chunk's (`stream_shape`, None before it), or a `frame_offset` other than
    `next_frame`, the number of latent frames decoded so far (None: not checked).

    Raises:
        ValueError: naming the chunk's shape or offset and what the stream expected.
    """
    b, c, f, h, w = shape
    if stream_shape is not None and (b, c, h, w) != stream_shape:
        raise ValueError(
            f"chunk (b c f h w) = {(b, c, f, h, w)} does not continue the stream of "
            f"(b, c, h, w) = {stream_shape}; reset() to start a new video"
        )
    if frame_offset is not None and frame_offset != next_frame:
        raise ValueError(
            f"chunk out of order: frame_offset={frame_offset!r}, "
            f"the next latent frame to decode is {next_frame}"
        )
