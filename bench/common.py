"""What every benchmark script shares: its RESULTS.md section, the machine line, timing, the naive rollout.

`bench/` holds scripts, not a package: each runs as `python bench/<name>.py` (Python puts bench/ on the
path) and imports this file as `common`; the tests that load a script by path put bench/ on the path first.

- `write_section(name, body)`: one section per script in RESULTS.md between `<!-- bench/<name>:begin -->`
  and `<!-- bench/<name>:end -->` (one marker convention), replaced in place or appended.
- `load_average()` / `machine()`: the load probe every table reports (the machine is shared: a number
  taken under load says so).
- `sync`, `timed`, `median_time`, `interleaved_medians`: wall-clock timing (a CUDA device is synchronised
  before the clock is read).
- `naive_chunkwise`: the chunk-wise rollout recomputing the clean prefix every step, the reference the
  KV-cached rollout is timed against (same math and noise draws as `rfvideo.sampling.sample_chunkwise`).

Legend: `b` batch, `c` latent channels, `f` latent frames, `h w` latent size, `K` frames per chunk.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "RESULTS",
    "interleaved_medians",
    "load_average",
    "machine",
    "markers",
    "median_time",
    "naive_chunkwise",
    "sync",
    "timed",
    "write_section",
]

RESULTS = Path(__file__).with_name("RESULTS.md")


# ------------------------------------------------------------------ RESULTS.md
def markers(name: str) -> tuple[str, str]:
    """The begin / end comments of section `name` (the script's file name, e.g. "cache.py")."""
    return f"<!-- bench/{name}:begin -->", f"<!-- bench/{name}:end -->"


def write_section(name: str, body: str, *, results: Path = RESULTS) -> str:
    """Put `body` between the markers of section `name` in `results`: in place of the section when it
    exists, else appended. Returns the section as written (markers included)."""
    begin, end = markers(name)
    section = f"{begin}\n{body.strip(chr(10))}\n{end}"
    text = results.read_text() if results.exists() else "# Benchmarks\n"
    if begin in text and end in text:
        text = text[: text.index(begin)] + section + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    results.write_text(text)
    return section


# ------------------------------------------------------------------ machine
def load_average() -> str:
    """The 1 / 5 / 15-minute load averages, "1.02 / 0.88 / 0.75"."""
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def machine(threads: int | None = None) -> str:
    """CPU, logical CPUs, torch and its thread count, Python, and the load average now."""
    threads = torch.get_num_threads() if threads is None else threads
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
        f"torch {torch.__version__} ({threads} threads), Python {platform.python_version()}, "
        f"load average {load_average()}"
    )


# ------------------------------------------------------------------ timing
def sync(device: torch.device | str | None = None) -> None:
    """Wait for the device's queued work (CUDA); a no-op on the CPU."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device | str | None = None) -> tuple[float, Any]:
    """(seconds, result) of one call of `fn`."""
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t0, out


def median_time(
    fn: Callable[[], Any], *, repeats: int, device: torch.device | str | None = None, warmup: int = 1
) -> float:
    """Median seconds of `repeats` calls of `fn` after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    return statistics.median(timed(fn, device)[0] for _ in range(repeats))


def interleaved_medians(
    fns: Mapping[str, Callable[[], Any]], repeats: int, warm: bool = True
) -> dict[str, float]:
    """Median seconds per call of each function, timed interleaved (A B C A B C ...) after one warm-up each
    (unless `warm=False`: the caller has run each once already), so a load change on a shared machine hits
    every side alike."""
    for fn in fns.values() if warm else ():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(timed(fn)[0])
    return {name: statistics.median(ts) for name, ts in times.items()}


# ------------------------------------------------------------------ reference rollout
def naive_chunkwise(
    model: Any,
    noise: torch.Tensor,
    ehs: torch.Tensor,
    sched: Any,
    generator: torch.Generator,
    *,
    chunk: int,
    exit_step: int | None = None,
    grad_last: bool = False,
) -> torch.Tensor:
    """The chunk-wise rollout `(b c f h w)` recomputing the clean prefix every step (`block_causal` mask).

    Same math and noise draws as `sample_chunkwise` / the training rollout (tests/test_sampling_chunkwise.py
    checks the equality): chunk i denoises its `chunk` frames through the schedule's steps up to `exit_step`
    (default the last), each step a forward over the clean earlier chunks (timestep 0) plus the noisy one.
    `grad_last`: only the last chunk's last step keeps its graph (the training rollout's gradient).
    """
    from rfvideo.sampling import add_noise

    b, f = noise.shape[0], noise.shape[2]
    sigmas, ts = sched.sigmas.tolist(), sched.timesteps.tolist()
    last = sched.num_steps - 1 if exit_step is None else exit_step
    outs: list[torch.Tensor] = []
    for i in range(f // chunk):
        x = noise[:, :, i * chunk : (i + 1) * chunk]
        for j in range(last + 1):
            with torch.set_grad_enabled(grad_last and i == f // chunk - 1 and j == last):
                prefix = torch.cat([*[o.detach() for o in outs], x], 2)
                t = torch.cat([torch.zeros(b, i * chunk), torch.full((b, chunk), ts[j])], 1)
                x0 = x - sigmas[j] * model(prefix, t, ehs, attention_mode="block_causal")[:, :, -chunk:]
            if j < last:
                x = add_noise(x0.detach(), torch.randn(x0.shape, generator=generator), sigmas[j + 1])
        outs.append(x0)
    return torch.cat(outs, 2)
