"""`rfvideo serve`'s app with an in-process client (Starlette's TestClient): frames, prompt switching,
bad input, concurrency and flow-control limits, health and metrics.

The reference for every frame is a direct run of the same generator class with the same seed and prompt
switches, its frames JPEG-encoded the same way: the bytes over the socket must be identical.
Legend: `F` pixel frames of a chunk, `H W` pixel height/width.
"""

from __future__ import annotations

import io
import json
import time
import zlib
from collections.abc import Callable
from typing import Any

import pytest
import torch
from PIL import Image

pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402
from starlette.websockets import WebSocketDisconnect  # noqa: E402

from rfvideo.serve import ServeSettings, create_app  # noqa: E402
from rfvideo.serve.jpeg import encode_jpegs  # noqa: E402
from rfvideo.serve.protocol import ProtocolError, parse_client_message  # noqa: E402

H, W, FRAMES = 16, 24, 4


class StandInGenerator:
    """Follows `rfvideo.streaming.StreamingGenerator`'s agreed interface; frames depend on seed, chunk
    index and the prompt history (so a switch applied one chunk early or late changes the bytes)."""

    fps = 8.0

    def __init__(self, *, fail_at: int | None = None, calls: list[int] | None = None) -> None:
        self.fail_at = fail_at
        self.calls = calls if calls is not None else []
        self.reset(0)

    def reset(self, seed: int | None = None) -> None:
        self.seed = self.seed if seed is None else seed
        self.chunk_index = 0
        self.prompt: str | None = None
        self._state = 0
        self.timings = {"model": 0.0, "decode": 0.0}

    def set_prompt(self, prompt: str) -> None:
        if not prompt:
            raise ValueError("empty prompt")
        self.prompt = prompt

    def next_chunk(self) -> torch.Tensor:
        if self.fail_at is not None and self.chunk_index == self.fail_at:
            raise RuntimeError("stand-in failure")
        assert self.prompt is not None
        self.calls.append(self.chunk_index)
        self._state = zlib.crc32(f"{self._state}|{self.seed}|{self.chunk_index}|{self.prompt}".encode())
        g = torch.Generator().manual_seed(self._state)
        self.chunk_index += 1
        return torch.rand(1, FRAMES, 3, H, W, generator=g)


def make_client(factory: Callable[[], Any] = StandInGenerator, **settings: Any) -> TestClient:
    return TestClient(create_app(factory, ServeSettings(**settings)))


def recv(ws: Any) -> tuple[str, Any]:
    msg = ws.receive()
    if msg.get("text") is not None:
        return "text", json.loads(msg["text"])
    return "bytes", msg["bytes"]


def recv_status(ws: Any, kind: str) -> dict[str, Any]:
    """Next status message of type `kind` (frames and other statuses before it are skipped)."""
    for _ in range(1000):
        tag, obj = recv(ws)
        if tag == "text" and obj["type"] == kind:
            return obj
    raise AssertionError(f"no {kind!r} message")


def recv_chunk(ws: Any, *, ack: bool = True) -> tuple[dict[str, Any], list[bytes]]:
    """The next chunk: its status message and its binary frames."""
    header = recv_status(ws, "chunk")
    frames = []
    for _ in range(header["frames"]):
        tag, data = recv(ws)
        assert tag == "bytes"
        frames.append(data)
    if ack:
        ws.send_json({"type": "ack", "chunk": header["index"]})
    return header, frames


def direct(seed: int, prompts: dict[int, str], num_chunks: int) -> list[list[bytes]]:
    """Reference: the generator run directly, `prompts[k]` set before chunk k; frames JPEG-encoded."""
    gen = StandInGenerator()
    gen.reset(seed)
    out = []
    for k in range(num_chunks):
        if k in prompts:
            gen.set_prompt(prompts[k])
        out.append(encode_jpegs(gen.next_chunk()[0]))
    return out


def test_stream_sends_valid_jpegs_equal_to_a_direct_run() -> None:
    with make_client() as client, client.websocket_connect("/ws") as ws:
        hello = recv_status(ws, "hello")
        assert hello["max_prompt_chars"] == 200
        ws.send_json({"type": "start", "prompt": "a red square moving left", "seed": 7})
        started = recv_status(ws, "started")
        assert started["fps"] == StandInGenerator.fps and started["seed"] == 7
        got = []
        for k in range(3):
            header, frames = recv_chunk(ws)
            assert header["index"] == k and header["frames"] == FRAMES == len(frames)
            assert (header["height"], header["width"]) == (H, W)
            for data in frames:
                img = Image.open(io.BytesIO(data))
                assert img.format == "JPEG" and img.size == (W, H) and img.mode == "RGB"
            got.append(frames)
        ws.send_json({"type": "stop"})
        recv_status(ws, "stopped")
    assert got == direct(7, {0: "a red square moving left"}, 3)


def test_prompt_switch_applies_at_the_next_chunk() -> None:
    p1, p2 = "a red square moving left", "a blue square moving up"
    with make_client(max_ahead=1) as client, client.websocket_connect("/ws") as ws:
        ws.send_json({"type": "start", "prompt": p1, "seed": 3})
        chunks = [recv_chunk(ws) for _ in range(2)]
        ws.send_json({"type": "prompt", "prompt": p2})
        queued = recv_status(ws, "queued")
        assert queued["prompt"] == p2
        while chunks[-1][0]["prompt"] != p2:
            chunks.append(recv_chunk(ws))
            assert len(chunks) < 10
        k = len(chunks) - 1
        # The switch lands on the first chunk generated after the message: the chunk being made when it
        # arrived (if any) keeps the old prompt.
        assert k in (queued["after_chunk"] + 1, queued["after_chunk"] + 2)
        assert all(h["prompt"] == p1 for h, _ in chunks[:k])
        chunks += [recv_chunk(ws) for _ in range(2)]
        ws.send_json({"type": "stop"})
    ref = direct(3, {0: p1, k: p2}, len(chunks))
    assert [f for _, f in chunks] == ref
    # the reference really depends on where the switch lands
    assert direct(3, {0: p1, k + 1: p2}, len(chunks)) != ref


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (json.dumps({"type": "start", "prompt": "x" * 201}), "201 characters; the limit is 200"),
        ("{not json", "malformed JSON"),
        (json.dumps({"type": "dance"}), "unknown message type 'dance'"),
        (json.dumps(["start"]), "must be a JSON object"),
        (json.dumps({"type": "start", "prompt": "a", "seed": True}), "seed must be an integer"),
        (json.dumps({"type": "start", "prompt": "a", "path": "/etc"}), "unknown field 'path'"),
        (json.dumps({"type": "start", "prompt": "   "}), "prompt is empty"),
        (json.dumps({"type": "prompt", "prompt": "b"}), "no stream is running"),
    ],
)
def test_bad_messages_get_an_error_and_the_connection_stays_usable(message: str, expected: str) -> None:
    with make_client() as client, client.websocket_connect("/ws") as ws:
        recv_status(ws, "hello")
        ws.send_text(message)
        err = recv_status(ws, "error")
        assert expected in err["message"]
        ws.send_json({"type": "start", "prompt": "a red square"})
        recv_status(ws, "started")
        header, frames = recv_chunk(ws)
        assert header["index"] == 0 and len(frames) == FRAMES


def test_binary_and_oversize_messages_are_refused() -> None:
    with (
        make_client(max_prompt_chars=10, max_message_chars=64) as client,
        client.websocket_connect("/ws") as ws,
    ):
        ws.send_bytes(b"\x00\x01")
        assert "binary messages are not accepted" in recv_status(ws, "error")["message"]
        ws.send_text(json.dumps({"type": "start", "prompt": "a" * 100}))
        assert "the limit is 64" in recv_status(ws, "error")["message"]
        ws.send_json({"type": "start", "prompt": "short"})
        recv_status(ws, "started")
        ws.send_json({"type": "start", "prompt": "again"})
        assert "already running" in recv_status(ws, "error")["message"]


def test_concurrency_limit_gives_busy_then_frees_the_slot() -> None:
    with make_client(max_streams=1) as client:
        with client.websocket_connect("/ws") as a, client.websocket_connect("/ws") as b:
            a.send_json({"type": "start", "prompt": "first"})
            recv_status(a, "started")
            b.send_json({"type": "start", "prompt": "second"})
            busy = recv_status(b, "busy")
            assert "all 1 generation slots are in use" in busy["message"]
            a.send_json({"type": "stop"})
            recv_status(a, "stopped")
            wait_for(lambda: client.get("/metrics").json()["active_streams"] == 0)
            b.send_json({"type": "start", "prompt": "second"})
            recv_status(b, "started")
            assert recv_chunk(b)[0]["prompt"] == "second"
        m = client.get("/metrics").json()
        assert m["busy_rejections"] == 1 and m["streams_started"] == 2


def wait_for(cond: Callable[[], bool], limit_s: float = 30.0) -> None:
    """Poll until `cond()` holds (a bound on waiting, not a speed assertion)."""
    deadline = time.monotonic() + limit_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.02)


def test_flow_control_bounds_chunks_ahead_of_the_client() -> None:
    calls: list[int] = []
    with make_client(lambda: StandInGenerator(calls=calls), max_ahead=2) as client:
        with client.websocket_connect("/ws") as ws:
            ws.send_json({"type": "start", "prompt": "p"})
            recv_chunk(ws, ack=False)
            recv_chunk(ws, ack=False)
            time.sleep(0.3)  # room for a (wrong) third chunk to be made; it must not be
            assert calls == [0, 1]
            ws.send_json({"type": "ack", "chunk": 0})
            assert recv_chunk(ws, ack=False)[0]["index"] == 2
            time.sleep(0.3)
            assert calls == [0, 1, 2]
        # disconnect stops the stream and frees its slot
        wait_for(lambda: client.get("/metrics").json()["active_streams"] == 0)
        assert calls == [0, 1, 2]


def test_generation_failure_ends_the_stream_not_the_connection() -> None:
    state = {"n": 0}

    def factory() -> StandInGenerator:
        state["n"] += 1
        return StandInGenerator(fail_at=1 if state["n"] == 1 else None)

    with make_client(factory) as client, client.websocket_connect("/ws") as ws:
        ws.send_json({"type": "start", "prompt": "p"})
        recv_chunk(ws)
        err = recv_status(ws, "error")
        assert err["stream_ended"] and "stand-in failure" in err["message"]
        wait_for(lambda: client.get("/metrics").json()["active_streams"] == 0)
        ws.send_json({"type": "start", "prompt": "p"})
        assert [recv_chunk(ws)[0]["index"] for _ in range(2)] == [0, 1]
        assert client.get("/metrics").json()["errors"] == 1


def test_max_chunks_ends_with_done() -> None:
    with make_client(max_chunks=2) as client, client.websocket_connect("/ws") as ws:
        ws.send_json({"type": "start", "prompt": "p"})
        assert [recv_chunk(ws)[0]["index"] for _ in range(2)] == [0, 1]
        assert recv_status(ws, "done")["chunks"] == 2


def test_healthz_metrics_and_page() -> None:
    with make_client() as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        with client.websocket_connect("/ws") as ws:
            ws.send_json({"type": "start", "prompt": "p"})
            for _ in range(3):
                recv_chunk(ws)
            ws.send_json({"type": "stop"})
            recv_status(ws, "stopped")
        wait_for(lambda: client.get("/metrics").json()["active_streams"] == 0)
        m = client.get("/metrics").json()
        assert m["chunks_generated"] >= 3 and m["frames_generated"] == FRAMES * m["chunks_generated"]
        assert m["mean_fps"] > 0 and m["connections"] == 0
        page = client.get("/")
        assert page.status_code == 200 and '<canvas id="video"' in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        # nothing is fetched from outside: no absolute http(s) URL in the page's files
        for path in ("/", "/app.js", "/style.css"):
            body = client.get(path).text
            assert "http://" not in body and "https://" not in body, path
        assert client.get("/etc/passwd").status_code == 404
        assert client.get("/static/../app.py").status_code == 404


def test_cross_site_origin_is_refused() -> None:
    with make_client() as client:
        with pytest.raises(WebSocketDisconnect) as info:
            with client.websocket_connect("/ws", headers={"origin": "http://evil.example"}) as ws:
                ws.receive()
        assert info.value.code == 1008
        with client.websocket_connect("/ws", headers={"origin": "http://testserver"}) as ws:
            assert recv_status(ws, "hello")["type"] == "hello"


def test_server_shutdown_stops_running_streams() -> None:
    """Under uvicorn (the real server, loopback, free port): leaving it closes the sockets, stops every
    stream and joins the workers before it returns."""
    from websockets.sync.client import connect

    from rfvideo.serve import background_server

    class Slow(StandInGenerator):
        def next_chunk(self) -> torch.Tensor:
            time.sleep(0.05)  # so that a chunk is being made when the server shuts down
            return super().next_chunk()

    app = create_app(Slow, ServeSettings(max_ahead=8))
    server = app.state.server
    with background_server(app) as url:
        ws = connect(url.replace("http://", "ws://") + "/ws")
        ws.send(json.dumps({"type": "start", "prompt": "p"}))
        while json.loads(ws.recv()).get("type") != "chunk":
            pass
        assert server.metrics.snapshot()["active_streams"] == 1
    assert server.shutting_down and not server.sessions
    assert server.metrics.snapshot()["active_streams"] == 0
    ws.close()


def test_parse_client_message_and_settings() -> None:
    kw = dict(max_prompt_chars=5, max_message_chars=100)
    m = parse_client_message('{"type": "start", "prompt": "  ab  ", "seed": 4}', **kw)
    assert (m.type, m.prompt, m.seed) == ("start", "ab", 4)
    assert parse_client_message('{"type": "ack", "chunk": 3}', **kw).chunk == 3
    for bad in ('{"type": "ack", "chunk": -1}', '{"type": "ack"}', '{"type": "start", "prompt": 3}'):
        with pytest.raises(ProtocolError):
            parse_client_message(bad, **kw)
    with pytest.raises(ValueError, match="max_streams"):
        ServeSettings(max_streams=0)
    with pytest.raises(ValueError, match="jpeg_quality"):
        ServeSettings(jpeg_quality=100)
    with pytest.raises(ValueError, match="max_message_chars"):
        ServeSettings(max_prompt_chars=500, max_message_chars=100)
