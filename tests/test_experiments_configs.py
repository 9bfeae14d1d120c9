"""Every shipped experiments/**/*.yaml parses against the real signatures (a misspelt key fails), and the
runnable demo configs instantiate (model and data built)."""

from __future__ import annotations

from pathlib import Path

import pytest
from lightning.pytorch.cli import LightningCLI

from rfvideo.cli import build_cli

ROOT = Path(__file__).resolve().parents[1] / "experiments"
DEMO = sorted(ROOT.glob("demo/*.yaml"))
REAL = sorted(ROOT.glob("wan2.1-1.3b/*.yaml"))
STRATEGIES = sorted(ROOT.glob("strategies/*.yaml"))


class _ParseOnlyCLI(LightningCLI):
    def instantiate_classes(self) -> None:  # weights paths are placeholders: parse and type-check only
        pass


def _parse(*configs: Path) -> _ParseOnlyCLI:
    args = [a for c in configs for a in ("--config", str(c))]
    return _ParseOnlyCLI(subclass_mode_model=True, subclass_mode_data=True, args=args, run=False)


def test_every_yaml_is_covered():
    assert len(DEMO) >= 1 and len(REAL) == 2 and len(STRATEGIES) == 2
    assert sorted(ROOT.rglob("*.yaml")) == sorted(DEMO + REAL + STRATEGIES)


@pytest.mark.parametrize("path", DEMO, ids=lambda p: p.name)
def test_demo_config_instantiates(path):
    cli = build_cli(["--config", str(path)], run=False)
    assert hasattr(cli.model, "generate")
    assert cli.datamodule is not None


@pytest.mark.parametrize("path", REAL, ids=lambda p: p.name)
@pytest.mark.parametrize("strategy", STRATEGIES, ids=lambda p: p.name)
def test_real_configs_parse_with_each_strategy(path, strategy):
    cli = _parse(path, strategy)
    init = cli.config["model"]["init_args"]
    assert init["optimizer"]["init_args"]["lr"] == 2.0e-6
    assert tuple(init["optimizer"]["init_args"]["betas"]) == (0.0, 0.999)
    assert init["ema_decay"] == 0.99
    assert path.read_text().startswith("# ")
    assert "Command:" in path.read_text()
