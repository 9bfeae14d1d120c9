"""One-line errors and removed hooks (issue 23, items 12 and 14): `--device cuda:7` without that device is
refused by name before any model loads; a `RewardForcingModule` subclass that still defines the removed
`scored_pixel_frames` hook is an error naming its replacement."""

from __future__ import annotations

import pytest
import torch

from rfvideo.cli.devices import resolve_device
from rfvideo.cli.errors import UsageError


def test_missing_cuda_device_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == "cuda:1" and resolve_device("cuda") == "cuda"
    with pytest.raises(UsageError, match=r"cuda:7.*this machine has 2 CUDA device\(s\).*cuda:0..cuda:1"):
        resolve_device("cuda:7")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(UsageError, match="cuda:0.*no CUDA device"):
        resolve_device("cuda:0")
    assert resolve_device("auto") == "cpu" and resolve_device("cpu") == "cpu"
    with pytest.raises(UsageError, match=r"--device.*'banana' is not a torch device"):
        resolve_device("banana")


def test_vbench_with_a_missing_device_is_one_line(tmp_path, capsys, monkeypatch) -> None:
    from rfvideo.cli import main

    monkeypatch.delenv("RFVIDEO_TRACEBACK", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    (tmp_path / "videos").mkdir()
    code = main(["vbench", "--videos", str(tmp_path / "videos"), "--device", "cuda:7"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "cuda:7" in err, err


def test_removed_hook_in_a_subclass_names_its_replacement() -> None:
    from rfvideo.modules import RewardForcingModule

    with pytest.raises(TypeError, match=r"Mine\.scored_pixel_frames .* no longer calls; override frame_plan"):

        class Mine(RewardForcingModule):
            def scored_pixel_frames(self, num_pixel_frames, generator):
                return [0]

    class Fine(RewardForcingModule):  # the replacement hook is accepted
        def frame_plan(self, num_pixel_frames, batch_idx):
            return super().frame_plan(num_pixel_frames, batch_idx)

    assert Fine.frame_plan is not RewardForcingModule.frame_plan
