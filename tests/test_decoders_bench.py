"""The decoder benchmarks run at a tiny size (their numbers are for a quiet machine, not for tests), and
bench/cache.py's FLOP count includes attention, which FlopCounterMode counts as zero on the CPU."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _load(name: str):
    if str(BENCH) not in sys.path:  # the scripts import `common` as when run directly
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_decoders_bench_quick_runs_every_quantity(capsys):
    rows = _load("decoders").main(["--quick", "--decoders", "wan,tae"])
    assert [r["decoder"] for r in rows] == ["wan", "tae"]
    for r in rows:
        for key in ("decode_chunk", "first", "e2e_fps", "model_fps", "e2e_fps_overlap", "first_overlap"):
            assert r[key] > 0, key
        assert 0 < r["decode_share"] < 1
    assert rows[0]["vs_wan_e2e"] == 1.0
    out = capsys.readouterr().out
    assert "load average" in out and "| quick | tae (widths=(16, 8, 8, 8)) |" in out


def test_cache_bench_counts_attention_analytically():
    cache = _load("cache")
    g = torch.Generator().manual_seed(0)
    b, h, q_len, kv_len, d = 1, 4, 24, 40, 16
    q = torch.randn(b, h, q_len, d, generator=g)
    k, v = (torch.randn(b, h, kv_len, d, generator=g) for _ in range(2))
    mask = torch.ones(q_len, kv_len, dtype=torch.bool).tril(kv_len - q_len)
    expected = 4 * b * h * q_len * kv_len * d
    assert cache.flops(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask)) == expected
    # next to a matmul: both counted, once each
    assert cache.flops(
        lambda: F.scaled_dot_product_attention(q, k, v) + q @ q.new_ones(d, d)
    ) == expected + 2 * (b * h * q_len * d * d)
