"""bench/device.py (the prepared GPU script) runs end to end at its tiny size on the CPU, so a session
that is lent a GPU spends its minutes measuring, not debugging."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "device.py"


def _load():
    if str(SCRIPT.parent) not in sys.path:  # the scripts import their shared helpers as `common`, as when run
        sys.path.insert(0, str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("bench_device", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_tiny_run_measures_everything_and_fp32_parity_holds(tmp_path):
    out = tmp_path / "device.md"
    # the "eager" compile backend runs the compiled row's code path without inductor's CPU build time
    rows = _load().main(
        ["--size", "tiny", "--device", "cpu", "--out", str(out), "--compile-backend", "eager"]
    )
    values = {m: v for m, v, _ in rows}
    assert float(values["parity fp32: ours vs diffusers (one chunk, full attention)"]) < 1e-5
    assert float(values["block-causal forward, whole video: flex vs SDPA"]) < 1e-5
    assert any(m.startswith("KV cache after 18 latent frames, window 9") for m in values)
    (step,) = [n for m, _, n in rows if m.startswith("reward-stage step")]
    assert "0 parameter tensors" not in step
    # streaming: the three defined numbers, the decode-after comparison, compiled vs eager
    for name in (
        "model-only FPS (streaming)",
        "end-to-end FPS, streamed decode",
        "time to first pixel frame, streaming",
        "time to first pixel frame, decode after the video",
    ):
        assert name in values and float(values[name].split()[0]) > 0, name
    (compiled,) = [(v, n) for m, v, n in rows if m.startswith("compiled")]
    if compiled[0] != "skipped":  # the compile API is engineer A's; absent it is skipped cleanly
        assert compiled[0].endswith("x"), compiled
        assert float(compiled[1].rsplit(" ", 1)[-1]) < 1e-5, compiled  # equal to eager
    table = out.read_text()
    assert table.count("\n| ") == len(rows) + 2  # header, separator, one line per measurement
