"""Killed-and-resumed fit equals an uninterrupted one (weights, EMA, optimizer state, data position), and
2-process DDP on CPU (gloo) keeps identical weights on both ranks."""

from __future__ import annotations

import warnings

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from rfvideo.demo.world.data import DemoPromptDataModule
from rfvideo.demo.world.prompt_color import PromptColorReward
from rfvideo.models.tiny import tiny_causal_wan, tiny_text_encoder, tiny_wan_vae
from rfvideo.modules import RewardForcingModule
from rfvideo.rewards import FrameSelector, RewardEnsemble


def _adam(params):
    return torch.optim.AdamW(params, lr=1e-3, betas=(0.0, 0.999), weight_decay=0.01)


def _module() -> RewardForcingModule:
    return RewardForcingModule(
        generator=tiny_causal_wan(num_frames_per_chunk=1, seed=1, init_scale=0.1),
        vae=tiny_wan_vae(seed=2),
        text_encoder=tiny_text_encoder(seed=3),
        rewards=RewardEnsemble({"c": PromptColorReward()}, {"c": 1.0}, FrameSelector(policy="last")),
        optimizer=_adam,
        num_latent_frames=2,
        latent_size=(4, 4),
        ema_decay=0.5,
    )


class _RecordPrompts(Callback):
    def __init__(self) -> None:
        self.prompts: list[list[str]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.prompts.append(list(batch["prompt"]))


def _fit(tmp_path, max_steps, ckpt_path=None, callbacks=()):
    module = _module()
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_steps=max_steps, logger=False, enable_progress_bar=False,
        enable_model_summary=False, deterministic=True, default_root_dir=tmp_path,
        callbacks=[ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, every_n_train_steps=1),
                   *callbacks],
    )  # fmt: skip
    trainer.fit(module, DemoPromptDataModule(batch_size=2, epoch_length=4, seed=5), ckpt_path=ckpt_path)
    return module, trainer


def test_killed_and_resumed_fit_equals_uninterrupted(tmp_path):
    rec_full, rec_a, rec_b = _RecordPrompts(), _RecordPrompts(), _RecordPrompts()
    full, t_full = _fit(tmp_path / "full", 4, callbacks=[rec_full])
    _fit(tmp_path / "part", 2, callbacks=[rec_a])  # "killed" after 2 steps (an epoch boundary)
    resumed, t_res = _fit(tmp_path / "part", 4, ckpt_path=str(tmp_path / "part" / "ckpt" / "last.ckpt"),
                          callbacks=[rec_b])  # fmt: skip
    assert rec_a.prompts + rec_b.prompts == rec_full.prompts  # same data, same order
    for (k, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    sa, sb = t_full.optimizers[0].state_dict()["state"], t_res.optimizers[0].state_dict()["state"]
    assert sa.keys() == sb.keys() and len(sa) > 0
    for i in sa:
        for key in sa[i]:
            assert torch.equal(torch.as_tensor(sa[i][key]), torch.as_tensor(sb[i][key])), (i, key)
    assert t_full.global_step == t_res.global_step == 4


class _CheckRanksAgree(Callback):
    def __init__(self, out) -> None:
        self.out = out

    def on_train_end(self, trainer, pl_module):
        flat = torch.cat([p.detach().flatten() for p in pl_module.generator.parameters()])
        ema = torch.cat([p.detach().flatten() for p in pl_module.generator_ema.parameters()])
        both = trainer.strategy.all_gather(torch.stack([flat.sum(), (flat**2).sum(), ema.sum()]))
        if trainer.is_global_zero:
            torch.save({"stats": both, "first": flat[:64].clone()}, self.out)


@pytest.mark.slow
def test_two_process_ddp_on_cpu_keeps_ranks_identical(tmp_path):
    module = _module()
    before = torch.cat([p.detach().flatten() for p in module.generator.parameters()])
    trainer = L.Trainer(
        accelerator="cpu", devices=2, strategy="ddp_spawn", max_steps=2, logger=False,
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
        callbacks=[_CheckRanksAgree(tmp_path / "stats.pt")],
    )  # fmt: skip
    trainer.fit(module, DemoPromptDataModule(batch_size=1, epoch_length=4))
    res = torch.load(tmp_path / "stats.pt", weights_only=True)
    stats = res["stats"]  # (ranks 3)
    assert stats.shape[0] == 2
    torch.testing.assert_close(stats[0], stats[1], rtol=0, atol=0)
    assert not torch.equal(res["first"], before[:64])  # it trained


def test_killed_mid_epoch_and_resumed_equals_uninterrupted(tmp_path):
    """The real data module, killed inside an epoch: the resumed run sees exactly the remaining prompts."""
    from rfvideo.data import RFVideoDataModule

    prompts = tmp_path / "prompts.txt"
    colors, moves = ("red", "green", "blue"), ("left", "up")
    prompts.write_text("".join(f"a {c} square moving {m}\n" for c in colors for m in moves))

    def fit(root, max_steps, ckpt_path=None, rec=None):
        module = _module()
        trainer = L.Trainer(
            accelerator="cpu", devices=1, max_steps=max_steps, logger=False, enable_progress_bar=False,
            enable_model_summary=False, deterministic=True, default_root_dir=root,
            callbacks=[ModelCheckpoint(dirpath=root / "ckpt", save_last=True, every_n_train_steps=1), rec],
        )  # fmt: skip
        data = RFVideoDataModule(train_prompts=str(prompts), batch_size=2, seed=5)
        trainer.fit(module, data, ckpt_path=ckpt_path)
        return module, trainer

    rec_full, rec_a, rec_b = _RecordPrompts(), _RecordPrompts(), _RecordPrompts()
    full, t_full = fit(tmp_path / "full", 5, rec=rec_full)  # 3 steps per epoch: crosses an epoch
    fit(tmp_path / "part", 2, rec=rec_a)  # killed after 2 of the epoch's 3 steps
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resumed, t_res = fit(tmp_path / "part", 5, str(tmp_path / "part" / "ckpt" / "last.ckpt"), rec=rec_b)
    # the loader is stateful, so Lightning knows this mid-epoch resume is exact
    assert not [w for w in caught if "not resumable" in str(w.message)]
    assert rec_a.prompts + rec_b.prompts == rec_full.prompts
    assert len(rec_b.prompts) == 3
    for (k, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    assert t_full.global_step == t_res.global_step == 5


class _NaNOnRankOne(PromptColorReward):
    """The demo reward, NaN on rank 1's first call only: the ranks must still skip that step together."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def score_images(self, images, prompts):
        import torch.distributed as dist

        self.calls += 1
        out = super().score_images(images, prompts)
        if dist.is_initialized() and dist.get_rank() == 1 and self.calls == 1:
            out = out * float("nan")
        return out


class _SaveCounters(Callback):
    def __init__(self, out) -> None:
        self.out = out

    def on_train_end(self, trainer, pl_module):
        flat = torch.cat([p.detach().flatten() for p in pl_module.generator.parameters()])
        stats = torch.stack(
            [pl_module.skipped_steps.float(), pl_module.rewards.running_count_c.float(), flat.sum()]
        )
        both = trainer.strategy.all_gather(stats)
        if trainer.is_global_zero:
            torch.save(both, self.out)


@pytest.mark.slow
def test_a_nan_reward_on_one_rank_skips_on_every_rank(tmp_path):
    module = _module()
    module.rewards = RewardEnsemble(
        {"c": _NaNOnRankOne()}, {"c": 1.0}, FrameSelector(policy="last"), normalize={"c": "running"}
    )
    trainer = L.Trainer(
        accelerator="cpu", devices=2, strategy="ddp_spawn", max_steps=2, logger=False,
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
        callbacks=[_SaveCounters(tmp_path / "counters.pt")],
    )  # fmt: skip
    trainer.fit(module, DemoPromptDataModule(batch_size=1, epoch_length=8))
    stats = torch.load(tmp_path / "counters.pt", weights_only=True)  # (ranks 3)
    assert stats[:, 0].tolist() == [1.0, 1.0]  # both ranks skipped the first step
    assert stats[:, 1].tolist() == [2.0, 2.0]  # and both left the running statistics alone for it
    assert float(stats[0, 2]) == float(stats[1, 2])  # weights identical
