"""VBench-style evaluation during training: fixed prompts and seeds, ``pl_module.generate``, TensorBoard.

Every ``every_n_steps`` optimizer steps (and at the end of validation / test if enabled) every rank
generates its share of a fixed prompt list with fixed seeds through ``pl_module.generate(prompts,
seeds=..., num_latent_frames=..., use_ema=...)`` (docs/interfaces.md), scores its own videos on the
configured dimensions, and the per-video scores are gathered; rank zero logs ``val/vbench/<dimension>``,
the subset aggregates ``val/vbench/quality|semantic|total_subset`` and a few sample videos (animated GIF
image summaries, which need no moviepy).

The numbers are "VBench-style": in-loop float videos skip H.264 and uint8 rounding (motion smoothness,
appearance style and the ViCLIP dimensions round to uint8 as VBench's readers would); prompts are usually
a small subset of the suite. For numbers comparable with papers, save mp4s and use
``rfvideo.eval.score_video_folder``.

Shape legend: b videos, f frames, h/w height/width.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
import torch

from rfvideo.eval.aggregate import aggregate_scores, canonical_dimension
from rfvideo.eval.dispatch import score_dimension
from rfvideo.eval.registry import in_loop_dimension

METRIC_PREFIX = "val/vbench"


def load_prompt_suite(
    prompt_dir: str | os.PathLike, dimensions: Sequence[str], max_per_dimension: int | None = None
) -> dict[str, list[str]]:
    """Read VBench's ``prompts_per_dimension/<dimension>.txt`` files (one prompt a line).

    Args:
        prompt_dir: the ``prompts_per_dimension`` folder (e.g. shared/data/vbench/prompts_per_dimension).
        dimensions: dimension keys to read.
        max_per_dimension: keep the first N prompts of each file.
    """
    out = {}
    for d in dimensions:
        key = canonical_dimension(d)
        path = os.path.join(os.fspath(prompt_dir), f"{key}.txt")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no prompt file for dimension {key!r}: {path}")
        with open(path, encoding="utf-8") as f:
            prompts = [line.strip() for line in f if line.strip()]
        out[key] = prompts[:max_per_dimension] if max_per_dimension else prompts
    return out


def prompts_from_full_info(
    full_info: str | os.PathLike, dimensions: Sequence[str], max_per_dimension: int | None = None
) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Prompts per dimension from VBench_full_info.json (covers all 16 dimensions, unlike the txt files).

    Returns:
        ``({dimension: prompts}, {prompt: appearance style phrase})``; pass both to ``VBenchCallback``.
    """
    import json

    with open(full_info, encoding="utf-8") as f:
        items = json.load(f)
    out: dict[str, list[str]] = {}
    for d in dimensions:
        key = canonical_dimension(d)
        prompts = [it["prompt_en"] for it in items if key in it["dimension"]]
        if not prompts:
            raise ValueError(f"no prompt in {full_info} is tagged with dimension {key!r}")
        out[key] = prompts[:max_per_dimension] if max_per_dimension else prompts
    styles = {}
    for it in items:
        aux = it.get("auxiliary_info", {}).get("appearance_style")
        if aux is not None:
            styles[it["prompt_en"]] = aux["appearance_style"] if isinstance(aux, dict) else aux
    return out, styles


def gif_bytes(video: torch.Tensor, fps: float = 8.0) -> bytes:
    """``(f 3 h w)`` float [0, 1] or uint8 -> animated GIF bytes (Pillow)."""
    from PIL import Image

    v = video if video.dtype == torch.uint8 else video.float().clamp(0, 1).mul(255).round().to(torch.uint8)
    frames = [Image.fromarray(f.permute(1, 2, 0).cpu().numpy()) for f in v]
    buf = io.BytesIO()
    frames[0].save(
        buf, format="GIF", save_all=True, append_images=frames[1:], duration=int(1000 / fps), loop=0
    )
    return buf.getvalue()


class VBenchCallback(pl.Callback):
    """Generate fixed prompts with fixed seeds and log VBench-style dimension scores.

    Args:
        dimensions: dimension keys to compute (see ``rfvideo.eval.IMPLEMENTED_DIMENSIONS``).
        backbones: ``{dimension: backbone}`` (e.g. from ``rfvideo.eval.load_backbones``) or a zero-argument
            factory returning it, called once on first use (so models load only when needed).
        prompts: one list for every dimension, or ``{dimension: prompts}`` (see ``load_prompt_suite``).
        styles: ``{prompt: style phrase}`` for appearance_style (defaults to the prompt itself).
        every_n_steps: evaluate after every N optimizer steps (0 disables step-based evaluation).
        on_validation: also evaluate at the end of each validation epoch (not during sanity checking).
        on_test: also evaluate at the end of each test epoch.
        seed: seeds are ``seed + i`` for the i-th distinct prompt, so every evaluation sees the same noise.
        num_latent_frames: forwarded to ``generate``.
        use_ema: forwarded to ``generate``.
        fps: frame rate of generated videos (dynamic degree's sampling interval).
        num_log_videos: sample videos logged as GIFs (from rank zero's share), 0 to disable.
        device: where backbones run; default the module's device.
    """

    def __init__(
        self,
        dimensions: Sequence[str],
        backbones: Mapping[str, Any] | Callable[[], Mapping[str, Any]],
        prompts: Sequence[str] | Mapping[str, Sequence[str]],
        *,
        styles: Mapping[str, str] | None = None,
        every_n_steps: int = 1000,
        on_validation: bool = False,
        on_test: bool = True,
        seed: int = 0,
        num_latent_frames: int | None = None,
        use_ema: bool = True,
        fps: float = 16.0,
        num_log_videos: int = 2,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        self.dimensions = [canonical_dimension(d) for d in dimensions]
        for d in self.dimensions:
            try:
                in_loop_dimension(d)  # the registry: a newly registered dimension works here too
            except ValueError as e:
                raise ValueError(f"VBenchCallback: {e}") from e
        if not self.dimensions:
            raise ValueError("VBenchCallback: no dimensions")
        if every_n_steps < 0:
            raise ValueError(f"every_n_steps must be >= 0, got {every_n_steps}")
        if isinstance(prompts, Mapping):
            per_dim = {canonical_dimension(k): list(v) for k, v in prompts.items()}
            missing = [d for d in self.dimensions if not per_dim.get(d)]
            if missing:
                raise ValueError(f"VBenchCallback: no prompts for dimensions {missing}")
        else:
            if isinstance(prompts, str) or not prompts:
                raise ValueError("VBenchCallback: prompts must be a non-empty list of strings or a dict")
            per_dim = {d: list(prompts) for d in self.dimensions}
        self.prompts_per_dim = {d: per_dim[d] for d in self.dimensions}
        # The distinct prompts, in first-seen order: one video each, shared between dimensions.
        self.prompts = list(dict.fromkeys(p for d in self.dimensions for p in self.prompts_per_dim[d]))
        self.seeds = [seed + i for i in range(len(self.prompts))]
        self._backbones = backbones
        self.styles = dict(styles or {})
        self.every_n_steps = every_n_steps
        self.on_validation = on_validation
        self.on_test = on_test
        self.num_latent_frames = num_latent_frames
        self.use_ema = use_ema
        self.fps = fps
        self.num_log_videos = num_log_videos
        self.device = device
        self._last_step = -1
        self.last_metrics: dict[str, float] = {}

    # ---- hooks -------------------------------------------------------------------------------------
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        step = trainer.global_step
        if self.every_n_steps and step > 0 and step % self.every_n_steps == 0 and step != self._last_step:
            self._last_step = step  # gradient accumulation repeats the same global step
            self.evaluate(trainer, pl_module)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.on_validation and not trainer.sanity_checking:
            self.evaluate(trainer, pl_module)

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.on_test:
            self.evaluate(trainer, pl_module)

    # ---- work --------------------------------------------------------------------------------------
    def backbones(self) -> Mapping[str, Any]:
        if callable(self._backbones) and not isinstance(self._backbones, Mapping):
            self._backbones = self._backbones()
        return self._backbones

    def _local_share(self, rank: int, world: int) -> list[int]:
        # Same count on every rank (padded with the last prompt) so sharded models see the same calls.
        per_rank = math.ceil(len(self.prompts) / world)
        idx = list(range(rank, len(self.prompts), world))
        return idx + [len(self.prompts) - 1] * (per_rank - len(idx))

    @torch.no_grad()
    def evaluate(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, float]:
        """Generate, score and (rank zero) log. Returns the logged metrics (on every rank)."""
        rank, world = trainer.global_rank, trainer.world_size
        share = self._local_share(rank, world)
        # Slots past this rank's own prompts are padding (repeats); they get weight 0 below.
        valid = torch.zeros(len(share), dtype=torch.bool)
        valid[: len(range(rank, len(self.prompts), world))] = True
        was_training = pl_module.training
        pl_module.eval()
        try:
            videos = pl_module.generate(
                [self.prompts[i] for i in share],
                seeds=[self.seeds[i] for i in share],
                num_latent_frames=self.num_latent_frames,
                use_ema=self.use_ema,
            )
        finally:
            pl_module.train(was_training)
        device = self.device if self.device is not None else pl_module.device
        videos = videos.float().cpu()
        backbones = self.backbones()

        # (n_local, n_dims) scores and weights; weight 0 = this video does not count for that dimension.
        scores = torch.zeros(len(share), len(self.dimensions), dtype=torch.float64)
        weights = torch.zeros_like(scores)
        for j, d in enumerate(self.dimensions):
            dim_prompts = set(self.prompts_per_dim[d])
            rows = [k for k in range(len(share)) if valid[k] and self.prompts[share[k]] in dim_prompts]
            if not rows:
                continue
            texts = [self.prompts[share[k]] for k in rows]
            res = score_dimension(
                d,
                videos[rows],
                backbones.get(d),
                prompts=texts,
                styles=[self.styles.get(t, t) for t in texts],
                fps=self.fps,
                device=device,
            )
            scores[rows, j] = torch.tensor(res.per_video, dtype=torch.float64)
            weights[rows, j] = torch.tensor(res.weights, dtype=torch.float64)

        if world > 1:
            scores = trainer.strategy.all_gather(scores.to(pl_module.device)).reshape(
                -1, len(self.dimensions)
            )
            weights = trainer.strategy.all_gather(weights.to(pl_module.device)).reshape(
                -1, len(self.dimensions)
            )
        scores, weights = scores.double().cpu(), weights.double().cpu()
        raw = {
            d: float((scores[:, j] * weights[:, j]).sum() / weights[:, j].sum())
            for j, d in enumerate(self.dimensions)
        }
        agg = aggregate_scores(raw)
        metrics = {f"{METRIC_PREFIX}/{d}": v for d, v in raw.items()}
        if agg.quality is not None:
            metrics[f"{METRIC_PREFIX}/quality_subset"] = agg.quality
        if agg.semantic is not None:
            metrics[f"{METRIC_PREFIX}/semantic_subset"] = agg.semantic
        metrics[f"{METRIC_PREFIX}/total_subset"] = agg.total
        self.last_metrics = metrics
        if trainer.is_global_zero:
            self._write(
                trainer, metrics, agg.label, videos[[k for k in range(len(share)) if valid[k]]], share
            )
        return metrics

    def _write(
        self,
        trainer: pl.Trainer,
        metrics: dict[str, float],
        label: str,
        videos: torch.Tensor,
        share: list[int],
    ) -> None:
        step = trainer.global_step
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)
            experiment = getattr(logger, "experiment", None)
            if experiment is None or not hasattr(experiment, "add_text"):
                continue
            experiment.add_text(f"{METRIC_PREFIX}/aggregate_label", label, step)
            for k in range(min(self.num_log_videos, videos.shape[0])):
                self._add_gif(experiment, f"{METRIC_PREFIX}/sample_{k}", videos[k], step)

    def _add_gif(self, writer: Any, tag: str, video: torch.Tensor, step: int) -> None:
        # What SummaryWriter.add_video writes, but encoded with Pillow instead of moviepy.
        from tensorboard.compat.proto.summary_pb2 import Summary

        _, _, h, w = video.shape
        image = Summary.Image(
            height=h, width=w, colorspace=3, encoded_image_string=gif_bytes(video, self.fps)
        )
        writer._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)
