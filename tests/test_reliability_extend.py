"""Extending a finished run (issue 23, item 17): `fit --ckpt_path <last.ckpt of a run that reached
max_steps> --trainer.max_steps=<more>` ends with the same weights as one uninterrupted run to the larger
max_steps, whether the first run stopped mid-epoch or at an epoch boundary."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers import tiny_fit_yaml
from rfvideo.cli.lightning import RFVideoCLI

CHECKPOINT = "every_n_train_steps: 1, save_last: true"


def _run(root: Path, max_steps: int, ckpt: Path | None = None) -> dict[str, torch.Tensor]:
    config = root / "run.yaml"
    if not config.exists():
        root.mkdir(parents=True, exist_ok=True)
        config.write_text(tiny_fit_yaml(str(root), checkpoint=CHECKPOINT))  # 4 batches an epoch
    args = ["fit", "--config", str(config), f"--trainer.max_steps={max_steps}"]
    if ckpt is not None:
        args += ["--ckpt_path", str(ckpt)]
    cli = RFVideoCLI(args)
    assert cli.trainer.global_step == max_steps
    return {k: v.detach().clone() for k, v in cli.model.generator.state_dict().items()}


@pytest.mark.slow  # five short fits (about 3 min on a loaded 2-core machine)
@pytest.mark.parametrize("first", [2, 4], ids=["mid-epoch", "epoch-boundary"])
def test_extending_a_finished_run_equals_an_uninterrupted_one(tmp_path: Path, first: int) -> None:
    total = first + 3
    want = _run(tmp_path / "straight", total)
    _run(tmp_path / "split", first)
    got = _run(tmp_path / "split", total, ckpt=tmp_path / "split" / "ckpt" / "last.ckpt")
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=0, msg=k)
