"""The pipeline's overhead: `RFVideoPipeline.__call__` against calling the sampler directly, same process.

Run: `python bench/pipeline.py [--repeats N] [--sizes tiny mid] [--no-write]` (CPU, fp32, one torch thread
unless `--threads`). Both sides make the same latents from the same weights, embeddings and seed:
  direct     `sample_chunkwise(model, noise, emb, ...)` with the noise drawn by hand, then `vae.decode`;
  pipeline   `pipe(prompt_embeds=emb, generator=g, output_type=...)`: input checks, noise, the chunk loop,
             the decode, timings.
Measured alternately (direct, pipeline, direct, ...), median over `--repeats`; the ratio pipeline / direct
is the overhead (below 1: the pipeline skips the last chunk's context pass, which only a next chunk would
use; `sample_chunkwise` runs it). Rows with and without the decode. Writes its section of bench/RESULTS.md
with the machine load before and after.

Sizes: `tiny` is the test suite's (2 layers of width 32, 2x2 latents, 3 chunks of 2 frames, a width-4 Wan
VAE); `mid` the generator issues' mid size (width 512, 4 layers, 32x32 latents = 256 tokens per frame, 7
chunks of 3 frames) with the Wan VAE architecture at base_dim 16.

Legend: `b` batch, `c` latent channels, `f` latent frames, `h w` latent size, `n d` text tokens / width.
"""

from __future__ import annotations

import argparse
import platform
import statistics
from typing import Any

import torch

from common import load_average, timed, write_section

TEXT_TOKENS, TEXT_DIM = 16, 64

SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(
        flavour="tiny16", latent_hw=(2, 2), chunk=2, chunks=3,
        vae=dict(base_dim=4, dim_mult=[1, 2, 2, 2], num_res_blocks=1),
    ),
    "mid": dict(
        flavour="mid", latent_hw=(32, 32), chunk=3, chunks=7,
        vae=dict(base_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2),
    ),
}  # fmt: skip


def build(size: str) -> tuple[Any, Any]:
    """Seeded random generator and Wan VAE (real architectures, small widths) and their pipeline."""
    from diffusers import AutoencoderKLWan

    from rfvideo.models import WanVAE
    from rfvideo.models.tiny import tiny_causal_wan
    from rfvideo.pipeline import FewStepFlowScheduler, RFVideoPipeline

    spec = SIZES[size]
    model = tiny_causal_wan(
        flavour=spec["flavour"], text_dim=TEXT_DIM, num_frames_per_chunk=spec["chunk"], seed=0
    ).eval()
    vae = WanVAE(AutoencoderKLWan(z_dim=16, attn_scales=[], **spec["vae"]))
    h, w = spec["latent_hw"]
    f = spec["chunk"] * spec["chunks"]
    pipe = RFVideoPipeline(
        transformer=model, vae=vae, scheduler=FewStepFlowScheduler(), num_frames=1 + 4 * (f - 1),
        height=8 * h, width=8 * w,
    )  # fmt: skip
    return pipe, f


def direct(pipe: Any, emb: torch.Tensor, f: int, seed: int, decode: bool) -> torch.Tensor:
    from rfvideo.sampling import sample_chunkwise

    g = torch.Generator().manual_seed(seed)
    h, w = pipe.config.height // 8, pipe.config.width // 8
    noise = torch.randn(1, 16, f, h, w, generator=g)
    lat = sample_chunkwise(pipe.transformer, noise, emb, schedule=pipe.scheduler.schedule, generator=g)
    return pipe.vae.decode(lat).float().clamp(0, 1) if decode else lat


def via_pipeline(pipe: Any, emb: torch.Tensor, f: int, seed: int, decode: bool) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    out = pipe(prompt_embeds=emb, generator=g, output_type="pt" if decode else "latent", progress=False)
    return out.frames


def measure(size: str, repeats: int) -> list[tuple[str, str, str, str]]:
    pipe, f = build(size)
    emb = torch.randn(1, TEXT_TOKENS, TEXT_DIM, generator=torch.Generator().manual_seed(1))
    rows = []
    for decode in (False, True):
        a: list[float] = []
        b: list[float] = []
        for r in range(repeats + 1):  # the first pair warms up and is dropped
            with torch.no_grad():
                ta, xa = timed(lambda d=decode: direct(pipe, emb, f, 7, d))
                tb, xb = timed(lambda d=decode: via_pipeline(pipe, emb, f, 7, d))
            assert torch.equal(xa, xb), "the two paths must make the same output"
            if r:
                a.append(ta)
                b.append(tb)
        ma, mb = statistics.median(a), statistics.median(b)
        what = "latents + full decode" if decode else "latents only"
        rows.append(
            (
                size,
                what,
                f"{ma:.3f} s / {mb:.3f} s",
                f"{mb / ma:.3f} ({min(b) / max(a):.3f}-{max(b) / min(a):.3f})",
            )
        )
    return rows


def main(argv: list[str] | None = None) -> list[tuple[str, str, str, str]]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", choices=sorted(SIZES), default=["tiny", "mid"])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    before = load_average().split(" / ")[0]
    rows = [row for size in a.sizes for row in measure(size, a.repeats)]
    after = load_average().split(" / ")[0]
    lines = [
        f"### `python bench/pipeline.py --repeats {a.repeats} --sizes {' '.join(a.sizes)}`",
        "",
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch thread(s), torch "
        f"{torch.__version__}, fp32, batch 1. Load average before: {before}; after: {after}. "
        "Both paths produce bit-identical outputs (asserted on every repeat).",
        "",
        "| size | work | direct / pipeline (median) | pipeline / direct (range) |",
        "| --- | --- | --- | --- |",
        *[f"| {s} | {w} | {t} | {r} |" for s, w, t, r in rows],
    ]
    table = "\n".join(lines)
    print(table)
    if not a.no_write:
        write_section("pipeline.py", f"## Pipeline overhead (`python bench/pipeline.py`)\n\n{table}")
    return rows


if __name__ == "__main__":
    main()
