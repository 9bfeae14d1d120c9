"""`rfvideo fit --ckpt_path last.ckpt --model.init_args.grad_clip=0.123` trains with 0.123 and warns with
the changed key (LightningCLI alone would parse the checkpoint's hyperparameters over the command line)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers import tiny_fit_yaml
from rfvideo.cli.lightning import RFVideoCLI
from rfvideo.modules.checkpoint_state import HPARAMS_KEY, changed_hparams

CHECKPOINT = "every_n_train_steps: 1, save_last: true"


def test_resume_applies_changed_settings_and_lists_them(tmp_path: Path):
    config = tmp_path / "run.yaml"
    config.write_text(tiny_fit_yaml(str(tmp_path), checkpoint=CHECKPOINT, model_extra="    grad_clip: 1.0\n"))
    RFVideoCLI(["fit", "--config", str(config)])
    last = tmp_path / "ckpt" / "last.ckpt"
    ckpt = torch.load(last, weights_only=True)
    assert "hyper_parameters" not in ckpt and ckpt[HPARAMS_KEY]["grad_clip"] == 1.0
    args = ["fit", "--config", str(config), "--ckpt_path", str(last), "--trainer.max_steps=2"]
    with pytest.warns(UserWarning, match=r"the given values apply: grad_clip: 1\.0 -> 0\.123$"):
        cli = RFVideoCLI([*args, "--model.init_args.grad_clip=0.123"])
    assert cli.model.grad_clip == 0.123
    assert cli.trainer.global_step == 2  # it resumed (one more step), with the new value


def test_changed_hparams_lists_every_difference():
    stored = {"_instantiator": "x", "grad_clip": 1.0, "latent_size": [4, 4], "seed": 0, "old": 1}
    given = {"_instantiator": "y", "grad_clip": 1.0, "latent_size": (4, 4), "seed": 7, "new": 2}
    assert changed_hparams(stored, given) == [("new", None, 2), ("old", 1, None), ("seed", 0, 7)]
