"""The ASGI app of `rfvideo serve` (Starlette): the page, `/ws` for live video, `/healthz`, `/metrics`.

Imported only by `rfvideo serve` and its tests: Starlette is the optional extra `rfvideo[serve]`.

Per connection: one receiver loop (client messages, checked by `protocol`), one sender task (a queue of
`Outgoing` items: JSON status, then the chunk's JPEG frames as binary messages) and at most one
`StreamSession` whose worker thread runs the model off the event loop. Server-wide: a fixed number of
generation slots (`ServeSettings.max_streams`); a `start` that finds none free gets `busy`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
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


class _Connection:
    """One WebSocket: its receive loop, its outgoing queue and its (at most one) session."""

    def __init__(self, server: _Server, ws: WebSocket) -> None:
        self.server = server
        self.ws = ws
        self.loop = asyncio.get_running_loop()
        self.out: asyncio.Queue[Outgoing] = asyncio.Queue()
        self.session: StreamSession | None = None

    def emit(self, item: Outgoing) -> None:
        """Thread-safe: queue an item for the sender task (raises RuntimeError once the loop is closed)."""
        self.loop.call_soon_threadsafe(self.out.put_nowait, item)

    def reply(self, status: dict[str, Any]) -> None:
        self.out.put_nowait(Outgoing(status))

    def error(self, message: str) -> None:
        self.reply({"type": "error", "message": message})

    async def send_loop(self) -> None:
        while True:
            item = await self.out.get()
            await self.ws.send_text(json.dumps(item.status))
            for frame in item.frames:
                await self.ws.send_bytes(frame)

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
            if self.session is not None:
                assert msg.chunk is not None
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
            self.error(f"could not start a stream: {type(e).__name__}: {e}")
            return
        seed = msg.seed if msg.seed is not None else settings.default_seed
        assert msg.prompt is not None
        session = StreamSession(
            generator,
            prompt=msg.prompt,
            seed=seed,
            emit=self.emit,
            metrics=server.metrics,
            max_ahead=settings.max_ahead,
            max_chunks=settings.max_chunks,
            jpeg_quality=settings.jpeg_quality,
            on_exit=lambda: server.release(session),
        )
        with server.lock:
            server.sessions.add(session)
        server.metrics.add("active_streams")
        server.metrics.add("streams_started")
        self.session = session
        session.start()

    async def run(self) -> None:
        settings = self.server.settings
        sender = asyncio.create_task(self.send_loop())
        self.reply(self.server.hello())
        try:
            while True:
                raw = await self.ws.receive()
                if raw["type"] == "websocket.disconnect":
                    break
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
                if sender.done():  # the socket failed on a send: nobody is listening
                    break
        finally:
            if self.session is not None:
                self.session.stop()  # stop on disconnect; the worker releases its slot when it ends
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender


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
        try:
            await _Connection(server, ws).run()
        finally:
            server.metrics.add("connections", -1)
            if ws.client_state == WebSocketState.CONNECTED:
                with contextlib.suppress(Exception):
                    await ws.close()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await server.shutdown()

    routes = [Route(path, page) for path in static]
    routes += [Route("/healthz", healthz), Route("/metrics", metrics), WebSocketRoute("/ws", websocket)]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.server = server
    return app
