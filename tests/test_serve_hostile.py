"""`rfvideo serve` under hostile clients (issue 23, items 1-4): bounded outgoing queues, no echo of client
data, message size / rate / nesting caps, idle and ack timeouts that free the slot, blind acks refused,
and the Host check against DNS rebinding.

Slow readers are driven at the ASGI level (`AsgiSocket`): its `websocket.send` never returns, exactly what
a client that never reads looks like once the TCP buffers are full, without depending on kernel buffer
sizes. The rest uses Starlette's TestClient or uvicorn on loopback.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable
from typing import Any

import pytest

pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402
from starlette.websockets import WebSocketDisconnect  # noqa: E402

from rfvideo.serve import ServeSettings, create_app  # noqa: E402
from rfvideo.serve.protocol import ProtocolError, parse_client_message  # noqa: E402
from test_serve_app import factory, parts, recv_chunk, recv_status, wait_for  # noqa: E402, F401


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)  # see test_serve_app.py


class AsgiSocket:
    """Drive the app's `/ws` directly: feed `messages` as fast as the app reads them; `websocket.send`
    of data blocks forever when `reads` is False (a client that never reads). Records what the app did."""

    def __init__(self, messages: Iterable[str], *, reads: bool, host: bytes = b"127.0.0.1:7860") -> None:
        self.messages = iter(messages)
        self.reads = reads
        self.host = host
        self.consumed = 0
        self.read_times: list[float] = []
        self.sent: list[dict[str, Any]] = []
        self.close: dict[str, Any] | None = None
        self.accepted = False

    async def receive(self) -> dict[str, Any]:
        if not self.accepted:
            self.accepted = True
            return {"type": "websocket.connect"}
        if self.close is not None:
            return {"type": "websocket.disconnect", "code": 1000}
        text = next(self.messages, None)
        if text is None:
            await asyncio.sleep(3600)  # the client goes quiet
        self.consumed += 1
        self.read_times.append(time.monotonic())
        return {"type": "websocket.receive", "text": text}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "websocket.close":
            self.close = message
            return
        if message["type"] == "websocket.send":
            if not self.reads:
                await asyncio.sleep(3600)
            self.sent.append(message)

    def run(self, app: Any, *, limit_s: float) -> None:
        """Run the connection until the app ends it (or `limit_s` passes, which fails the test)."""
        scope = {
            "type": "websocket", "asgi": {"version": "3.0"}, "scheme": "ws", "path": "/ws",
            "raw_path": b"/ws", "query_string": b"", "root_path": "", "subprotocols": [],
            "headers": [(b"host", self.host)], "server": ("127.0.0.1", 7860), "client": ("127.0.0.1", 50000),
        }  # fmt: skip

        async def main() -> None:
            await asyncio.wait_for(app(scope, self.receive, self.send), timeout=limit_s)

        asyncio.run(main())


def texts(sock: AsgiSocket) -> list[dict[str, Any]]:
    return [json.loads(m["text"]) for m in sock.sent if m.get("text") is not None]


def test_a_client_that_never_reads_is_closed_with_a_bounded_queue(parts: Any) -> None:  # noqa: F811
    """Item 1: each bad message earns an error reply; a client that reads none of them is disconnected
    (code 1008) once its queue is full, long before its 20k messages are all read."""
    app = create_app(factory(parts), ServeSettings(max_messages_per_s=10_000))
    sock = AsgiSocket(['{"type": "stop"}'] * 20_000, reads=False)
    sock.run(app, limit_s=30)
    assert sock.close is not None and sock.close["code"] == 1008
    settings = app.state.server.settings
    assert sock.consumed <= settings.max_queued_messages + 2
    assert app.state.server.metrics.snapshot()["slow_client_closes"] == 1


def test_outgoing_bytes_are_bounded_per_connection(parts: Any) -> None:  # noqa: F811
    """Item 2: a queue of few but large replies is closed by its byte budget (prompts echoed in `queued`)."""
    settings = ServeSettings(max_messages_per_s=10_000, max_buffered_bytes=4096, max_queued_messages=1000)
    app = create_app(factory(parts), settings)
    start = json.dumps({"type": "start", "prompt": "p" * 200})
    switch = json.dumps({"type": "prompt", "prompt": "q" * 200})
    sock = AsgiSocket([start] + [switch] * 1000, reads=False)
    sock.run(app, limit_s=60)
    assert sock.close is not None and sock.close["code"] == 1008
    assert sock.consumed <= 4096 // 200 + 4  # each `queued` reply carries the 200-char prompt
    wait_for(lambda: app.state.server.metrics.snapshot()["active_streams"] == 0)


def test_blind_acks_for_unsent_chunks_do_not_release_frames(parts: Any) -> None:  # noqa: F811
    """Item 2: acks for chunks the server has not sent cannot buy generation credit."""
    calls: list[int] = []
    app = create_app(factory(parts, calls=calls), ServeSettings(max_ahead=2, max_messages_per_s=10_000))
    acks = [json.dumps({"type": "ack", "chunk": k}) for k in range(40)]
    start = json.dumps({"type": "start", "prompt": "p"})

    def feed() -> Iterable[str]:
        yield start
        time.sleep(0.5)  # the worker makes its first chunks
        for a in acks:
            time.sleep(0.01)
            yield a

    sock = AsgiSocket(feed(), reads=False)
    with pytest.raises(TimeoutError):  # a client that sends nothing more is left alone (no timeouts hit)
        sock.run(app, limit_s=3)
    assert len(calls) <= 2, calls
    # and over a socket that reads, an ack ahead of what was sent is answered with an error
    with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        ws.send_json({"type": "ack", "chunk": 5})  # no stream: ignored (stale acks after a stop are normal)
        ws.send_json({"type": "start", "prompt": "p"})
        ws.send_json({"type": "ack", "chunk": 7})
        assert "has not been sent" in recv_status(ws, "error")["message"]
        assert recv_chunk(ws)[0]["index"] == 0


def test_ack_timeout_frees_the_slot_and_idle_timeout_closes(parts: Any) -> None:  # noqa: F811
    """Item 2: `start` then silence gives the slot back after `ack_timeout_s`; a silent connection is
    closed after `idle_timeout_s`."""
    settings = ServeSettings(max_streams=1, ack_timeout_s=0.5, idle_timeout_s=5.0)
    with TestClient(create_app(factory(parts), settings)) as client:
        with client.websocket_connect("/ws") as a, client.websocket_connect("/ws") as b:
            a.send_json({"type": "start", "prompt": "p"})
            stopped = recv_status(a, "stopped")
            assert "no ack" in stopped["reason"]
            wait_for(lambda: client.get("/metrics").json()["active_streams"] == 0, limit_s=10)
            b.send_json({"type": "start", "prompt": "q"})
            assert recv_chunk(b)[0]["prompt"] == "q"
            t0 = time.monotonic()
            msg: dict[str, Any] = {}
            for _ in range(100):  # status messages of the stopped stream, then the close
                msg = a.receive()
                if msg["type"] == "websocket.close":
                    break
            assert msg["type"] == "websocket.close" and msg["code"] == 1000, msg
            assert "no message for 5 s" in msg["reason"] and time.monotonic() - t0 < 20
        assert client.get("/metrics").json()["timeouts"] >= 2


def test_rate_cap_stops_reading_a_flooding_client(parts: Any) -> None:  # noqa: F811
    """Item 1: past its burst, a connection's messages are read no faster than `max_messages_per_s`."""
    rate, burst = 50, 10
    app = create_app(factory(parts), ServeSettings(max_messages_per_s=rate, max_message_burst=burst))
    sock = AsgiSocket(['{"type": "ack", "chunk": 0}'] * 60, reads=True)
    with pytest.raises(TimeoutError):
        sock.run(app, limit_s=3)
    assert sock.consumed == 60
    span = sock.read_times[-1] - sock.read_times[0]
    assert span >= (60 - burst - 1) / rate * 0.9, span


def test_host_header_is_checked_against_dns_rebinding(parts: Any) -> None:  # noqa: F811
    """Item 3: `Host: evil.example` (a rebound name) gets neither the socket nor /metrics."""
    with TestClient(create_app(factory(parts))) as client:
        evil = {"host": "evil.example:7860", "origin": "http://evil.example:7860"}
        assert client.get("/metrics", headers=evil).status_code == 400
        assert client.get("/", headers={"host": "evil.example"}).status_code == 400
        with pytest.raises(WebSocketDisconnect) as info:
            with client.websocket_connect("/ws", headers=evil) as ws:
                ws.receive()
        assert info.value.code == 1008
        for ok in ("localhost:7860", "127.0.0.1:7860", "[::1]:7860", "testserver"):
            assert client.get("/metrics", headers={"host": ok}).status_code == 200, ok
    allowed = ServeSettings(allowed_hosts=("demo.example",))
    with TestClient(create_app(factory(parts), allowed)) as client:
        assert client.get("/healthz", headers={"host": "Demo.Example:80"}).status_code == 200
        assert client.get("/healthz", headers={"host": "localhost"}).status_code == 400
        with client.websocket_connect("/ws", headers={"host": "demo.example"}) as ws:
            assert recv_status(ws, "hello")["type"] == "hello"
    with pytest.raises(ValueError, match="allowed_hosts"):
        ServeSettings(allowed_hosts=("a b",))


@pytest.mark.parametrize(
    "message",
    [
        "[" * 2000 + "]" * 2000,
        '{"a": ' * 500 + "1" + "}" * 500,
        json.dumps({"type": [[[[[["start"]]]]]]}),
    ],
    ids=["arrays", "objects", "shallow"],
)
def test_deeply_nested_json_is_an_error_and_the_connection_lives(parts: Any, message: str) -> None:  # noqa: F811
    """Item 4: nesting is refused before parsing (no RecursionError), the connection stays usable."""
    assert len(message) < 4096
    with TestClient(create_app(factory(parts))) as client, client.websocket_connect("/ws") as ws:
        recv_status(ws, "hello")
        ws.send_text(message)
        assert "nested" in recv_status(ws, "error")["message"]
        ws.send_json({"type": "start", "prompt": "p"})
        assert recv_chunk(ws)[0]["index"] == 0


@pytest.mark.parametrize(
    "message",
    [
        json.dumps({"type": "X" * 3000}),
        json.dumps({"type": "start", "prompt": "a", "X" * 3000: 1}),
        json.dumps({"type": "start", "prompt": "a", "seed": "X" * 3000}),
        json.dumps({"type": "ack", "chunk": 10**300}),
    ],
    ids=["type", "field", "seed", "chunk"],
)
def test_errors_never_echo_client_data(message: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_client_message(message, max_prompt_chars=200, max_message_chars=4096)
    text = str(info.value)
    assert "XXX" not in text and "000000" not in text and len(text) < 160, text


def test_oversize_frame_is_refused_by_uvicorn_before_the_app(parts: Any) -> None:  # noqa: F811
    """Item 1: the protocol-level frame cap follows `max_message_chars` (4 UTF-8 bytes a character)."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    from rfvideo.serve import background_server

    app = create_app(factory(parts), ServeSettings(max_message_chars=1000, max_prompt_chars=100))
    with background_server(app) as url, connect(url.replace("http://", "ws://") + "/ws") as ws:
        assert json.loads(ws.recv())["type"] == "hello"
        ws.send("x" * 20_000)
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=10)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009


def test_settings_validate_the_new_limits() -> None:
    for name in ("max_queued_messages", "max_buffered_bytes", "max_messages_per_s"):
        with pytest.raises(ValueError, match=name):
            ServeSettings(**{name: 0})
    for name in ("ack_timeout_s", "idle_timeout_s"):
        with pytest.raises(ValueError, match=name):
            ServeSettings(**{name: -1.0})
    with pytest.raises(ValueError, match="max_queued_messages"):
        ServeSettings(max_ahead=8, max_queued_messages=8)
