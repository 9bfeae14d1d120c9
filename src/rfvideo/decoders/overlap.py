"""Decode overlapped with generation: chunk i decodes while chunk i + 1 is generated.

`decode_overlapped(chunks, stream)` takes the generator's chunk iterator (pulling the next item is what
generates the next chunk) and a `StreamDecoder`, and yields `(index, frames)` in order. The decode runs in
one worker thread, so the chunks still reach the stream decoder one after another, in order, and the
frames equal the sequential stream's exactly (same calls, same order); only *when* they run changes.

- CPU: the worker thread's convolutions run while the main thread generates (torch releases the GIL in
  its kernels). Both share the cores: whether it pays depends on how well one of them alone fills the
  machine (bench/decoders.py measures overlap against sequential).
- CUDA: the worker decodes on its own CUDA stream, ordered after the work that produced the latents
  (an event recorded on the producer's stream); the consumer's stream waits for the decode's event before
  the frames are handed out, and both tensors are recorded on the stream that uses them last, so the
  caching allocator never hands their memory out early.

`eager_first=True` decodes chunk 0 before chunk 1 is asked for, so the first pixel frame comes as early as
in the sequential loop; later chunks overlap. With `eager_first=False` chunk 0 overlaps too, and its
frames wait for chunk 1 to be generated.

Legend: `b` batch, `c` latent channels, `k` latent frames of a chunk, `h w` latent size, `F` pixel frames.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch

from rfvideo.decoders.protocol import StreamDecoder

__all__ = ["decode_overlapped", "decode_sequential"]


def decode_sequential(
    chunks: Iterable[tuple[int, torch.Tensor]], stream: StreamDecoder
) -> Iterator[tuple[int, torch.Tensor]]:
    """The reference loop: generate a chunk, decode it, yield it (no overlap)."""
    for index, latents in chunks:
        yield index, stream(latents)


class _CudaSide:
    """The worker's CUDA stream and the event handshakes with the producer's / consumer's stream."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.side = torch.cuda.Stream(device=device)

    def submit_ready(self) -> Any:
        """An event on the producer's current stream: the latents exist once it has passed."""
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(self.device))
        return event

    def decode(self, stream: StreamDecoder, latents: torch.Tensor, ready: Any) -> tuple[torch.Tensor, Any]:
        with torch.cuda.stream(self.side):
            self.side.wait_event(ready)
            latents.record_stream(self.side)  # read here, allocated on the producer's stream
            frames = stream(latents)
            done = torch.cuda.Event()
            done.record(self.side)
        return frames, done

    def hand_over(self, frames: torch.Tensor, done: Any) -> torch.Tensor:
        consumer = torch.cuda.current_stream(self.device)
        consumer.wait_event(done)
        frames.record_stream(consumer)  # used here, allocated on the worker's stream
        return frames


def decode_overlapped(
    chunks: Iterable[tuple[int, torch.Tensor]],
    stream: StreamDecoder,
    *,
    eager_first: bool = True,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield `(index, frames (b F 3 H W))` for each `(index, latents (b c k h w))`, decoding in a worker.

    Args:
        chunks: The generator's chunks in order; advancing it generates the next chunk.
        stream: A fresh (or reset) stream decoder of the video; it is called once per chunk, in order,
            from the worker thread only.
        eager_first: Decode chunk 0 before generating chunk 1 (first pixels as early as sequentially).

    Yields:
        `(index, frames)` in the chunks' order, equal to `stream(latents)` called sequentially.

    An exception in the generator or the decoder propagates from the next `next()`; closing the iterator
    early waits for the running decode and stops.
    """
    it = iter(chunks)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rfvideo-decode")
    cuda: _CudaSide | None = None

    def submit(latents: torch.Tensor) -> Future[Any]:
        nonlocal cuda
        if latents.is_cuda:
            if cuda is None:
                cuda = _CudaSide(latents.device)
            return pool.submit(cuda.decode, stream, latents, cuda.submit_ready())
        return pool.submit(stream, latents)

    def result(fut: Future[Any]) -> torch.Tensor:
        out = fut.result()
        return cuda.hand_over(*out) if isinstance(out, tuple) and cuda is not None else out

    pending: tuple[int, Future[Any]] | None = None
    try:
        for n, (index, latents) in enumerate(it):
            fut = submit(latents)
            if n == 0 and eager_first:
                yield index, result(fut)
                continue
            if pending is not None:
                yield pending[0], result(pending[1])
            pending = (index, fut)
            # The loop's next step pulls chunk n + 1 from the generator while `fut` decodes.
        if pending is not None:
            yield pending[0], result(pending[1])
    finally:
        pool.shutdown(wait=True)
