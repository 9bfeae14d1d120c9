"""`rfvideo serve` benchmark: frames per second delivered per client and time to the first frame, over the
WebSocket (uvicorn on loopback) vs the same generator called in-process.

Run: `python bench/serve.py [--chunks 12]` (CPU, fp32, about a minute on an idle 2-core machine). Prints
a markdown table and replaces its section of bench/RESULTS.md.

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
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).with_name("RESULTS.md")
BEGIN, END = "<!-- bench/serve.py:begin -->", "<!-- bench/serve.py:end -->"
LATENT, K = (8, 8), 3


def build_parts() -> tuple[Any, Any]:
    from diffusers import AutoencoderKLWan

    from rfvideo.models import CausalWanTransformer, WanVAE

    torch.manual_seed(0)
    model = CausalWanTransformer(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=32, in_channels=16,
        out_channels=16, text_dim=32, freq_dim=32, ffn_dim=128, num_layers=2, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024, num_frames_per_chunk=K,
        local_attn_size=9, rope_mode="relative",
    ).eval()  # fmt: skip
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=12, help="chunks per stream")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    a = parser.parse_args()
    if a.chunks < 2:
        raise ValueError(f"--chunks must be >= 2, got {a.chunks}")
    torch.set_num_threads(1)
    load0 = os.getloadavg()
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
    load1 = os.getloadavg()
    info = (
        f"{platform.machine()}, {os.cpu_count()} logical CPUs, torch {torch.__version__} "
        "(1 intra-op thread), "
        f"Python {platform.python_version()}; load average {load0[0]:.2f} / {load0[1]:.2f} / {load0[2]:.2f} "
        f"at start, {load1[0]:.2f} at end"
    )
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
            BEGIN,
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
            END,
        ]
    )
    print(section)
    if not a.no_write:
        text = RESULTS.read_text() if RESULTS.exists() else "# Benchmarks\n"
        if BEGIN in text and END in text:
            text = text[: text.index(BEGIN)] + section + text[text.index(END) + len(END) :]
        else:
            text = text.rstrip("\n") + "\n\n" + section + "\n"
        RESULTS.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
