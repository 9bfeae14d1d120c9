"""Extending a finished run (issue 23, item 17): `fit --ckpt_path <last.ckpt of a run that reached
max_steps> --trainer.max_steps=<more>` ends with the same weights as one uninterrupted run to the larger
max_steps, whether the first run stopped mid-epoch or at an epoch boundary, and whether its `last.ckpt`
was written inside the epoch (a checkpoint every step) or by the epoch-end hooks Lightning runs when
max_steps ends a run (the shipped configs' form: a checkpoint every 100+ steps, `save_last`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers import tiny_fit_yaml
from rfvideo.cli.lightning import RFVideoCLI
from rfvideo.modules.checkpoint_state import mend_end_of_run_loops
from rfvideo.utils.checkpoint import load_checkpoint

CHECKPOINT = "every_n_train_steps: 1, save_last: true"
END_OF_RUN = "every_n_train_steps: 100, save_last: true"  # last.ckpt comes from the epoch-end hooks


def _run(
    root: Path, max_steps: int, ckpt: Path | None = None, checkpoint: str = CHECKPOINT
) -> dict[str, torch.Tensor]:
    config = root / "run.yaml"
    if not config.exists():
        root.mkdir(parents=True, exist_ok=True)
        config.write_text(tiny_fit_yaml(str(root), checkpoint=checkpoint))  # 4 batches an epoch
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


def test_extending_from_an_end_of_run_checkpoint_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    """The form the shipped configs write: max_steps=2 stops the 4-batch epoch half way; Lightning's epoch-end
    hooks write last.ckpt with the epoch marked finished. Resumed to 3 steps it must take batch 3 of the same
    epoch (an uninterrupted run's step), not batch 1 of a reshuffled new epoch. Failed before the fix."""
    want = _run(tmp_path / "straight", 3, checkpoint=END_OF_RUN)
    _run(tmp_path / "split", 2, checkpoint=END_OF_RUN)
    last = tmp_path / "split" / "ckpt" / "last.ckpt"
    assert mend_end_of_run_loops(dict(load_checkpoint(last))), "last.ckpt was not the end-of-run form"
    got = _run(tmp_path / "split", 3, ckpt=last)
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=0, msg=k)


def test_mending_leaves_in_epoch_and_epoch_end_checkpoints_alone() -> None:
    """Lightning's own forms (a checkpoint inside the epoch; one after a real last batch) are not touched."""

    def progress(ready: int, started: int, processed: int, completed: int) -> dict[str, int]:
        return {"ready": ready, "started": started, "processed": processed, "completed": completed}

    def ckpt(epochs: dict[str, int], batches: dict[str, int], last: bool) -> dict:
        fit = {
            "epoch_progress": {"total": dict(epochs), "current": dict(epochs)},
            "epoch_loop.batch_progress": {
                "total": dict(batches),
                "current": dict(batches),
                "is_last_batch": last,
            },
            "epoch_loop.state_dict": {"_batches_that_stepped": 2},
        }
        return {"epoch": epochs["completed"], "loops": {"fit_loop": fit}}

    in_epoch = ckpt(progress(1, 1, 0, 0), progress(2, 2, 2, 1), last=False)
    epoch_end = ckpt(progress(1, 1, 1, 1), progress(4, 4, 4, 4), last=True)
    for form in (in_epoch, epoch_end, {"state_dict": {}}):
        before = repr(form)
        assert not mend_end_of_run_loops(form)
        assert repr(form) == before
    end_of_run = ckpt(progress(1, 1, 1, 1), progress(2, 2, 2, 2), last=False)
    assert mend_end_of_run_loops(end_of_run)
    want = ckpt(progress(1, 1, 0, 0), progress(2, 2, 2, 1), last=False)
    want["loops"]["fit_loop"]["epoch_loop.state_dict"]["_batches_that_stepped"] = 1
    assert end_of_run == want  # exactly what Lightning writes inside the epoch after that batch
