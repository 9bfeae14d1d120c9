"""Both recipes on tiny components: CPU fast_dev_run, frozen parts untouched, NaN-loss skip, checkpoints
without frozen parts (strict reload), EMA update rule, generate() determinism."""

from __future__ import annotations

import copy
import math

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from rfvideo.demo.world.data import DemoPromptDataModule
from rfvideo.demo.world.prompt_color import PromptColorReward
from rfvideo.models.tiny import (
    tiny_causal_wan,
    tiny_text_encoder,
    tiny_wan_vae,
)
from rfvideo.modules import ODEInitModule, RewardForcingModule, trajectory_step_indices
from rfvideo.rewards import FrameSelector, RewardEnsemble
from rfvideo.sampling import FlowMatchSchedule

LATENT = (4, 4)


def _adam(params):
    return torch.optim.AdamW(params, lr=1e-3, betas=(0.0, 0.999), weight_decay=0.01)


def _reward_module(**kw) -> RewardForcingModule:
    rewards = RewardEnsemble(
        {"prompt_color": PromptColorReward()}, {"prompt_color": 1.0}, FrameSelector(policy="last")
    )
    args = dict(
        generator=tiny_causal_wan(num_frames_per_chunk=1, seed=1, init_scale=0.1),
        vae=tiny_wan_vae(seed=2),
        text_encoder=tiny_text_encoder(seed=3),
        rewards=rewards,
        optimizer=_adam,
        num_latent_frames=2,
        latent_size=LATENT,
        ema_decay=0.9,
        anchor_weight=0.1,
    )
    args.update(kw)
    return RewardForcingModule(**args)


def _trainer(tmp_path, **kw) -> L.Trainer:
    args = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    args.update(kw)
    return L.Trainer(**args)


def test_reward_forcing_fast_dev_run_trains_generator_only(tmp_path):
    module = _reward_module()
    frozen_before = {
        k: v.clone()
        for k, v in module.named_parameters()
        if not k.startswith(("generator.", "generator_ema."))
    }
    gen_before = {k: v.clone() for k, v in module.generator.named_parameters()}
    ema_before = {k: v.clone() for k, v in module.generator_ema.named_parameters()}
    _trainer(tmp_path, fast_dev_run=1).fit(module, DemoPromptDataModule(batch_size=2, epoch_length=4))
    for k, v in module.named_parameters():
        if k in frozen_before:
            assert torch.equal(v, frozen_before[k]), k
    changed = [k for k, v in module.generator.named_parameters() if not torch.equal(v, gen_before[k])]
    assert len(changed) > 0
    # EMA rule: ema = 0.9 ema_old + 0.1 w (ema_old == initial weights)
    for k, pe in module.generator_ema.named_parameters():
        w = dict(module.generator.named_parameters())[k]
        torch.testing.assert_close(pe, 0.9 * ema_before[k] + 0.1 * w, rtol=1e-5, atol=1e-6)
    assert int(module.skipped_steps) == 0


def test_nan_loss_skips_step_and_is_counted(tmp_path):
    module = _reward_module()

    def nan_loss(batch, batch_idx):
        loss, logs = RewardForcingModule.compute_loss(module, batch, batch_idx)
        return loss * float("nan"), logs

    module.compute_loss = nan_loss
    before = copy.deepcopy(module.generator.state_dict())
    ema_before = copy.deepcopy(module.generator_ema.state_dict())
    trainer = _trainer(tmp_path, max_epochs=1, limit_train_batches=2)
    trainer.fit(module, DemoPromptDataModule(batch_size=2, epoch_length=4))
    for k, v in module.generator.state_dict().items():
        assert torch.equal(v, before[k]), k
    for k, v in module.generator_ema.state_dict().items():
        assert torch.equal(v, ema_before[k]), k
    assert int(module.skipped_steps) == 2
    opt = trainer.optimizers[0]
    assert len(opt.state) == 0  # optimizer never stepped
    assert all(p.grad is None for p in module.generator.parameters())


def test_checkpoint_leaves_out_frozen_parts_and_reloads_strictly(tmp_path):
    module = _reward_module()
    sd = module.state_dict()
    assert not any(k.startswith(("vae.", "text_encoder.", "rewards.")) for k in sd)
    assert any(k.startswith("generator.") for k in sd) and any(k.startswith("generator_ema.") for k in sd)
    other = _reward_module(generator=tiny_causal_wan(num_frames_per_chunk=1, seed=9, init_scale=0.1))
    other.load_state_dict(sd, strict=True)
    for k, v in other.state_dict().items():
        assert torch.equal(v, sd[k]), k
    bad = dict(sd)
    bad.pop(next(iter(bad)))
    with pytest.raises(RuntimeError, match="Missing"):
        other.load_state_dict(bad, strict=True)


def test_generate_is_deterministic_per_seed_and_batch_independent():
    module = _reward_module()
    a = module.generate(["a red square moving left", "a blue square moving up"], seeds=[1, 2])
    b = module.generate(["a blue square moving up"], seeds=[2])
    assert a.shape == (2, 5, 3, 32, 32)
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    torch.testing.assert_close(a[1:], b)
    c = module.generate(["a blue square moving up"], seeds=[3])
    assert not torch.allclose(b, c)
    with pytest.raises(ValueError, match="seeds"):
        module.generate(["x"], seeds=[1, 2])


def _trajectory_batches(n=4, f=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    sched = FlowMatchSchedule()
    ts = torch.cat([sched.timesteps, torch.zeros(1)])
    x0 = torch.randn(n, f, 4, *LATENT, generator=g)
    eps = torch.randn(n, f, 4, *LATENT, generator=g)
    s = (ts / 1000).view(1, -1, 1, 1, 1, 1)
    traj = (1 - s) * x0[:, None] + s * eps[:, None]  # (n s f c h w) on the straight path
    return [
        {
            "prompt": ["a red square moving left", "a green square moving up"],
            "trajectory": traj[i : i + 2],
            "trajectory_timesteps": ts,
            "index": torch.arange(i, i + 2),
        }
        for i in range(0, n, 2)
    ]


def test_ode_init_loss_matches_naive_per_chunk_reference():
    gen = tiny_causal_wan(num_frames_per_chunk=1, seed=1, init_scale=0.1)
    module = ODEInitModule(
        generator=gen,
        vae=tiny_wan_vae(),
        text_encoder=tiny_text_encoder(),
        optimizer=_adam,
        num_latent_frames=2,
        latent_size=LATENT,
    )
    batch = _trajectory_batches()[0]
    loss, _ = module.compute_loss(batch, 0)
    # naive: redraw the same per-chunk step indices, then one loop per frame
    g = module.step_generator(0, per_rank=True, salt=1)
    j = torch.randint(0, 4, (2, 2), generator=g)
    ts = module.schedule.timesteps
    x_t = torch.stack([torch.stack([batch["trajectory"][b, j[b, i], i] for i in range(2)]) for b in range(2)])
    t = ts[j]
    emb = module.encode_prompts(batch["prompt"])
    v = gen(x_t.permute(0, 2, 1, 3, 4), t, emb, attention_mode="block_causal").permute(0, 2, 1, 3, 4)
    x0_hat = x_t - (t / 1000).view(2, 2, 1, 1, 1) * v
    ref = ((x0_hat - batch["trajectory"][:, -1]) ** 2).mean()
    torch.testing.assert_close(loss, ref)


def test_ode_init_fast_dev_run(tmp_path):
    module = ODEInitModule(
        generator=tiny_causal_wan(num_frames_per_chunk=1, seed=1, init_scale=0.1),
        vae=tiny_wan_vae(),
        text_encoder=tiny_text_encoder(),
        optimizer=_adam,
        num_latent_frames=2,
        latent_size=LATENT,
        ema_decay=None,
    )
    before = {k: v.clone() for k, v in module.generator.named_parameters()}
    _trainer(tmp_path, fast_dev_run=2).fit(
        module, train_dataloaders=DataLoader(_trajectory_batches(), batch_size=None)
    )
    assert any(not torch.equal(v, before[k]) for k, v in module.generator.named_parameters())
    assert math.isfinite(float(module.trainer.callback_metrics["train/loss"]))


def test_trajectory_step_indices_reject_missing_timestep():
    sched = FlowMatchSchedule()
    assert trajectory_step_indices(torch.tensor([1000.0, 937.5, 833.33, 625.0, 0.0]), sched.timesteps) == [
        0,
        1,
        2,
        3,
        4,
    ]
    with pytest.raises(ValueError, match="625"):
        trajectory_step_indices(torch.tensor([1000.0, 937.5, 833.33, 0.0]), sched.timesteps)


def test_video_logger_writes_mp4_and_tensorboard_image(tmp_path):
    from lightning.pytorch.loggers import TensorBoardLogger

    from rfvideo.callbacks import VideoLogger

    module = _reward_module()
    cb = VideoLogger(["a red square moving left"], every_n_steps=1)
    trainer = _trainer(tmp_path, max_steps=1, logger=TensorBoardLogger(tmp_path, name="tb"), callbacks=[cb])
    trainer.fit(module, DemoPromptDataModule(batch_size=2, epoch_length=4))
    assert len(list(tmp_path.rglob("videos/step_0000001/*.mp4"))) == 1
    assert list(tmp_path.rglob("events.out.tfevents.*"))


def test_checkpoint_keeps_reward_running_statistics(tmp_path):
    """Running reward normalisation is training state: it is saved, and a resumed module restores it."""

    def ensemble():
        return RewardEnsemble(
            {"prompt_color": PromptColorReward()}, {"prompt_color": 1.0}, FrameSelector(policy="last"),
            normalize={"prompt_color": "running"},
        )  # fmt: skip

    module = _reward_module(rewards=ensemble())
    ens = module.rewards
    ens.train()
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        ens(torch.rand(2, 3, 3, 16, 16, generator=g), ["a red square moving left", "a blue square moving up"])
    sd = module.state_dict()
    kept = sorted(k for k in sd if k.startswith("rewards."))
    assert kept == [f"rewards.running_{s}_prompt_color" for s in ("count", "mean", "var")]
    assert int(sd["rewards.running_count_prompt_color"]) > 0
    assert not any(k.startswith(("vae.", "text_encoder.")) for k in sd)
    other = _reward_module(rewards=ensemble())
    other.load_state_dict(sd, strict=True)
    for k in kept:
        assert torch.equal(other.state_dict()[k], sd[k]), k
