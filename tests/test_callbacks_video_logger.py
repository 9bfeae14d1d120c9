"""VideoLogger: mp4 files and real animated TensorBoard summaries (GIF image summaries, no moviepy) of the
sample videos, frame for frame the videos `generate` makes for the fixed prompts and seeds."""

from __future__ import annotations

import io

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from PIL import Image, ImageSequence
from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader

from rfvideo.callbacks import VideoLogger
from rfvideo.demo.world.data import DemoPromptDataModule
from rfvideo.demo.world.prompt_color import PromptColorReward
from rfvideo.models.tiny import tiny_causal_wan, tiny_text_encoder, tiny_wan_vae
from rfvideo.modules import RewardForcingModule
from rfvideo.rewards import RewardEnsemble


def test_sample_videos_are_animated_in_tensorboard(tmp_path):
    module = RewardForcingModule(
        generator=tiny_causal_wan(num_frames_per_chunk=1, seed=1, init_scale=0.1),
        vae=tiny_wan_vae(seed=2),
        text_encoder=tiny_text_encoder(seed=3),
        rewards=RewardEnsemble({"c": PromptColorReward()}, {"c": 1.0}),
        optimizer=lambda p: torch.optim.AdamW(p, lr=1e-3),
        num_latent_frames=2,
        latent_size=(4, 4),
    )
    prompts = ["a red square moving left", "a blue square moving up"]
    cb = VideoLogger(prompts, seeds=[3, 4], every_n_steps=1)
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_steps=1, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, logger=TensorBoardLogger(tmp_path, name="tb"), callbacks=[cb],
    )  # fmt: skip
    trainer.fit(module, DemoPromptDataModule(batch_size=2, epoch_length=4))
    assert len(list(tmp_path.rglob("videos/step_0000001/*.mp4"))) == 2
    trainer.logger.experiment.flush()
    images = {}
    for path in tmp_path.rglob("events.out.tfevents.*"):
        for event in LegacyEventFileLoader(str(path)).Load():  # raw summaries, not migrated
            for v in event.summary.value:
                if v.HasField("image"):
                    images[v.tag] = v.image.encoded_image_string
    assert {*cb.tags, "samples/first_mid_last"} <= set(images)
    want = module.generate(prompts, seeds=[3, 4])  # (b F 3 H W), the trained weights' EMA, as logged
    for i in range(2):
        gif = Image.open(io.BytesIO(images[cb.tags[i]]))
        assert gif.format == "GIF" and gif.n_frames == want.shape[1]
        frames = np.stack([np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(gif)])  # (F H W 3)
        ref = want[i].permute(0, 2, 3, 1).mul(255).round().numpy()
        assert np.abs(frames.astype(np.float64) - ref).mean() < 12  # GIF palette quantisation only
