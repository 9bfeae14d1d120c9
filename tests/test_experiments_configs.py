"""Every shipped experiments/**/*.yaml parses and instantiates (model and data built) with LightningCLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from rfvideo.cli import build_cli

ROOT = Path(__file__).resolve().parents[1] / "experiments"
RUNNABLE = sorted(p for p in ROOT.glob("demo/*.yaml"))


@pytest.mark.parametrize("path", RUNNABLE, ids=lambda p: str(p.relative_to(ROOT)))
def test_demo_config_instantiates(path):
    cli = build_cli(["--config", str(path)], run=False)
    assert hasattr(cli.model, "generate")
    assert cli.datamodule is not None
