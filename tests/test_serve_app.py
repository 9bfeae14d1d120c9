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
from diffusers import AutoencoderKLWan  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402
from starlette.websockets import WebSocketDisconnect  # noqa: E402

from helpers import randomize_, tiny_wan_config  # noqa: E402
from rfvideo.models import CausalWanTransformer, WanVAE  # noqa: E402
from rfvideo.sampling import FlowMatchSchedule  # noqa: E402
from rfvideo.serve import ServeSettings, create_app  # noqa: E402
from rfvideo.serve.jpeg import encode_jpegs  # noqa: E402
from rfvideo.serve.protocol import ProtocolError, parse_client_message  # noqa: E402
from rfvideo.streaming import StreamingGenerator  # noqa: E402

LATENT = (2, 4)  # latent (h, w) -> 16 x 32 pixels: height and width differ, so a swap shows
H, W = 16, 32
K = 2  # latent frames per chunk: chunk 0 decodes to 1 + 4 (K - 1) = 5 pixel frames, later chunks to 8
SCHEDULE = FlowMatchSchedule()


def encode_prompt(prompts: list[str]) -> torch.Tensor:
    """Stand-in text encoder: embeddings (b n d) seeded by each prompt's CRC (deterministic, distinct)."""
    gens = [torch.Generator().manual_seed(zlib.crc32(p.encode())) for p in prompts]
    return torch.stack([torch.randn(5, 24, generator=g) for g in gens])


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    # Worker threads run the model: with several streams (and a shared, loaded 2-core machine) more
    # intra-op threads only spin against each other (measured: 25x slower with 2 threads under load).
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def parts() -> tuple[CausalWanTransformer, WanVAE]:
    """A tiny random causal generator (rolling window, relative RoPE: endless streams) and Wan VAE."""
    model = CausalWanTransformer(
        **tiny_wan_config(), num_frames_per_chunk=K, local_attn_size=4, rope_mode="relative"
    )
    randomize_(model, torch.Generator().manual_seed(0)).eval()
    vae = AutoencoderKLWan(
        base_dim=4, z_dim=4, dim_mult=[1, 2, 2, 2], num_res_blocks=1,
        latents_mean=[0.1, -0.2, 0.3, 0.5], latents_std=[1.5, 0.5, 2.0, 0.8],
    )  # fmt: skip
    return model, WanVAE(randomize_(vae, torch.Generator().manual_seed(1), scale=0.2))


class ProbedGenerator(StreamingGenerator):
    """The real streaming generator, recording the chunk index of every `next_chunk` call and optionally
    failing at one chunk or slowing down (to probe flow control, failures, shutdown)."""

    def __init__(
        self, *args: Any, calls: list[int], fail_at: int | None = None, delay_s: float = 0.0, **kw: Any
    ) -> None:
        super().__init__(*args, **kw)
        self.calls, self.fail_at, self.delay_s = calls, fail_at, delay_s

    def next_chunk(self) -> torch.Tensor:
        if self.fail_at is not None and self.chunk_index == self.fail_at:
            raise RuntimeError("injected failure")
        time.sleep(self.delay_s)
        self.calls.append(self.chunk_index)
        return super().next_chunk()


def factory(parts: tuple[CausalWanTransformer, WanVAE], **probe: Any) -> Callable[[], StreamingGenerator]:
    """A fresh streaming generator per stream, all sharing one model and VAE (as the server does)."""
    model, vae = parts

    def make() -> StreamingGenerator:
        args = (model, vae, encode_prompt)
        kw: dict[str, Any] = dict(schedule=SCHEDULE, latent_size=LATENT)
        return ProbedGenerator(*args, **probe, **kw) if probe else StreamingGenerator(*args, **kw)

    return make


def make_client(make: Callable[[], Any], **settings: Any) -> TestClient:
    return TestClient(create_app(make, ServeSettings(**settings)))


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


def direct(parts: Any, seed: int, prompts: dict[int, str], num_chunks: int) -> list[list[bytes]]:
    """Reference: the generator run directly, `prompts[k]` set before chunk k; frames JPEG-encoded."""
    gen = factory(parts)()
    gen.reset(seed)
    out = []
    for k in range(num_chunks):
        if k in prompts:
            gen.set_prompt(prompts[k])
        out.append(encode_jpegs(gen.next_chunk()[0]))
    return out


def test_stream_sends_valid_jpegs_equal_to_a_direct_run(parts: Any) -> None:
    with make_client(factory(parts)) as client, client.websocket_connect("/ws") as ws:
        hello = recv_status(ws, "hello")
        assert hello["max_prompt_chars"] == 200
        ws.send_json({"type": "start", "prompt": "a red square moving left", "seed": 7})
        started = recv_status(ws, "started")
        assert started["fps"] == 16.0 and started["seed"] == 7
        got = []
        for k in range(3):
            header, frames = recv_chunk(ws)
            assert header["index"] == k and header["frames"] == len(frames) == (5 if k == 0 else 8)
            assert (header["height"], header["width"]) == (H, W)
            for data in frames:
                img = Image.open(io.BytesIO(data))
                assert img.format == "JPEG" and img.size == (W, H) and img.mode == "RGB"
            got.append(frames)
        ws.send_json({"type": "stop"})
        recv_status(ws, "stopped")
    assert got == direct(parts, 7, {0: "a red square moving left"}, 3)
    assert got != direct(parts, 8, {0: "a red square moving left"}, 3)  # the seed reached the generator


def test_prompt_switch_applies_at_the_next_chunk(parts: Any) -> None:
    p1, p2 = "a red square moving left", "a blue square moving up"
    with make_client(factory(parts), max_ahead=1) as client, client.websocket_connect("/ws") as ws:
        ws.send_json({"type": "start", "prompt": p1, "seed": 3})
        chunks = [recv_chunk(ws) for _ in range(2)]
        ws.send_json({"type": "prompt", "prompt": p2})
        queued = None
        # a chunk finished before the switch message was read may arrive before `queued`: keep it
        while queued is None or chunks[-1][0]["prompt"] != p2:
            tag, obj = recv(ws)
            assert tag == "text" and len(chunks) < 10
            if obj["type"] == "queued":
                queued = obj
            elif obj["type"] == "chunk":
                frames = [recv(ws)[1] for _ in range(obj["frames"])]
                ws.send_json({"type": "ack", "chunk": obj["index"]})
                chunks.append((obj, frames))
        assert queued["prompt"] == p2
        k = len(chunks) - 1
        assert [h["index"] for h, _ in chunks] == list(range(k + 1))
        # The switch lands on the first chunk generated after the message: the chunk being made when it
        # arrived (if any) keeps the old prompt.
        assert k in (queued["after_chunk"] + 1, queued["after_chunk"] + 2)
        assert all(h["prompt"] == p1 for h, _ in chunks[:k])
        chunks += [recv_chunk(ws) for _ in range(2)]
        ws.send_json({"type": "stop"})
    ref = direct(parts, 3, {0: p1, k: p2}, len(chunks))
    assert [f for _, f in chunks] == ref
    # the reference really depends on where the switch lands
    assert direct(parts, 3, {0: p1, k + 1: p2}, len(chunks)) != ref


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (json.dumps({"type": "start", "prompt": "x" * 201}), "201 characters; the limit is 200"),
        ("{not json", "malformed JSON"),
        (json.dumps({"type": "dance"}), "unknown message type; expected one of"),
        (json.dumps(["start"]), "must be a JSON object"),
        (json.dumps({"type": "start", "prompt": "a", "seed": True}), "seed must be an integer"),
        (json.dumps({"type": "start", "prompt": "a", "path": "/etc"}), "unknown field in a 'start'"),
        (json.dumps({"type": "start", "prompt": "   "}), "prompt is empty"),
        (json.dumps({"type": "prompt", "prompt": "b"}), "no stream is running"),
    ],
)
def test_bad_messages_get_an_error_and_the_connection_stays_usable(
    parts: Any, message: str, expected: str
) -> None:
    with make_client(factory(parts)) as client, client.websocket_connect("/ws") as ws:
        recv_status(ws, "hello")
        ws.send_text(message)
        err = recv_status(ws, "error")
        assert expected in err["message"]
        ws.send_json({"type": "start", "prompt": "a red square"})
        recv_status(ws, "started")
        header, frames = recv_chunk(ws)
        assert header["index"] == 0 and len(frames) == 5


def test_binary_oversize_and_second_start_are_refused(parts: Any) -> None:
    client = make_client(factory(parts), max_prompt_chars=10, max_message_chars=64)
    with client, client.websocket_connect("/ws") as ws:
        ws.send_bytes(b"\x00\x01")
        assert "binary messages are not accepted" in recv_status(ws, "error")["message"]
        ws.send_text(json.dumps({"type": "start", "prompt": "a" * 100}))
        assert "the limit is 64" in recv_status(ws, "error")["message"]
        ws.send_json({"type": "start", "prompt": "short"})
        recv_status(ws, "started")
        ws.send_json({"type": "start", "prompt": "again"})
        assert "already running" in recv_status(ws, "error")["message"]
        assert recv_chunk(ws)[0]["prompt"] == "short"


def test_concurrency_limit_gives_busy_then_frees_the_slot(parts: Any) -> None:
    with make_client(factory(parts), max_streams=1) as client:
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


def test_concurrent_streams_on_one_model_equal_their_direct_runs(parts: Any) -> None:
    """Two streams share the model from two worker threads; each stream's bytes equal its own direct run."""
    with make_client(factory(parts), max_streams=2) as client:
        with client.websocket_connect("/ws") as a, client.websocket_connect("/ws") as b:
            a.send_json({"type": "start", "prompt": "first", "seed": 1})
            b.send_json({"type": "start", "prompt": "second", "seed": 2})
            got_a, got_b = [], []
            for _ in range(3):  # interleaved, so both workers run at once
                got_a.append(recv_chunk(a)[1])
                got_b.append(recv_chunk(b)[1])
    assert got_a == direct(parts, 1, {0: "first"}, 3)
    assert got_b == direct(parts, 2, {0: "second"}, 3)


def wait_for(cond: Callable[[], bool], limit_s: float = 60.0) -> None:
    """Poll until `cond()` holds (a bound on waiting, not a speed assertion)."""
    deadline = time.monotonic() + limit_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.02)


def test_flow_control_bounds_chunks_ahead_of_the_client(parts: Any) -> None:
    calls: list[int] = []
    with make_client(factory(parts, calls=calls), max_ahead=2) as client:
        with client.websocket_connect("/ws") as ws:
            ws.send_json({"type": "start", "prompt": "p"})
            recv_chunk(ws, ack=False)
            recv_chunk(ws, ack=False)
            time.sleep(0.5)  # room for a (wrong) third chunk to be made; it must not be
            assert calls == [0, 1]
            ws.send_json({"type": "ack", "chunk": 0})
            assert recv_chunk(ws, ack=False)[0]["index"] == 2
            time.sleep(0.5)
            assert calls == [0, 1, 2]
        # disconnect stops the stream and frees its slot
        wait_for(lambda: client.get("/metrics").json()["active_streams"] == 0)
        assert calls == [0, 1, 2]


def test_generation_failure_ends_the_stream_not_the_connection(parts: Any) -> None:
    made: list[int] = []
    fail_first = factory(parts, calls=[], fail_at=1)
    fine = factory(parts)

    def make() -> StreamingGenerator:
        made.append(1)
        return fail_first() if len(made) == 1 else fine()

    with make_client(make) as client, client.websocket_connect("/ws") as ws:
        ws.send_json({"type": "start", "prompt": "p"})
        recv_chunk(ws)
        err = recv_status(ws, "error")
        assert err["stream_ended"] and "injected failure" in err["message"]
        wait_for(lambda: client.get("/metrics").json()["active_streams"] == 0)
        ws.send_json({"type": "start", "prompt": "p"})
        assert [recv_chunk(ws)[0]["index"] for _ in range(2)] == [0, 1]
        assert client.get("/metrics").json()["errors"] == 1


def test_max_chunks_ends_with_done(parts: Any) -> None:
    with make_client(factory(parts), max_chunks=2) as client, client.websocket_connect("/ws") as ws:
        ws.send_json({"type": "start", "prompt": "p"})
        assert [recv_chunk(ws)[0]["index"] for _ in range(2)] == [0, 1]
        assert recv_status(ws, "done")["chunks"] == 2


def test_healthz_metrics_and_page(parts: Any) -> None:
    with make_client(factory(parts)) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        with client.websocket_connect("/ws") as ws:
            ws.send_json({"type": "start", "prompt": "p"})
            for _ in range(3):
                recv_chunk(ws)
            ws.send_json({"type": "stop"})
            recv_status(ws, "stopped")
        wait_for(lambda: client.get("/metrics").json()["active_streams"] == 0)
        m = client.get("/metrics").json()
        n = m["chunks_generated"]
        assert n >= 3 and m["frames_generated"] == 5 + 8 * (n - 1)
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


def test_cross_site_origin_is_refused(parts: Any) -> None:
    with make_client(factory(parts)) as client:
        with pytest.raises(WebSocketDisconnect) as info:
            with client.websocket_connect("/ws", headers={"origin": "http://evil.example"}) as ws:
                ws.receive()
        assert info.value.code == 1008
        with client.websocket_connect("/ws", headers={"origin": "http://testserver"}) as ws:
            assert recv_status(ws, "hello")["type"] == "hello"


def test_server_shutdown_stops_running_streams(parts: Any) -> None:
    """Under uvicorn (the real server, loopback, free port): leaving it closes the sockets, stops every
    stream and joins the workers before it returns."""
    from websockets.sync.client import connect

    from rfvideo.serve import background_server

    app = create_app(factory(parts, calls=[], delay_s=0.05), ServeSettings(max_ahead=8))
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
