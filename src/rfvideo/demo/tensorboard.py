"""The demo's TensorBoard record of one run: the labelled grid, one animated sample per model and held-out
prompt, the held-out evaluation scalars of each stage, and the results table in the text plugin.

Written with `torch.utils.tensorboard.SummaryWriter` (Lightning's loggers write the per-step training
curves beside it). No `hp_metric`: the demo logs no hyperparameter metric, so none is written as -1.

Legend: `b` held-out prompts, `F` pixel frames, `H W` pixel size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

__all__ = ["stage_steps", "log_run", "log_table"]


def stage_steps(settings: Any) -> dict[str, int]:
    """The optimizer step at which each model's held-out scalars are logged: stage 1 at its last step,
    the stage-2 runs after their steps on top of it (so the scalars line up with the training curves)."""
    s1 = settings.ode_steps
    s2 = s1 + settings.reward_steps
    return {"stage1": s1, "stage2_last_frame": s2, "ablation_all_frames": s2, "hacking_colour_only": s2}


def log_run(
    folder: Path,
    rows: dict[str, dict[str, float]],
    videos: dict[str, torch.Tensor],
    clips: torch.Tensor,
    prompts: list[str],
    settings: Any,
    *,
    grid_prompts: tuple[int, ...] = (0, 1),
) -> None:
    """Write one run's evaluation: `held_out/<model>/<metric>` scalars, `grid` (labelled image), and
    `samples/<model>/<prompt>` GIFs of `videos[model] (b F 3 H W)` and of the clips."""
    from torch.utils.tensorboard import SummaryWriter

    from rfvideo.callbacks.video_logger import add_animated_summary, prompt_slug
    from rfvideo.demo.evaluate import labelled_grid
    from rfvideo.demo.report import METRIC_NAMES, ROWS

    steps = stage_steps(settings)
    writer = SummaryWriter(str(folder / "evaluation"))
    try:
        for model, metrics in rows.items():
            for m, v in metrics.items():
                writer.add_scalar(f"held_out/{model}/{m}", v, steps.get(model, 0))
        grid_rows = {ROWS[k]: v for k, v in videos.items()} | {"the clips": clips}
        img = labelled_grid(grid_rows, list(grid_prompts), prompts)
        writer.add_image("grid", img, 0)
        for model, video in list(videos.items()) + [("clips", clips)]:
            for p in grid_prompts:
                add_animated_summary(
                    writer, f"samples/{model}/{prompt_slug(prompts[p])}", video[p], 0, fps=4.0,
                    description=f"{ROWS.get(model, 'the clips')}: {prompts[p]!r} (held out)",
                )  # fmt: skip
        legend = "\n".join(f"- `{k}`: {v}" for k, v in METRIC_NAMES.items())
        writer.add_text("held_out/metrics", legend, 0)
    finally:
        writer.close()


def log_table(folder: Path, markdown: str) -> None:
    """The results table (Markdown) in TensorBoard's text plugin, tag `results`."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(folder / "evaluation"))
    try:
        writer.add_text("results", markdown, 0)
    finally:
        writer.close()
