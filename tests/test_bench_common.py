"""bench/common.py: one RESULTS.md section writer (replaces its own section, keeps the others, appends a new
one) and the naive prefix-recompute rollout every benchmark compares against equals `sample_chunkwise`."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

from helpers import randomize_, tiny_wan_config

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _common():
    spec = importlib.util.spec_from_file_location("bench_common", BENCH / "common.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_write_section_replaces_its_own_section_and_appends_a_new_one(tmp_path: Path) -> None:
    common = _common()
    results = tmp_path / "RESULTS.md"
    results.write_text(
        "# Benchmarks\n\n<!-- bench/a.py:begin -->\nold a\n<!-- bench/a.py:end -->\n\n"
        "<!-- bench/b.py:begin -->\nkeep b\n<!-- bench/b.py:end -->\n"
    )
    common.write_section("a.py", "new a\n", results=results)
    common.write_section("c.py", "new c", results=results)
    assert results.read_text() == (
        "# Benchmarks\n\n<!-- bench/a.py:begin -->\nnew a\n<!-- bench/a.py:end -->\n\n"
        "<!-- bench/b.py:begin -->\nkeep b\n<!-- bench/b.py:end -->\n\n"
        "<!-- bench/c.py:begin -->\nnew c\n<!-- bench/c.py:end -->\n"
    )
    assert common.markers("serve.py:hostile") == (
        "<!-- bench/serve.py:hostile:begin -->",
        "<!-- bench/serve.py:hostile:end -->",
    )


def test_naive_chunkwise_equals_the_cached_sampler() -> None:
    from rfvideo.models import CausalWanTransformer
    from rfvideo.sampling import FlowMatchSchedule, sample_chunkwise

    common = _common()
    k = 2
    model = CausalWanTransformer(**tiny_wan_config(), num_frames_per_chunk=k).eval()
    randomize_(model, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    noise, text = torch.randn(1, 4, 3 * k, 4, 4, generator=g), torch.randn(1, 5, 24, generator=g)
    sched = FlowMatchSchedule()
    gen = lambda: torch.Generator().manual_seed(2)  # noqa: E731
    with torch.no_grad():
        cached = sample_chunkwise(model, noise, text, schedule=sched, generator=gen())
        naive = common.naive_chunkwise(model, noise, text, sched, gen(), chunk=k)
    torch.testing.assert_close(naive, cached, atol=1e-5, rtol=1e-5)
