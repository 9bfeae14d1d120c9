"""The ASGI app of `rfvideo serve` (Starlette): the page, `/ws` for live video, `/healthz`, `/metrics`.

Imported only by `rfvideo serve` and its tests: Starlette is the optional extra `rfvideo[serve]`.

Per connection: one receiver loop (client messages, checked by `protocol`, read at a capped rate), one
sender task (a bounded queue of `Outgoing` items: JSON status, then the chunk's JPEG frames as binary
messages) and at most one `StreamSession` whose worker thread runs the model off the event loop.
Server-wide: a fixed number of generation slots (`ServeSettings.max_streams`); a `start` that finds none
free gets `busy`; every request's `Host` must name this server (`ServeSettings.allowed_hosts`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketState

from rfvideo.serve.metrics import ServeMetrics
from rfvideo.serve.protocol import ClientMessage, ProtocolError, parse_client_message
from rfvideo.serve.session import Outgoing, StreamingGeneratorLike, StreamSession
from rfvideo.serve.settings import ServeSettings

__all__ = ["create_app"]

log = logging.getLogger(__name__)

# The page's own files, read once; fixed routes, so no request path ever reaches the filesystem.
_STATIC = {"/": ("index.html", "text/html; charset=utf-8"), "/app.js": ("app.js", "text/javascript")}
_STATIC["/style.css"] = ("style.css", "text/css")
# Nothing is loaded from anywhere but this server; frames are drawn from blob: URLs of received bytes.
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob:; connect-src 'self'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
_JOIN_TIMEOUT_S = 30.0
_CLOSE_TIMEOUT_S = 5.0  # a close frame to a client that does not read may never leave


def _return_free_memory() -> None:
    """Hand freed heap pages back to the OS (glibc keeps a worker thread's arena otherwise, so a
    server's RSS would only ever grow with the streams it has served); a no-op elsewhere."""
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        try:
            _MALLOC_TRIM = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _MALLOC_TRIM = False
    if _MALLOC_TRIM:
        _MALLOC_TRIM(0)


_MALLOC_TRIM: Any = None


class _Server:
    """Server-wide state: generation slots, live sessions, counters."""

    def __init__(self, factory: Callable[[], StreamingGeneratorLike], settings: ServeSettings) -> None:
        self.factory = factory
        self.settings = settings
        self.metrics = ServeMetrics()
        self.slots = threading.BoundedSemaphore(settings.max_streams)
        self.sessions: set[StreamSession] = set()
        self.lock = threading.Lock()
        self.shutting_down = False

    def hello(self) -> dict[str, Any]:
        s = self.settings
        return {
            "type": "hello",
            "max_prompt_chars": s.max_prompt_chars,
            "max_streams": s.max_streams,
            "max_ahead": s.max_ahead,
            "max_chunks": s.max_chunks,
        }

    def release(self, session: StreamSession) -> None:
        with self.lock:
            self.sessions.discard(session)
        self.metrics.add("active_streams", -1)
        self.slots.release()
        _return_free_memory()

    async def shutdown(self) -> None:
        """Stop every stream and wait for the workers (each ends after its current chunk)."""
        self.shutting_down = True
        with self.lock:
            sessions = list(self.sessions)
        for s in sessions:
            s.stop()
        for s in sessions:
            await asyncio.to_thread(s.join, _JOIN_TIMEOUT_S)


def _origin_allowed(ws: WebSocket) -> bool:
    """Refuse cross-site pages: a browser sends `Origin`, which must name this very host:port.

    Without it any web page the user visits could open a socket to a demo on localhost. Clients that
    are not browsers send no Origin and are let through.
    """
    origin = ws.headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc.lower() == ws.headers.get("host", "").lower()


@dataclass
class _Queued:
    """An outgoing item as it waits: the status already serialised (its size is what it costs)."""

    text: str
    frames: list[bytes]
    size: int
    session: StreamSession | None  # the stream a chunk belongs to (None: a reply of the connection)
    chunk: int | None  # the chunk index of a `chunk` status


def _host_name(host_header: str) -> str:
    """The host name of a `Host` header: port and IPv6 brackets removed, lower case, no trailing dot."""
    host = host_header.strip().lower()
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else host[1:]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def _host_allowed(scope: Scope, allowed: tuple[str, ...]) -> bool:
    """Whether the request's `Host` names this server: an allowed name or the address it arrived on."""
    headers = dict(scope.get("headers") or [])
    raw = headers.get(b"host")
    if raw is None:  # HTTP/1.0 without Host: no browser, so no rebinding; nothing to check
        return True
    host = _host_name(raw.decode("latin-1"))
    server = scope.get("server")
    if server and str(server[0]).lower().strip("[]") == host:
        return True
    for name in allowed:
        if name == "*" or name == host or (name.startswith("*.") and host.endswith(name[1:])):
            return True
    return False


class _HostCheck:
    """ASGI middleware: answer only requests whose `Host` is allowed (blocks DNS rebinding).

    A page of `evil.example` whose DNS name is re-pointed at 127.0.0.1 reaches this server as same-origin
    for the browser, so the Origin check passes; its requests still carry `Host: evil.example`.
    """

    def __init__(self, app: ASGIApp, *, allowed: tuple[str, ...], metrics: ServeMetrics) -> None:
        self.app, self.allowed, self.metrics = app, allowed, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and not _host_allowed(scope, self.allowed):
            self.metrics.add("host_rejections")
            if scope["type"] == "http":
                await PlainTextResponse("invalid Host header", status_code=400)(scope, receive, send)
            else:
                await send({"type": "websocket.close", "code": 1008})
            return
        await self.app(scope, receive, send)


class _Connection:
    """One WebSocket: its receive loop, its bounded outgoing queue and its (at most one) session.

    Every limit here is per connection, so one client cannot spend another's share: the outgoing queue
    holds at most `max_queued_messages` items and `max_buffered_bytes` bytes (a client that lets more
    pile up is not reading and is disconnected with 1008); client messages are read at most
    `max_messages_per_s` a second after a burst (past it the loop stops reading, so TCP pushes back on
    the sender); a connection silent for `idle_timeout_s` is closed; an ack is accepted only for a chunk
    whose status has been handed to the socket.
    """

    def __init__(self, server: _Server, ws: WebSocket) -> None:
        self.server = server
        self.settings = server.settings
        self.ws = ws
        self.loop = asyncio.get_running_loop()
        self.queue: collections.deque[_Queued] = collections.deque()
        self.queued_bytes = 0
        self.wake = asyncio.Event()
        self.closing = asyncio.Event()
        self.close_code = 1000
        self.close_reason = ""
        self.session: StreamSession | None = None
        self.sent_chunks = 0  # chunks of the current session whose status went to the socket
        self.tokens = float(self.settings.max_message_burst)
        self.token_time = time.monotonic()
        self.last_message = time.monotonic()

    # ------------------------------------------------------------------ outgoing
    def put(self, item: Outgoing, session: StreamSession | None = None) -> None:
        """Queue an item for the sender task (event-loop thread); a full queue closes the connection."""
        if self.closing.is_set():
            return
        text = json.dumps(item.status)
        size = len(text) + sum(len(f) for f in item.frames)
        s = self.settings
        if len(self.queue) >= s.max_queued_messages or self.queued_bytes + size > s.max_buffered_bytes:
            self.server.metrics.add("slow_client_closes")
            log.warning("closing a connection that does not read its messages (%d queued)", len(self.queue))
            self.shut(1008, "too many unread messages")
            return
        chunk = int(item.status["index"]) if item.status.get("type") == "chunk" else None
        self.queue.append(_Queued(text, item.frames, size, session, chunk))
        self.queued_bytes += size
        self.wake.set()

    def reply(self, status: dict[str, Any]) -> None:
        self.put(Outgoing(status))

    def error(self, message: str) -> None:
        self.reply({"type": "error", "message": message})

    def shut(self, code: int, reason: str) -> None:
        """End the connection with a WebSocket close `code` (the run loop returns)."""
        if not self.closing.is_set():
            self.close_code, self.close_reason = code, reason
            self.closing.set()

    async def send_loop(self) -> None:
        while True:
            while not self.queue:
                self.wake.clear()
                await self.wake.wait()
            item = self.queue.popleft()
            if item.chunk is not None and item.session is self.session:
                # counted before the send: a client can ack a chunk as soon as it sees its status
                self.sent_chunks = max(self.sent_chunks, item.chunk + 1)
            try:
                await self.ws.send_text(item.text)
                for frame in item.frames:
                    await self.ws.send_bytes(frame)
            finally:
                self.queued_bytes -= item.size

    # ------------------------------------------------------------------ incoming
    async def handle(self, msg: ClientMessage) -> None:
        if msg.type == "start":
            await self.start(msg)
        elif msg.type == "prompt":
            if self.session is None or not self.session.alive:
                self.error("no stream is running; start one first")
                return
            assert msg.prompt is not None
            nxt = self.session.request_prompt(msg.prompt)
            self.reply({"type": "queued", "prompt": msg.prompt, "after_chunk": nxt - 1})
        elif msg.type == "ack":
            # No stream (or one that ended): a stale ack after a stop is normal; nothing to credit.
            if self.session is not None and self.session.alive:
                assert msg.chunk is not None
                if msg.chunk >= self.sent_chunks:
                    self.error(
                        f"an ack for a chunk that has not been sent yet (chunks sent: {self.sent_chunks})"
                    )
                    return
                self.session.ack(msg.chunk)
        elif msg.type == "stop":
            if self.session is None or not self.session.alive:
                self.error("no stream is running")
                return
            self.session.stop()

    async def start(self, msg: ClientMessage) -> None:
        server, settings = self.server, self.server.settings
        if self.session is not None and self.session.alive:
            self.error("a stream is already running on this connection; stop it first")
            return
        if server.shutting_down:
            self.error("the server is shutting down")
            return
        if not server.slots.acquire(blocking=False):
            server.metrics.add("busy_rejections")
            self.reply(
                {
                    "type": "busy",
                    "message": f"all {settings.max_streams} generation slots are in use; try again shortly",
                }
            )
            return
        try:
            # Building a generator allocates its cache: off the event loop like the model itself.
            generator = await asyncio.to_thread(server.factory)
        except Exception as e:
            server.slots.release()
            log.exception("could not build a generator")
            self.error(f"could not start a stream: {type(e).__name__}")
            return
        seed = msg.seed if msg.seed is not None else settings.default_seed
        assert msg.prompt is not None
        session = StreamSession(
            generator,
            prompt=msg.prompt,
            seed=seed,
            emit=lambda item: self.loop.call_soon_threadsafe(self.put, item, session),  # thread-safe
            metrics=server.metrics,
            max_ahead=settings.max_ahead,
            max_chunks=settings.max_chunks,
            jpeg_quality=settings.jpeg_quality,
            on_exit=lambda: server.release(session),
            ack_timeout_s=settings.ack_timeout_s,
        )
        with server.lock:
            server.sessions.add(session)
        server.metrics.add("active_streams")
        server.metrics.add("streams_started")
        self.session = session
        self.sent_chunks = 0
        session.start()

    async def throttle(self) -> None:
        """Wait for a token of the connection's message rate (a token bucket of `max_message_burst`)."""
        s = self.settings
        now = time.monotonic()
        self.tokens = min(
            float(s.max_message_burst), self.tokens + (now - self.token_time) * s.max_messages_per_s
        )
        self.token_time = now
        if self.tokens < 1.0:
            self.server.metrics.add("throttled_reads")
            await asyncio.sleep((1.0 - self.tokens) / s.max_messages_per_s)
            self.tokens, self.token_time = 1.0, time.monotonic()
        self.tokens -= 1.0

    async def receive_loop(self) -> None:
        settings = self.settings
        while not self.closing.is_set():  # a full queue ends the loop even if reads never suspend
            await self.throttle()
            idle_left = self.last_message + settings.idle_timeout_s - time.monotonic()
            try:
                raw = await asyncio.wait_for(self.ws.receive(), timeout=max(idle_left, 0.0))
            except asyncio.TimeoutError:
                self.server.metrics.add("timeouts")
                self.shut(1000, f"no message for {settings.idle_timeout_s:g} s")
                return
            if raw["type"] == "websocket.disconnect":
                return
            self.last_message = time.monotonic()
            text = raw.get("text")
            if text is None:
                self.error("binary messages are not accepted; send JSON text")
                continue
            try:
                msg = parse_client_message(
                    text,
                    max_prompt_chars=settings.max_prompt_chars,
                    max_message_chars=settings.max_message_chars,
                )
            except ProtocolError as e:
                self.error(str(e))
                continue
            await self.handle(msg)

    async def run(self) -> tuple[int, str] | None:
        """Serve the connection; returns the close (code, reason) to send, None when the client left."""
        tasks = [
            asyncio.create_task(self.send_loop()),
            asyncio.create_task(self.receive_loop()),
            asyncio.create_task(self.closing.wait()),
        ]
        self.reply(self.server.hello())
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:  # a failed send means nobody is listening; anything else is a bug to log
                if not task.cancelled() and task.exception() is not None and task is tasks[1]:
                    log.error("connection handler failed", exc_info=task.exception())
        finally:
            if self.session is not None:
                self.session.stop()  # stop on disconnect; the worker releases its slot when it ends
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self.queue.clear()
            self.queued_bytes = 0
        return (self.close_code, self.close_reason) if self.closing.is_set() else None


def create_app(
    generator_factory: Callable[[], StreamingGeneratorLike], settings: ServeSettings | None = None
) -> Starlette:
    """Build the app.

    Args:
        generator_factory: returns a fresh streaming generator (batch size 1) for each stream; the
            generators may share one model (weights are read-only) but each holds its own caches.
        settings: limits; defaults to `ServeSettings()`.

    Returns:
        The Starlette app; `app.state.server` holds its counters (`.metrics`) and settings.
    """
    settings = settings if settings is not None else ServeSettings()
    server = _Server(generator_factory, settings)
    files = resources.files("rfvideo.serve").joinpath("static")
    static = {route: (files.joinpath(name).read_bytes(), ctype) for route, (name, ctype) in _STATIC.items()}

    async def page(request: Request) -> Response:
        body, ctype = static[request.url.path]
        return Response(body, media_type=ctype, headers=_HEADERS)

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "shutting down" if server.shutting_down else "ok"})

    async def metrics(request: Request) -> JSONResponse:
        return JSONResponse(server.metrics.snapshot())

    async def websocket(ws: WebSocket) -> None:
        if not _origin_allowed(ws):
            await ws.close(code=1008)  # policy violation
            return
        await ws.accept()
        server.metrics.add("connections")
        close: tuple[int, str] | None = None
        try:
            close = await _Connection(server, ws).run()
        finally:
            server.metrics.add("connections", -1)
            if (
                ws.application_state == WebSocketState.CONNECTED
                and ws.client_state == WebSocketState.CONNECTED
            ):
                code, reason = close if close is not None else (1000, "")
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(code=code, reason=reason), timeout=_CLOSE_TIMEOUT_S)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await server.shutdown()

    routes = [Route(path, page) for path in static]
    routes += [Route("/healthz", healthz), Route("/metrics", metrics), WebSocketRoute("/ws", websocket)]
    host_check = Middleware(_HostCheck, allowed=settings.allowed_hosts, metrics=server.metrics)
    app = Starlette(routes=routes, lifespan=lifespan, middleware=[host_check])
    app.state.server = server
    return app
