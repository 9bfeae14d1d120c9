"""Both recipes with `generator_lora`: a step changes only adapter tensors, the optimizer and the EMA see the
adapters only (the EMA shares the frozen base), checkpoints hold adapters + their optimizer state and reload
strictly, a killed-and-resumed LoRA fit equals the uninterrupted one, activation checkpointing gives the
same adapter gradients, and a stage-2 LoRA fit raises the reward."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader

from rfvideo.demo.world.data import DemoPromptDataModule
from rfvideo.demo.world.prompt_color import PromptColorReward
from rfvideo.models.lora import LoraOptions, is_adapter_key
from rfvideo.models.tiny import tiny_causal_wan, tiny_text_encoder, tiny_wan_vae
from rfvideo.modules import ODEInitModule, RewardForcingModule
from rfvideo.rewards import FrameSelector, RewardEnsemble
from rfvideo.sampling import FlowMatchSchedule

LORA = LoraOptions(rank=4, alpha=8.0, seed=7)


def _adam(params, lr=1e-3):
    return torch.optim.AdamW(params, lr=lr, betas=(0.0, 0.999), weight_decay=0.01)


def _module(**kw) -> RewardForcingModule:
    args = dict(
        generator=tiny_causal_wan(num_frames_per_chunk=1, seed=1, init_scale=0.1),
        vae=tiny_wan_vae(seed=2),
        text_encoder=tiny_text_encoder(seed=3),
        rewards=RewardEnsemble({"c": PromptColorReward()}, {"c": 1.0}, FrameSelector(policy="last")),
        optimizer=_adam,
        num_latent_frames=2,
        latent_size=(4, 4),
        ema_decay=0.5,
        generator_lora=LORA,
    )
    args.update(kw)
    return RewardForcingModule(**args)


def _trainer(root, **kw) -> L.Trainer:
    args = dict(
        accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False, default_root_dir=root, deterministic=True,
    )  # fmt: skip
    args.update(kw)
    return L.Trainer(**args)


def test_one_step_changes_only_adapters_and_the_ema_follows_them(tmp_path):
    module = _module()
    gen_before = {k: v.detach().clone() for k, v in module.generator.state_dict().items()}
    ema_before = {k: v.detach().clone() for k, v in module.generator_ema.state_dict().items()}
    ema_params = dict(module.generator_ema.named_parameters())
    for name, p in module.generator.named_parameters():  # the EMA holds no second copy of the base
        assert (ema_params[name] is p) == (not is_adapter_key(name)), name
    trainer = _trainer(tmp_path, fast_dev_run=1)
    trainer.fit(module, DemoPromptDataModule(batch_size=2, epoch_length=4))
    opt_params = [p for g in trainer.optimizers[0].param_groups for p in g["params"]]
    adapters = [p for n, p in module.generator.named_parameters() if is_adapter_key(n)]
    assert len(opt_params) == len(adapters) and all(any(p is a for a in adapters) for p in opt_params)
    after = module.generator.state_dict()
    changed = {k for k in after if not torch.equal(after[k], gen_before[k])}
    assert changed and all(is_adapter_key(k) for k in changed), sorted(changed)[:3]
    assert any("lora_B" in k for k in changed)  # B starts at 0; its gradient is the first to be non-zero
    for k, v in module.generator_ema.state_dict().items():
        if is_adapter_key(k):
            torch.testing.assert_close(v, 0.5 * ema_before[k] + 0.5 * after[k], rtol=1e-6, atol=1e-7)
        else:
            assert torch.equal(v, gen_before[k]), k
    assert int(module.skipped_steps) == 0


def test_checkpoint_holds_adapters_only_and_reloads_strictly():
    module = _module()
    with torch.no_grad():
        for n, p in module.generator.named_parameters():
            if is_adapter_key(n):
                p.add_(0.01)
    sd = module.state_dict()
    gen_keys = [k for k in sd if k.startswith(("generator.", "generator_ema."))]
    assert gen_keys and all(is_adapter_key(k) for k in gen_keys)
    assert not any(k.startswith(("vae.", "text_encoder.")) for k in sd)
    n_adapters = sum(1 for n, _ in module.generator.named_parameters() if is_adapter_key(n))
    assert len(gen_keys) == 2 * n_adapters
    fresh = _module()
    fresh.load_state_dict(sd, strict=True)
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, sd[k]), k
    base_key = "generator.blocks.0.attn1.to_q.base_layer.weight"
    with pytest.raises(ValueError, match="frozen key 'generator.blocks.0.attn1.to_q.base_layer.weight'"):
        fresh.load_state_dict({**sd, base_key: torch.zeros(32, 32)}, strict=True)
    with pytest.raises(RuntimeError, match="Missing"):
        fresh.load_state_dict({k: v for k, v in sd.items() if k != gen_keys[0]}, strict=True)


def _fit(root, max_steps, ckpt_path=None):
    module = _module()
    trainer = _trainer(
        root, max_steps=max_steps, enable_checkpointing=True,
        callbacks=[ModelCheckpoint(dirpath=root / "ckpt", save_last=True, every_n_train_steps=1)],
    )  # fmt: skip
    trainer.fit(module, DemoPromptDataModule(batch_size=2, epoch_length=4, seed=5), ckpt_path=ckpt_path)
    return module, trainer


def test_killed_and_resumed_lora_fit_equals_uninterrupted(tmp_path):
    full, t_full = _fit(tmp_path / "full", 3)
    _fit(tmp_path / "part", 2)  # "killed" after 2 steps (an epoch boundary)
    last = tmp_path / "part" / "ckpt" / "last.ckpt"
    ckpt = torch.load(last, weights_only=True)
    keys = [k for k in ckpt["state_dict"] if k.startswith(("generator.", "generator_ema."))]
    assert keys and all(is_adapter_key(k) for k in keys)
    n_adapters = sum(1 for n, _ in full.generator.named_parameters() if is_adapter_key(n))
    assert len(ckpt["optimizer_states"][0]["state"]) == n_adapters  # the adapters' Adam state only
    assert ckpt["rfvideo_hyper_parameters"]["generator_lora"] == LORA.to_dict()
    resumed, t_res = _fit(tmp_path / "part", 3, ckpt_path=str(last))
    for (k, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    sa, sb = t_full.optimizers[0].state_dict()["state"], t_res.optimizers[0].state_dict()["state"]
    assert sa.keys() == sb.keys() and len(sa) == n_adapters
    for i in sa:
        for key in sa[i]:
            assert torch.equal(torch.as_tensor(sa[i][key]), torch.as_tensor(sb[i][key])), (i, key)
    assert t_full.global_step == t_res.global_step == 3


def test_activation_checkpointing_gives_the_same_adapter_gradients():
    grads = []
    for checkpointing in (False, True):
        module = _module(ema_decay=None)
        gen = module.generator.train()
        with torch.no_grad():
            for n, p in gen.named_parameters():
                if "lora_B" in n:
                    p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(len(n))) * 0.1)
        if checkpointing:
            gen.enable_gradient_checkpointing()
        g = torch.Generator().manual_seed(0)
        x = torch.randn(1, 4, 2, 4, 4, generator=g)
        emb = torch.randn(1, 5, 24, generator=g)
        gen(x, torch.tensor([[900.0, 400.0]]), emb, attention_mode="block_causal").square().mean().backward()
        grads.append({n: p.grad.clone() for n, p in gen.named_parameters() if p.grad is not None})
        assert all(is_adapter_key(n) for n in grads[-1]) and len(grads[-1]) > 0
    assert grads[0].keys() == grads[1].keys()
    for n in grads[0]:
        torch.testing.assert_close(grads[1][n], grads[0][n], rtol=1e-5, atol=1e-7, msg=n)


def test_ode_init_with_lora_trains_adapters_only(tmp_path):
    g = torch.Generator().manual_seed(0)
    ts = torch.cat([FlowMatchSchedule().timesteps, torch.zeros(1)])
    x0, eps = torch.randn(2, 2, 4, 4, 4, generator=g), torch.randn(2, 2, 4, 4, 4, generator=g)
    s = (ts / 1000).view(1, -1, 1, 1, 1, 1)
    traj = (1 - s) * x0[:, None] + s * eps[:, None]  # (b s f c h w) on the straight path
    batch = {"prompt": ["a red square", "a blue square"], "trajectory": traj, "trajectory_timesteps": ts,
             "index": torch.arange(2)}  # fmt: skip
    module = ODEInitModule(
        generator=tiny_causal_wan(num_frames_per_chunk=1, seed=1, init_scale=0.1),
        vae=tiny_wan_vae(),
        text_encoder=tiny_text_encoder(),
        optimizer=_adam,
        num_latent_frames=2,
        latent_size=(4, 4),
        generator_lora=LORA,
    )
    before = {k: v.clone() for k, v in module.generator.state_dict().items()}
    loader = DataLoader([batch, batch], batch_size=None)
    _trainer(tmp_path, fast_dev_run=2).fit(module, train_dataloaders=loader)
    changed = [k for k, v in module.generator.state_dict().items() if not torch.equal(v, before[k])]
    assert changed and all(is_adapter_key(k) for k in changed)


def test_bad_lora_target_fails_at_construction():
    with pytest.raises(ValueError, match="'to_qkv' matches no module"):
        _module(generator_lora=LoraOptions(target_modules=("to_qkv",)))


@pytest.mark.slow
def test_stage2_lora_fit_raises_the_reward(tmp_path):
    """Seeded: the mean last-frame reward of 2 fixed prompts/seeds rises after 8 LoRA steps (rank 8).

    The demo's pooling codec decodes to pixels that mean something (a tiny random Wan VAE decodes to
    near-constant grey, on which the reward cannot move); the colour-only reward (no target area) gives the
    untrained generator a gradient to follow. Measured: 0.089 -> 0.198 (the margin asked is 0.05)."""
    from rfvideo.demo.world.codec import PoolingVideoCodec

    module = _module(
        vae=PoolingVideoCodec(latent_channels=4),
        rewards=RewardEnsemble({"c": PromptColorReward()}, {"c": 1.0}, FrameSelector(policy="last")),
        optimizer=lambda p: _adam(p, lr=3e-2),
        ema_decay=None,
        generator_lora=LoraOptions(rank=8, seed=0),
    )
    prompts = ["a red square moving left", "a blue square moving up"]
    term = module.rewards.terms["c"]

    def score() -> float:
        return float(term(module.generate(prompts, seeds=[0, 1])[:, -1:], prompts).mean())

    before = score()
    _trainer(tmp_path, max_steps=8).fit(module, DemoPromptDataModule(batch_size=2, epoch_length=8, seed=0))
    after = score()
    print(f"reward before {before:.4f} after {after:.4f}")
    assert after > before + 0.05, (before, after)
