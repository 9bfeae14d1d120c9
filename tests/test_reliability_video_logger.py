"""VideoLogger samples name their prompt (issue 23, item 19): mp4 files `<i>_<slug>_seed<seed>.mp4` with a
prompts.json index, TensorBoard tags `samples/<i>_<slug>` described by the full prompt and seed; a repeated
prompt never overwrites the other sample. Legend: `b` videos, `F` frames, `H W` pixel size."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import torch
from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader
from torch.utils.tensorboard import SummaryWriter

from rfvideo.callbacks import VideoLogger
from rfvideo.callbacks.video_logger import prompt_slug


class _Module:
    def generate(self, prompts, *, seeds, num_latent_frames=None):
        g = torch.Generator().manual_seed(sum(seeds))
        return torch.rand(len(prompts), 5, 3, 8, 8, generator=g)  # (b F 3 H W)


def test_files_and_tags_name_their_prompt(tmp_path: Path) -> None:
    prompts = ["A red square, moving LEFT!", "a blue square moving up", "a red square moving left"]
    cb = VideoLogger(prompts, seeds=[3, 4, 5], every_n_steps=1)
    writer = SummaryWriter(str(tmp_path / "tb"))
    trainer = SimpleNamespace(
        global_step=7, is_global_zero=True, log_dir=str(tmp_path), default_root_dir=str(tmp_path),
        logger=SimpleNamespace(experiment=writer),
    )  # fmt: skip
    cb.log_videos(trainer, _Module())
    writer.flush()
    step = tmp_path / "videos" / "step_0000007"
    names = sorted(p.name for p in step.glob("*.mp4"))
    assert names == [
        "000_a_red_square_moving_left_seed3.mp4",
        "001_a_blue_square_moving_up_seed4.mp4",
        "002_a_red_square_moving_left_seed5.mp4",  # same slug as the first: the index keeps both
    ]
    index = json.loads((step / "prompts.json").read_text())
    assert index["000_a_red_square_moving_left_seed3.mp4"] == {"prompt": prompts[0], "seed": 3}
    described = {}
    for path in (tmp_path / "tb").glob("events.out.tfevents.*"):
        for event in LegacyEventFileLoader(str(path)).Load():
            for v in event.summary.value:
                if v.HasField("image"):
                    described[v.tag] = v.metadata.summary_description
    assert described["samples/1_a_blue_square_moving_up"] == "a blue square moving up (seed 4)"
    assert described["samples/0_a_red_square_moving_left"] == "A red square, moving LEFT! (seed 3)"
    assert prompt_slug("??") == "prompt" and len(prompt_slug("x" * 300)) == 48
