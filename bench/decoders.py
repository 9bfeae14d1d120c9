"""Decoder benchmark: every decoder of the slot next to the exact Wan VAE, streamed with the generator, with
and without decode overlapped with generation (issue 21).

Run on a quiet machine (load < 1.5, nothing else running; the load is printed with each table):
    python bench/decoders.py [--tier mid|real|both] [--repeats 3] [--decoders wan,lightvae,tae]
    python bench/decoders.py --quick        # smoke run at a tiny size (seconds; numbers meaningless)

Per tier, one seeded random generator (`CausalWanTransformer`, the issue's mid size: width 512 = 8 heads x
64, 4 layers, FFN 2048, 7 chunks x 3 latent frames, batch 1, fp32) and, per decoder, a seeded random
decoder (random weights: the timings depend on the architecture, not the weights):
  mid    32x32 latents (256 tokens per frame, 256x256 px); Wan VAE at one sixth of its real width
         (base_dim 16, as bench/stream.py), LightVAE at a quarter of that (base_dim 4), TAEHV at its real
         widths (256, 128, 64, 64): what the issue measured decode's share at.
  real   the real decoder widths (Wan VAE base_dim 96, LightVAE 24, TAEHV 256/128/64/64) at 8x8 latents
         (64x64 px: as small as keeps every decoder layer's interior larger than its border), the same
         generator at 8x8 latents (16 tokens per frame).
Timed interleaved: each repeat runs every decoder once sequentially and once overlapped, in turn, after
one warm-up of each; medians over repeats. Quantities per decoder (pixel frames F = 1 + 4 (f - 1)):
  decode s/chunk          mean seconds of one streamed chunk decode (chunks 1.., 12 pixel frames each)
  time to first pixel     from the call to chunk 0's frames (generation of chunk 0 + its decode)
  e2e FPS                 F / wall seconds of the whole video, streamed decode, sequential
  model-only FPS          F / seconds spent in the generator
  generator s / decode s  per-stage seconds of the whole video (sequential)
  decode share            decode seconds / end-to-end seconds (sequential)
  e2e FPS overlapped      the same video with `decode_overlapped` (decode of chunk i while i + 1 generates)
  peak memory             CPU: peak RSS growth of a child process that builds the decoder and streams the
                          video's latents through it; CUDA: `max_memory_allocated` during that decode
Ratios are against the Wan VAE of the same tier, measured in the same run.

Quiet machine only. On a loaded CPU, PyTorch's OpenMP team of the main thread stalls at its barriers while
a worker thread's work does not (seen here at load ~6 on 2 cores: the tiny generator ran ~15x slower on
the main thread with 2 threads than with 1, and a worker thread ran at the 1-thread speed), so overlapped
runs look several times faster than sequential ones for reasons that have nothing to do with overlap. With
`--threads 1` both paths use one thread per Python thread; compare the default against it.

Legend: `b` batch, `c` latent channels, `f` latent frames, `k` latent frames per chunk, `h w` latent size.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from common import load_average, sync

K = 3  # latent frames per chunk
TEXT_TOKENS, TEXT_DIM = 16, 64

GENERATOR_MID = "mid"  # the generator flavour (rfvideo.models.tiny.WAN_FLAVOURS) of the mid and real tiers
TAE_WIDTHS = (256, 128, 64, 64)
TIERS: dict[str, dict[str, Any]] = {
    "mid": dict(
        transformer=GENERATOR_MID,
        latent_hw=(32, 32),
        chunks=7,
        decoders={
            "wan": dict(kind="wan", base_dim=16),
            "lightvae": dict(kind="wan", base_dim=4),
            "tae": dict(kind="tae", widths=TAE_WIDTHS),
            "lighttae": dict(kind="lighttae", widths=TAE_WIDTHS),
        },
    ),
    "real": dict(
        transformer=GENERATOR_MID,
        latent_hw=(8, 8),
        chunks=7,
        decoders={
            "wan": dict(kind="wan", base_dim=96),
            "lightvae": dict(kind="wan", base_dim=24),
            "tae": dict(kind="tae", widths=TAE_WIDTHS),
            "lighttae": dict(kind="lighttae", widths=TAE_WIDTHS),
        },
    ),
    "quick": dict(
        transformer="tiny16",
        latent_hw=(2, 2),
        chunks=2,
        decoders={
            "wan": dict(kind="wan", base_dim=8),
            "lightvae": dict(kind="wan", base_dim=2),
            "tae": dict(kind="tae", widths=(16, 8, 8, 8)),
            "lighttae": dict(kind="lighttae", widths=(16, 8, 8, 8)),
        },
    ),
}


# ------------------------------------------------------------------ building
def build_generator(flavour: str, device: torch.device) -> Any:
    """The seeded random generator of `flavour` (16 latent channels, text width `TEXT_DIM`)."""
    from rfvideo.models.tiny import tiny_causal_wan

    model = tiny_causal_wan(flavour=flavour, text_dim=TEXT_DIM, num_frames_per_chunk=K, seed=0)
    return model.eval().to(device)


def build_decoder(spec: dict[str, Any], device: torch.device) -> Any:
    """A seeded random decoder of the slot: `kind` wan (the other keys are `AutoencoderKLWan` arguments:
    Wan VAE / LightVAE at `base_dim`), tae or lighttae (the other keys are `TinyVideoDecoder` arguments)."""
    kwargs = {k: v for k, v in spec.items() if k != "kind"}
    torch.manual_seed(1)
    if spec["kind"] == "wan":
        from diffusers import AutoencoderKLWan

        from rfvideo.models.vae import WanVAE

        return WanVAE(AutoencoderKLWan(**kwargs)).to(device)
    from rfvideo.decoders import TinyVideoDecoder

    space = "raw" if spec["kind"] == "lighttae" else "normalized"
    return TinyVideoDecoder(latent_space=space, **kwargs).eval().requires_grad_(False).to(device)


# ------------------------------------------------------------------ one video
class _TimedStream:
    """A stream decoder that adds up the seconds of its calls (synchronised on CUDA: sequential runs only)."""

    def __init__(self, stream: Any, device: torch.device) -> None:
        self.stream, self.device = stream, device
        self.seconds: list[float] = []

    def __call__(self, chunk: torch.Tensor, *, frame_offset: int | None = None) -> torch.Tensor:
        t0 = time.perf_counter()
        out = self.stream(chunk)
        sync(self.device)
        self.seconds.append(time.perf_counter() - t0)
        return out

    def reset(self) -> None:
        self.stream.reset()

    def cache_bytes(self) -> int:
        return int(self.stream.cache_bytes())


def _timed_chunks(chunks: Iterator[tuple[int, torch.Tensor]], seconds: list[float], device: torch.device):
    """The generator's chunks, adding up the seconds spent producing each (time inside `next`)."""
    while True:
        t0 = time.perf_counter()
        try:
            item = next(chunks)
        except StopIteration:
            return
        sync(device)
        seconds.append(time.perf_counter() - t0)
        yield item


def run_video(
    model: Any, decoder: Any, noise: torch.Tensor, emb: torch.Tensor, *, overlap: bool, device: torch.device
) -> dict[str, float]:
    """Generate and stream-decode one video; seconds of each quantity and the pixel frame count."""
    from rfvideo.decoders import decode_overlapped, decode_sequential
    from rfvideo.sampling import FlowMatchSchedule, stream_chunks

    gen_s: list[float] = []
    stream = decoder.stream_decoder() if overlap else _TimedStream(decoder.stream_decoder(), device)
    chunks = stream_chunks(
        model, noise, emb, schedule=FlowMatchSchedule(), generator=torch.Generator(device).manual_seed(1)
    )
    frames, first = 0, float("nan")
    t0 = time.perf_counter()
    with torch.no_grad():
        timed = _timed_chunks(chunks, gen_s, device) if not overlap else chunks
        loop = decode_overlapped(timed, stream) if overlap else decode_sequential(timed, stream)
        for i, video in loop:
            sync(device)
            if i == 0:
                first = time.perf_counter() - t0
            frames += video.shape[1]
    total = time.perf_counter() - t0
    out = {"total": total, "first": first, "frames": float(frames)}
    if not overlap:
        out |= {
            "model": sum(gen_s),
            "decode": sum(stream.seconds),
            "decode_chunk": statistics.mean(stream.seconds[1:] or stream.seconds),
        }
    return out


# ------------------------------------------------------------------ peak memory
def _status_kib(field: str) -> int:
    """A `kB` field of /proc/self/status (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _reset_peak_rss() -> int | None:
    """Reset the process's peak resident size; return the resident bytes now (None where unsupported)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _status_kib("VmRSS") * 1024
    except (OSError, KeyError):
        return None


def _peak_child(spec_json: str, latents_path: str, device_name: str) -> None:
    """Child process: build the decoder, stream the saved latents through it, print its peak memory."""
    import resource

    device = torch.device(device_name)
    spec = json.loads(spec_json)
    chunks = torch.load(latents_path, weights_only=True)
    decoder = build_decoder(spec, device)
    with torch.no_grad():  # one chunk first: kernels' lazy setup and allocator arenas are not the decode's
        decoder.stream_decoder()(chunks[0].to(device))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # The high-water mark of loading and building would hide the decode's own peak: reset it (Linux >= 4.0
    # clears VmHWM on "5") and measure from the resident size after the build.
    hwm = _reset_peak_rss()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    stream = decoder.stream_decoder()
    with torch.no_grad():
        for z in chunks:
            stream(z.to(device))
    sync(device)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) - base
    elif hwm is not None:
        peak = _status_kib("VmHWM") * 1024 - hwm
    else:
        peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024  # Linux: KiB
    print(json.dumps({"peak_bytes": peak, "cache_bytes": stream.cache_bytes()}))


def peak_memory(spec: dict[str, Any], chunks: list[torch.Tensor], device: torch.device) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "latents.pt"
        torch.save([c.cpu() for c in chunks], path)
        cmd = [sys.executable, __file__, "--peak-child", json.dumps(spec), str(path), str(device)]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
    if res.returncode != 0:
        return {"peak_bytes": float("nan"), "cache_bytes": float("nan")}
    return json.loads(res.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ report
def machine_load() -> str:
    return f"load average {load_average()}"


def _mib(n: float) -> str:
    return "n/a" if n != n else f"{n / 2**20:.1f} MiB"


def tier_inputs(name: str, device: torch.device) -> tuple[dict[str, Any], Any, torch.Tensor, torch.Tensor]:
    """The tier's settings, its seeded generator, noise `(1 c f h w)` and text embeddings `(1 n d)`."""
    tier = TIERS[name]
    h, w = tier["latent_hw"]
    model = build_generator(tier["transformer"], device)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(1, 16, K * tier["chunks"], h, w, generator=g).to(device)
    emb = torch.randn(1, TEXT_TOKENS, TEXT_DIM, generator=g).to(device)
    return tier, model, noise, emb


def peak_table(name: str, names: list[str], device: torch.device) -> str:
    """Only the peak-memory column of a tier (no timings): each decoder's streamed decode of the tier's video
    in a child process."""
    from rfvideo.sampling import FlowMatchSchedule, stream_chunks

    tier, model, noise, emb = tier_inputs(name, device)
    with torch.no_grad():
        chunks = [z for _, z in stream_chunks(model, noise, emb, schedule=FlowMatchSchedule())]
    peaks = {n: peak_memory(tier["decoders"][n], chunks, device) for n in names}
    wan = peaks.get("wan", {}).get("peak_bytes", float("nan"))
    lines = [
        "| tier | decoder | peak memory of the streamed decode | vs Wan | carried state |",
        "|---|---|---|---|---|",
    ]
    for n, p in peaks.items():
        ratio = p["peak_bytes"] / wan
        lines.append(f"| {name} | {n} | {_mib(p['peak_bytes'])} | {ratio:.2f}x | {_mib(p['cache_bytes'])} |")
    return "\n".join(lines)


def run_tier(
    name: str, names: list[str], repeats: int, device: torch.device, *, peak: bool = True, warmup: bool = True
) -> list[dict[str, Any]]:
    """Measure every decoder of the tier; one row per decoder (medians), ratios against `wan`."""
    tier, model, noise, emb = tier_inputs(name, device)
    decoders = {n: build_decoder(tier["decoders"][n], device) for n in names}
    runs: dict[tuple[str, bool], list[dict[str, float]]] = {(n, o): [] for n in names for o in (False, True)}
    for n in names if warmup else ():
        for o in (False, True):
            run_video(model, decoders[n], noise, emb, overlap=o, device=device)
    for _ in range(repeats):
        for n in names:
            for o in (False, True):
                runs[(n, o)].append(run_video(model, decoders[n], noise, emb, overlap=o, device=device))
    chunks: list[torch.Tensor] = []
    if peak:
        from rfvideo.sampling import FlowMatchSchedule, stream_chunks

        with torch.no_grad():
            chunks = [z for _, z in stream_chunks(model, noise, emb, schedule=FlowMatchSchedule())]
    rows = []
    for n in names:

        def med(key: str, o: bool = False, n: str = n) -> float:
            return statistics.median(r[key] for r in runs[(n, o)])

        frames = runs[(n, False)][0]["frames"]
        row = {
            "tier": name,
            "decoder": n,
            "spec": tier["decoders"][n],
            "decode_chunk": med("decode_chunk"),
            "first": med("first"),
            "e2e_fps": frames / med("total"),
            "model_fps": frames / med("model"),
            "decode_share": statistics.median(r["decode"] / r["total"] for r in runs[(n, False)]),
            "model_s": med("model"),
            "decode_s": med("decode"),
            "e2e_fps_overlap": frames / med("total", True),
            "first_overlap": med("first", True),
        }
        row |= peak_memory(tier["decoders"][n], chunks, device) if peak else {"peak_bytes": float("nan")}
        rows.append(row)
    base = next((r for r in rows if r["decoder"] == "wan"), None)
    for r in rows:
        r["vs_wan_e2e"] = r["e2e_fps"] / base["e2e_fps"] if base else float("nan")
        r["vs_wan_first"] = base["first"] / r["first"] if base else float("nan")
        r["vs_wan_decode"] = base["decode_chunk"] / r["decode_chunk"] if base else float("nan")
        r["overlap_gain"] = r["e2e_fps_overlap"] / r["e2e_fps"]
    return rows


def table(rows: list[dict[str, Any]], header: str) -> str:
    lines = [
        header,
        "",
        "| tier | decoder | decode s/chunk | first pixel s | e2e FPS | model-only FPS | "
        "generator s / decode s | decode share | e2e FPS overlapped (x seq) | peak memory | e2e vs Wan | "
        "first pixel vs Wan | decode vs Wan |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        spec = ", ".join(f"{k}={v}" for k, v in r["spec"].items() if k != "kind")
        lines.append(
            f"| {r['tier']} | {r['decoder']} ({spec}) | {r['decode_chunk']:.3f} | {r['first']:.3f} | "
            f"{r['e2e_fps']:.2f} | {r['model_fps']:.2f} | {r['model_s']:.2f} / {r['decode_s']:.2f} | "
            f"{r['decode_share']:.2f} | "
            f"{r['e2e_fps_overlap']:.2f} ({r['overlap_gain']:.2f}x) | {_mib(r['peak_bytes'])} | "
            f"{r['vs_wan_e2e']:.2f}x | {r['vs_wan_first']:.2f}x | {r['vs_wan_decode']:.2f}x |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--peak-child"]:
        _peak_child(*argv[1:4])
        return []
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tier", choices=("mid", "real", "both"), default="both")
    p.add_argument(
        "--decoders", default="wan,lightvae,tae", help="comma-separated, from wan,lightvae,tae,lighttae"
    )
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=int(os.environ.get("BENCH_THREADS", "0")) or None)
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--quick", action="store_true", help="tiny smoke run (1 repeat, no warm-up, no peak-memory child)"
    )
    p.add_argument(
        "--peak-only", action="store_true", help="only the peak memory of each decoder's streamed decode"
    )
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    names = [n.strip() for n in a.decoders.split(",") if n.strip()]
    for n in names:
        if n not in TIERS["mid"]["decoders"]:
            raise SystemExit(f"unknown decoder {n!r}; valid: {', '.join(TIERS['mid']['decoders'])}")
    device = torch.device(a.device)
    if a.peak_only:
        for t in ["mid", "real"] if a.tier == "both" else [a.tier]:
            start = machine_load()
            body = peak_table(t, names, device)
            print(f"Tier {t} peak memory ({device}); {start} at start, {machine_load()} at end.\n\n{body}\n")
        return []
    tiers = ["quick"] if a.quick else (["mid", "real"] if a.tier == "both" else [a.tier])
    rows: list[dict[str, Any]] = []
    for t in tiers:
        start = machine_load()
        tier_rows = run_tier(
            t, names, 1 if a.quick else a.repeats, device, peak=not a.quick, warmup=not a.quick
        )
        rows += tier_rows
        print(
            table(
                tier_rows,
                f"Tier {t}: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
                f"torch {torch.__version__} ({torch.get_num_threads()} threads), {device}; {start} at start, "
                f"{machine_load()} at end; medians of {1 if a.quick else a.repeats} interleaved repeats.",
            ),
            flush=True,
        )
        print()
    return rows


if __name__ == "__main__":
    main()
