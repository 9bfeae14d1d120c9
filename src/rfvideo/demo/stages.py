"""The demo's stages, one function each, on the package's own pieces.

  world      `build_world`: codec (`KeyframeCodec`), text encoder (`DemoSettings.text_encoder`), the
             clips of the training prompts written as latent shards (`data.ShardWriter`);
  stage 0    `train_base`: the bidirectional base by flow matching (`sampling.flow`, `sampling.shift_sigma`)
             on those shards (the stand-in for the pretrained Wan);
  stage 1    `make_trajectories` (`modules.trajectories`, written as shards) and `ode_init`
             (`ODEInitModule` on `RFVideoDataModule(train_shards=...)`);
  stage 2    `reward_forcing` (`RewardForcingModule` on `RFVideoDataModule(train_prompts=...)`) with the
             world's reward on the last frame, on all frames (the paper's ablation), or colour only (the
             reward-hacking control).

The world (codec, text encoder, base, trajectories) depends only on `DemoSettings`, `world_seed` included,
and is cached under `<out>/cache/world-<key>/`. The world seed draws the text embeddings, the base's init and
its training batches and noise, hence its trajectories: what another machine also redraws when its CPU
kernels sum floats in another order. The training seed changes stage 1 and stage 2 (weights' noise, data
order, exit steps) on top of one base.

Legend: `N` clips, `F` pixel frames, `f` latent frames, `c` channels, `h w` latent size, `n d` text.
"""

from __future__ import annotations

import copy
import importlib
import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from einops import rearrange
from lightning.pytorch.loggers import TensorBoardLogger
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from rfvideo.data import RFVideoDataModule, ShardedTensorDataset, ShardWriter
from rfvideo.demo.settings import DemoSettings
from rfvideo.demo.world.keyframe_codec import KeyframeCodec
from rfvideo.demo.world.prompt_color import PromptColorReward
from rfvideo.demo.world.reward import SquareWorldReward
from rfvideo.demo.world.world import ClipSpec, render_clip, split_specs
from rfvideo.models.causal_wan import CausalWanTransformer
from rfvideo.models.text_encoder import TextEncoder
from rfvideo.models.tiny import tiny_causal_wan
from rfvideo.modules import ODEInitModule, RewardForcingModule
from rfvideo.modules.trajectories import generate_trajectories, write_trajectory_shards
from rfvideo.rewards import FrameSelector, RewardEnsemble
from rfvideo.sampling import FlowMatchSchedule, add_noise, shift_sigma

__all__ = ["World", "build_world", "export_pipeline", "make_trajectories", "ode_init", "quiet_lightning",
           "reward_forcing", "save_generator", "train_base"]  # fmt: skip


def quiet_lightning() -> None:
    """Silence Lightning's per-fit banners and tips ("GPU available", cloud tips): the demo prints its own
    stage summaries, and a reader should see those."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"lightning(\..*)?")
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")


@dataclass
class World:
    """The fixed parts every stage shares."""

    settings: DemoSettings
    train_specs: list[ClipSpec]
    held_specs: list[ClipSpec]
    vae: KeyframeCodec
    text: TextEncoder
    schedule: FlowMatchSchedule
    cache: Path

    def embed(self, prompts: list[str]) -> torch.Tensor:
        """Prompts -> zero-padded embeddings `(b n d)` (what the generator conditions on)."""
        emb, mask = self.text.encode(prompts)
        return emb * mask.unsqueeze(-1).to(emb.dtype)

    @property
    def uncond(self) -> torch.Tensor:
        """The unconditional embedding `(1 n d)` of classifier-free guidance: zeros (no prompt)."""
        return torch.zeros(1, self.settings.text_max_length, self.settings.text_width)

    def generator_kwargs(self, seed: int) -> dict[str, Any]:
        """The `tiny_causal_wan` arguments of this world's generator."""
        s = self.settings
        return {
            "num_layers": s.num_layers, "num_attention_heads": s.num_heads, "attention_head_dim": s.head_dim,
            "in_channels": self.vae.latent_channels, "text_dim": s.text_width, "ffn_dim": s.ffn_dim,
            "freq_dim": 32, "num_frames_per_chunk": 1, "seed": seed,
            "absolute_positions": s.absolute_positions, "patch_size": (1, s.patch_size, s.patch_size),
        }  # fmt: skip

    def new_generator(self, seed: int) -> CausalWanTransformer:
        return tiny_causal_wan(**self.generator_kwargs(seed))


def text_encoder_spec(s: DemoSettings) -> dict[str, Any]:
    """The text encoder `s.text_encoder` names as a LightningCLI `class_path` + `init_args` (one place for
    its arguments, which `build_text_encoder` builds)."""
    root = "rfvideo.demo.world.text_encoders."
    if s.text_encoder == "minilm":
        return {"class_path": root + "minilm_text_encoder", "init_args": {"max_length": s.text_max_length}}
    args = {"d_model": s.text_dim, "max_length": s.text_max_length, "seed": s.world_seed}
    if s.text_encoder == "words":
        return {"class_path": root + "word_text_encoder", "init_args": args | {"num_layers": s.text_layers}}
    return {"class_path": "rfvideo.models.tiny.tiny_text_encoder", "init_args": args}


def build_text_encoder(s: DemoSettings) -> TextEncoder:
    """The text encoder `s.text_encoder` names (see `settings.TEXT_ENCODERS`)."""
    spec = text_encoder_spec(s)
    module, name = spec["class_path"].rsplit(".", 1)
    return getattr(importlib.import_module(module), name)(**spec["init_args"])


def build_world(settings: DemoSettings, out: Path) -> World:
    """Codec, text encoder, prompt split, and the training clips as latent shards (`<cache>/latents`)."""
    s = settings
    train_specs, held_specs = split_specs()
    cache = out / "cache" / f"world-{s.world_key()}"
    world = World(
        settings=s, train_specs=train_specs, held_specs=held_specs,
        vae=KeyframeCodec(spatial_factor=s.spatial_factor, cells=s.codec_cells, latents_std=s.latents_std),
        text=build_text_encoder(s),
        schedule=FlowMatchSchedule(), cache=cache,
    )  # fmt: skip
    with ShardWriter(cache / "latents", shard_size=64, meta={"kind": "latents", "key": s.world_key()}) as w:
        for i, spec in enumerate(train_specs):
            for j in range(s.clips_per_prompt):
                key = f"{spec.prompt}:{j}"
                if key in w.done_keys:
                    continue
                clip = render_clip(spec, seed=1000 * i + j, **s.clip_kwargs())
                z = world.vae.encode(clip[None])[0]  # (c f h w)
                w.add({"prompt": spec.prompt, "latents": rearrange(z, "c f h w -> f c h w")}, key=key)
    (cache / "train_prompts.txt").write_text("\n".join(sp.prompt for sp in train_specs) + "\n")
    return world


def _bar(desc: str, total: int, enabled: bool) -> tqdm:
    return tqdm(total=total, desc=f"{desc:<28}", disable=not enabled, leave=False, dynamic_ncols=True)


def train_base(world: World, *, progress: bool = True) -> tuple[CausalWanTransformer, dict[str, float]]:
    """Stage 0: the bidirectional base model by flow matching on the clip latents (cached by settings).

    Loss: `|| v(x_t, t) - (eps - x_0) ||^2`, `x_t = add_noise(x_0, eps, s)`, `s` uniform then shifted as the
    sampler's schedule shifts it; 10 % of prompts dropped to zeros (classifier-free guidance). AdamW at
    `base_lr`, warm-up over the first 1/30 of the steps, cosine decay to 0.
    """
    s = world.settings
    path = world.cache / "base.safetensors"
    base = world.new_generator(s.world_seed)
    if path.is_file():
        base.load_state_dict(load_file(str(path)))
        return base, {"cached": 1.0}
    data = ShardedTensorDataset(world.cache / "latents")
    items = [data[i] for i in range(len(data))]
    x0_all = rearrange(torch.stack([it["latents"] for it in items]), "n f c h w -> n c f h w")
    cond_all = world.embed([it["prompt"] for it in items])
    opt = torch.optim.AdamW(base.parameters(), lr=s.base_lr, weight_decay=0.0)
    # linear warm-up, then cosine decay to 0: at the same step count, lr 2e-3 on this schedule reached
    # about 25 % lower x0 error at sigma 0.95 than a constant 1e-3 (scratch runs, 2500 steps,
    # on the earlier jittered world)
    warm = max(1, s.base_steps // 30)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: min(1.0, (i + 1) / warm) * 0.5 * (1 + math.cos(math.pi * i / s.base_steps))
    )
    g = torch.Generator().manual_seed(s.world_seed)
    base.train()
    losses: list[float] = []
    bar = _bar("stage 0: base flow matching", s.base_steps, progress)
    for _ in range(s.base_steps):
        idx = torch.randint(0, len(items), (s.base_batch,), generator=g)
        x0 = x0_all[idx]
        eps = torch.randn(x0.shape, generator=g)
        sigma = shift_sigma(torch.rand(s.base_batch, generator=g), world.schedule.shift)
        cond = cond_all[idx].clone()
        cond[torch.rand(s.base_batch, generator=g) < 0.1] = 0  # CFG dropout: learn the unconditional flow
        x_t = add_noise(x0, eps, sigma.view(-1, 1, 1, 1, 1))
        v = base(x_t, sigma * world.schedule.num_train_timesteps, cond, attention_mode="full")
        loss = ((v - (eps - x0)) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
    bar.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in base.state_dict().items()}, str(path))
    k = max(1, len(losses) // 10)
    return base, {"loss_first": sum(losses[:k]) / k, "loss_last": sum(losses[-k:]) / k}


def make_trajectories(world: World, base: CausalWanTransformer) -> Path:
    """Stage 1 data: ODE trajectories of the base (full attention, CFG, Euler) as shards (cached)."""
    s = world.settings
    out = world.cache / "trajectories"
    if (out / "index.json").is_file() and len(ShardedTensorDataset(out)) == s.traj_per_prompt * len(
        world.train_specs
    ):
        return out
    prompts = [sp.prompt for sp in world.train_specs for _ in range(s.traj_per_prompt)]
    traj = generate_trajectories(
        base, prompts, world.embed, uncond=world.uncond, seeds=[10_000 + i for i in range(len(prompts))],
        num_latent_frames=s.num_latent_frames, latent_size=s.latent_size,
        latent_channels=world.vae.latent_channels, schedule=world.schedule, num_steps=s.ode_euler_steps,
        guidance_scale=s.cfg_scale, batch_size=24, progress=False,
    )  # fmt: skip
    return write_trajectory_shards(traj, out, shard_size=64)


class _Progress(L.Callback):
    """One tqdm bar per fit, and the per-step training reward (first/last summary)."""

    def __init__(self, desc: str, total: int, enabled: bool) -> None:
        self.desc, self.total, self.enabled = desc, total, enabled
        self.reward: list[float] = []
        self.loss: list[float] = []

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.bar = _bar(self.desc, self.total, self.enabled)

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        m = trainer.callback_metrics
        self.loss.append(float(m.get("train/loss", float("nan"))))
        if "train/reward/total" in m:
            self.reward.append(float(m["train/reward/total"]))
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{self.loss[-1]:.4f}")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.bar.close()


def _trainer(out: Path, name: str, steps: int, callback: _Progress) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu", devices=1, max_steps=steps,
        logger=TensorBoardLogger(out / "tensorboard", name=name, default_hp_metric=False),
        enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1, deterministic=True,
        callbacks=[callback],
    )  # fmt: skip


def ode_init(
    world: World, base: CausalWanTransformer, traj_dir: Path, *, seed: int, out: Path, progress: bool = True
) -> tuple[ODEInitModule, dict[str, float]]:
    """Stage 1: ODE init of the causal student (block-causal, starting from the base weights)."""
    s = world.settings
    L.seed_everything(seed, verbose=False)
    module = ODEInitModule(
        generator=copy.deepcopy(base), vae=world.vae, text_encoder=world.text, schedule=world.schedule,
        num_latent_frames=s.num_latent_frames, latent_size=s.latent_size, ema_decay=None, grad_clip=1.0,
        seed=seed, optimizer=lambda ps: torch.optim.AdamW(ps, lr=s.ode_lr, weight_decay=0.0),
    )  # fmt: skip
    cb = _Progress("stage 1: ODE init", s.ode_steps, progress)
    data = RFVideoDataModule(train_shards=str(traj_dir), batch_size=8, seed=seed, drop_last=True)
    _trainer(out, "stage1_ode_init", s.ode_steps, cb).fit(module, data)
    k = max(1, len(cb.loss) // 10)
    return module, {"loss_first": sum(cb.loss[:k]) / k, "loss_last": sum(cb.loss[-k:]) / k}


#: The stage-2 runs: (name, frames the reward sees, reward).
REWARD_RUNS = {
    "stage2_last_frame": ("last", "world"),
    "ablation_all_frames": ("all", "world"),
    "hacking_colour_only": ("last", "colour_only"),
}


def world_reward(settings: DemoSettings) -> SquareWorldReward:
    return SquareWorldReward(target_area=1 / 16)


def reward_forcing(
    world: World, stage1: ODEInitModule, run: str, *, seed: int, out: Path, progress: bool = True
) -> tuple[RewardForcingModule, dict[str, float]]:
    """Stage 2: reward forcing from the stage-1 weights with the run's reward and frame policy."""
    s = world.settings
    policy, kind = REWARD_RUNS[run]
    L.seed_everything(seed, verbose=False)
    # The hacking control scores colour only: painting the whole frame maximises it.
    term = world_reward(s) if kind == "world" else PromptColorReward()
    ens = RewardEnsemble({term.name: term}, {term.name: 1.0}, FrameSelector(policy=policy))
    module = RewardForcingModule(
        generator=copy.deepcopy(stage1.generator), vae=world.vae, text_encoder=world.text, rewards=ens,
        schedule=world.schedule, num_latent_frames=s.num_latent_frames, latent_size=s.latent_size,
        ema_decay=s.reward_ema, grad_clip=1.0, seed=seed,
        optimizer=lambda ps: torch.optim.AdamW(ps, lr=s.reward_lr, betas=(0.0, 0.999), weight_decay=0.01),
    )  # fmt: skip
    cb = _Progress(f"stage 2: {run}", s.reward_steps, progress)
    data = RFVideoDataModule(
        train_prompts=str(world.cache / "train_prompts.txt"), batch_size=s.reward_batch, seed=seed
    )
    _trainer(out, run, s.reward_steps, cb).fit(module, data)
    k = max(1, len(cb.reward) // 5)
    stats = (
        {"reward_first": sum(cb.reward[:k]) / k, "reward_last": sum(cb.reward[-k:]) / k} if cb.reward else {}
    )
    return module, stats


def export_pipeline(module: RewardForcingModule, folder: Path) -> Path:
    """Write the trained stage-2 model as a pipeline folder (`RFVideoPipeline.save_pretrained`, every
    component copied: the positioned generator's EMA, the keyframe codec, the word-level text encoder), which
    `rfvideo generate --demo`, `rfvideo serve --demo` and `RFVideoPipeline.from_pretrained(folder)` load.
    An earlier export is replaced only once the new one is complete."""
    import shutil

    from rfvideo.pipeline import RFVideoPipeline

    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    RFVideoPipeline.from_module(module).save_pretrained(tmp)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.replace(folder)
    return folder


def save_generator(generator: CausalWanTransformer, path: Path) -> Path:
    """Write a generator's state dict as safetensors (the stage-1 weights `tiny_causal_wan(weights=...)`
    loads in experiments/demo/*.yaml); written to a temporary name first, so a cut run leaves no half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().contiguous() for k, v in generator.state_dict().items()}, str(tmp))
    tmp.replace(path)
    return path
