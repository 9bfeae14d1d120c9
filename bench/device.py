"""The checks only a GPU can answer, as one prepared script: bf16 parity, flex vs SDPA, FPS, memory.

Random weights of the real architecture (no download: speed and memory depend on shapes, not values).
`--size wan1.3b` is Wan2.1-T2V-1.3B (30 blocks, width 1536, 21 latent frames of 60x104 = 81 pixel frames
at 480x832, 512 umT5 tokens) with the real Wan VAE architecture; `--size tiny` runs the same code on the
CPU in seconds (tests/test_bench_device.py keeps it working between GPU sessions).

  1. parity: our full-attention forward vs diffusers' `WanTransformer3DModel` (same weights) on one chunk,
     as ||ours - ref|| / ||ref|| against diffusers in fp32 (TF32 off); ours in bf16 next to diffusers'
     own bf16 error, so the bf16 number has a yardstick;
  2. attention backends: one block-causal forward over the whole video, SDPA (dense mask) vs flex
     attention (block mask, compiled on CUDA): difference and time;
  3. generation speed: `stream_chunks` (4 steps + context pass per chunk, global KV cache), time to the
     first chunk and to the whole video, with and without the VAE decode; pixel frames per second;
  4. KV cache size: global over the whole video and a rolling window (9 frames, 3 sinks) over a 3x
     longer video (spec: ~6 GB and ~2.6 GB in bf16 at batch 1);
  5. one reward-stage training step: rollout with grad only in the last chunk, activation checkpointing,
     `decode_last`, a pixel reward; peak memory and time;
  6. streaming (`rfvideo.streaming.stream_video`, each chunk decoded as soon as it exists), the three
     defined numbers: model-only FPS (pixel frames / seconds in the generator), end-to-end FPS with
     streamed decode (pixel frames / wall seconds of generator + decode), time to the first pixel frame
     (streaming vs decode after the whole video); and compiled vs eager (`compile_cached`, when present):
     speed and the difference of the latents;
  7. decoders (issue 21, `decoder_rows`): each decoder of the slot (exact Wan VAE, LightVAE = Wan VAE at
     quarter width, TAEHV tiny decoder in fp32 and in the run's dtype) streamed with the generator at the
     size's resolution (480x832 for wan1.3b): decode s/chunk, time to the first pixel frame, end-to-end FPS
     sequential and overlapped (`decode_overlapped`: decode on a second CUDA stream while the next chunk
     generates), decode share, peak memory of the streamed decode, ratios against the Wan VAE.

Prints a markdown table last and writes it to `--out` (default `$OUT/device.md` when $OUT is set).

On a lent H200 (it has torch, no diffusers): here, once, `echo /.whl/ >> .git/info/exclude` and
`python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl diffusers==0.42.1`;
then run with carry [".whl"]:
  python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && \
  PYTHONPATH=/tmp/site:src PYTHONUNBUFFERED=1 python3 bench/device.py --size wan1.3b

Legend: `b` batch, `c` latent channels, `f` latent frames, `h w` latent size, `n` text tokens, `d` width.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from common import load_average, median_time, sync
from rfvideo.models.tiny import wan_config


@dataclass(kw_only=True)
class Size:
    """One benchmark size: transformer config, video shape, VAE config."""

    transformer: dict[str, Any]
    latent_frames: int
    latent_hw: tuple[int, int]
    text_tokens: int
    vae: dict[str, Any]
    repeats: int


SIZES: dict[str, Size] = {
    "wan1.3b": Size(
        transformer=wan_config("wan2.1-1.3b"),
        latent_frames=21, latent_hw=(60, 104), text_tokens=512,
        vae={},  # diffusers' AutoencoderKLWan defaults are Wan2.1's VAE
        repeats=3,
    ),
    "tiny": Size(
        transformer=wan_config("tiny"),
        latent_frames=6, latent_hw=(8, 8), text_tokens=8,
        vae=dict(base_dim=4, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                 latents_mean=[0.0] * 4, latents_std=[1.0] * 4),
        repeats=2,
    ),
}  # fmt: skip
CHUNK = 3


def rel_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    x, ref = x.double(), ref.double()
    if not torch.isfinite(x).all():
        return float("nan")
    return float((x - ref).norm() / ref.norm())


def peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> str:
    """Peak allocated device memory since `peak_reset`, or "n/a" off CUDA."""
    return f"{torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB" if device.type == "cuda" else "n/a"


def cast(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """`model` in `dtype` but its `_keep_in_fp32_modules`, as `from_pretrained(torch_dtype=...)` loads it."""
    model.to(dtype)
    keep = getattr(model, "_keep_in_fp32_modules", None) or []
    for name, module in model.named_modules():
        if any(k in name.split(".") for k in keep):
            module.float()
    return model


def human_bytes(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.2f} MiB"


def build_models(size: Size, device: torch.device, dtype: torch.dtype, **causal: Any):
    """diffusers reference (fp32) and ours with its weights, built directly on `device`."""
    from diffusers import WanTransformer3DModel

    from rfvideo.models import CausalWanTransformer

    torch.manual_seed(0)
    with torch.device(device):
        ref = WanTransformer3DModel(**size.transformer).eval()
        with torch.no_grad():  # norm gains start at exactly 1: perturb them so a misplaced norm shows
            for name, p in ref.named_parameters():
                if "norm" in name and name.endswith("weight"):
                    p.add_(0.1 * torch.randn_like(p))
        ours = CausalWanTransformer(**size.transformer, num_frames_per_chunk=CHUNK, **causal).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref, ours


def stream_rows(
    model: Any,
    size: Size,
    z: torch.Tensor,
    emb: torch.Tensor,
    sched: Any,
    device: torch.device,
    dtype: torch.dtype,
    backend: str,
) -> list[tuple[str, str, str]]:
    """Section 6: streamed-decode numbers, decode-after first-frame time, compiled vs eager."""
    import diffusers

    from rfvideo.models import WanVAE
    from rfvideo.sampling import sample_chunkwise
    from rfvideo.streaming import stream_video

    torch.manual_seed(0)
    with torch.device(device):
        vae = WanVAE(diffusers.AutoencoderKLWan(**size.vae)).to(dtype)
    f = z.shape[2]
    pixel_frames = 1 + 4 * (f - 1)

    def streamed() -> tuple[float, float, float]:
        """(seconds to the first pixel frames, to the whole video, in the generator)."""
        timings: list[dict[str, float]] = []
        first = 0.0
        sync(device)
        t0 = time.perf_counter()
        with torch.no_grad():
            gen = torch.Generator(device).manual_seed(0)
            for i, _ in stream_video(model, vae, z, emb, schedule=sched, generator=gen, timings=timings):
                if i == 0:
                    sync(device)
                    first = time.perf_counter() - t0
        sync(device)
        return first, time.perf_counter() - t0, sum(t["model"] for t in timings)

    def decode_after() -> None:
        with torch.no_grad():
            gen = torch.Generator(device).manual_seed(0)
            lat = sample_chunkwise(model, z, emb, schedule=sched, generator=gen)
            vae.decode(lat)  # the slot speaks (b c f h w)

    streamed()  # warm-up
    runs = [streamed() for _ in range(size.repeats)]
    first, total, in_model = (statistics.median(r[i] for r in runs) for i in range(3))
    t_after = median_time(decode_after, repeats=size.repeats, device=device)
    rows = [
        ("model-only FPS (streaming)", f"{pixel_frames / in_model:.1f} FPS",
         f"{pixel_frames} pixel frames / {in_model:.3f} s in the generator; decode excluded; {dtype}"),
        ("end-to-end FPS, streamed decode", f"{pixel_frames / total:.1f} FPS",
         f"{total:.3f} s wall for generator + per-chunk VAE decode"),
        ("time to first pixel frame, streaming", f"{first:.3f} s",
         f"chunk 0: {CHUNK} latent frames -> {1 + 4 * (CHUNK - 1)} pixel frames"),
        ("time to first pixel frame, decode after the video", f"{t_after:.3f} s",
         f"{t_after / first:.1f}x the streaming latency"),
    ]  # fmt: skip
    try:
        from rfvideo.sampling.compile import compile_cached, uncompile
    except ImportError:
        rows.append(("compiled vs eager (cached sampler)", "skipped", "no rfvideo.sampling.compile"))
        return rows

    def latents() -> torch.Tensor:
        with torch.no_grad():
            gen = torch.Generator(device).manual_seed(0)
            return sample_chunkwise(model, z, emb, schedule=sched, generator=gen)

    eager = latents()
    t_eager = median_time(latents, repeats=size.repeats, device=device)
    try:
        compile_cached(model, backend=backend)
        compiled = latents()  # compiles
        t_compiled = median_time(latents, repeats=size.repeats, device=device)
    except RuntimeError as e:
        rows.append(("compiled vs eager (cached sampler)", "failed", str(e).splitlines()[0][:200]))
        return rows
    finally:
        uncompile(model)
    rows.append((
        f"compiled ({backend}) vs eager, whole video", f"{t_eager / t_compiled:.2f}x",
        f"eager {t_eager:.3f} s, compiled {t_compiled:.3f} s; "
        f"latents ‖Δ‖/‖eager‖ {rel_err(compiled, eager):.1e}",
    ))  # fmt: skip
    return rows


# ---------------------------------------------------------------------------------------------------------
# Issue 21: the decoders of the slot at the real resolution (480x832 for wan1.3b). Kept apart from the
# rows above; the measuring code is bench/decoders.py's (`run_video`, `build_decoder`), loaded by path.
DECODER_SPECS: dict[str, dict[str, dict[str, Any]]] = {
    "wan1.3b": {
        "wan": dict(kind="wan"),  # AutoencoderKLWan defaults: Wan2.1's VAE (base_dim 96)
        "lightvae": dict(kind="wan", base_dim=24),
        "tae": dict(kind="tae", widths=(256, 128, 64, 64)),
    },
    "tiny": {
        "wan": dict(kind="wan", **SIZES["tiny"].vae),
        "lightvae": dict(kind="wan", **{**SIZES["tiny"].vae, "base_dim": 2}),
        "tae": dict(kind="tae", widths=(16, 8, 8, 8), latent_channels=4),
    },
}


def decoder_rows(
    model: torch.nn.Module,
    size_name: str,
    noise: torch.Tensor,
    text: torch.Tensor,
    device: torch.device,
    dtype: torch.dtype,
) -> list[tuple[str, str, str]]:
    """Per decoder: streamed with the generator, sequential and overlapped; ratios against the Wan VAE.

    Decoders run in fp32 (Wan's VAE is kept in fp32); the tiny decoder also in the run's dtype. One
    warm-up video per decoder, then one sequential and one overlapped video each, interleaved.
    """
    import decoders as bench  # bench/decoders.py (bench/ is on the path: see common.py)

    f, (h, w) = noise.shape[2], noise.shape[-2:]
    specs = DECODER_SPECS[size_name]
    decoders: dict[str, Any] = {n: bench.build_decoder(spec, device) for n, spec in specs.items()}
    if dtype != torch.float32:
        decoders[f"tae {dtype}"] = bench.build_decoder(specs["tae"], device).to(dtype)
    runs: dict[str, dict[str, dict[str, float]]] = {}
    for name, dec in decoders.items():
        bench.run_video(model, dec, noise, text, overlap=False, device=device)  # warm-up
        runs[name] = {
            "seq": bench.run_video(model, dec, noise, text, overlap=False, device=device),
            "ovl": bench.run_video(model, dec, noise, text, overlap=True, device=device),
        }
    from rfvideo.sampling import FlowMatchSchedule, stream_chunks

    with torch.no_grad():
        chunks = [z for _, z in stream_chunks(model, noise, text, schedule=FlowMatchSchedule())]
    base = runs["wan"]["seq"]
    rows: list[tuple[str, str, str]] = []
    for name, dec in decoders.items():
        seq, ovl = runs[name]["seq"], runs[name]["ovl"]
        peak_reset(device)
        held = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
        stream = dec.stream_decoder()
        with torch.no_grad():
            for z in chunks:
                stream(z)
        sync(device)
        peak = human_bytes(torch.cuda.max_memory_allocated(device) - held) if device.type == "cuda" else "n/a"
        fps, fps_o = seq["frames"] / seq["total"], ovl["frames"] / ovl["total"]
        wan_fps = base["frames"] / base["total"]
        speed_decode = base["decode_chunk"] / seq["decode_chunk"]
        speed_first = base["first"] / seq["first"]
        share = seq["decode"] / seq["total"]
        what = f"decoder {name}, {f} latent frames at {h * 8}x{w * 8}"
        rows += [
            (f"{what}: decode s/chunk", f"{seq['decode_chunk']:.3f}", f"Wan VAE / this: {speed_decode:.2f}x"),
            (f"{what}: time to first pixel frame", f"{seq['first']:.3f} s",
             f"Wan VAE / this: {speed_first:.2f}x"),
            (f"{what}: end-to-end FPS", f"{fps:.2f}",
             f"this / Wan VAE: {fps / wan_fps:.2f}x; decode share {share:.2f}"),
            (f"{what}: end-to-end FPS overlapped", f"{fps_o:.2f}",
             f"overlapped / sequential: {fps_o / fps:.2f}x; first frame {ovl['first']:.3f} s"),
            (f"{what}: peak memory of the streamed decode", peak,
             f"above what was held before it; carried state {human_bytes(stream.cache_bytes())}"),
        ]  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> list[tuple[str, str, str]]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=sorted(SIZES), default="wan1.3b")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=("bfloat16", "float32"), default=None, help="default: bf16 on CUDA")
    p.add_argument(
        "--skip",
        nargs="*",
        default=[],
        choices=("parity", "flex", "speed", "cache", "train", "stream", "decoders"),
    )
    p.add_argument("--compile-backend", default="inductor", help="torch.compile backend of the compiled row")
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    device = torch.device(a.device)
    dtype = (
        getattr(torch, a.dtype) if a.dtype else (torch.bfloat16 if device.type == "cuda" else torch.float32)
    )
    size = SIZES[a.size]
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 references must be fp32
    torch.backends.cudnn.allow_tf32 = False

    from rfvideo.models import WanVAE
    from rfvideo.sampling import FlowMatchSchedule, rollout, stream_chunks

    rows: list[tuple[str, str, str]] = []  # (measurement, value, note)
    f, (h, w) = size.latent_frames, size.latent_hw
    c = size.transformer["in_channels"]
    g = torch.Generator(device="cpu").manual_seed(1)
    noise = torch.randn(1, c, f, h, w, generator=g).to(device)  # (b c f h w)
    text = torch.randn(1, size.text_tokens, size.transformer["text_dim"], generator=g).to(device)  # (b n d)
    sched = FlowMatchSchedule()
    ref, ours = build_models(size, device, dtype)
    log = lambda msg: print(f"[device bench] {msg}", flush=True)
    log(f"{a.size} on {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'})")

    if "parity" not in a.skip:
        x, t = noise[:, :, :CHUNK], torch.full((1,), 500.0, device=device)
        with torch.no_grad():
            want = ref(x, t, text, return_dict=False)[0].float()
            ours32 = ours.float()
            got32 = ours32(x, t, text, attention_mode="full").float()
            what = "parity fp32: ours vs diffusers (one chunk, full attention)"
            rows.append((what, f"{rel_err(got32, want):.2e}", "‖ours − ref‖ / ‖ref‖; fp32: far under 1e-3"))
            if dtype != torch.float32:
                ref_lo = ref.to(dtype)
                got = cast(ours32, dtype)(x.to(dtype), t, text.to(dtype), attention_mode="full").float()
                base = ref_lo(x.to(dtype), t, text.to(dtype), return_dict=False)[0].float()
                rows.append((f"parity {dtype}: ours vs diffusers fp32", f"{rel_err(got, want):.2e}",
                             f"diffusers' own {dtype} error: {rel_err(base, want):.2e}"))  # fmt: skip
        log("parity done")
    del ref
    ours = cast(ours, dtype)

    if "flex" not in a.skip:
        x, tt = noise.to(dtype), torch.zeros(1, f, device=device)
        outs, times = {}, {}
        for backend in ("sdpa", "flex"):
            ours.register_to_config(attention_backend=backend)
            with torch.no_grad():
                fn = lambda: ours(x, tt, text.to(dtype), attention_mode="block_causal")
                outs[backend] = fn().float()
                times[backend] = median_time(fn, repeats=size.repeats, device=device)
        ours.register_to_config(attention_backend="auto")
        diff = rel_err(outs["flex"], outs["sdpa"])
        note = f"SDPA {times['sdpa'] * 1e3:.1f} ms, flex {times['flex'] * 1e3:.1f} ms"
        rows.append(("block-causal forward, whole video: flex vs SDPA", f"{diff:.2e}", note))
        log("flex done")

    pixel_frames = 1 + 4 * (f - 1)
    if "speed" not in a.skip:
        import diffusers

        torch.manual_seed(0)
        with torch.device(device):
            vae = WanVAE(diffusers.AutoencoderKLWan(**size.vae)).to(dtype)
        emb = text.to(dtype)
        z = noise.to(dtype)

        def first_chunk() -> None:
            with torch.no_grad():
                next(
                    iter(
                        stream_chunks(
                            ours, z, emb, schedule=sched, generator=torch.Generator(device).manual_seed(0)
                        )
                    )
                )

        def video() -> torch.Tensor:
            with torch.no_grad():
                chunks = [
                    x0
                    for _, x0 in stream_chunks(
                        ours, z, emb, schedule=sched, generator=torch.Generator(device).manual_seed(0)
                    )
                ]
            return torch.cat(chunks, dim=2)  # (b c f h w)

        lat = video()  # (b c f h w): the decoder slot's layout
        t_first = median_time(first_chunk, repeats=size.repeats, device=device)
        t_gen = median_time(video, repeats=size.repeats, device=device)
        with torch.no_grad():
            t_dec = median_time(lambda: vae.decode(lat), repeats=size.repeats, device=device)
        rows += [
            ("first chunk latency (4 steps + context pass, 3 latent frames)", f"{t_first:.3f} s", ""),
            (f"generator, {f} latent frames -> {pixel_frames} pixel frames",
             f"{pixel_frames / t_gen:.1f} FPS", f"{t_gen:.3f} s per video, batch 1, {dtype}"),
            ("generator + VAE decode", f"{pixel_frames / (t_gen + t_dec):.1f} FPS", f"decode {t_dec:.3f} s"),
        ]  # fmt: skip
        del vae
        log("speed done")

    if "cache" not in a.skip:
        from rfvideo.models import CausalWanTransformer

        for label, window, frames in (("global", -1, f), ("window 9, sinks 3", 9, 3 * f)):
            model = ours
            if window != -1:
                model = (
                    CausalWanTransformer(
                        **size.transformer,
                        num_frames_per_chunk=CHUNK,
                        local_attn_size=window,
                        sink_size=3,
                        rope_mode="relative",
                    )
                    .to(device)
                    .eval()
                )
                cast(model, dtype)
                model.load_state_dict(ours.state_dict())
            cache = model.new_kv_cache(1, device=device, dtype=dtype)
            zz = torch.randn(1, c, frames, h, w, generator=g).to(device=device, dtype=dtype)
            peak_reset(device)
            sync(device)
            t0 = time.perf_counter()
            with torch.no_grad():
                for _ in stream_chunks(model, zz, text.to(dtype), schedule=sched, kv_cache=cache):
                    pass
            sync(device)
            dt = time.perf_counter() - t0
            nbytes = sum(t.numel() * t.element_size() for t in cache.tensors())
            note = (
                f"{cache.num_cached_frames()} frames held; peak allocated {peak_gib(device)}; "
                f"{(1 + 4 * (frames - 1)) / dt:.1f} FPS (generator)"
            )
            stats = getattr(cache, "stats", None)
            if isinstance(stats, dict) and "read_copy_bytes" in stats:
                note += f"; read-path copies {human_bytes(int(stats['read_copy_bytes']))}"
            rows.append((f"KV cache after {frames} latent frames, {label}", human_bytes(nbytes), note))
            del model, cache
        log("cache done")

    if "train" not in a.skip:
        import diffusers

        torch.manual_seed(0)
        with torch.device(device):
            vae = WanVAE(diffusers.AutoencoderKLWan(**size.vae))
        gen = ours.float().train()  # fp32 master weights, bf16 autocast: Lightning's bf16-mixed
        gen.enable_gradient_checkpointing()
        peak_reset(device)
        sync(device)
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            out = rollout(gen, noise, text, schedule=sched, generator=torch.Generator(device).manual_seed(0),
                          exit_step=sched.num_steps - 1, grad_from_chunk=f // CHUNK - 1)  # fmt: skip
            frame = vae.decode_last(out.latents, 1, checkpoint=True)
            loss = -frame.float().mean()  # a pixel reward: the step's cost does not depend on which
        loss.backward()
        sync(device)
        dt = time.perf_counter() - t0
        grads = sum(p.grad is not None for p in gen.parameters())
        what = "reward-stage step (rollout, grad in last chunk, ckpt, decode_last)"
        rows.append((what, f"peak {peak_gib(device)}", f"{dt:.2f} s; {grads} parameter tensors got grads"))
        log("train done")

    if "stream" not in a.skip:
        rows += stream_rows(
            ours, size, noise.to(dtype), text.to(dtype), sched, device, dtype, a.compile_backend
        )
        log("stream done")

    if "decoders" not in a.skip:
        rows += decoder_rows(ours, a.size, noise.to(dtype), text.to(dtype), device, dtype)
        log("decoders done")

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    lines = [
        f"### `python bench/device.py --size {a.size}` on {where} (torch {torch.__version__}, {dtype}; "
        f"load average {load_average()})",
        "",
        "| measurement | value | note |",
        "| --- | --- | --- |",
        *[f"| {m} | {v} | {n} |" for m, v, n in rows],
    ]
    table = "\n".join(lines)
    print(table)
    out = a.out or (str(Path(os.environ["OUT"]) / "device.md") if os.environ.get("OUT") else None)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(table + "\n")
    return rows


if __name__ == "__main__":
    main()
