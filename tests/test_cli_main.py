"""`rfvideo` CLI: fit on the demo config (fast_dev_run), a misspelt YAML key gives one clear error,
`rfvideo generate` writes playable mp4s."""

from __future__ import annotations

from pathlib import Path

import av
import pytest

from rfvideo.cli import main

CONFIG = str(Path(__file__).resolve().parents[1] / "experiments" / "demo" / "reward_forcing.yaml")


def test_fit_fast_dev_run_on_demo_config(tmp_path):
    assert main(["fit", "--config", CONFIG, "--trainer.fast_dev_run=1",
                 f"--trainer.default_root_dir={tmp_path}"]) == 0  # fmt: skip


def test_bad_yaml_key_gives_one_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(Path(CONFIG).read_text().replace("ema_decay:", "ema_decy:"))
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(bad), "--trainer.fast_dev_run=1"])
    err = capsys.readouterr().err
    assert "ema_decy" in err


def test_generate_writes_mp4(tmp_path):
    out = tmp_path / "videos"
    assert (
        main(["generate", "--config", CONFIG, "--prompt", "a red square moving left", "--out", str(out)]) == 0
    )
    files = sorted(out.glob("*.mp4"))
    assert len(files) == 1
    with av.open(str(files[0])) as c:
        frames = list(c.decode(video=0))
    assert len(frames) == 5  # 2 latent frames -> 1 + 4 pixel frames
