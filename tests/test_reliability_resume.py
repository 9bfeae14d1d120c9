"""Resume and configuration errors (issue 23, items 9, 13, 18): a changed optimizer or scheduler setting on
`fit --ckpt_path` is applied and named in a warning (the restored optimizer state no longer keeps the old
one); `--optimizer` is one line naming the module's `optimizer` init arg; a config typo is one line naming
the key and its nearest valid spelling; `--trainer.gradient_clip_val` points to
`model.init_args.grad_clip`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers import tiny_fit_yaml
from rfvideo.cli import main
from rfvideo.cli.lightning import RFVideoCLI

CHECKPOINT = "every_n_train_steps: 1, save_last: true"
ADAMW = """    optimizer:
      class_path: torch.optim.AdamW
      init_args: {lr: 0.0001, weight_decay: 0.01}
"""
SCHEDULER = """    scheduler:
      class_path: torch.optim.lr_scheduler.StepLR
      init_args: {step_size: 100, gamma: 0.5}
"""


def _first_run(tmp_path: Path, extra: str) -> tuple[Path, Path]:
    config = tmp_path / "run.yaml"
    config.write_text(tiny_fit_yaml(str(tmp_path), checkpoint=CHECKPOINT, model_extra=extra))
    RFVideoCLI(["fit", "--config", str(config)])
    return config, tmp_path / "ckpt" / "last.ckpt"


def test_resume_applies_changed_optimizer_and_scheduler_settings(tmp_path: Path) -> None:
    config, last = _first_run(tmp_path, ADAMW + SCHEDULER)
    stored = torch.load(last, weights_only=True)["optimizer_states"][0]["param_groups"][0]
    assert stored["initial_lr"] == 1e-4 and stored["weight_decay"] == 0.01
    args = ["fit", "--config", str(config), "--ckpt_path", str(last), "--trainer.max_steps=2"]
    args += ["--model.init_args.optimizer.init_args.lr=0.002"]
    args += ["--model.init_args.optimizer.init_args.weight_decay=0.2"]
    args += ["--model.init_args.scheduler.init_args.gamma=0.1"]
    with pytest.warns(UserWarning, match="optimizer settings that differ") as caught:
        cli = RFVideoCLI(args)
    text = next(str(w.message) for w in caught if "optimizer settings" in str(w.message))
    for change in ("initial_lr: 0.0001 -> 0.002", "weight_decay: 0.01 -> 0.2", "scheduler gamma: 0.5 -> 0.1"):
        assert change in text, text
    assert cli.trainer.global_step == 2  # resumed: one more step
    group = cli.trainer.optimizers[0].param_groups[0]
    assert group["lr"] == pytest.approx(0.002) and group["weight_decay"] == 0.2  # step 2 < step_size
    sched = cli.trainer.lr_scheduler_configs[0].scheduler
    assert sched.gamma == 0.1 and sched.base_lrs == [0.002]
    # the Adam moments were restored (not reset): only the settings changed
    assert all(int(st["step"]) == 2 for st in cli.trainer.optimizers[0].state.values())


def test_reapply_without_a_scheduler_restores_the_configured_lr() -> None:
    from rfvideo.modules.optimizer_resume import capture, reapply

    g = torch.Generator().manual_seed(0)
    w = torch.nn.Parameter(torch.randn(4, generator=g))
    old = torch.optim.AdamW([w], lr=1e-4, betas=(0.0, 0.999))
    w.grad = torch.randn(4, generator=g)
    old.step()
    new = torch.optim.AdamW([w], lr=0.05, betas=(0.9, 0.999))
    configured = capture(new)
    new.load_state_dict(old.state_dict())  # what Lightning's restore does
    assert new.param_groups[0]["lr"] == 1e-4
    changes = reapply(configured, new)
    assert changes == [("lr", 1e-4, 0.05), ("betas", [0.0, 0.999], [0.9, 0.999])]
    assert new.param_groups[0]["lr"] == 0.05 and tuple(new.param_groups[0]["betas"]) == (0.9, 0.999)
    assert int(new.state[w]["step"]) == 1  # moments kept


def test_optimizer_flag_is_refused_in_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("RFVIDEO_TRACEBACK", raising=False)
    config = tmp_path / "run.yaml"
    config.write_text(tiny_fit_yaml(str(tmp_path)))
    code = main(["fit", "--config", str(config), "--optimizer", "torch.optim.SGD"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "--optimizer" in err and "model.init_args.optimizer" in err
    assert not (tmp_path / "ckpt").exists()  # nothing trained


@pytest.mark.parametrize(
    ("typo", "names"),
    [
        ("--model.init_args.grad_clipp=1.0", ["model.init_args.grad_clipp", "'model.init_args.grad_clip'"]),
        ("--trainer.max_stepz=3", ["--trainer.max_stepz", "'--trainer.max_steps'"]),
    ],
)
def test_config_typo_is_one_line_with_the_nearest_key(
    tmp_path: Path, capsys, monkeypatch, typo, names
) -> None:
    monkeypatch.delenv("RFVIDEO_TRACEBACK", raising=False)
    config = tmp_path / "run.yaml"
    config.write_text(tiny_fit_yaml(str(tmp_path)))
    code = main(["fit", "--config", str(config), typo])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    for name in names:
        assert name in err, err


def test_typo_inside_the_yaml_is_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("RFVIDEO_TRACEBACK", raising=False)
    config = tmp_path / "run.yaml"
    config.write_text(tiny_fit_yaml(str(tmp_path), model_extra="    ema_decayy: 0.9\n"))
    code = main(["fit", "--config", str(config)])
    err = capsys.readouterr().err.strip()
    assert (
        code == 2
        and len(err.splitlines()) == 1
        and "ema_decayy" in err
        and "'model.init_args.ema_decay'" in err
    ), err


def test_gradient_clip_val_points_to_grad_clip(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("RFVIDEO_TRACEBACK", raising=False)
    config = tmp_path / "run.yaml"
    config.write_text(tiny_fit_yaml(str(tmp_path)))
    code = main(["fit", "--config", str(config), "--trainer.gradient_clip_val=1.0"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "model.init_args.grad_clip" in err
