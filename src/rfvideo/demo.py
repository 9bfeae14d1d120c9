"""`make demo`: the whole Reward-Forcing recipe, offline, on CPU, in a procedural world.

World: coloured squares moving in named directions on grey ("a red square moving left"); 24 prompts,
6 of them held out (an unseen colour x direction combination). Components are tiny and built here: a
random (untrained) tiny Wan VAE (training one on CPU costs minutes per hundred steps), a tiny random
umT5 with the file-free ByT5 tokenizer, and a tiny `CausalWanTransformer`.

  0. encode procedural clips with the VAE; train the tiny bidirectional base by flow matching;
  1. stage 1: ODE trajectories from the base (full attention, CFG, Euler) -> ODE init of the causal
     student (ODEInitModule, block-causal, Lightning Trainer);
  2. stage 2: reward forcing (RewardForcingModule) with the weight-free prompt-colour reward scored on the
     last frame; then the paper's ablation, scoring all frames;
  3. before/after table on held-out prompts over several seeds, sample mp4s, TensorBoard logs.

Run: `python -m rfvideo.demo [--seeds 3] [--out outputs/demo] [--fast]`.
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
    p.add_argument("--fast", action="store_true", help="few steps everywhere (smoke test, not meaningful)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--base-steps", type=int, default=400)
    p.add_argument("--ode-steps", type=int, default=200)
    p.add_argument("--reward-steps", type=int, default=60)
    p.add_argument("--reward-lr", type=float, default=1e-3)
    p.add_argument("--vae-gain", type=float, default=6.0, help="gain on the random decoder's output conv")
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
    from rfvideo.demo_world.components import tiny_causal_wan, tiny_text_encoder, tiny_wan_vae
    from rfvideo.demo_world.data import DemoPromptDataModule, TrajectoryFileDataModule
    from rfvideo.demo_world.world import render_clip, split_specs
    from rfvideo.modules import ODEInitModule, RewardForcingModule
    from rfvideo.modules.trajectories import generate_trajectories, save_trajectories
    from rfvideo.rewards import FrameSelector, MotionReward, RewardEnsemble, TemporalFlickerReward
    from rfvideo.rewards.prompt_color import PromptColorReward
    from rfvideo.sampling import FlowMatchSchedule, shift_sigma

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    L.seed_everything(0, verbose=False)
    size, num_pixel, f = 32, 9, 3  # 9 pixel frames -> 3 latent frames of 4x4
    latent_size = (size // 8, size // 8)
    train_specs, held_specs = split_specs()
    schedule = FlowMatchSchedule()

    # ---------------------------------------------------------------- components
    vae = tiny_wan_vae(z_dim=4, base_dim=2, seed=0)
    with torch.no_grad():
        # An untrained decoder outputs near-constant grey; a gain on its last conv makes decoded colour depend
        # on the latents, so a pixel-space reward has something to act on (clamped to [0, 1] afterwards).
        vae.vae.decoder.conv_out.weight.mul_(a.vae_gain)
    text = tiny_text_encoder(d_model=32, max_length=16, seed=0)

    def embed(prompts: list[str]) -> torch.Tensor:
        emb, mask = text.encode(prompts)
        return emb * mask.unsqueeze(-1).to(emb.dtype)

    uncond = torch.zeros(1, 16, 32)
    gen_cfg: dict[str, Any] = dict(
        num_layers=2, num_attention_heads=2, attention_head_dim=32, in_channels=4, text_dim=32, ffn_dim=128,
        freq_dim=32, num_frames_per_chunk=1, seed=0,
    )  # fmt: skip
    base = tiny_causal_wan(**gen_cfg)

    # ---------------------------------------------------------------- 0. data + base model
    clips_per_spec = 1 if a.fast else 2
    clips, prompts = [], []
    for i, spec in enumerate(train_specs):
        for j in range(clips_per_spec):
            clips.append(render_clip(spec, num_frames=num_pixel, size=size, seed=100 * i + j))
            prompts.append(spec.prompt)
    with torch.no_grad():
        raw = torch.cat([vae.encode(torch.stack(clips[i : i + 6])) for i in range(0, len(clips), 6)])
        # The random VAE has no meaningful latent statistics: set its normalisation from the data.
        mean = raw.mean((0, 1, 3, 4))
        std = raw.std((0, 1, 3, 4))
        vae.latents_mean.mul_(std).add_(mean)
        vae.latents_std.mul_(std)
        latents = (raw - mean.view(1, 1, -1, 1, 1)) / std.view(1, 1, -1, 1, 1)  # (N f c h w)
    _log(f"encoded {len(clips)} procedural clips -> latents {tuple(latents.shape)}", t0)

    cond_all = embed(prompts)
    opt = torch.optim.AdamW(base.parameters(), lr=1e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(0)
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
    traj_prompts = [s.prompt for s in train_specs for _ in range(4)]
    traj = generate_trajectories(
        base, traj_prompts, embed, uncond=uncond, seeds=list(range(len(traj_prompts))), num_latent_frames=f,
        latent_size=latent_size, latent_channels=4, schedule=schedule, num_steps=8 if a.fast else 24,
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
        ode, TrajectoryFileDataModule(path=str(traj_path), batch_size=8)
    )
    last = float(ode.trainer.callback_metrics["train/loss"])
    _log(f"stage 1 ODE init: {a.ode_steps} steps, last loss {last:.4f}", t0)

    # ---------------------------------------------------------------- 2. stage 2
    def reward_stage(policy: str, name: str) -> RewardForcingModule:
        ens = RewardEnsemble(
            {"prompt_color": PromptColorReward()}, {"prompt_color": 1.0}, FrameSelector(policy=policy)
        )
        module = RewardForcingModule(
            generator=copy.deepcopy(ode.generator), vae=vae, text_encoder=text, rewards=ens,
            schedule=schedule, num_latent_frames=f, latent_size=latent_size, ema_decay=0.8, grad_clip=1.0,
            optimizer=lambda ps: torch.optim.AdamW(ps, lr=a.reward_lr, betas=(0.0, 0.999), weight_decay=0.01),
        )  # fmt: skip
        trainer(name, a.reward_steps).fit(module, DemoPromptDataModule(batch_size=4, epoch_length=400))
        _log(f"stage 2 ({name}, image reward on {policy} frame(s)): {a.reward_steps} steps", t0)
        return module

    stage2 = reward_stage("last", "stage2_reward_last_frame")
    ablation = None if a.no_ablation else reward_stage("all", "stage2_reward_all_frames")

    # ---------------------------------------------------------------- 3. evaluation
    color, flicker, motion = PromptColorReward(), TemporalFlickerReward(), MotionReward(downsample=1)
    held_prompts = [s.prompt for s in held_specs]
    seeds = [1000 + i for i in range(a.seeds)]

    def evaluate(module: Any, tag: str) -> dict[str, list[float]]:
        per_seed: dict[str, list[float]] = {"color_last": [], "color_all": [], "flicker": [], "motion": []}
        for sd in seeds:
            video = module.generate(held_prompts, seeds=[sd] * len(held_prompts))  # (b F 3 H W)
            per_seed["color_last"].append(float(color(video[:, -1:], held_prompts).mean()))
            per_seed["color_all"].append(float(color(video, held_prompts).mean()))
            per_seed["flicker"].append(float(flicker(video, held_prompts).mean()))
            per_seed["motion"].append(float(motion(video, held_prompts).mean()))
            if sd == seeds[0]:
                for k, (pr, v) in enumerate(zip(held_prompts[:3], video[:3], strict=True)):
                    big = v.repeat_interleave(4, -1).repeat_interleave(4, -2)
                    write_video(out / "samples" / tag / f"{k}_{pr.replace(' ', '_')}.mp4", big, fps=4)
        return per_seed

    rows = {"stage 1 (ODE init)": evaluate(ode, "stage1"), "stage 2 (last frame)": evaluate(stage2, "stage2")}
    if ablation is not None:
        rows["ablation: all frames"] = evaluate(ablation, "ablation_all_frames")
    with torch.no_grad():
        real = torch.stack([render_clip(s, num_frames=num_pixel, size=size, seed=7) for s in held_specs])
        recon = vae.decode(vae.encode(real))
    ref = {
        "procedural clips": (
            float(motion(real, held_prompts).mean()),
            float(color(real, held_prompts).mean()),
        ),
        "their VAE recon": (
            float(motion(recon, held_prompts).mean()),
            float(color(recon, held_prompts).mean()),
        ),
    }

    def fmt(xs: list[float]) -> str:
        sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
        return f"{statistics.mean(xs):.4f} ± {sd:.4f}"

    lines = [
        f"held-out prompts: {len(held_prompts)}, seeds: {len(seeds)} (mean ± std over per-seed means)",
        "| model | prompt_color (last frame) | prompt_color (all frames) | temporal_flicker "
        "| motion (px/frame) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {fmt(r['color_last'])} | {fmt(r['color_all'])} | {fmt(r['flicker'])} "
            f"| {fmt(r['motion'])} |"
        )
    before, after = rows["stage 1 (ODE init)"]["color_last"], rows["stage 2 (last frame)"]["color_last"]
    diffs = [x - y for x, y in zip(after, before, strict=True)]
    noise = max(
        statistics.stdev(before) if len(before) > 1 else 0.0,
        statistics.stdev(after) if len(after) > 1 else 0.0,
    )
    lines.append(
        f"reward gain (last frame) on held-out prompts: {statistics.mean(diffs):+.4f} "
        f"(per-seed gains {', '.join(f'{d:+.4f}' for d in diffs)}; seed-to-seed std {noise:.4f}) -> "
        + ("RISE exceeds seed noise" if statistics.mean(diffs) > noise else "rise NOT above seed noise")
    )
    for k, (m, c) in ref.items():
        lines.append(f"reference, {k}: motion {m:.4f} px/frame, prompt_color {c:.4f}")
    table = "\n".join(lines)
    (out / "results.md").write_text(table + "\n")
    print("\n" + table + "\n")
    print(f"sample videos: {out / 'samples'}  (stage1/, stage2/, ablation_all_frames/)")
    print(f"TensorBoard:   python -m tensorboard.main --logdir {tb_dir}")
    print(f"table:         {out / 'results.md'}")
    _log("demo finished; total time", t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
