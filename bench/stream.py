"""Streaming benchmark: time to the first pixel frame and FPS, streamed decode vs decode after the video.

Run: `python bench/stream.py [--size mid|small] [--repeats N]` (CPU, fp32). Prints a markdown table and
replaces its section of bench/RESULTS.md (with the machine, thread count and load average, since the
machine may be shared).

Both sides generate the same video (same weights, noise and generator: `stream_video`'s frames equal
`vae.decode(sample_chunkwise(...))`), measured alternately in one process, median over `--repeats`:
  streaming          `rfvideo.streaming.stream_video`: each chunk decoded by the VAE's streaming decoder
                     as soon as the sampler yields it;
  decode after       `sample_chunkwise` for the whole video, then one `vae.decode`.
Numbers (pixel frames F = 1 + 4 (f - 1)):
  time to first pixel frame   start -> first decoded frames (streaming: chunk 0's forwards + its decode;
                              decode after: the whole video and its decode);
  model-only FPS              F / seconds in the generator (streaming's per-chunk `model` timings);
  end-to-end FPS              F / wall seconds of the whole video including the VAE decode.
Sizes: `mid` is the issue's (width 512 = 8 heads x 64, 8 layers, FFN 2048, 32x32 latents = 256 tokens per
frame, 7 chunks x 3 latent frames, Wan VAE architecture with base_dim 16); `small` is the same at width 128,
4 layers, 16x16 latents and base_dim 8, for a loaded machine.

Legend: `b` batch, `c` latent channels, `f` latent frames, `h w` latent size, `n d` text tokens / width.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from typing import Any

import torch

from common import load_average, write_section
from rfvideo.models.tiny import wan_config

K, CHUNKS, TEXT_TOKENS = 3, 7, 16

SIZES: dict[str, dict[str, Any]] = {
    "mid": dict(
        transformer=wan_config("mid", num_layers=8),
        latent_hw=(32, 32),
        vae=dict(base_dim=16),
    ),
    "small": dict(
        transformer=wan_config("medium", ffn_dim=512),
        latent_hw=(16, 16),
        vae=dict(base_dim=8),
    ),
}


def build(size: str) -> tuple[Any, Any]:
    """Seeded random generator and Wan VAE (real architectures, smaller widths) in eval mode."""
    from diffusers import AutoencoderKLWan

    from rfvideo.models import CausalWanTransformer, WanVAE

    spec = SIZES[size]
    torch.manual_seed(0)
    model = CausalWanTransformer(**spec["transformer"], num_frames_per_chunk=K).eval()
    vae = WanVAE(
        AutoencoderKLWan(z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[], **spec["vae"])
    )
    return model, vae


def run_once(model: Any, vae: Any, noise: torch.Tensor, emb: torch.Tensor) -> dict[str, float]:
    """One streaming run and one decode-after run of the same video; seconds of each quantity."""
    from rfvideo.sampling import FlowMatchSchedule, sample_chunkwise
    from rfvideo.streaming import stream_video

    sched = FlowMatchSchedule()
    out: dict[str, float] = {}
    timings: list[dict[str, float]] = []
    t0 = time.perf_counter()
    with torch.no_grad():
        for i, _ in stream_video(
            model,
            vae,
            noise,
            emb,
            schedule=sched,
            generator=torch.Generator().manual_seed(1),
            timings=timings,
        ):
            if i == 0:
                out["stream_first"] = time.perf_counter() - t0
    out["stream_total"] = time.perf_counter() - t0
    out["stream_model"] = sum(t["model"] for t in timings)
    out["stream_decode"] = sum(t["decode"] for t in timings)
    t0 = time.perf_counter()
    with torch.no_grad():
        lat = sample_chunkwise(model, noise, emb, schedule=sched, generator=torch.Generator().manual_seed(1))
        t1 = time.perf_counter()
        vae.decode(lat)
    out["after_total"] = time.perf_counter() - t0
    out["after_model"] = t1 - t0
    return out


def main(argv: list[str] | None = None) -> list[tuple[str, str, str]]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=sorted(SIZES), default="mid")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    a = p.parse_args(argv)
    before = f"load average {load_average()}"
    model, vae = build(a.size)
    h, w = SIZES[a.size]["latent_hw"]
    f = K * CHUNKS
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(1, 16, f, h, w, generator=g)  # (b c f h w)
    emb = torch.randn(1, TEXT_TOKENS, 64, generator=g)  # (b n d)
    runs = [run_once(model, vae, noise, emb) for _ in range(a.repeats)]
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    after = f"load average {load_average()}"
    F = 1 + 4 * (f - 1)
    rows = [
        ("time to first pixel frame, streaming", f"{med['stream_first']:.2f} s",
         f"chunk 0 ({1 + 4 * (K - 1)} pixel frames): its forwards + one streamed decode"),
        ("time to first pixel frame, decode after the video", f"{med['after_total']:.2f} s",
         f"all {CHUNKS} chunks, then one decode of {F} pixel frames"),
        ("first-frame speed-up, streaming vs decode after",
         f"{med['after_total'] / med['stream_first']:.1f}x",
         "target >= 5x at 7 chunks"),
        ("model-only FPS", f"{F / med['stream_model']:.2f}",
         f"{F} pixel frames / {med['stream_model']:.2f} s in the generator (decode excluded)"),
        ("end-to-end FPS, streamed decode", f"{F / med['stream_total']:.2f}",
         f"decode {med['stream_decode']:.2f} s of {med['stream_total']:.2f} s"),
        ("end-to-end FPS, decode after the video", f"{F / med['after_total']:.2f}",
         f"generator {med['after_model']:.2f} s + decode {med['after_total'] - med['after_model']:.2f} s"),
    ]  # fmt: skip
    spec = SIZES[a.size]
    width = spec["transformer"]["num_attention_heads"] * spec["transformer"]["attention_head_dim"]
    lines = [
        f"### `python bench/stream.py --size {a.size} --repeats {a.repeats}`",
        "",
        f"Width {width}, {spec['transformer']['num_layers']} layers, {h}x{w} latents "
        f"({h * w // 4} tokens/frame), {CHUNKS} chunks x {K} latent frames -> {F} pixel frames at "
        f"{8 * h}x{8 * w}; Wan VAE architecture, base_dim {spec['vae']['base_dim']}; fp32, batch 1. "
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, torch "
        f"{torch.__version__}. Load before: `{before}`; after: `{after}`.",
        "",
        "| measurement | value | note |",
        "| --- | --- | --- |",
        *[f"| {m} | {v} | {n} |" for m, v, n in rows],
    ]
    table = "\n".join(lines)
    print(table)
    if not a.no_write:
        write_section("stream.py", f"## Streaming pixels (`python bench/stream.py`)\n\n{table}")
    return rows


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
