"""Rolled-window read benchmark: the sink-mirror layout (one view per read once a window with sinks has
rolled) against the layout before it (one cat of sinks + window + chunk on every layer call), same weights
and noise, timed interleaved (A B A B) with bench/cache.py's helpers.

Run: `python bench/cache_rolled.py` (CPU, fp32; prints a markdown table, `--write` replaces its section of
bench/RESULTS.md). Default size is bench/cache.py's mid size (8 layers, width 512, 32x32 latents = 256
tokens per frame, 32 text tokens) over 12 chunks of 3 frames, in three window / sink layouts:
LongLive's (window 12, 3 sinks), Reward Forcing (Lu)'s (window 9, 3 EMA sinks, relative RoPE; rfvideo's
fold rule, which both layouts run) and sinks wider than the chunk (1-frame chunks, window 8, 3 sinks).
Per layout: median seconds of `sample_chunkwise` for each layout, their ratio, the bytes each copies
(`torch.cat` outputs while it runs, plus the cache's own copies: sink mirror, compaction) and the largest
output difference (the read values are the same, so 0 is expected).
"""

from __future__ import annotations

import argparse
from typing import Any

import torch

from cache import cat_bytes, import_old
from common import interleaved_medians, machine, write_section
from rfvideo.models import CausalWanTransformer
from rfvideo.models.tiny import wan_config
from rfvideo.sampling import FlowMatchSchedule, sample_chunkwise

OLD_REF = "f416ac5^"  # the commit before the sink mirror

LAYOUTS: dict[str, dict[str, Any]] = {
    "longlive (W12 S3 k3)": dict(num_frames_per_chunk=3, local_attn_size=12, sink_size=3),
    "reward-forcing-lu (W9 S3 k3, EMA)": dict(
        num_frames_per_chunk=3,
        local_attn_size=9,
        sink_size=3,
        rope_mode="relative",
        sink_eviction="ema",
        sink_ema_decay=0.999,
    ),  # fmt: skip
    "sinks > chunk (W8 S3 k1)": dict(num_frames_per_chunk=1, local_attn_size=8, sink_size=3),
}


def run_layout(
    name: str, causal: dict[str, Any], old: Any, cfg: dict[str, Any], a: argparse.Namespace
) -> str:
    k = causal["num_frames_per_chunk"]
    new = CausalWanTransformer(**cfg, **causal).eval()
    prev = old.CausalWanTransformer(**cfg, **causal).eval()
    prev.load_state_dict(new.state_dict())
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(1, cfg["in_channels"], a.chunks * k, a.latent, a.latent, generator=g)
    text = torch.randn(1, 32, cfg["text_dim"], generator=g)
    sched = FlowMatchSchedule()
    caches = {"mirror": new.new_kv_cache(1), "old": prev.new_kv_cache(1)}

    def runner(model: Any, sampler: Any, cache: Any):
        def fn() -> torch.Tensor:
            with torch.no_grad():
                return sampler(model, noise, text, schedule=sched, generator=torch.Generator().manual_seed(1),
                               kv_cache=cache)  # fmt: skip

        return fn

    fns = {
        "mirror": runner(new, sample_chunkwise, caches["mirror"]),
        "old": runner(prev, old.sample_chunkwise, caches["old"]),
    }
    outs = {n: fn() for n, fn in fns.items()}
    copied = {}
    for n, fn in fns.items():
        cat = cat_bytes(fn)
        st = caches[n].stats
        copied[n] = cat + st.get("mirror_copy_bytes", 0) + st.get("maintenance_copy_bytes", 0)
    diff = float((outs["mirror"] - outs["old"]).abs().max())
    times = interleaved_medians(fns, a.repeats, warm=False)
    ratio = times["old"] / times["mirror"]
    mb = lambda x: f"{x / 2**20:.1f}"  # noqa: E731
    return (
        f"| {name} | {times['mirror']:.3f} | {times['old']:.3f} | {ratio:.2f}x | {mb(copied['mirror'])} | "
        f"{mb(copied['old'])} | {diff:.1e} |"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--ffn", type=int, default=2048)
    p.add_argument("--latent", type=int, default=32, help="latent height = width")
    p.add_argument("--chunks", type=int, default=12)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--old-ref", default=OLD_REF, help="git commit holding the previous layout")
    p.add_argument("--write", action="store_true", help="replace this script's section of RESULTS.md")
    a = p.parse_args()
    cfg = wan_config(
        "mid", num_layers=a.layers, num_attention_heads=a.heads, attention_head_dim=a.width // a.heads,
        ffn_dim=a.ffn, text_dim=64,
    )  # fmt: skip
    old = import_old(a.old_ref)
    threads = torch.get_num_threads()
    lines = [
        "### Rolled window read: sink mirror vs sinks concatenated per read",
        "",
        f"`python bench/cache_rolled.py` on {machine(threads)}, CPU fp32; {a.layers} layers, width "
        f"{a.width}, {a.latent}x{a.latent} latents, {a.chunks} chunks, 4 steps; medians of {a.repeats} "
        "interleaved runs. Copied: `torch.cat` outputs + the cache's mirror / compaction copies; diff: "
        "max |mirror - old| of the sampled latents.",
        "",
        "| layout | mirror s | old s | speed-up | mirror MiB copied | old MiB copied | diff |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, causal in LAYOUTS.items():
        lines.append(run_layout(name, causal, old, cfg, a))
    text = "\n".join(lines)
    print(text)
    if a.write:
        write_section("cache_rolled.py", text)


if __name__ == "__main__":
    main()
