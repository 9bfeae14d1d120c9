"""A stable run folder (issue 23, item 16): `rfvideo fit` logs and checkpoints into
`<default_root_dir or --run_dir>/lightning_logs/run`, so `--ckpt_path last` finds the run's last.ckpt and the
resumed TensorBoard curve continues in the same folder; `last` with nothing to resume, and a fresh run into
a folder that already holds a run's checkpoints, are one-line errors."""

from __future__ import annotations

from pathlib import Path

from helpers import tiny_fit_yaml
from rfvideo.cli import main
from rfvideo.cli.lightning import RFVideoCLI


def _config(root: Path) -> Path:
    # tiny_fit_yaml pins logger: false and a checkpoint dirpath; this run uses the defaults instead
    text = tiny_fit_yaml(str(root)).replace("  logger: false\n", "")
    text = text.replace(
        f"init_args: {{dirpath: {root}/ckpt, save_last: true}}", "init_args: {save_last: true}"
    )
    assert "dirpath" not in text and "logger" not in text
    path = root / "run.yaml"
    path.write_text(text)
    return path


def test_last_resumes_in_the_same_folder_and_the_curve_continues(tmp_path: Path) -> None:
    config = _config(tmp_path)
    cli = RFVideoCLI(["fit", "--config", str(config)])
    run = tmp_path / "lightning_logs" / "run"
    assert cli.trainer.log_dir == str(run) and (run / "checkpoints" / "last.ckpt").is_file()
    first_events = sorted(run.glob("events.out.tfevents.*"))
    assert first_events
    cli = RFVideoCLI(["fit", "--config", str(config), "--ckpt_path", "last", "--trainer.max_steps=2"])
    assert cli.trainer.global_step == 2  # resumed: one more step, not two from scratch
    assert sorted(p.name for p in (tmp_path / "lightning_logs").iterdir()) == ["run"]  # no version_1
    assert len(sorted(run.glob("events.out.tfevents.*"))) > len(first_events)  # same folder, curve goes on


def test_run_dir_sets_the_folder(tmp_path: Path) -> None:
    config = _config(tmp_path)
    RFVideoCLI(["fit", "--config", str(config), "--run_dir", str(tmp_path / "exp1")])
    assert (tmp_path / "exp1" / "lightning_logs" / "run" / "checkpoints" / "last.ckpt").is_file()


def test_last_without_a_checkpoint_and_a_reused_folder_are_one_line(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.delenv("RFVIDEO_TRACEBACK", raising=False)
    config = _config(tmp_path)
    assert main(["fit", "--config", str(config), "--ckpt_path", "last"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--ckpt_path last" in err and "no last" in err, err
    assert RFVideoCLI(["fit", "--config", str(config)]).trainer.global_step == 1
    assert main(["fit", "--config", str(config)]) == 2  # would overwrite the first run's checkpoints
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "already holds checkpoints" in err and "--ckpt_path last" in err, (
        err
    )
