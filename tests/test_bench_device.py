"""bench/device.py (the prepared GPU script) runs end to end at its tiny size on the CPU, so a session
that is lent a GPU spends its minutes measuring, not debugging."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "device.py"


def _load():
    spec = importlib.util.spec_from_file_location("bench_device", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_tiny_run_measures_everything_and_fp32_parity_holds(tmp_path):
    out = tmp_path / "device.md"
    rows = _load().main(["--size", "tiny", "--device", "cpu", "--out", str(out)])
    values = {m: v for m, v, _ in rows}
    assert float(values["parity fp32: ours vs diffusers (one chunk, full attention)"]) < 1e-5
    assert float(values["block-causal forward, whole video: flex vs SDPA"]) < 1e-5
    assert any(m.startswith("KV cache after 18 latent frames, window 9") for m in values)
    (step,) = [n for m, _, n in rows if m.startswith("reward-stage step")]
    assert "0 parameter tensors" not in step
    table = out.read_text()
    assert table.count("\n| ") == len(rows) + 2  # header, separator, one line per measurement
