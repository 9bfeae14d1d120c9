"""What a user sees on every fit: no Lightning tips, no "Found N module(s) in eval mode" for the frozen
parts, no ModelCheckpoint manual-optimisation warning, and a progress bar that does not say "Epoch 0/-2".
The real signal behind the eval-mode warning (a generator loaded in eval mode) is fixed, not silenced."""

from __future__ import annotations

import logging

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from rfvideo.callbacks import StepRichProgressBar
from rfvideo.demo.world.data import DemoPromptDataModule
from rfvideo.demo.world.prompt_color import PromptColorReward
from rfvideo.models.tiny import tiny_causal_wan, tiny_text_encoder, tiny_wan_vae
from rfvideo.modules import RewardForcingModule
from rfvideo.rewards import RewardEnsemble


def _module() -> RewardForcingModule:
    return RewardForcingModule(
        generator=tiny_causal_wan(num_frames_per_chunk=1, seed=1, init_scale=0.1),
        vae=tiny_wan_vae(seed=2),
        text_encoder=tiny_text_encoder(seed=3),
        rewards=RewardEnsemble({"c": PromptColorReward()}, {"c": 1.0}),
        optimizer=lambda p: torch.optim.AdamW(p, lr=1e-3),
        num_latent_frames=2,
        latent_size=(4, 4),
    )


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_a_fit_prints_no_tips_no_eval_mode_or_checkpoint_warnings(tmp_path, recwarn):
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    records = _Records()
    rank_zero.addHandler(records)
    level = rank_zero.level
    rank_zero.setLevel(logging.INFO)
    try:
        module = _module()  # built first, as LightningCLI does
        trainer = L.Trainer(
            accelerator="cpu", devices=1, max_steps=2, default_root_dir=tmp_path,
            callbacks=[ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=1, save_last=True)],
        )  # fmt: skip
        trainer.fit(module, DemoPromptDataModule(batch_size=2, epoch_length=8))
    finally:
        rank_zero.removeHandler(records)
        rank_zero.setLevel(level)
    assert trainer.global_step == 2
    assert any("GPU available" in m for m in records.messages)  # the handler saw Lightning's info lines
    assert not [m for m in records.messages if "Tip:" in m or "configure_callbacks" in m]
    noise = ("module(s) in eval mode", "ModelCheckpoint with manual optimization")
    assert not [str(w.message) for w in recwarn if any(n in str(w.message) for n in noise)]
    bar = trainer.progress_bar_callback
    assert isinstance(bar, StepRichProgressBar)
    assert bar._get_train_description(0).strip() == "Epoch 0"  # Lightning's own bar: "Epoch 0/-2"


def test_the_generator_trains_in_train_mode_even_if_loaded_in_eval_mode(tmp_path):
    """diffusers' `from_pretrained` (load_causal_wan) returns the generator in eval mode, and Lightning keeps
    the modes it is given: the module must switch the trainable part to train mode itself."""
    module = _module()
    module.generator.eval()
    modes: list[tuple[bool, bool, bool]] = []
    compute_loss = module.compute_loss

    def recording(batch, batch_idx):
        modes.append((module.generator.training, module.vae.training, module.rewards.terms["c"].training))
        return compute_loss(batch, batch_idx)

    module.compute_loss = recording
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_steps=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(module, DemoPromptDataModule(batch_size=2, epoch_length=8))
    assert modes == [(True, False, False)]  # generator trains; frozen parts stay in eval
