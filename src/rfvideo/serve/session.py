"""One live generation: a worker thread that drives a streaming generator chunk by chunk.

The event loop never runs the model: `StreamSession` runs `next_chunk()` in its own thread and hands each
chunk (a status dict plus its JPEG frames) to an `emit` callback, which the app forwards to the socket.
Flow control: the worker may run at most `max_ahead` chunks past the last chunk the client acknowledged,
so a slow client slows its own generation and the frames waiting for it stay bounded. A stream that waits
longer than `ack_timeout_s` for an ack ends (`stopped` with a `reason`), which frees its generation slot:
a client that starts and goes silent cannot hold a slot.

A prompt switch is stored and applied by the worker between two `next_chunk()` calls, i.e. at the next
chunk boundary; the generator is only ever touched from the worker thread.

Legend: `b` batch (1 here), `F` pixel frames of a chunk, `H W` pixel height/width.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from rfvideo.serve.jpeg import encode_jpegs
from rfvideo.serve.metrics import ServeMetrics

__all__ = ["Outgoing", "StreamSession", "StreamingGeneratorLike"]

log = logging.getLogger(__name__)


class StreamingGeneratorLike(Protocol):
    """What the server needs of `rfvideo.streaming.StreamingGenerator` (docs/interfaces.md)."""

    chunk_index: int
    fps: float
    timings: dict[str, float]

    def set_prompt(self, prompt: str) -> None: ...

    def next_chunk(self) -> torch.Tensor: ...

    def reset(self, seed: int | None = None) -> None: ...


@dataclass
class Outgoing:
    """One unit for the socket: a JSON status message, then `frames` as binary messages (maybe none)."""

    status: dict[str, Any]
    frames: list[bytes] = field(default_factory=list)


class StreamSession:
    """A generation running in a worker thread.

    Args:
        generator: a fresh streaming generator owned by this session (batch size 1).
        prompt: the first prompt (already checked).
        seed: noise seed of the stream.
        emit: called from the worker thread with each `Outgoing`; must not block for long.
        metrics: server counters to update.
        max_ahead: chunks the worker may produce beyond the last acknowledged one.
        max_chunks: stop after this many chunks with a `done` message; None: until stopped.
        jpeg_quality: JPEG quality of the frames.
        on_exit: called once from the worker thread when it ends (releases the server slot).
        ack_timeout_s: longest wait for an ack once all credit is used; then the stream ends.
    """

    def __init__(
        self,
        generator: StreamingGeneratorLike,
        *,
        prompt: str,
        seed: int,
        emit: Callable[[Outgoing], None],
        metrics: ServeMetrics,
        max_ahead: int,
        max_chunks: int | None = None,
        jpeg_quality: int = 85,
        on_exit: Callable[[], None] | None = None,
        ack_timeout_s: float = 60.0,
    ) -> None:
        self._gen = generator
        self._prompt = prompt
        self._seed = seed
        self._emit = emit
        self._metrics = metrics
        self._max_ahead = max_ahead
        self._max_chunks = max_chunks
        self._quality = jpeg_quality
        self._on_exit = on_exit
        self._cond = threading.Condition()
        self._pending: str | None = None
        self._acked = 0  # chunks acknowledged by the client (highest acked index + 1)
        self._produced = 0
        self._stop = False
        self._ack_timeout_s = ack_timeout_s
        self._last_ack = time.monotonic()
        self._timed_out = False
        self._thread = threading.Thread(target=self._run, name="rfvideo-serve-stream", daemon=True)

    # ------------------------------------------------------------------ called from the event loop
    def start(self) -> None:
        """Start the worker thread."""
        self._thread.start()

    def request_prompt(self, prompt: str) -> int:
        """Switch to `prompt` at the next chunk boundary; returns the index of the next chunk to generate."""
        with self._cond:
            self._pending = prompt
            return self._produced

    def ack(self, chunk: int) -> None:
        """The client has begun showing chunk `chunk`: the worker may run `max_ahead` chunks past it."""
        with self._cond:
            self._acked = max(self._acked, min(chunk, self._produced - 1) + 1)
            self._last_ack = time.monotonic()
            self._cond.notify_all()

    def stop(self) -> None:
        """Ask the worker to end after the chunk it is making (if any)."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the worker; True when it has ended."""
        if self._thread.ident is not None:
            self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        """Whether the worker thread is running."""
        return self._thread.is_alive()

    @property
    def chunks_produced(self) -> int:
        """Chunks generated so far."""
        with self._cond:
            return self._produced

    # ------------------------------------------------------------------ worker thread
    def _wait_for_credit(self) -> bool:
        """Block until the client is at most `max_ahead - 1` chunks behind; False when stopped or when
        no ack came for `ack_timeout_s` (counted from when the wait began or the last ack, the later)."""
        with self._cond:
            began = time.monotonic()
            while not self._stop and self._produced - self._acked >= self._max_ahead:
                left = max(began, self._last_ack) + self._ack_timeout_s - time.monotonic()
                if left <= 0:
                    self._timed_out = True
                    return False
                self._cond.wait(timeout=min(0.5, left))
            return not self._stop

    def _run(self) -> None:
        reason = "stopped"
        try:
            gen = self._gen
            gen.reset(seed=self._seed)
            gen.set_prompt(self._prompt)
            self._emit(
                Outgoing({"type": "started", "prompt": self._prompt, "seed": self._seed, "fps": gen.fps})
            )
            while self._wait_for_credit():
                with self._cond:
                    pending, self._pending = self._pending, None
                if pending is not None and pending != self._prompt:
                    gen.set_prompt(pending)
                    self._prompt = pending
                    self._emit(Outgoing({"type": "switch", "prompt": pending, "chunk": gen.chunk_index}))
                index = gen.chunk_index
                t0 = time.perf_counter()
                video = gen.next_chunk()  # (b F 3 H W) in [0, 1], b = 1
                seconds = time.perf_counter() - t0
                frames = encode_jpegs(video[0], quality=self._quality)
                self._metrics.record_chunk(len(frames), seconds)
                timings = _timings(getattr(gen, "timings", None))
                status = {
                    "type": "chunk",
                    "index": index,
                    "frames": len(frames),
                    "prompt": self._prompt,
                    "height": int(video.shape[-2]),
                    "width": int(video.shape[-1]),
                    "seconds": round(seconds, 4),
                    "timings": timings,
                }
                with self._cond:
                    self._produced += 1
                    produced = self._produced
                self._emit(Outgoing(status, frames))
                if self._max_chunks is not None and produced >= self._max_chunks:
                    reason = "done"
                    break
        except Exception as e:  # the stream ends, the server and the connection live on
            log.exception("stream failed")
            self._metrics.add("errors")
            reason = "error"
            self._safe_emit(
                Outgoing(
                    {"type": "error", "message": f"generation failed: {_one_line(e)}", "stream_ended": True}
                )
            )
        finally:
            if reason != "error":
                final: dict[str, Any] = {"type": reason, "chunks": self._produced}
                if self._timed_out:
                    self._metrics.add("timeouts")
                    final["reason"] = (
                        f"no ack for {self._ack_timeout_s:g} s: the stream was stopped to free its slot"
                    )
                self._safe_emit(Outgoing(final))
            if self._on_exit is not None:
                self._on_exit()

    def _safe_emit(self, item: Outgoing) -> None:
        try:
            self._emit(item)
        except Exception:  # the connection may be gone; nothing left to tell
            log.debug("could not emit %s", item.status.get("type"))


def _timings(value: Any) -> dict[str, float]:
    """A generator's timings as `{name: seconds}`: a mapping or a dataclass of numbers (others dropped)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if not isinstance(value, Mapping):
        return {}
    return {
        str(k): round(float(v), 4)
        for k, v in value.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"
