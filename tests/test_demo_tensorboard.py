"""The demo's TensorBoard record: held-out scalars per stage at the stage's last step, a labelled grid (row
names drawn in the image), one GIF per model and prompt, the results table in the text plugin, and no
`hp_metric` placeholder in the stage trainers' loggers."""

from __future__ import annotations

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rfvideo.demo.evaluate import grid_tensor, labelled_grid
from rfvideo.demo.settings import DemoSettings
from rfvideo.demo.stages import _Progress, _trainer
from rfvideo.demo.tensorboard import log_run, log_table

MODELS = ("stage1", "stage2_last_frame", "ablation_all_frames", "hacking_colour_only")
PROMPTS = ["a red square moving left", "a green square moving right"]


def _videos(g: torch.Generator) -> dict[str, torch.Tensor]:
    return {m: torch.rand(2, 3, 3, 8, 8, generator=g) for m in MODELS}  # (b F 3 H W)


def _events(folder):
    acc = EventAccumulator(str(folder), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_log_run_writes_scalars_per_stage_grid_gifs_and_table(tmp_path):
    g = torch.Generator().manual_seed(0)
    s = DemoSettings.fast()
    rows = {m: {"reward_last": 0.1 * (i + 1), "motion": 0.5 + i} for i, m in enumerate(MODELS)}
    log_run(tmp_path, rows, _videos(g), torch.rand(2, 3, 3, 8, 8, generator=g), PROMPTS, s)
    log_table(tmp_path, "| model | reward |\n| --- | --- |\n| stage 1 | 0.1 |")
    acc = _events(tmp_path / "evaluation")
    scalars = acc.Tags()["scalars"]
    assert "hp_metric" not in scalars
    (ev,) = acc.Scalars("held_out/stage2_last_frame/reward_last")
    assert abs(ev.value - rows["stage2_last_frame"]["reward_last"]) < 1e-6
    assert ev.step == s.ode_steps + s.reward_steps
    assert acc.Scalars("held_out/stage1/motion")[0].step == s.ode_steps
    images = acc.Tags()["images"]
    assert "grid" in images
    for m in (*MODELS, "clips"):
        assert f"samples/{m}/a_red_square_moving_left" in images
    gif = acc.Images(f"samples/{MODELS[0]}/a_red_square_moving_left")[0].encoded_image_string
    assert gif[:6] == b"GIF89a"
    texts = acc.Tags()["tensors"]
    assert "results/text_summary" in texts and "held_out/metrics/text_summary" in texts


def test_labelled_grid_draws_row_names_left_of_the_videos():
    g = torch.Generator().manual_seed(1)
    rows = {
        "stage 1 (ODE init)": torch.rand(2, 3, 3, 8, 8, generator=g),
        "the clips": torch.rand(2, 3, 3, 8, 8, generator=g),
    }
    plain = grid_tensor(rows, [0, 1])
    img = labelled_grid(rows, [0, 1], PROMPTS)
    margin = img.shape[-1] - plain.shape[-1]
    assert margin > 0 and img.shape[-2] > plain.shape[-2]  # room for the names and the prompt titles
    # the frames are pasted unchanged to the right of the margin, below the first title
    top = img.shape[-2] - plain.shape[-2] - (img.shape[-2] - plain.shape[-2]) // 2
    first_row = plain[:, : 8 * 3, :]
    assert torch.allclose(img[:, top : top + 8 * 3, margin:], first_row, atol=1 / 255)
    # the names are drawn: dark pixels in the margin beside each row, none in an unlabelled frame
    assert (img[:, top : top + 8 * 3, :margin] < 0.5).any()
    assert (img[:, top + (8 + 2) * 3 : top + (8 + 2) * 3 + 8 * 3, :margin] < 0.5).any()


def test_stage_trainers_log_no_hp_metric(tmp_path):
    trainer = _trainer(tmp_path, "stage1_ode_init", 1, _Progress("x", 1, False))
    assert trainer.logger._default_hp_metric is False
