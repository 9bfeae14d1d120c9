"""`make demo`: the whole Reward-Forcing recipe, offline, on CPU, in a procedural world.

World: coloured squares moving in named directions on grey ("a red square moving left"); 24 prompts,
6 of them held out (an unseen colour x direction combination). Components are tiny and built here: a
fixed linear pooling codec in place of the Wan VAE (`demo_world.codec.PoolingVideoCodec`: Wan's causal
1 + 4k temporal layout and 8x spatial factor, decode = nearest upsampling; an untrained tiny Wan VAE decodes
to meaningless grey and training one on CPU costs minutes, so pixel rewards would measure nothing), a tiny
random umT5 with the file-free ByT5 tokenizer, and a tiny `CausalWanTransformer`.

  0. encode procedural clips with the VAE; train the tiny bidirectional base by flow matching;
  1. stage 1: ODE trajectories from the base (full attention, CFG, Euler) -> ODE init of the causal
     student (ODEInitModule, block-causal, Lightning Trainer);
  2. stage 2: reward forcing (RewardForcingModule) with the weight-free prompt-colour reward scored on the
     last frame; then the paper's ablation, scoring all frames;
  3. before/after table on held-out prompts over several seeds, sample mp4s, TensorBoard logs.

Run: `python -m rfvideo.demo [--seeds 3] [--seed 0] [--out outputs/demo] [--fast]`.
Legend: `N` clips, `F` pixel frames, `f` latent frames, `c` channels, `h w` latent size.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch


def _log(msg: str, t0: float) -> None:
    print(f"[{time.time() - t0:6.1f}s] {msg}", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rfvideo.demo", description=__doc__.split("\n")[0])
    p.add_argument("--out", default="outputs/demo")
    p.add_argument("--seeds", type=int, default=3, help="evaluation seeds per held-out prompt")
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="training seed: weights, noise, data order (the world stays fixed)",
    )
    p.add_argument("--fast", action="store_true", help="few steps everywhere (smoke test, not meaningful)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--base-steps", type=int, default=3000)
    p.add_argument("--ode-steps", type=int, default=1000)
    p.add_argument("--clips-per-spec", type=int, default=4, help="training clips per training prompt")
    p.add_argument("--traj-per-prompt", type=int, default=4, help="ODE trajectories per training prompt")
    p.add_argument("--reward-steps", type=int, default=500)
    p.add_argument("--reward-lr", type=float, default=1e-3)
    p.add_argument("--reward-ema", type=float, default=0.8, help="EMA decay of the stage-2 generator")
    p.add_argument("--no-ablation", action="store_true")
    a = p.parse_args(argv)
    if a.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {a.seeds}")
    if a.fast:
        a.base_steps, a.ode_steps, a.reward_steps = 4, 2, 1
    torch.set_num_threads(a.threads)
    t0 = time.time()

    import lightning as L
    from einops import rearrange
    from lightning.pytorch.loggers import TensorBoardLogger

    from rfvideo.data.video_io import write_video
    from rfvideo.demo_world.codec import PoolingVideoCodec
    from rfvideo.demo_world.components import tiny_causal_wan, tiny_text_encoder
    from rfvideo.demo_world.data import DemoPromptDataModule, TrajectoryFileDataModule
    from rfvideo.demo_world.world import render_clip, split_specs
    from rfvideo.modules import ODEInitModule, RewardForcingModule
    from rfvideo.modules.trajectories import generate_trajectories, save_trajectories
    from rfvideo.rewards import FrameSelector, MotionReward, RewardEnsemble, TemporalFlickerReward
    from rfvideo.rewards.prompt_color import PromptColorReward
    from rfvideo.sampling import FlowMatchSchedule, shift_sigma

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    L.seed_everything(a.seed, verbose=False)
    size, num_pixel, f, speed = 64, 9, 3, 3.0  # 9 pixel frames of 64x64 -> 3 latent frames of 8x8
    latent_size = (size // 8, size // 8)
    train_specs, held_specs = split_specs()
    schedule = FlowMatchSchedule()

    # ---------------------------------------------------------------- components
    vae = PoolingVideoCodec(latent_channels=3, spatial_factor=8, temporal_factor=4)
    text = tiny_text_encoder(d_model=32, max_length=16, seed=0)

    def embed(prompts: list[str]) -> torch.Tensor:
        emb, mask = text.encode(prompts)
        return emb * mask.unsqueeze(-1).to(emb.dtype)

    uncond = torch.zeros(1, 16, 32)
    gen_cfg: dict[str, Any] = dict(
        num_layers=2, num_attention_heads=2, attention_head_dim=32, in_channels=3, text_dim=32, ffn_dim=128,
        freq_dim=32, num_frames_per_chunk=1, seed=a.seed,
    )  # fmt: skip
    base = tiny_causal_wan(**gen_cfg)

    # ---------------------------------------------------------------- 0. data + base model
    clips_per_spec = 1 if a.fast else a.clips_per_spec
    clips, prompts = [], []
    for i, spec in enumerate(train_specs):
        for j in range(clips_per_spec):
            clips.append(render_clip(spec, num_frames=num_pixel, size=size, seed=100 * i + j, speed=speed))
            prompts.append(spec.prompt)
    with torch.no_grad():
        raw = vae.encode(torch.stack(clips))  # identity normalisation so far: raw latents
        # Normalisation from the data (as Wan's latents_mean/std come from its training data).
        vae.set_statistics(raw.mean((0, 1, 3, 4)), raw.std((0, 1, 3, 4)))
        latents = vae.encode(torch.stack(clips))  # (N f c h w)
    _log(f"encoded {len(clips)} procedural clips -> latents {tuple(latents.shape)}", t0)

    cond_all = embed(prompts)
    opt = torch.optim.AdamW(base.parameters(), lr=1e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(a.seed)
    x0_all = rearrange(latents, "n f c h w -> n c f h w")
    base.train()
    for step in range(a.base_steps):
        idx = torch.randint(0, len(clips), (8,), generator=g)
        x0 = x0_all[idx]
        eps = torch.randn(x0.shape, generator=g)
        s = shift_sigma(torch.rand(8, generator=g), 3.0).view(8, 1, 1, 1, 1)
        cond = cond_all[idx].clone()
        drop = torch.rand(8, generator=g) < 0.1  # CFG dropout
        cond[drop] = 0
        v = base((1 - s) * x0 + s * eps, s.view(8) * 1000, cond, attention_mode="full")
        loss = ((v - (eps - x0)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == a.base_steps - 1:
            _log(f"base flow matching step {step}: loss {loss.item():.4f}", t0)

    # ---------------------------------------------------------------- 1. stage 1
    traj_prompts = [s.prompt for s in train_specs for _ in range(a.traj_per_prompt)]
    traj_seeds = [10_000 * a.seed + i for i in range(len(traj_prompts))]
    traj = generate_trajectories(
        base, traj_prompts, embed, uncond=uncond, seeds=traj_seeds, num_latent_frames=f,
        latent_size=latent_size, latent_channels=3, schedule=schedule, num_steps=8 if a.fast else 24,
        guidance_scale=3.0, batch_size=24, progress=False,
    )  # fmt: skip
    traj_path = save_trajectories(traj, out / "trajectories.pt")
    _log(f"{len(traj_prompts)} ODE trajectories -> {traj_path}", t0)

    tb_dir = out / "tensorboard"

    def trainer(name: str, steps: int) -> L.Trainer:
        return L.Trainer(
            accelerator="cpu", devices=1, max_steps=steps, logger=TensorBoardLogger(tb_dir, name=name),
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
            log_every_n_steps=1, deterministic=True,
        )  # fmt: skip

    student = copy.deepcopy(base)  # the causal student starts from the base weights (paper)
    ode = ODEInitModule(
        generator=student, vae=vae, text_encoder=text, schedule=schedule, num_latent_frames=f,
        latent_size=latent_size, ema_decay=None, grad_clip=1.0,
        optimizer=lambda ps: torch.optim.AdamW(ps, lr=5e-4, weight_decay=0.0),
    )  # fmt: skip
    trainer("stage1_ode_init", a.ode_steps).fit(
        ode, TrajectoryFileDataModule(path=str(traj_path), batch_size=8, seed=a.seed)
    )
    last = float(ode.trainer.callback_metrics["train/loss"])
    _log(f"stage 1 ODE init: {a.ode_steps} steps, last loss {last:.4f}", t0)

    # ---------------------------------------------------------------- 2. stage 2
    class _Record(L.Callback):
        """Keeps the per-step training reward and gradient norm (to print a first/last summary)."""

        def __init__(self) -> None:
            self.reward: list[float] = []
            self.grad_norm: list[float] = []

        def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
            m = trainer.callback_metrics
            self.reward.append(float(m.get("train/reward/total", float("nan"))))
            self.grad_norm.append(float(m.get("train/grad_norm", float("nan"))))

    train_logs: dict[str, _Record] = {}

    target_area = 1 / 16  # the world's square: side size // 4

    def reward_stage(policy: str, name: str, *, sized: bool = True) -> RewardForcingModule:
        term = PromptColorReward(target_area=target_area if sized else None)
        ens = RewardEnsemble({"prompt_color": term}, {"prompt_color": 1.0}, FrameSelector(policy=policy))
        module = RewardForcingModule(
            generator=copy.deepcopy(ode.generator), vae=vae, text_encoder=text, rewards=ens,
            schedule=schedule, num_latent_frames=f, latent_size=latent_size, ema_decay=a.reward_ema,
            grad_clip=1.0,
            optimizer=lambda ps: torch.optim.AdamW(ps, lr=a.reward_lr, betas=(0.0, 0.999), weight_decay=0.01),
        )  # fmt: skip
        rec = train_logs[name] = _Record()
        tr = trainer(name, a.reward_steps)
        tr.callbacks.append(rec)
        tr.fit(module, DemoPromptDataModule(batch_size=4, epoch_length=400, seed=a.seed))
        k = max(1, len(rec.reward) // 5)
        _log(
            f"stage 2 ({name}, image reward on {policy} frame(s)): {a.reward_steps} steps; training reward "
            f"{statistics.mean(rec.reward[:k]):.3f} (first {k}) -> {statistics.mean(rec.reward[-k:]):.3f} "
            f"(last {k}); grad_norm median {statistics.median(rec.grad_norm):.3g}",
            t0,
        )
        return module

    stage2 = reward_stage("last", "stage2_reward_last_frame")
    ablation = None if a.no_ablation else reward_stage("all", "stage2_reward_all_frames")
    # The colour-only reward (no size term), to show what it rewards: painting the frame (reward hacking).
    hacked = None if a.no_ablation else reward_stage("last", "stage2_colour_only_last_frame", sized=False)

    # ---------------------------------------------------------------- 3. evaluation
    color, flicker, motion = PromptColorReward(), TemporalFlickerReward(), MotionReward(downsample=1)
    sized = PromptColorReward(target_area=target_area)
    held_prompts = [s.prompt for s in held_specs]
    seeds = [1000 + i for i in range(a.seeds)]

    def foreground_area(frames: torch.Tensor) -> torch.Tensor:
        """Mean soft foreground fraction of `(b 3 H W)` frames (prompt_color's mask): the square's size."""
        d_bg = ((frames - 0.5) ** 2).sum(1)
        return (1 - torch.exp(-d_bg / (2 * color.mask_tau**2))).mean()

    def evaluate(module: Any, tag: str) -> dict[str, list[float]]:
        per_seed: dict[str, list[float]] = {
            "reward_last": [], "reward_all": [], "color_last": [], "flicker": [], "motion": [], "area": []
        }  # fmt: skip
        for sd in seeds:
            video = module.generate(held_prompts, seeds=[sd] * len(held_prompts))  # (b F 3 H W)
            per_seed["reward_last"].append(float(sized(video[:, -1:], held_prompts).mean()))
            per_seed["reward_all"].append(float(sized(video, held_prompts).mean()))
            per_seed["color_last"].append(float(color(video[:, -1:], held_prompts).mean()))
            per_seed["flicker"].append(float(flicker(video, held_prompts).mean()))
            per_seed["motion"].append(float(motion(video, held_prompts).mean()))
            per_seed["area"].append(float(foreground_area(video[:, -1])))
            if sd == seeds[0]:
                for k, (pr, v) in enumerate(zip(held_prompts[:3], video[:3], strict=True)):
                    big = v.repeat_interleave(2, -1).repeat_interleave(2, -2)
                    write_video(out / "samples" / tag / f"{k}_{pr.replace(' ', '_')}.mp4", big, fps=4)
        return per_seed

    rows = {"stage 1 (ODE init)": evaluate(ode, "stage1"), "stage 2 (last frame)": evaluate(stage2, "stage2")}
    if ablation is not None:
        rows["ablation: all frames"] = evaluate(ablation, "ablation_all_frames")
    if hacked is not None:
        rows["colour-only reward (last frame)"] = evaluate(hacked, "colour_only_last_frame")
    with torch.no_grad():
        real = torch.stack(
            [
                render_clip(s, num_frames=num_pixel, size=size, seed=7 + k, speed=speed)
                for k, s in enumerate(held_specs)
            ]
        )
        recon = vae.decode(vae.encode(real))
    ref = {"procedural clips": real, "their codec reconstruction": recon}

    def fmt(xs: list[float]) -> str:
        sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
        return f"{statistics.mean(xs):.4f} ± {sd:.4f}"

    lines = [
        f"held-out prompts: {len(held_prompts)} (unseen colour x direction), seeds: {len(seeds)} "
        "(mean ± std over per-seed means). reward = prompt colour match x size term (the trained reward); "
        "prompt_color = colour match only; area = foreground fraction of the last frame "
        "(world square: 0.0625)",
        "",
        "| model | reward (last frame) | reward (all frames) | prompt_color (last frame) | temporal_flicker "
        "| motion (px/frame) | area (last frame) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {fmt(r['reward_last'])} | {fmt(r['reward_all'])} | {fmt(r['color_last'])} "
            f"| {fmt(r['flicker'])} | {fmt(r['motion'])} | {fmt(r['area'])} |"
        )
    for k, v in ref.items():
        lines.append(
            f"| reference: {k} | {float(sized(v[:, -1:], held_prompts).mean()):.4f} "
            f"| {float(sized(v, held_prompts).mean()):.4f} "
            f"| {float(color(v[:, -1:], held_prompts).mean()):.4f} "
            f"| {float(flicker(v, held_prompts).mean()):.4f} | {float(motion(v, held_prompts).mean()):.4f} "
            f"| {float(foreground_area(v[:, -1])):.4f} |"
        )
    before, after = rows["stage 1 (ODE init)"]["reward_last"], rows["stage 2 (last frame)"]["reward_last"]
    diffs = [x - y for x, y in zip(after, before, strict=True)]
    noise = max(
        statistics.stdev(before) if len(before) > 1 else 0.0,
        statistics.stdev(after) if len(after) > 1 else 0.0,
    )
    lines += [
        "",
        f"reward gain (last frame) on held-out prompts: {statistics.mean(diffs):+.4f} "
        f"(per-seed gains {', '.join(f'{d:+.4f}' for d in diffs)}; seed-to-seed std {noise:.4f}) -> "
        + ("RISE exceeds seed noise" if statistics.mean(diffs) > noise else "rise NOT above seed noise"),
    ]
    for name, rec in train_logs.items():
        k = max(1, len(rec.reward) // 5)
        lines.append(
            f"training ({name}): reward first {k} steps {statistics.mean(rec.reward[:k]):.4f} -> last {k} "
            f"{statistics.mean(rec.reward[-k:]):.4f}; grad_norm median {statistics.median(rec.grad_norm):.3g}"
        )
    table = "\n".join(lines)
    (out / "results.md").write_text(table + "\n")
    print("\n" + table + "\n")
    print(
        f"sample videos: {out / 'samples'}  (stage1/, stage2/, ablation_all_frames/, colour_only_last_frame/)"
    )
    print(f"TensorBoard:   python -m tensorboard.main --logdir {tb_dir}")
    print(f"table:         {out / 'results.md'}")
    _log("demo finished; total time", t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
