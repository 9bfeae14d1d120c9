"""Rollout benchmark: KV-cached chunk-wise generation vs prefix recompute, vs WanPipeline, and memory.

Run: `python bench/rollout.py` (CPU, fp32, ~minutes). Prints a markdown table and replaces its section
of bench/RESULTS.md. One tiny-but-not-trivial config: 4 layers, width 128 (2 heads x 64), FFN 256,
16 latent channels, 8 chunks x 3 latent frames of 16x16 latents (64 tokens per frame), 16 text tokens.

(a) `sample_chunkwise` (4 steps + 1 context pass per chunk, KV cache) vs a naive sampler that
    recomputes the whole clean prefix with one block_causal forward for every chunk and step (same
    math, same noise draws); and `rollout` forward+backward (grad at the last chunk's exit step) vs the
    same naive recompute with grad at that step.
(b) our 4-step AR video vs diffusers' `WanPipeline` (50 Euler steps, CFG 5, i.e. 100 transformer
    forwards over all 24 frames) on the same transformer config and weights. Timed on both sides:
    the denoising only. The pipeline is called with precomputed `prompt_embeds` /
    `negative_prompt_embeds` and `output_type="latent"`, so its (tiny) text encoder and VAE never run.
(c) peak resident memory of a 4x longer video (32 chunks) vs the 1x video (8 chunks), both with a
    rolling window of 9 latent frames, each in a fresh subprocess. Peak = Linux VmHWM after resetting
    it (`/proc/self/clear_refs` = 5) just before sampling; reported as the whole-process peak and as the
    increment over the resident size right before sampling (the increment is what the video costs).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from common import interleaved_medians, load_average, machine, naive_chunkwise, write_section
from rfvideo.models.tiny import wan_config
from rfvideo.sampling import FlowMatchSchedule, rollout, sample_chunkwise, stream_chunks

CONFIG = wan_config("medium")
K, CHUNKS, HW, N_TEXT, WINDOW, REPEATS = 3, 8, 16, 16, 9, 3


def build_causal(**kw):
    from rfvideo.models import CausalWanTransformer

    torch.manual_seed(0)
    return CausalWanTransformer(**CONFIG, num_frames_per_chunk=K, **kw).eval()


def inputs(chunks: int, seed: int = 0, hw: int = HW):
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(1, CONFIG["in_channels"], K * chunks, hw, hw, generator=g)
    return (
        noise,
        torch.randn(1, N_TEXT, CONFIG["text_dim"], generator=g),
        torch.randn(1, N_TEXT, 64, generator=g),
    )


def build_pipeline(transformer_state):
    from diffusers import (
        AutoencoderKLWan,
        FlowMatchEulerDiscreteScheduler,
        WanPipeline,
        WanTransformer3DModel,
    )
    from transformers import ByT5Tokenizer, UMT5Config, UMT5EncoderModel

    wan = WanTransformer3DModel(**CONFIG).eval()
    wan.load_state_dict(transformer_state, strict=True)
    text = UMT5EncoderModel(
        UMT5Config(vocab_size=384, d_model=64, d_kv=16, d_ff=64, num_layers=1, num_heads=2)
    ).eval()
    vae = AutoencoderKLWan(base_dim=8, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1).eval()
    pipe = WanPipeline(
        tokenizer=ByT5Tokenizer(),
        text_encoder=text,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=5.0),
        transformer=wan,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def memory_worker(chunks: int, mode: str) -> None:
    """Peak memory of one sampling call in this fresh process; `mode` is "stream" or "whole"."""
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    model = build_causal(local_attn_size=WINDOW)
    noise, ehs, _ = inputs(chunks)
    sched = FlowMatchSchedule()
    g = lambda: torch.Generator().manual_seed(0)
    with torch.no_grad():  # touch the allocator and lazy init once, on a 1-chunk video
        sample_chunkwise(model, noise[:, :, :K], ehs, schedule=sched, generator=g())

    def status(key: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) * 1024
        raise RuntimeError(key)

    if mode == "stream":  # a streaming consumer (writes each chunk out, keeps nothing)
        fn = lambda: [None for _ in stream_chunks(model, noise, ehs, schedule=sched, generator=g())]
    else:  # the whole latent video is kept: it grows with the length by design
        fn = lambda: sample_chunkwise(model, noise, ehs, schedule=sched, generator=g())
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = status("VmRSS:")
    with torch.no_grad():
        fn()
    print(json.dumps(dict(chunks=chunks, mode=mode, rss_before=before, peak=status("VmHWM:"))))


def run_memory(chunks: int, mode: str) -> dict:
    cmd = [sys.executable, __file__, "--memory-worker", str(chunks), "--mode", mode]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    info = f"{machine()} at start"
    sched = FlowMatchSchedule()
    model = build_causal()
    noise, ehs, neg = inputs(CHUNKS)
    gen = lambda: torch.Generator().manual_seed(0)
    rows = []

    pipe = build_pipeline(model.state_dict())
    num_pixel_frames = 4 * (K * CHUNKS - 1) + 1

    def wan_pipeline():
        return pipe(
            prompt_embeds=ehs,
            negative_prompt_embeds=neg,
            height=8 * HW,
            width=8 * HW,
            num_frames=num_pixel_frames,
            num_inference_steps=50,
            guidance_scale=5.0,
            generator=gen(),
            output_type="latent",
        ).frames

    with torch.no_grad():
        assert wan_pipeline().shape == noise.shape
        err = (
            (
                sample_chunkwise(model, noise, ehs, schedule=sched, generator=gen())
                - naive_chunkwise(model, noise, ehs, sched, gen(), chunk=K)
            )
            .abs()
            .max()
            .item()
        )
        t = interleaved_medians(
            {
                "cached": lambda: sample_chunkwise(model, noise, ehs, schedule=sched, generator=gen()),
                "naive": lambda: naive_chunkwise(model, noise, ehs, sched, gen(), chunk=K),
                "pipeline": wan_pipeline,
            },
            REPEATS,
        )
    rows.append(
        ("(a) 4-step generation, 8 chunks: KV cache vs prefix recompute", t["cached"], t["naive"], 3.0,
         f"max abs diff {err:.1e}")
    )  # fmt: skip

    def ours_rollout():
        out = rollout(
            model, noise, ehs, schedule=sched, generator=gen(), exit_step=3, grad_from_chunk=CHUNKS - 1
        )
        out.chunks[-1].square().mean().backward()

    def naive_rollout():
        out = naive_chunkwise(model, noise, ehs, sched, gen(), chunk=K, exit_step=3, grad_last=True)
        out[:, :, -K:].square().mean().backward()

    r = interleaved_medians({"ours": ours_rollout, "naive": naive_rollout}, REPEATS)
    rows.append(
        ("(a) rollout fwd+bwd (grad at last chunk's exit): KV cache vs prefix recompute", r["ours"],
         r["naive"], 3.0, "")
    )  # fmt: skip
    # The same comparison with 4x the tokens per frame: at 64 tokens a CPU forward is dominated by per-op
    # overhead, so the prefix recompute's larger (more efficient) GEMMs hide part of its extra FLOPs.
    big_noise, big_ehs, _ = inputs(CHUNKS, hw=2 * HW)
    with torch.no_grad():
        tb = interleaved_medians(
            {
                "cached": lambda: sample_chunkwise(
                    model, big_noise, big_ehs, schedule=sched, generator=gen()
                ),
                "naive": lambda: naive_chunkwise(model, big_noise, big_ehs, sched, gen(), chunk=K),
            },
            1,
        )
    rows.append(
        (f"(a') as (a) with {2 * HW}x{2 * HW} latents ({HW * HW} tokens/frame), 1 timed run", tb["cached"],
         tb["naive"], 3.0, "")
    )  # fmt: skip
    rows.append(
        ("(b) one video: ours 4-step AR vs WanPipeline 50 steps + CFG (denoising only)", t["cached"],
         t["pipeline"], 20.0, "")
    )  # fmt: skip

    mem = {(c, m): run_memory(c, m) for m in ("stream", "whole") for c in (CHUNKS, 4 * CHUNKS)}
    mib = lambda x: f"{x / 2**20:.1f} MiB"
    lines = [
        "| measurement | ours | reference | ratio | target | note |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, ours, ref, target, note in rows:
        lines.append(
            f"| {name} | {ours:.3f} s | {ref:.3f} s | {ref / ours:.1f}x | >= {target:.0f}x | {note} |"
        )
    # bytes of the fp32 latent video `sample_chunkwise` returns for `c` chunks
    out_bytes = lambda c: CONFIG["in_channels"] * K * c * HW * HW * 4
    for mode, label in (("stream", "streaming (`stream_chunks`, chunks written out as they come)"),
                        ("whole", "whole video kept (`sample_chunkwise`)")):  # fmt: skip
        m1, m4 = mem[(CHUNKS, mode)], mem[(4 * CHUNKS, mode)]
        inc1, inc4 = m1["peak"] - m1["rss_before"], m4["peak"] - m4["rss_before"]
        note = f"increment over the RSS before sampling: {mib(inc4)} vs {mib(inc1)}"
        if mode == "whole":
            note += f" (the returned latents alone: {mib(out_bytes(4 * CHUNKS))} vs {mib(out_bytes(CHUNKS))})"
        lines.append(
            f"| (c) peak RSS, 4x video ({4 * CHUNKS} chunks) vs 1x ({CHUNKS}), window {WINDOW} frames, "
            f"{label} | "
            f"{mib(m4['peak'])} | {mib(m1['peak'])} | {m4['peak'] / m1['peak']:.2f}x | <= 1.2x | {note} |"
        )
    table = "\n".join(lines)
    width = CONFIG["num_attention_heads"] * CONFIG["attention_head_dim"]
    body = "\n".join(
        [
            "## Rollout (`python bench/rollout.py`)",
            "",
            f"Config: {CONFIG['num_layers']} layers, width {width}, "
            f"FFN {CONFIG['ffn_dim']}, {CHUNKS} chunks x {K} latent frames of {HW}x{HW} (64 tokens/frame), "
            f"{N_TEXT} text tokens, batch 1, CPU fp32; median of {REPEATS} runs after one warm-up. "
            "Times: seconds per video. (b) times only the denoising on both sides (pipeline called with "
            'precomputed prompt embeddings and `output_type="latent"`). (c) peak = VmHWM reset just before '
            "sampling, each size and mode in its own fresh subprocess (whole-process peak; the increment "
            "over the RSS just before sampling is in the note); `sample_chunkwise` keeps the whole output "
            "(it grows with the video by design), the streaming row keeps nothing. Timings interleave the "
            "compared functions (A B C A B C) so load shifts hit both sides alike.",
            "",
            f"Machine: {info}; load average {load_average().split(' / ')[0]} at end.",
            "",
            table,
        ]
    )
    print(write_section("rollout.py", body))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memory-worker", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=("stream", "whole"), default="stream", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_worker is not None:
        memory_worker(args.memory_worker, args.mode)
    else:
        main()
