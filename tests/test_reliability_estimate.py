"""`rfvideo estimate-memory` (issue 23, items 15 and 19): nonsense configs are refused in one line by the
same checks as `fit` (non-integer or out-of-range frames, RoPE overflow, unknown precision, LoRA rank 0,
bad sizes), before any fake step; `--preset` alone uses the published experiment config; a status line
says what the long wait is; `--help` shows the defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rfvideo.cli import main
from test_memory_estimate import _write_config


@pytest.mark.parametrize(
    ("model", "trainer", "data", "message"),
    [
        ({"num_latent_frames": 2.7}, {}, {}, "num_latent_frames must be a positive integer, got 2.7"),
        ({"num_latent_frames": 1_000_002}, {}, {}, "RoPE positions"),
        ({"num_latent_frames": 7}, {}, {}, "not a multiple of the generator's num_frames_per_chunk=3"),
        ({}, {"precision": "banana"}, {}, "trainer.precision 'banana'"),
        ({"generator_lora": {"rank": 0}}, {}, {}, "generator_lora.rank must be a positive integer, got 0"),
        ({"latent_size": [8]}, {}, {}, "latent_size must be [h, w]"),
        ({"latent_size": ["a", 8]}, {}, {}, "latent_size must be [h, w]"),
        ({"ema_decay": 1.5}, {}, {}, "ema_decay must lie in [0, 1)"),
        ({}, {"devices": 0}, {}, "trainer.devices"),
        ({}, {}, {"batch_size": "two"}, "data.init_args.batch_size must be a positive integer"),
        ({"optimizer": {"init_args": {"lr": -1}}}, {}, {}, "lr must be a finite number > 0"),
    ],
)
def test_nonsense_configs_are_one_line_before_estimating(
    tmp_path: Path, capsys, monkeypatch, model: dict, trainer: dict, data: dict, message: str
) -> None:
    import yaml

    import rfvideo.memory as memory

    monkeypatch.delenv("RFVIDEO_TRACEBACK", raising=False)
    monkeypatch.setattr(memory, "estimate_table", lambda *a, **k: pytest.fail("estimated a nonsense config"))
    path = _write_config(tmp_path)
    cfg = yaml.safe_load(path.read_text())
    cfg["model"]["init_args"].update(model)
    cfg["trainer"].update(trainer)
    cfg["data"]["init_args"].update(data)
    path.write_text(yaml.safe_dump(cfg))
    code = main(["estimate-memory", "--config", str(path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err


def test_preset_alone_uses_the_published_config_and_says_it_is_working(capsys, monkeypatch) -> None:
    import rfvideo.memory as memory

    seen: dict[str, Any] = {}

    def fake_table(paths, **kw):
        seen["paths"], seen["preset"] = [str(p) for p in paths], kw.get("preset")
        return []

    monkeypatch.setattr(memory, "estimate_table", fake_table)
    monkeypatch.setattr(memory, "format_table", lambda table: "(table)")
    assert main(["estimate-memory", "--preset", "wan2.1-t2v-1.3b", "--table"]) == 0
    assert seen["preset"] == "wan2.1-t2v-1.3b"
    assert [Path(p).as_posix().split("experiments/")[-1] for p in seen["paths"]] == [
        "wan2.1-1.3b/reward_forcing.yaml"
    ]
    captured = capsys.readouterr()
    assert "(table)" in captured.out and "estimating" in captured.err


def test_help_shows_defaults(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["vbench", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "(default: auto)" in out and "(default: fp32)" in out
