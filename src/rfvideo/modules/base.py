"""Shared LightningModule machinery of both training recipes (stage 1 ODE init, stage 2 reward forcing).

What lives here and not in a recipe: prompt encoding, the optimisation step (manual optimisation so that a
non-finite loss or gradient skips the step on every rank with the weights and optimizer state untouched,
gradient accumulation and clipping), and `generate` (through the inference pipeline). Beside it: the EMA
copy (`ema.py`), what a checkpoint holds and how a resume reads it (`checkpoint_state.py`), the named
random streams (`random_streams.py`), re-applying optimizer settings on a resume (`optimizer_resume.py`).

Legend: `b` batch, `c` latent channels, `f` latent frames, `h w` latent height/width, `F` pixel frames,
`H W` pixel height/width, `n d` text tokens / width.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

from rfvideo.models.lora import LoraOptions, apply_lora
from rfvideo.models.vae import num_pixel_frames
from rfvideo.modules.checkpoint_state import (
    FROZEN_PREFIXES,
    HPARAMS_KEY,
    changed_hparams,
    is_frozen_key,
    mend_end_of_run_loops,
    module_init_from_checkpoint,
    plain_hparam,
)
from rfvideo.modules.ema import ema_copy, ema_update_
from rfvideo.modules.log_filters import install_log_filters
from rfvideo.modules.optimizer_resume import capture as capture_optim
from rfvideo.modules.optimizer_resume import reapply as reapply_optim
from rfvideo.modules.random_streams import mix_seed
from rfvideo.pipeline import RFVideoPipeline
from rfvideo.pipeline.pipeline import vae_factors
from rfvideo.sampling import FlowMatchSchedule

__all__ = ["FROZEN_PREFIXES", "TooManySkippedStepsError", "VideoGeneratorModule", "paper_adamw"]

log = logging.getLogger(__name__)


def paper_adamw(params: Any) -> torch.optim.Optimizer:
    """AdamW with the paper's stage-2 settings: betas (0, 0.999), lr 2e-6, weight decay 0.01."""
    return torch.optim.AdamW(params, lr=2e-6, betas=(0.0, 0.999), weight_decay=0.01)


class TooManySkippedStepsError(RuntimeError):
    """Raised (on every rank alike) when `max_consecutive_skips` optimizer steps in a row were skipped."""


def _check_count(name: str, value: Any, minimum: int = 1) -> int:
    """An int >= minimum (bools and floats such as 2.7 refused rather than truncated)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


class VideoGeneratorModule(L.LightningModule):
    """Base of the training recipes: owns the generator (trainable), its EMA, and the frozen parts.

    Subclasses implement `compute_loss(batch, batch_idx) -> (loss, logs)`; this class does the rest of
    the step. Gradient clipping and accumulation are arguments here, not Trainer flags, because the
    step is manual (the Trainer's `gradient_clip_val` / `accumulate_grad_batches` must stay unset).

    Args:
        generator: the causal generator (`CausalWanTransformer`), trainable.
        vae: frozen `WanVAE` (layout `(b f c h w)`).
        text_encoder: frozen text encoder with `encode(prompts) -> (emb (b n d), mask (b n))`; may be None
            when every batch carries `prompt_embeds` (precomputed) and `generate` is not used.
        optimizer: partially applied optimizer (`OptimizerCallable`), e.g. `torch.optim.AdamW` with its
            hyperparameters in YAML.
        scheduler: optional partially applied LR scheduler, stepped once per optimizer step.
        schedule: few-step schedule; default Wan's 4 steps with shift 5.
        num_latent_frames: latent frames generated per video (21 for 81 pixel frames).
        latent_size: latent `(h, w)` (60, 104 for 480x832).
        ema_decay: EMA decay of the generator weights (paper 0.99); None disables the EMA copy.
        ema_start_step: optimizer steps before the EMA starts tracking (it copies the weights until then).
        grad_clip: max global gradient norm; None or 0 disables clipping (the norm is still logged).
        accumulate_grad_batches: micro-batches per optimizer step.
        activation_checkpointing: call `generator.enable_gradient_checkpointing()` at setup.
        seed: base seed of the training noise (mixed with step, micro-batch and rank).
        max_consecutive_skips: stop with `TooManySkippedStepsError` after this many optimizer steps in a row
            were skipped for a non-finite loss or gradient (e.g. a reward returning NaN); None never stops.
        generator_lora: train LoRA adapters (`rfvideo.models.lora.apply_lora`) instead of the whole generator:
            the base weights freeze, the optimizer and the EMA see the adapters only, and checkpoints hold
            the adapters (and their optimizer state) only; the base comes from the config on every load.
            The EMA copy shares the generator's frozen base tensors (no second copy of the base), except
            under FSDP2, where each model is sharded on its own.

    Resuming (`fit --ckpt_path`) with changed settings applies the given ones and warns with each changed
    key (checkpoint value -> given value).
    """

    def __init__(
        self,
        generator: nn.Module,
        vae: nn.Module,
        text_encoder: nn.Module | None = None,
        optimizer: OptimizerCallable = paper_adamw,
        scheduler: LRSchedulerCallable | None = None,
        *,
        schedule: FlowMatchSchedule | None = None,
        num_latent_frames: int = 21,
        latent_size: tuple[int, int] = (60, 104),
        ema_decay: float | None = 0.99,
        ema_start_step: int = 0,
        grad_clip: float | None = 1.0,
        accumulate_grad_batches: int = 1,
        activation_checkpointing: bool = False,
        seed: int = 0,
        max_consecutive_skips: int | None = 20,
        generator_lora: LoraOptions | None = None,
    ) -> None:
        super().__init__()
        install_log_filters()
        if ema_decay is not None and not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must lie in [0, 1) or be None, got {ema_decay}")
        _check_count("accumulate_grad_batches", accumulate_grad_batches)
        _check_count("num_latent_frames", num_latent_frames)
        if max_consecutive_skips is not None:
            _check_count("max_consecutive_skips", max_consecutive_skips)
        if len(latent_size) != 2 or min(latent_size) < 1:
            raise ValueError(f"latent_size must be (h, w) with positive entries, got {latent_size}")
        self.automatic_optimization = False
        self.save_hyperparameters(
            ignore=["generator", "vae", "text_encoder", "optimizer", "scheduler", "rewards"]
        )
        if generator_lora is not None:
            apply_lora(generator, generator_lora)  # validated options; a target matching nothing raises here
        self.generator_lora = generator_lora
        self.generator = generator
        self.vae = vae
        self.text_encoder = text_encoder
        for frozen in (vae, text_encoder):
            if frozen is not None:
                frozen.requires_grad_(False)
                frozen.eval()
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.schedule = schedule if schedule is not None else FlowMatchSchedule()
        self.num_latent_frames = int(num_latent_frames)
        self.latent_size = (int(latent_size[0]), int(latent_size[1]))
        self.ema_decay = ema_decay
        self.ema_start_step = int(ema_start_step)
        self.grad_clip = grad_clip
        self.accumulate_grad_batches = int(accumulate_grad_batches)
        self.activation_checkpointing = activation_checkpointing
        self.seed = int(seed)
        self.max_consecutive_skips = max_consecutive_skips
        self.generator_ema: nn.Module | None = None
        if ema_decay is not None:
            # With LoRA the EMA shares every frozen tensor with the generator: only its adapters are its own.
            self.generator_ema = ema_copy(generator, share_frozen=generator_lora is not None)
        # Counters live in buffers so they are checkpointed and identical after a resume.
        self.register_buffer("skipped_steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("consecutive_skips", torch.zeros((), dtype=torch.long))
        self._micro = 0
        self._skip_reason = ""

    # ------------------------------------------------------------------ setup
    def configure_optimizers(self) -> Any:
        opt = self.optimizer_factory([p for p in self.generator.parameters() if p.requires_grad])
        sched = None if self.scheduler_factory is None else self.scheduler_factory(opt)
        self._configured_optim = capture_optim(opt, sched)  # a resume re-applies these (on_train_start)
        if sched is None:
            return opt
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched}}

    def configure_model(self) -> None:
        """Under `ModelParallelStrategy` (FSDP2): shard the generator and its EMA per transformer block."""
        mesh = self.device_mesh
        if mesh is None or getattr(self, "_sharded", False):
            return
        from rfvideo.distributed import shard_generator

        dp = mesh["data_parallel"] if mesh.mesh_dim_names and "data_parallel" in mesh.mesh_dim_names else mesh
        dtype = None if self.trainer is None or "bf16" not in str(self.trainer.precision) else torch.bfloat16
        shard_generator(
            self.generator, dp, param_dtype=dtype, activation_checkpointing=self.activation_checkpointing
        )
        if self.generator_ema is not None:
            shard_generator(self.generator_ema, dp, param_dtype=dtype, activation_checkpointing=False)
        self._sharded = True

    def setup(self, stage: str) -> None:
        if self.activation_checkpointing and hasattr(self.generator, "enable_gradient_checkpointing"):
            self.generator.enable_gradient_checkpointing()

    def train(self, mode: bool = True) -> VideoGeneratorModule:
        super().train(mode)
        # Frozen parts and the EMA copy stay in eval mode whatever the trainer asks.
        for m in (self.vae, self.text_encoder, self.generator_ema):
            if m is not None:
                m.eval()
        return self

    def on_train_start(self) -> None:
        # Lightning keeps the modes modules arrive in, and loaders such as diffusers' `from_pretrained` hand
        # the generator over in eval mode: train it in train mode (frozen parts stay in eval, see `train`).
        # Lightning's generic "Found N module(s) in eval mode" is silenced; the frozen parts are meant to be.
        self.train(True)
        self._reapply_optimizer_settings()

    def _reapply_optimizer_settings(self) -> None:
        """After `fit --ckpt_path` restored the optimizer and scheduler: the configured settings apply."""
        configured = getattr(self, "_configured_optim", None)
        if configured is None or self._trainer is None or not self.trainer.optimizers:
            return
        configs = self.trainer.lr_scheduler_configs
        sched = configs[0].scheduler if configs else None
        changed = reapply_optim(configured, self.trainer.optimizers[0], sched)
        if changed:
            rank_zero_warn(
                "resuming with optimizer settings that differ from the checkpoint's; the given values apply: "
                + "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in changed)
            )

    def configure_callbacks(self) -> list[L.Callback]:
        """Swap Lightning's default progress bar for one that does not print "Epoch 0/-2" under max_steps."""
        from rfvideo.callbacks.progress import step_progress_bar

        bar = step_progress_bar(self.trainer.progress_bar_callback) if self._trainer is not None else None
        return [bar] if bar is not None else []

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        """Generator, EMA, counters and reward running statistics; frozen weights are left out."""
        sd = super().state_dict(*args, **kwargs)
        prefix = kwargs.get("prefix", args[1] if len(args) > 1 else "")
        lora = self.generator_lora is not None
        for k in [k for k in sd if is_frozen_key(k, prefix, lora)]:
            del sd[k]
        return sd

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ) -> Any:
        """Strict for everything a checkpoint holds; frozen parts keep the weights they loaded themselves
        (with LoRA, so does the generator's base: it was rebuilt from the config, the adapters load here)."""
        merged = dict(state_dict)
        lora = self.generator_lora is not None
        for k, v in super().state_dict().items():
            if is_frozen_key(k, lora=lora):
                if k in merged:
                    raise ValueError(
                        f"checkpoint holds frozen key {k!r}; frozen parts load their own weights"
                    )
                merged[k] = v
        return super().load_state_dict(merged, strict=strict, assign=assign)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the hyperparameters under our own key (HPARAMS_KEY): a resume compares them, not overrides."""
        if "hyper_parameters" in checkpoint:
            hp = dict(checkpoint.pop("hyper_parameters"))
            checkpoint[HPARAMS_KEY] = {k: plain_hparam(v) for k, v in hp.items()}

    @classmethod
    def load_from_checkpoint(  # type: ignore[override]
        cls,
        checkpoint_path: str | Any,
        map_location: Any = None,
        hparams_file: Any = None,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> VideoGeneratorModule:
        """Rebuild a recipe from one of its checkpoints, given the built models it does not store.

        A checkpoint holds the trained weights and the plain hyperparameters; the generator, VAE, text
        encoder (and the rewards of `RewardForcingModule`) are built objects its config made, so pass them:
        `RewardForcingModule.load_from_checkpoint(path, generator=gen, vae=vae, text_encoder=te,
        rewards=ens)`. The stored hyperparameters fill in the rest (keyword arguments win); the state loads
        strictly. For inference, `rfvideo.modules.pipeline_from_config(config, path)` builds all of it.

        Raises:
            ValueError: not a Lightning checkpoint of a recipe (one line naming the file).
            TypeError: a built model is missing (one line naming them and the pipeline path).
        """
        from rfvideo.utils.checkpoint import load_checkpoint

        if hparams_file is not None:
            raise ValueError("hparams_file is not used: the checkpoint stores the hyperparameters")
        ckpt = load_checkpoint(checkpoint_path, map_location=map_location or "cpu")
        init = module_init_from_checkpoint(cls, ckpt, str(checkpoint_path), kwargs)
        module = cls(**init)
        module.load_state_dict(ckpt["state_dict"], strict=True if strict is None else strict)
        return module

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Resume with the given settings (warn with every setting that differs from the checkpoint's), in
        the epoch the checkpoint stopped in (`mend_end_of_run_loops`)."""
        if mend_end_of_run_loops(checkpoint):
            log.info("the checkpoint was written when max_steps ended its run mid-epoch: resuming that epoch")
        stored = checkpoint.get(HPARAMS_KEY, checkpoint.get("hyper_parameters"))
        if not stored:
            return
        changed = changed_hparams(stored, dict(self.hparams))
        if changed:
            rank_zero_warn(
                "resuming with settings that differ from the checkpoint's; the given values apply: "
                + "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in changed)
            )

    # ------------------------------------------------------------------ conditioning
    def encode_prompts(self, prompts: Sequence[str], batch: Mapping[str, Any] | None = None) -> torch.Tensor:
        """Text embeddings `(b n d)`: the batch's precomputed `prompt_embeds` if present, else the encoder."""
        if batch is not None and batch.get("prompt_embeds") is not None:
            return batch["prompt_embeds"].to(self.device, self.param_dtype)
        if self.text_encoder is None:
            raise ValueError("no text_encoder given and the batch carries no 'prompt_embeds'")
        with torch.no_grad():
            emb, mask = self.text_encoder.encode(list(prompts))
        # Wan convention: tokens past the prompt are zero (the encoder may already do this).
        emb = emb * mask.unsqueeze(-1).to(emb.dtype)
        return emb.to(self.device, self.param_dtype)

    @property
    def param_dtype(self) -> torch.dtype:
        return next(self.generator.parameters()).dtype

    @property
    def latent_channels(self) -> int:
        return int(self.generator.config.in_channels)

    def noise(self, batch_size: int, num_latent_frames: int, generator: torch.Generator) -> torch.Tensor:
        """Standard normal latents `(b c f h w)` drawn on CPU (device-independent) then moved."""
        h, w = self.latent_size
        shape = (batch_size, self.latent_channels, num_latent_frames, h, w)
        return torch.randn(shape, generator=generator).to(self.device, self.param_dtype)

    def step_generator(self, batch_idx: int, *, per_rank: bool, salt: int) -> torch.Generator:
        """A CPU generator seeded from (seed, global step, micro-batch, [rank], salt): resumable."""
        rank = self.global_rank if per_rank else -1
        return torch.Generator().manual_seed(mix_seed(self.seed, salt, self.global_step, batch_idx, rank))

    # ------------------------------------------------------------------ training step
    def compute_loss(self, batch: Mapping[str, Any], batch_idx: int) -> tuple[torch.Tensor, dict[str, Any]]:
        """Return the scalar loss of one micro-batch and extra scalars to log (`train/...` keys)."""
        raise NotImplementedError

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        opt = self.optimizers()
        self._skip_reason = ""
        loss, logs = self.compute_loss(batch, batch_idx)
        # Decide on every rank together: a rank that skipped backward would hang DDP's all-reduce.
        bad = torch.tensor(0.0 if bool(torch.isfinite(loss.detach()).all()) else 1.0, device=self.device)
        bad = self.trainer.strategy.reduce(bad, reduce_op="sum")
        self._micro += 1
        last_micro = self._micro % self.accumulate_grad_batches == 0
        if float(bad) > 0:
            self._skip(opt, self._skip_reason or "non-finite loss")
            self._micro = 0
        else:
            self.manual_backward(loss / self.accumulate_grad_batches)
            if last_micro:
                self._micro = 0
                grad_norm = self._grad_norm()
                gbad = torch.tensor(0.0 if bool(torch.isfinite(grad_norm)) else 1.0, device=self.device)
                if float(self.trainer.strategy.reduce(gbad, reduce_op="sum")) > 0:
                    self._skip(opt, "non-finite gradient norm")
                else:
                    self.consecutive_skips.zero_()
                    if self.grad_clip:
                        torch.nn.utils.clip_grad_norm_(self._trainable(), self.grad_clip)
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                    sch = self.lr_schedulers()
                    if sch is not None:
                        sch.step()
                    self.update_ema()
                    self.log("train/grad_norm", grad_norm, on_step=True, sync_dist=False)
        self.log("train/loss", loss.detach().float(), on_step=True, prog_bar=True, sync_dist=True)
        self.log("train/skipped_steps", self.skipped_steps.float(), on_step=True)
        self.log("lr", float(opt.param_groups[0]["lr"]), on_step=True)
        for k, v in logs.items():
            self.log(k, v, on_step=True, sync_dist=True)
        return loss.detach()

    def _trainable(self) -> list[nn.Parameter]:
        return [p for p in self.generator.parameters() if p.requires_grad]

    def _grad_norm(self) -> torch.Tensor:
        grads = [p.grad.detach().float().norm() for p in self._trainable() if p.grad is not None]
        if not grads:
            return torch.zeros((), device=self.device)
        return torch.linalg.vector_norm(torch.stack(grads))

    def _skip(self, opt: Any, reason: str) -> None:
        """Drop this accumulation window: grads cleared, weights, optimizer state and EMA untouched.

        Every rank reaches this together (the decision is all-reduced), so the counters agree on every rank
        and so does the stop after `max_consecutive_skips`.
        """
        opt.zero_grad(set_to_none=True)
        self.skipped_steps += 1
        self.consecutive_skips += 1
        n = int(self.consecutive_skips)
        if self.global_rank == 0:
            log.warning("step %d skipped (%s); %d skipped in a row", self.global_step, reason, n)
        if self.max_consecutive_skips is not None and n >= self.max_consecutive_skips:
            raise TooManySkippedStepsError(
                f"{n} optimizer steps in a row were skipped (last: {reason}) at step {self.global_step}; "
                f"stopping (max_consecutive_skips={self.max_consecutive_skips}). Check the reward models "
                "and the learning rate, or raise max_consecutive_skips."
            )

    @torch.no_grad()
    def update_ema(self) -> None:
        """`ema <- d ema + (1 - d) w` after each optimizer step (a copy before `ema_start_step`).

        With LoRA only the adapters are averaged: the frozen base is the same in both models.
        """
        if self.generator_ema is None:
            return
        d = self.ema_decay if self.global_step >= self.ema_start_step else 0.0
        ema_update_(self.generator_ema, self.generator, d, adapters_only=self.generator_lora is not None)

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def generate(
        self,
        prompts: list[str],
        *,
        seeds: list[int],
        num_latent_frames: int | None = None,
        use_ema: bool = True,
    ) -> torch.Tensor:
        """Generate videos through the inference pipeline (`RFVideoPipeline.from_module(self)`), exactly as
        `rfvideo generate` does.

        Each sample uses its own seed (noise and re-noising), so a video does not depend on the batch it
        was generated in. Videos longer than the cache window roll the cache (model configuration).

        Args:
            prompts: one prompt per video.
            seeds: one seed per video.
            num_latent_frames: latent frames (multiple of the chunk size); default the training length.
            use_ema: use the EMA weights (the default, and what the paper evaluates).

        Returns:
            Video `(b F 3 H W)` in [0, 1], `F = 1 + 4 (f - 1)`.
        """
        if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
            raise ValueError(f"prompts must be a list of str, got {prompts!r:.80}")
        if isinstance(seeds, (str, int)) or not all(
            isinstance(s, int) and not isinstance(s, bool) for s in seeds
        ):
            raise ValueError(f"seeds must be a list of int, got {seeds!r:.80}")
        if len(prompts) != len(seeds):
            raise ValueError(f"got {len(prompts)} prompts but {len(seeds)} seeds")
        if num_latent_frames is None:
            f = self.num_latent_frames
        else:
            f = _check_count("num_latent_frames", num_latent_frames)
        k = int(getattr(self.generator, "num_frames_per_chunk", 1))
        if f % k != 0:
            raise ValueError(f"num_latent_frames must be a multiple of the chunk size {k}, got {f}")
        pipe = RFVideoPipeline.from_module(self, use_ema=use_ema)
        out = pipe(
            list(prompts),
            num_frames=num_pixel_frames(f, vae_factors(self.vae)[0]),
            generator=[torch.Generator().manual_seed(int(s)) for s in seeds],
            output_type="pt",
            progress=False,
        )
        return out.frames

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int) -> dict[str, Any]:
        """`batch = {"prompt": list[str], "seed": list[int] | tensor}` -> prompts, seeds and videos."""
        prompts = list(batch["prompt"])
        seeds = batch.get("seed")
        if seeds is None:
            seeds = batch.get("index", list(range(len(prompts))))
        seeds = [int(s) for s in (seeds.tolist() if torch.is_tensor(seeds) else seeds)]
        frames = batch.get("num_latent_frames")
        if torch.is_tensor(frames):
            frames = int(frames.flatten()[0])
        video = self.generate(prompts, seeds=seeds, num_latent_frames=frames)
        out = {"prompt": prompts, "seed": seeds, "video": video.cpu()}
        if "sample_index" in batch:
            idx = batch["sample_index"]
            out["sample_index"] = [int(i) for i in (idx.tolist() if torch.is_tensor(idx) else idx)]
        return out
