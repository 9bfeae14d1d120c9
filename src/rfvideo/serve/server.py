"""Run the app with uvicorn: in the foreground (the CLI) or in a background thread (tests, benchmarks).

uvicorn handles SIGINT / SIGTERM in the foreground: it stops accepting, closes the sockets, then runs
the app's lifespan shutdown, which stops every stream and waits for its worker thread.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "background_server", "run_server"]

DEFAULT_HOST = "127.0.0.1"  # loopback unless the user asks for more
DEFAULT_PORT = 7860
# Client text messages are small JSON objects: a frame over 4 bytes (UTF-8) per allowed character is
# refused by uvicorn (1009) before the app reads it; an app's own settings set that limit.
_WS_MAX_BYTES = 64 * 1024
_BYTES_PER_CHAR = 4
# Client messages uvicorn buffers for a connection before it stops reading its socket.
_WS_MAX_QUEUE = 4
_GRACEFUL_S = 10
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _ws_max_bytes(app: Any) -> int:
    """The WebSocket frame limit: from the app's `ServeSettings.max_message_chars` when it has them."""
    settings = getattr(getattr(getattr(app, "state", None), "server", None), "settings", None)
    chars = getattr(settings, "max_message_chars", None)
    return _WS_MAX_BYTES if chars is None else max(1024, _BYTES_PER_CHAR * int(chars))


def _config(app: Any, host: str, port: int, log_level: str) -> Any:
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        lifespan="on",
        ws_max_size=_ws_max_bytes(app),
        ws_max_queue=_WS_MAX_QUEUE,
        timeout_graceful_shutdown=_GRACEFUL_S,
    )


def run_server(
    app: Any, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, log_level: str = "info"
) -> int | None:
    """Serve `app` until SIGINT / SIGTERM, then shut down cleanly (streams stopped, workers joined).

    Returns:
        The signal that ended the server (None if it stopped otherwise). The process then exits normally:
        after its graceful shutdown uvicorn re-raises the signal it caught, which would turn a clean
        Ctrl+C into a KeyboardInterrupt traceback and SIGTERM into exit status 143; the handlers
        installed here (uvicorn restores them before re-raising) absorb that re-raise.
    """
    import uvicorn

    if not 0 <= port < 65536:
        raise ValueError(f"port must lie in [0, 65535], got {port}")
    received: list[int] = []
    main = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.signal(sig, lambda s, _f: received.append(s)) for sig in _SIGNALS} if main else {}
    try:
        uvicorn.Server(_config(app, host, port, log_level)).run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return received[0] if received else None


@contextlib.contextmanager
def background_server(app: Any, *, host: str = DEFAULT_HOST, log_level: str = "warning") -> Iterator[str]:
    """Serve `app` on a free port of `host` in a daemon thread; yields its base URL, shuts down on exit."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(_config(app, host, port, log_level))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the background server did not start")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=_GRACEFUL_S + 20)
        sock.close()
