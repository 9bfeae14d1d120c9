"""`rfvideo serve` benchmark: frames per second delivered per client and time to the first frame, over the
WebSocket (uvicorn on loopback) vs the same generator called in-process.

Run: `python bench/serve.py [--chunks 12] [--hostile-s 30]` (CPU, fp32, a few minutes on an idle 2-core
machine; `--quick` for a smoke run of a few seconds a phase that writes nothing). Prints markdown tables and
replaces their sections of bench/RESULTS.md.

Model: a small random `CausalWanTransformer` (2 layers, width 64, FFN 128, 16 latent channels, 3 latent
frames per chunk, rolling window 9 with relative RoPE: an endless stream) and a small random Wan VAE
(base_dim 8), latents 8x8 -> 64x64 pixel frames; chunk 0 decodes to 9 pixel frames, later chunks to 12.
Each stream runs in its own worker thread with 1 intra-op thread (what `rfvideo serve` picks on 2 cores
with 2 streams).

Definitions:
- time to first frame: from sending `start` (in-process: calling `set_prompt` + `next_chunk`) to the
  first pixel frame in hand (over the socket: its JPEG received).
- delivered FPS: pixel frames received per second after the first chunk, per client; clients acknowledge
  each chunk as it arrives (no display pacing), so this is the server's delivery rate, not playback.

Hostile section (`hostile_run`): the server runs in its own process (so its resident memory is its own);
8 well-behaved clients stream for one phase alone, then for one phase with 4 hostile clients beside them:
never-read (starts a stream, then sends prompt switches whose replies it never reads), never-ack (reads
everything, acks nothing), flood (as many messages as the socket takes, replies drained) and nested (deeply
nested JSON, replies read). Hostile clients reconnect whenever the server closes them. Reported: the good
clients' delivered FPS in both phases, the server's RSS (start, max, end), and how the server answered
(closes of clients that do not read, timeouts, throttled reads).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import socket
import statistics
import sys
import threading
import time
import urllib.request
import zlib
from typing import Any

import torch

from common import load_average, markers, write_section

GOOD_CLIENTS = 8
HOSTILE_KINDS = ("never-read", "never-ack", "flood", "nested")
# Room for the 8 good streams and the 2 hostile ones that start a stream.
HOSTILE_SETTINGS = {"max_streams": 10, "max_ahead": 2, "ack_timeout_s": 5.0, "idle_timeout_s": 30.0}
LATENT, K = (8, 8), 3


def build_parts() -> tuple[Any, Any]:
    from diffusers import AutoencoderKLWan

    from rfvideo.models import CausalWanTransformer, WanVAE
    from rfvideo.models.tiny import wan_config

    torch.manual_seed(0)
    model = CausalWanTransformer(
        **wan_config("small"), num_frames_per_chunk=K, local_attn_size=9, rope_mode="relative"
    ).eval()
    vae = AutoencoderKLWan(
        base_dim=8, z_dim=16, dim_mult=[1, 2, 2, 2], num_res_blocks=1,
        latents_mean=[0.0] * 16, latents_std=[1.0] * 16,
    )  # fmt: skip
    return model, WanVAE(vae)


def encode_prompt(prompts: list[str]) -> torch.Tensor:
    gens = [torch.Generator().manual_seed(zlib.crc32(p.encode())) for p in prompts]
    return torch.stack([torch.randn(16, 32, generator=g) for g in gens])


def make_factory(parts: tuple[Any, Any]) -> Any:
    from rfvideo.sampling import FlowMatchSchedule
    from rfvideo.streaming import StreamingGenerator

    model, vae = parts
    return lambda: StreamingGenerator(
        model, vae, encode_prompt, schedule=FlowMatchSchedule(), latent_size=LATENT
    )


def in_process(parts: tuple[Any, Any], chunks: int) -> dict[str, float]:
    gen = make_factory(parts)()
    gen.reset(0)
    t0 = time.perf_counter()
    gen.set_prompt("a red square moving left")
    gen.next_chunk()
    t1 = time.perf_counter()
    frames = sum(gen.next_chunk().shape[1] for _ in range(chunks - 1))
    t2 = time.perf_counter()
    return {"ttff": t1 - t0, "fps": frames / (t2 - t1)}


def client(url: str, chunks: int, seed: int, out: list[dict[str, Any]], barrier: threading.Barrier) -> None:
    from websockets.sync.client import connect

    with connect(url) as ws:
        json.loads(ws.recv())  # hello
        barrier.wait()
        t0 = time.perf_counter()
        ws.send(json.dumps({"type": "start", "prompt": f"prompt {seed}", "seed": seed}))
        first = t_first_chunk_end = None
        frames_after, got, remaining = 0, 0, 0
        while got < chunks:
            msg = ws.recv()
            if isinstance(msg, bytes):
                first = first if first is not None else time.perf_counter()
                remaining -= 1
                if got > 0:
                    frames_after += 1
                if remaining == 0:
                    if got == 0:
                        t_first_chunk_end = time.perf_counter()
                    got += 1
                continue
            status = json.loads(msg)
            if status["type"] == "busy":
                out.append({"busy": True})
                return
            if status["type"] == "chunk":
                remaining = status["frames"]
                ws.send(json.dumps({"type": "ack", "chunk": status["index"]}))
        t_end = time.perf_counter()
        assert first is not None and t_first_chunk_end is not None
        out.append({"busy": False, "ttff": first - t0, "fps": frames_after / (t_end - t_first_chunk_end)})


def over_socket(parts: tuple[Any, Any], clients: int, max_streams: int, chunks: int) -> list[dict[str, Any]]:
    from rfvideo.serve import ServeSettings, background_server, create_app

    app = create_app(make_factory(parts), ServeSettings(max_streams=max_streams, max_ahead=2))
    out: list[dict[str, Any]] = []
    barrier = threading.Barrier(clients)
    with background_server(app) as url:
        ws_url = url.replace("http://", "ws://") + "/ws"
        threads = [
            threading.Thread(target=client, args=(ws_url, chunks, i, out, barrier)) for i in range(clients)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return out


def _serve_forever(port: int, settings: dict[str, Any], ready: Any) -> None:
    """Child process: build the model, serve it on 127.0.0.1:`port` until terminated."""
    import logging

    from rfvideo.serve import ServeSettings, create_app, run_server

    torch.set_num_threads(1)
    logging.getLogger("rfvideo.serve.app").setLevel(logging.ERROR)  # one warning per closed slow client
    app = create_app(make_factory(build_parts()), ServeSettings(**settings))
    ready.set()
    run_server(app, host="127.0.0.1", port=port, log_level="error")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def good_client(url: str, until: float, seed: int, out: dict[int, dict[str, Any]]) -> None:
    """Stream until `until`, acking each chunk; FPS = frames after the first chunk / time since it ended."""
    from websockets.sync.client import connect

    rec: dict[str, Any] = {"frames": 0, "errors": [], "busy": 0, "fps": 0.0}
    out[seed] = rec
    t_first: float | None = None
    frames_after = 0
    remaining = 0
    with connect(url, open_timeout=60, max_size=2**24) as ws:
        json.loads(ws.recv())  # hello
        ws.send(json.dumps({"type": "start", "prompt": f"good client {seed}", "seed": seed}))
        while time.monotonic() < until:
            try:
                msg = ws.recv(timeout=max(0.05, until - time.monotonic()))
            except TimeoutError:
                break
            if isinstance(msg, bytes):
                rec["frames"] += 1
                remaining -= 1
                if t_first is not None:
                    frames_after += 1
                elif remaining == 0:
                    t_first = time.monotonic()
                continue
            status = json.loads(msg)
            if status["type"] == "chunk":
                remaining = status["frames"]
                ws.send(json.dumps({"type": "ack", "chunk": status["index"]}))
            elif status["type"] == "busy":  # a slot of the last phase not yet freed: ask again
                rec["busy"] += 1
                time.sleep(0.5)
                ws.send(json.dumps({"type": "start", "prompt": f"good client {seed}", "seed": seed}))
            elif status["type"] in ("error", "stopped"):
                rec["errors"].append(status.get("message") or status.get("reason") or status["type"])
    if t_first is not None:
        rec["fps"] = frames_after / max(1e-9, time.monotonic() - t_first)


def hostile_client(kind: str, url: str, until: float, out: dict[str, dict[str, Any]]) -> None:
    """One attacker of `kind` (see the module docstring); reconnects whenever the server closes it."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    rec: dict[str, Any] = {"connections": 0, "sent": 0, "closes": {}}
    out[kind] = rec
    nested = "[" * 1900 + "]" * 1900
    switch = json.dumps({"type": "prompt", "prompt": "p" * 200})
    while time.monotonic() < until:
        try:
            # never-read: a small client queue, so the client library stops reading at once
            with connect(url, open_timeout=30, max_queue=1 if kind == "never-read" else 16) as ws:
                rec["connections"] += 1
                if kind in ("never-read", "never-ack"):
                    ws.send(json.dumps({"type": "start", "prompt": f"hostile {kind}"}))
                while time.monotonic() < until:
                    if kind == "never-read":
                        ws.send(switch)
                    elif kind == "never-ack":
                        try:
                            ws.recv(timeout=0.2)
                        except TimeoutError:
                            pass
                        continue
                    elif kind == "flood":
                        ws.send('{"type": "stop"}')
                        while True:  # drain whatever replies have arrived
                            try:
                                ws.recv(timeout=0)
                            except TimeoutError:
                                break
                    else:
                        ws.send(nested)
                        ws.recv(timeout=10)
                    rec["sent"] += 1
        except ConnectionClosed as e:
            code = e.rcvd.code if e.rcvd is not None else None
            rec["closes"][str(code)] = rec["closes"].get(str(code), 0) + 1
        except (OSError, TimeoutError) as e:
            rec["closes"][type(e).__name__] = rec["closes"].get(type(e).__name__, 0) + 1
            time.sleep(0.2)


def hostile_process(url: str, seconds: float, ready: Any, go: Any, results: Any) -> None:
    """The 4 hostile clients, one thread each, in a process of their own: their Python work (a flooder spins)
    must not hold the GIL of the process whose threads measure the good clients' frame rate. They start
    when `go` is set (after this process has imported everything) and attack for `seconds`."""
    ready.set()
    go.wait()
    until = time.monotonic() + seconds
    out: dict[str, dict[str, Any]] = {}
    threads = [threading.Thread(target=hostile_client, args=(k, url, until, out)) for k in HOSTILE_KINDS]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results.put({"clients": out, "cpu_s": time.process_time()})  # this process's CPU, all its threads


def _cpu_s(proc: Any) -> float:
    """User + system CPU seconds of a psutil process so far."""
    t = proc.cpu_times()
    return float(t.user + t.system)


def hostile_run(seconds: float) -> dict[str, Any]:
    """Two phases of `seconds` each (good clients alone, then with the hostile ones); see the docstring."""
    import psutil

    port = _free_port()
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=_serve_forever, args=(port, HOSTILE_SETTINGS, ready), daemon=True)
    proc.start()
    try:
        if not ready.wait(300):
            raise RuntimeError("the server process did not start")
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(base + "/healthz", timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        ws_url = f"ws://127.0.0.1:{port}/ws"
        server = psutil.Process(proc.pid)
        warm: dict[int, dict[str, Any]] = {}
        good_client(ws_url, time.monotonic() + 2, 99, warm)  # warm-up: allocator, lazy inits
        rss: dict[str, list[float]] = {"alone": [], "with hostile": [], "after": []}
        current = ["alone"]
        stop_sampling = threading.Event()

        def sample() -> None:
            while not stop_sampling.is_set():
                rss[current[0]].append(server.memory_info().rss / 2**20)
                time.sleep(0.25)

        def settle() -> None:
            """Wait until every stream has ended (workers finish their chunk) and slots are free."""
            limit = time.monotonic() + 120
            while time.monotonic() < limit:
                with urllib.request.urlopen(base + "/metrics", timeout=10) as r:
                    if json.load(r)["active_streams"] == 0:
                        return
                time.sleep(0.2)

        phases: dict[str, dict[int, dict[str, Any]]] = {}
        hostile: dict[str, dict[str, Any]] = {}
        cpu: dict[str, dict[str, float]] = {}
        me = psutil.Process()
        rss_start = server.memory_info().rss / 2**20
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        for phase in ("alone", "with hostile"):
            settle()
            current[0] = phase
            attackers, results = None, ctx.Queue()
            if phase == "with hostile":
                ready, go = ctx.Event(), ctx.Event()
                attackers = ctx.Process(
                    target=hostile_process, args=(ws_url, seconds, ready, go, results), daemon=True
                )
                attackers.start()
                if not ready.wait(120):
                    raise RuntimeError("the hostile clients' process did not start")
                go.set()
            until = time.monotonic() + seconds
            out: dict[int, dict[str, Any]] = {}
            threads = [
                threading.Thread(target=good_client, args=(ws_url, until, i, out))
                for i in range(GOOD_CLIENTS)
            ]
            server_cpu0, clients_cpu0, t0 = _cpu_s(server), _cpu_s(me), time.monotonic()
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=seconds + 120)
            wall = time.monotonic() - t0
            cpu[phase] = {"server": _cpu_s(server) - server_cpu0, "clients": _cpu_s(me) - clients_cpu0}
            if attackers is not None:
                got = results.get(timeout=120)
                hostile, cpu[phase]["hostile"] = got["clients"], got["cpu_s"]
                attackers.join(30)
            cpu[phase]["wall"] = wall
            cpu[phase]["frames"] = float(sum(r["frames"] for r in out.values()))
            phases[phase] = out
        current[0] = "after"
        settle()
        time.sleep(2.0)  # the server finishes closing the hostile connections
        stop_sampling.set()
        sampler.join()
        rss_end = server.memory_info().rss / 2**20
        with urllib.request.urlopen(base + "/metrics", timeout=10) as r:
            metrics = json.load(r)
    finally:
        proc.terminate()
        proc.join(30)
    return {
        "phases": phases,
        "hostile": hostile,
        "rss_start": rss_start,
        "rss_max": {k: max(v) if v else float("nan") for k, v in rss.items()},
        "rss_end": rss_end,
        "metrics": metrics,
        "seconds": seconds,
        "cpu": cpu,
    }


def hostile_section(res: dict[str, Any], info: str) -> str:
    rows = []
    for phase, out in res["phases"].items():
        fps = [out[i]["fps"] for i in sorted(out)]
        errors = sum(len(out[i]["errors"]) for i in out)
        rows.append(f"| {phase} | {statistics.mean(fps):.1f} | {min(fps):.1f} | {max(fps):.1f} | {errors} |")
    hostile = "; ".join(
        f"{k}: {v['connections']} connections, {v['sent']} messages sent, closes {v['closes']}"
        for k, v in res["hostile"].items()
    )
    m = res["metrics"]
    return "\n".join(
        [
            "## Live serving under hostile clients (`python bench/serve.py`)",
            "",
            f"Same model as above; server in its own process with {HOSTILE_SETTINGS}. {GOOD_CLIENTS} "
            f"well-behaved clients stream {res['seconds']:.0f} s alone, then {res['seconds']:.0f} s beside 4 "
            "hostile clients (never-read, never-ack, flood, nested JSON; each reconnects when closed).",
            "",
            f"Machine: {info}.",
            "",
            "| phase | delivered FPS per good client, mean | min | max | errors seen by good clients |",
            "| --- | ---: | ---: | ---: | ---: |",
            *rows,
            "",
            "Where the 2 cores went, per phase (CPU seconds over the phase's wall time, from the "
            "processes' own counters): the server; the good clients (8 threads of the benchmark's "
            "process); the hostile clients (their own process, so their Python work does not hold the "
            "GIL of the clients that measure).",
            "",
            "| phase | wall (s) | server CPU (s) | good clients CPU (s) | hostile clients CPU (s) "
            "| server CPU per delivered frame (ms) |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
            *(
                f"| {ph} | {c['wall']:.1f} | {c['server']:.1f} | {c['clients']:.1f} | "
                f"{c.get('hostile', 0.0):.1f} | {1e3 * c['server'] / max(c['frames'], 1.0):.1f} |"
                for ph, c in res["cpu"].items()
            ),
            "",
            f"Server RSS: {res['rss_start']:.1f} MiB at the start (model built, warmed up); at most "
            + ", ".join(f"{v:.1f} MiB {k}" for k, v in res["rss_max"].items())
            + f"; {res['rss_end']:.1f} MiB at the end.",
            "",
            f"Server counters: slow_client_closes {m.get('slow_client_closes')}, "
            f"timeouts {m.get('timeouts')}, "
            f"throttled_reads {m.get('throttled_reads')}, busy_rejections {m.get('busy_rejections')}, "
            f"errors {m.get('errors')}.",
            "",
            f"Hostile clients: {hostile}.",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=12, help="chunks per stream")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    parser.add_argument(
        "--hostile-s", type=float, default=30.0, help="seconds of each phase of the hostile-client run"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 3 chunks, 10 s phases, nothing written"
    )
    parser.add_argument(
        "--hostile-only", action="store_true", help="run (and write) only the hostile-client section"
    )
    parser.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    a = parser.parse_args()
    if a.quick:
        a.chunks, a.hostile_s, a.no_write = 3, 10.0, True
    if a.chunks < 2:
        raise ValueError(f"--chunks must be >= 2, got {a.chunks}")
    if a.hostile_s <= 0:
        raise ValueError(f"--hostile-s must be > 0, got {a.hostile_s}")
    torch.set_num_threads(1)
    load0 = load_average()
    if a.hostile_only:
        return _hostile_only(a, load0)
    parts = build_parts()
    in_process(parts, 2)  # warm-up (allocator, lazy inits)
    rows = []
    ref = in_process(parts, a.chunks)
    rows.append(("in-process `StreamingGenerator`", 1, "-", f"{ref['fps']:.1f}", f"{ref['ttff']:.3f}", "-"))
    for clients, streams in ((1, 1), (2, 2), (4, 4), (8, 4)):
        res = over_socket(parts, clients, streams, a.chunks)
        ok = [r for r in res if not r["busy"]]
        busy = len(res) - len(ok)
        fps = statistics.mean(r["fps"] for r in ok)
        ttff = statistics.mean(r["ttff"] for r in ok)
        lo, hi = min(r["fps"] for r in ok), max(r["fps"] for r in ok)
        rows.append(
            ("WebSocket (uvicorn, loopback)", clients, streams, f"{fps:.1f} ({lo:.1f}-{hi:.1f})",
             f"{ttff:.3f}", str(busy))
        )  # fmt: skip
        print(rows[-1], flush=True)
    hostile = hostile_run(a.hostile_s)
    info = _machine(load0)
    table = "\n".join(
        [
            "| path | clients | generation slots | delivered FPS per client, mean (min-max) "
            "| time to first frame (s), mean | busy |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
            *("| " + " | ".join(str(x) for x in r) + " |" for r in rows),
        ]
    )
    section = "\n".join(
        [
            "## Live serving (`python bench/serve.py`)",
            "",
            f"Model: 2 layers, width 64, 16 latent channels, {K} latent frames per chunk, window 9 (relative "
            "RoPE), small random Wan VAE (base_dim 8); 64x64 pixel frames; "
            f"{a.chunks} chunks per stream; CPU fp32. Each stream in its own worker thread. Delivered FPS: "
            "pixel frames received per second after the first chunk (clients ack on arrival: delivery rate, "
            "not playback). Time to first frame: `start` sent -> first JPEG received, which includes "
            "building the stream's generator and cache (in-process: `set_prompt` + first `next_chunk`). "
            "With 8 clients and 4 slots, 4 clients get `busy`.",
            "",
            f"Machine: {info}.",
            "",
            table,
        ]
    )
    hostile_text = hostile_section(hostile, info)
    for name, body in (("serve.py", section), ("serve.py:hostile", hostile_text)):
        begin, end = markers(name)
        print(f"{begin}\n{body}\n{end}")
        if not a.no_write:
            write_section(name, body)
    return 0


def _machine(load0: str) -> str:
    load1 = load_average().split(" / ")[0]
    return (
        f"{platform.machine()}, {os.cpu_count()} logical CPUs, torch {torch.__version__} "
        "(1 intra-op thread), "
        f"Python {platform.python_version()}; load average {load0} at start, {load1} at end"
    )


def _hostile_only(a: argparse.Namespace, load0: str) -> int:
    body = hostile_section(hostile_run(a.hostile_s), _machine(load0))
    begin, end = markers("serve.py:hostile")
    print(f"{begin}\n{body}\n{end}")
    if not a.no_write:
        write_section("serve.py:hostile", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
