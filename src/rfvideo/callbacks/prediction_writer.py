"""Save what `rfvideo predict` generates: one mp4 per video, named VBench's way `{prompt}-{i}.mp4` (the
name `rfvideo vbench` and VBench read the prompt from), plus one `predictions_rank{r}.jsonl` line per video
with its prompt, sample index, seed and file.

`VideoGeneratorModule.predict_step` returns `{"prompt", "seed", "video" (b F 3 H W), "sample_index"}` (the
last from `RFVideoDataModule(predict_prompts=...)`; without it the seed is used as the index). Every rank
writes its own share; a wrap-around duplicate rewrites an identical file.

Legend: `b` videos, `F` pixel frames, `H W` pixel size.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import BasePredictionWriter

__all__ = ["VideoPredictionWriter"]


class VideoPredictionWriter(BasePredictionWriter):
    """Write each predicted batch as mp4 files as soon as it is generated.

    After writing, the batch's `video` entry is replaced by the list of written paths, so the predictions
    Lightning collects stay small (an 81-frame 480x832 float video is ~390 MB).

    Args:
        output_dir: Folder of the mp4 files (created).
        fps: Frame rate of the files (Wan2.1: 16).
    """

    def __init__(self, output_dir: str, *, fps: float = 16.0) -> None:
        super().__init__(write_interval="batch")
        if not isinstance(output_dir, str) or not output_dir:
            raise ValueError(f"output_dir must be a non-empty path, got {output_dir!r}")
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps!r}")
        self.output_dir = Path(output_dir)
        self.fps = float(fps)

    def write_on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        from rfvideo.data.video_io import write_video
        from rfvideo.eval.suite import vbench_filename

        if not isinstance(prediction, dict) or "video" not in prediction or "prompt" not in prediction:
            raise ValueError("VideoPredictionWriter needs predict_step to return {'prompt', 'video', ...}")
        video, prompts = prediction["video"], list(prediction["prompt"])
        seeds = list(prediction.get("seed", [None] * len(prompts)))
        indices = list(prediction.get("sample_index", seeds))
        if video is None or len(prompts) != video.shape[0]:
            raise ValueError(f"{len(prompts)} prompts for {0 if video is None else video.shape[0]} videos")
        self.output_dir.mkdir(parents=True, exist_ok=True)
        paths, records = [], []
        for prompt, v, i, seed in zip(prompts, video, indices, seeds, strict=True):
            path = write_video(self.output_dir / vbench_filename(prompt, int(i)), v, fps=self.fps)
            paths.append(str(path))
            records.append({"file": path.name, "prompt": prompt, "sample_index": int(i), "seed": seed,
                            "num_frames": int(v.shape[0]), "fps": self.fps})  # fmt: skip
        index_file = self.output_dir / f"predictions_rank{trainer.global_rank}.jsonl"
        with open(index_file, "a", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        prediction["video"] = paths
