"""Log sample videos of fixed prompts and seeds during training: mp4 files, one animated TensorBoard summary
per video (a GIF image summary: it plays in TensorBoard's image tab and needs no moviepy) and an image of
the first, middle and last frames. Calls only `pl_module.generate` (docs/interfaces.md), on every rank, and
writes on rank zero.

Every sample names its prompt: files `videos/step_<step>/<i>_<prompt slug>_seed<seed>.mp4` (with a
`prompts.json` listing each file's prompt and seed), TensorBoard tags `samples/<i>_<prompt slug>` whose
description holds the full prompt and seed.

Legend: `b` videos, `F` pixel frames, `H W` pixel size.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import lightning as L
import torch
from einops import rearrange

__all__ = ["VideoLogger", "add_animated_summary", "prompt_slug"]

_SLUG_CHARS = 48


def prompt_slug(prompt: str, limit: int = _SLUG_CHARS) -> str:
    """A file- and tag-safe short form of a prompt: lower case, [a-z0-9] runs joined by "_", `limit` chars."""
    slug = "_".join(re.findall(r"[a-z0-9]+", prompt.lower()))[:limit].strip("_")
    return slug or "prompt"


def add_animated_summary(
    writer: Any, tag: str, video: torch.Tensor, step: int, *, fps: float, description: str = ""
) -> None:
    """Write `video (F 3 H W)` in [0, 1] as an animated GIF image summary to a TensorBoard `SummaryWriter`
    (what `add_video` writes, encoded with Pillow instead of moviepy); `description` is shown with it."""
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata

    from rfvideo.callbacks.vbench import gif_bytes

    file_writer = writer._get_file_writer()
    if file_writer is None:  # e.g. the stand-in logger of fast_dev_run
        return
    _, _, h, w = video.shape
    image = Summary.Image(height=h, width=w, colorspace=3, encoded_image_string=gif_bytes(video, fps))
    meta = SummaryMetadata(summary_description=description) if description else None
    value = (
        Summary.Value(tag=tag, image=image, metadata=meta) if meta else Summary.Value(tag=tag, image=image)
    )
    file_writer.add_summary(Summary(value=[value]), step)


class VideoLogger(L.Callback):
    """Every `every_n_steps` optimizer steps (and at the end of fit), generate and log videos.

    Args:
        prompts: fixed prompts.
        seeds: one seed per prompt (default 0, 1, ...).
        every_n_steps: logging period in optimizer steps.
        num_latent_frames: video length (default: the module's).
        fps: frame rate of the mp4 files and the animated summaries.
    """

    def __init__(
        self,
        prompts: list[str],
        *,
        seeds: list[int] | None = None,
        every_n_steps: int = 100,
        num_latent_frames: int | None = None,
        fps: float = 16.0,
    ) -> None:
        if not prompts:
            raise ValueError("prompts must not be empty")
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.prompts = list(prompts)
        self.seeds = list(seeds) if seeds is not None else list(range(len(prompts)))
        if len(self.seeds) != len(self.prompts):
            raise ValueError(f"{len(self.prompts)} prompts but {len(self.seeds)} seeds")
        self.every_n_steps = every_n_steps
        self.num_latent_frames = num_latent_frames
        self.fps = fps
        self._last_logged = -1
        slugs = [prompt_slug(p) for p in self.prompts]
        # Names carry the index too: two prompts with one slug (or one prompt twice) never collide.
        self.filenames = [f"{i:03d}_{slug}_seed{s}.mp4" for i, (slug, s) in enumerate(zip(slugs, self.seeds))]
        self.tags = [f"samples/{i}_{slug}" for i, slug in enumerate(slugs)]

    def log_videos(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        step = trainer.global_step
        if step == self._last_logged:
            return
        self._last_logged = step
        video = pl_module.generate(self.prompts, seeds=self.seeds, num_latent_frames=self.num_latent_frames)
        if not trainer.is_global_zero:
            return
        from rfvideo.data.video_io import write_video

        root = Path(trainer.log_dir or trainer.default_root_dir) / "videos" / f"step_{step:07d}"
        for name, v in zip(self.filenames, video, strict=True):
            write_video(root / name, v, fps=self.fps)
        index = {n: {"prompt": p, "seed": s} for n, p, s in zip(self.filenames, self.prompts, self.seeds)}
        (root / "prompts.json").write_text(json.dumps(index, indent=1, ensure_ascii=False) + "\n")
        exp = getattr(trainer.logger, "experiment", None)
        if exp is not None and hasattr(exp, "_get_file_writer"):
            for tag, p, s, v in zip(self.tags, self.prompts, self.seeds, video, strict=True):
                add_animated_summary(exp, tag, v, step, fps=self.fps, description=f"{p} (seed {s})")
        if exp is not None and hasattr(exp, "add_image"):
            f = video.shape[1]
            frames = video[:, [0, f // 2, f - 1]]  # (b 3 3 H W)
            grid = rearrange(frames, "b k c h w -> c (b h) (k w)")
            exp.add_image("samples/first_mid_last", grid.clamp(0, 1), global_step=step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step > 0 and trainer.global_step % self.every_n_steps == 0:
            with torch.no_grad():
                self.log_videos(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        with torch.no_grad():
            self.log_videos(trainer, pl_module)
