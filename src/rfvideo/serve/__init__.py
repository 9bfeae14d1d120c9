"""`rfvideo serve`: a live browser demo of a streaming generator, with prompt switching over a WebSocket.

Needs the optional extra `rfvideo[serve]` (Starlette, uvicorn, websockets): `create_app` and the server
runners import them on first use, so `import rfvideo.serve` works without them.
"""

from __future__ import annotations

from typing import Any

from rfvideo.serve.metrics import ServeMetrics
from rfvideo.serve.protocol import ClientMessage, ProtocolError, parse_client_message
from rfvideo.serve.session import Outgoing, StreamingGeneratorLike, StreamSession
from rfvideo.serve.settings import ServeSettings

__all__ = [
    "ClientMessage",
    "Outgoing",
    "ProtocolError",
    "ServeMetrics",
    "ServeSettings",
    "StreamSession",
    "StreamingGeneratorLike",
    "background_server",
    "create_app",
    "parse_client_message",
    "run_server",
]

_LAZY = {
    "create_app": "rfvideo.serve.app",
    "background_server": "rfvideo.serve.server",
    "run_server": "rfvideo.serve.server",
}


def __getattr__(name: str) -> Any:
    # Lazy re-exports: the Starlette / uvicorn parts load only when asked for.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rfvideo.serve' has no attribute {name!r}")
