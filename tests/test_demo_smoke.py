"""The offline demo runs end to end (`--fast`: a few steps per stage) and writes table, samples, logs."""

from __future__ import annotations

import pytest

from rfvideo.demo import main


@pytest.mark.slow
def test_demo_fast_writes_table_samples_and_tensorboard(tmp_path, capsys):
    assert main(["--fast", "--seeds", "2", "--out", str(tmp_path)]) == 0
    table = (tmp_path / "results.md").read_text()
    rows = ("stage 1 (ODE init)", "stage 2 (last frame)", "ablation: all frames", "colour-only", "motion")
    for row in rows:
        assert row in table
    assert len(list((tmp_path / "samples").rglob("*.mp4"))) == 12  # 4 models x 3 prompts
    assert list((tmp_path / "tensorboard").rglob("events.out.tfevents.*"))
    assert "total time" in capsys.readouterr().out


def test_demo_rejects_bad_seed_count(tmp_path):
    with pytest.raises(ValueError, match="--seeds"):
        main(["--seeds", "0", "--out", str(tmp_path)])
