"""KV-cache benchmark: the preallocated cache vs the per-frame cache it replaced, cached sampling vs prefix
recompute next to their FLOP ratio, compiled vs eager, the roofline, and a profile of bench/rollout.py.

Run: `python bench/cache.py` (CPU, fp32; replaces its section of bench/RESULTS.md). Default size is the
issue's mid size: 8 layers, width 512 (8 heads x 64), FFN 2048, 32x32 latents (256 tokens per frame),
7 chunks x 3 latent frames, 32 text tokens; `--layers/--width/--latent/--chunks` shrink it.

(a) old vs new cache: `sample_chunkwise` of today's tree and of `OLD_REF` (extracted with `git archive`
    into a temporary folder and imported in this process under its own module objects), same weights and
    noise, timed interleaved (A B A B). Bytes copied: every `torch.cat` output in the sampler is counted
    (`torch.cat` is wrapped while one run executes); the per-frame cache concatenated every visible frame
    per layer call, then once more with the chunk's own K/V.
(b) cached sampler vs prefix recompute (one block_causal forward over clean prefix + chunk per step, the
    reference of tests/test_sampling_chunkwise.py), next to the ratio of their FLOPs
    (`torch.utils.flop_counter.FlopCounterMode`: matmuls as executed; attention counted analytically,
    4 b heads q_len kv_len head_dim per call, because FlopCounterMode counts the CPU SDPA kernel as zero).
(c) `compile_cached` (inductor) vs eager, after a warm-up run that compiles.
(d) roofline: the sampler's FLOP/s over this machine's fp32 `torch.mm` rate (2048^3, best of 5), both
    measured in this run with the same thread count.
(e) profile at bench/rollout.py's config (4 layers, width 128, 16x16 latents = 64 tokens per frame,
    8 chunks): self CPU time per op class of the cached and the recompute sampler.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from common import (
    interleaved_medians,
    load_average,
    machine,
    markers,
    naive_chunkwise,
    timed,
    write_section,
)
from rfvideo.models import CausalWanTransformer
from rfvideo.models.tiny import wan_config
from rfvideo.sampling import FlowMatchSchedule, compile_cached, sample_chunkwise, uncompile

ROOT = Path(__file__).resolve().parents[1]
OLD_REF = "93f8a1a^"  # the commit before the preallocated cache
K = 3


def import_old(ref: str) -> SimpleNamespace:
    """`CausalWanTransformer` and `sample_chunkwise` of commit `ref`, as separate module objects."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "src"], capture_output=True, check=True)
    dest = Path(tempfile.mkdtemp(prefix="rfv_old_"))
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(dest, filter="data")
    ours = lambda: [k for k in sys.modules if k == "rfvideo" or k.startswith("rfvideo.")]  # noqa: E731
    saved = {k: sys.modules.pop(k) for k in ours()}
    sys.path.insert(0, str(dest / "src"))
    try:
        import rfvideo.models.causal_wan as old_model
        import rfvideo.sampling as old_sampling

        return SimpleNamespace(
            CausalWanTransformer=old_model.CausalWanTransformer,
            sample_chunkwise=old_sampling.sample_chunkwise,
        )
    finally:
        for k in ours():
            del sys.modules[k]
        sys.path.remove(str(dest / "src"))
        sys.modules.update(saved)


def cat_bytes(fn) -> int:
    """Bytes of every `torch.cat` output while `fn()` runs."""
    total = [0]
    real = torch.cat

    def counting(tensors, *args, **kwargs):
        out = real(tensors, *args, **kwargs)
        total[0] += out.nbytes
        return out

    torch.cat = counting
    try:
        fn()
    finally:
        torch.cat = real
    return total[0]


def flops(fn) -> int:
    return flops_and_out(fn)[0]


def attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of one attention call, counted analytically: Q K^T and P V, 2 b heads q_len kv_len head_dim each
    (4 b heads q_len kv_len head_dim when the value width equals the key width); the mask does not change
    what the dense kernel computes. Softmax and scaling are left out, like every elementwise op here."""
    b, h, q_len, d = query_shape
    kv_len, d_v = key_shape[-2], value_shape[-1]
    return 2 * b * h * q_len * kv_len * d + 2 * b * h * q_len * kv_len * d_v


# FlopCounterMode has formulas for the CUDA SDPA kernels only: on the CPU, SDPA runs
# `_scaled_dot_product_flash_attention_for_cpu`, which it counted as zero FLOPs (the roofline then saw the
# linear layers only). The math fallback decomposes into bmm, which is counted already, so only the fused
# kernels get the analytic formula.
ATTENTION_FLOPS = {
    op: attention_flops
    for name in ("_scaled_dot_product_flash_attention_for_cpu",)
    if (op := getattr(torch.ops.aten, name, None)) is not None
}


def flops_and_out(fn) -> tuple[int, Any]:
    """FLOPs of one call of `fn` (matmuls as executed, attention analytically) and its output."""
    with FlopCounterMode(display=False, custom_mapping=ATTENTION_FLOPS) as counter:
        out = fn()
    return counter.get_total_flops(), out


def mm_peak(threads: int) -> float:
    """fp32 FLOP/s of a 2048^3 `torch.mm`, best of 5 (after a warm-up)."""
    n = 2048
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    torch.mm(a, b)
    best = min(timed(lambda: torch.mm(a, b))[0] for _ in range(5))
    return 2 * n**3 / best


def op_class(name: str) -> str:
    if any(s in name for s in ("addmm", "aten::mm", "aten::bmm", "matmul", "linear", "conv")):
        return "GEMM (linear, conv)"
    if "attention" in name or "sdpa" in name or "_scaled_dot" in name:
        return "attention (SDPA)"
    if any(s in name for s in ("cat", "copy_", "clone", "contiguous", "repeat_interleave", "stack")):
        return "copies (cat, copy_, clone, stack)"
    if any(s in name for s in ("norm", "mean", "rsqrt", "var")):
        return "norms"
    if any(s in name for s in ("mul", "add", "sub", "gelu", "tanh", "silu", "exp", "sin", "cos", "div")):
        return "elementwise"
    return "other (views, indexing, allocation, dispatch)"


def profile(fn) -> dict[str, float]:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    out: dict[str, float] = defaultdict(float)
    for e in prof.key_averages():
        out[op_class(e.key)] += e.self_cpu_time_total / 1e6
    out["calls"] = float(sum(e.count for e in prof.key_averages()))
    return dict(out)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--ffn", type=int, default=2048)
    p.add_argument("--latent", type=int, default=32, help="latent height = width")
    p.add_argument("--chunks", type=int, default=7)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--skip", nargs="*", default=(), choices=("old", "naive", "compile", "profile"))
    p.add_argument("--no-write", action="store_true", help="print only, leave RESULTS.md alone")
    a = p.parse_args()
    threads = int(os.environ.get("BENCH_THREADS", "2"))
    torch.set_num_threads(threads)
    start_info = machine(threads)
    cfg = wan_config(
        "mid", num_layers=a.layers, num_attention_heads=a.heads, attention_head_dim=a.width // a.heads,
        ffn_dim=a.ffn, text_dim=512,
    )  # fmt: skip
    tokens = (a.latent // 2) ** 2
    torch.manual_seed(0)
    model = CausalWanTransformer(**cfg, num_frames_per_chunk=K).eval()
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(1, 16, K * a.chunks, a.latent, a.latent, generator=g)
    ehs = torch.randn(1, 32, 512, generator=g)
    sched = FlowMatchSchedule()
    gen = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    new = lambda: sample_chunkwise(model, noise, ehs, schedule=sched, generator=gen())  # noqa: E731
    rows: list[str] = []
    lines = [
        f"Config: {a.layers} layers, width {a.width} ({a.heads} heads), FFN {a.ffn}, {a.latent}x{a.latent} "
        f"latents ({tokens} tokens/frame), {a.chunks} chunks x {K} latent frames, 32 text tokens, batch 1, "
        f"CPU fp32, {threads} threads; medians of {a.repeats} interleaved runs after a warm-up.",
        "",
        f"Machine at start: {start_info}.",
        "",
    ]
    peak = mm_peak(threads)
    log(f"mm peak {peak / 1e9:.1f} GFLOP/s")
    with torch.no_grad():
        sampler_flops, ref = flops_and_out(new)  # also the warm-up
        log(f"new sampler: {sampler_flops / 1e9:.1f} GFLOP")
        times: dict[str, float] = {}
        fns: dict[str, Any] = {"new": new}
        if "old" not in a.skip:
            old_ns = import_old(OLD_REF)
            torch.manual_seed(0)
            old_model = old_ns.CausalWanTransformer(**cfg, num_frames_per_chunk=K).eval()
            old_model.load_state_dict(model.state_dict())
            old = lambda: old_ns.sample_chunkwise(old_model, noise, ehs, schedule=sched, generator=gen())  # noqa: E731
            err = (old() - ref).abs().max().item()  # also the warm-up
            fns["old"] = old
        if "naive" not in a.skip:
            naive = lambda: naive_chunkwise(model, noise, ehs, sched, gen(), chunk=K)  # noqa: E731
            naive_flops, naive_out = flops_and_out(naive)  # also the warm-up
            naive_err = (naive_out - ref).abs().max().item()
            fns["naive"] = naive
        log(f"timing {sorted(fns)}")
        times.update(interleaved_medians(fns, a.repeats, warm=False))
        log(f"times {times}")
        cache = model.new_kv_cache(1)
        new_cat = cat_bytes(
            lambda: sample_chunkwise(model, noise, ehs, schedule=sched, generator=gen(), kv_cache=cache)
        )
        stats = dict(cache.stats)
        rows.append("| measurement | new | reference | ratio | target | note |")
        rows.append("| --- | --- | --- | --- | --- | --- |")
        mib = lambda x: f"{x / 2**20:.1f} MiB"  # noqa: E731
        if "old" in fns:
            old_cat = cat_bytes(old)
            rows.append(
                "| (a) bytes concatenated per chunk (all `torch.cat` in the sampler) | "
                f"{mib(new_cat / a.chunks)} | {mib(old_cat / a.chunks)} (per-frame cache) | "
                f"{old_cat / max(new_cat, 1):.0f}x less | no copy of cached frames | new cache's own count: "
                f"{stats['read_copy_bytes']} B copied on reads, {stats['reads']} folded reads, "
                f"{mib(stats['fold_bytes'])} of own-chunk K/V written into the buffer tail, "
                f"{stats['maintenance_copy_bytes']} B grow/compact copies; the rest is RoPE tables and the "
                "output |"
            )
            rows.append(
                f"| (a) `sample_chunkwise` seconds per video, new vs old cache | {times['new']:.2f} s | "
                f"{times['old']:.2f} s | {times['old'] / times['new']:.2f}x | >= 1x | "
                f"max abs diff {err:.1e} |"
            )
        if "naive" in fns:
            fr = naive_flops / sampler_flops
            tr = times["naive"] / times["new"]
            rows.append(
                f"| (b) cached sampler vs prefix recompute, seconds per video | {times['new']:.2f} s | "
                f"{times['naive']:.2f} s | {tr:.2f}x | >= 0.8 x FLOP ratio ({0.8 * fr:.2f}x) | FLOPs "
                f"{sampler_flops / 1e12:.2f} T vs {naive_flops / 1e12:.2f} T = {fr:.2f}x; achieved "
                f"{tr / fr:.2f} of it; max abs diff {naive_err:.1e} |"
            )
        achieved = sampler_flops / times["new"]
        rows.append(
            "| (d) roofline: sampler FLOP/s / fp32 `torch.mm` 2048^3 FLOP/s | "
            f"{achieved / 1e9:.1f} GFLOP/s | {peak / 1e9:.1f} GFLOP/s | {achieved / peak:.2f} | >= 0.75 | "
            f"{sampler_flops / 1e12:.3f} "
            f"TFLOP per video ({5 * a.chunks} forwards) |"
        )
        if "compile" not in a.skip:
            log("compiling")
            try:
                rows.append(compile_row(model, new, ref, times["new"], a.repeats))
            except Exception as err:  # noqa: BLE001 - a failed stage is reported, the table is kept
                rows.append(f"| (c) `compile_cached` vs eager | failed | | | | {type(err).__name__}: {err} |")
            finally:
                uncompile(model)
    lines += rows
    if "profile" not in a.skip:
        log("profile at bench/rollout.py's config")
        try:
            lines += ["", *profile_rollout_config(threads)]
        except Exception as err:  # noqa: BLE001
            lines += ["", f"(e) profile failed: {type(err).__name__}: {err}"]
    lines += ["", f"Load average at end: {load_average()}."]
    body = "\n".join(["## KV cache (`python bench/cache.py`)", "", *lines])
    begin, end = markers("cache.py")
    print(f"{begin}\n{body}\n{end}")
    if not a.no_write:
        write_section("cache.py", body)


def compile_row(model, run, ref: torch.Tensor, eager_s: float, repeats: int) -> str:
    t0 = time.perf_counter()
    compile_cached(model)
    out = run()  # compiles
    compile_s = time.perf_counter() - t0
    err = (out - ref).abs().max().item()
    compiled = interleaved_medians({"compiled": run}, repeats)["compiled"]
    return (
        "| (c) `compile_cached` (inductor) vs eager, seconds per video | "
        f"{compiled:.2f} s | {eager_s:.2f} s | "
        f"{eager_s / compiled:.2f}x | - | first run incl. compile {compile_s:.0f} s; max abs diff {err:.1e}; "
        "eager timed earlier in the same process |"
    )


def profile_rollout_config(threads: int) -> list[str]:
    """(e): where the time goes at bench/rollout.py's config, cached vs prefix recompute."""
    cfg = wan_config("medium")  # bench/rollout.py's
    torch.manual_seed(0)
    model = CausalWanTransformer(**cfg, num_frames_per_chunk=K).eval()
    g = torch.Generator().manual_seed(0)
    noise, ehs = torch.randn(1, 16, 24, 16, 16, generator=g), torch.randn(1, 16, 64, generator=g)
    sched = FlowMatchSchedule()
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    cached = lambda: sample_chunkwise(model, noise, ehs, schedule=sched, generator=gen())  # noqa: E731
    naive = lambda: naive_chunkwise(model, noise, ehs, sched, gen(), chunk=K)  # noqa: E731
    with torch.no_grad():
        t = interleaved_medians({"cached": cached, "naive": naive}, 3)
        fc, fn = flops(cached), flops(naive)
        pc, pn = profile(cached), profile(naive)
    classes = sorted({*pc, *pn} - {"calls"}, key=lambda c: -(pn.get(c, 0) + pc.get(c, 0)))
    out = [
        f"(e) Profile at bench/rollout.py's config (4 layers, width 128, 16x16 latents = 64 tokens/frame, 8 "
        f"chunks), {threads} threads: wall {t['cached']:.2f} s cached vs {t['naive']:.2f} s recompute = "
        f"{t['naive'] / t['cached']:.2f}x, FLOPs {fc / 1e9:.1f} G vs {fn / 1e9:.1f} G = {fn / fc:.2f}x. "
        f"Self CPU seconds per op class (profiled run, profiler overhead included; ops: {pc['calls']:.0f} vs "
        f"{pn['calls']:.0f}):",
        "",
        "| op class | cached | recompute | recompute / cached |",
        "| --- | --- | --- | --- |",
    ]
    for c in classes:
        a, b = pc.get(c, 0.0), pn.get(c, 0.0)
        out.append(f"| {c} | {a:.3f} s | {b:.3f} s | {b / a if a else float('inf'):.2f}x |")
    gemm_c, gemm_n = pc.get("GEMM (linear, conv)", 0), pn.get("GEMM (linear, conv)", 0)
    att_c, att_n = pc.get("attention (SDPA)", 0), pn.get("attention (SDPA)", 0)
    out += [
        "",
        f"FLOP/s of the GEMM + attention seconds: cached {fc / max(gemm_c + att_c, 1e-9) / 1e9:.1f} G/s vs "
        f"recompute {fn / max(gemm_n + att_n, 1e-9) / 1e9:.1f} G/s.",
    ]
    return out


if __name__ == "__main__":
    main()
