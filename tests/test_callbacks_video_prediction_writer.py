"""`rfvideo predict` saves its videos: RFVideoDataModule(predict_prompts=...) + VideoPredictionWriter write
`{prompt}-{i}.mp4` per prompt and sample, each the video `generate` makes for that prompt and seed."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch

from rfvideo.callbacks import VideoPredictionWriter
from rfvideo.data import RFVideoDataModule
from rfvideo.data.video_io import read_video
from rfvideo.demo.world.prompt_color import PromptColorReward
from rfvideo.eval.folder import index_from_filename, prompt_from_filename
from rfvideo.models.tiny import tiny_causal_wan, tiny_text_encoder, tiny_wan_vae
from rfvideo.modules import RewardForcingModule
from rfvideo.rewards import RewardEnsemble

PROMPTS = ["a red square moving left", "a blue square moving up"]


def test_predict_writes_one_named_mp4_per_prompt_and_sample(tmp_path):
    module = RewardForcingModule(
        generator=tiny_causal_wan(num_frames_per_chunk=1, seed=1, init_scale=0.1),
        vae=tiny_wan_vae(seed=2),
        text_encoder=tiny_text_encoder(seed=3),
        rewards=RewardEnsemble({"c": PromptColorReward()}, {"c": 1.0}),
        num_latent_frames=2,
        latent_size=(4, 4),
    )
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    data = RFVideoDataModule(
        train_prompts=str(prompts), predict_prompts=str(prompts), predict_samples_per_prompt=2,
        predict_seed=10, batch_size=3,
    )  # fmt: skip
    out = tmp_path / "videos"
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        callbacks=[VideoPredictionWriter(str(out), fps=8)])  # fmt: skip
    predictions = trainer.predict(module, data)
    files = sorted(p.name for p in out.glob("*.mp4"))
    assert files == sorted(f"{p}-{i}.mp4" for p in PROMPTS for i in range(2))
    assert all(isinstance(v, str) for batch in predictions for v in batch["video"])  # tensors released
    records = [json.loads(x) for x in (out / "predictions_rank0.jsonl").read_text().splitlines()]
    assert sorted((r["prompt"], r["sample_index"], r["seed"]) for r in records) == sorted(
        (p, i, 10 + 2 * j + i) for j, p in enumerate(PROMPTS) for i in range(2)
    )
    for r in records:
        path = out / r["file"]
        assert (prompt_from_filename(path), index_from_filename(path)) == (r["prompt"], r["sample_index"])
        got = read_video(path)  # (F 3 H W), H.264 round trip
        want = module.generate([r["prompt"]], seeds=[r["seed"]])[0]
        assert got.shape == want.shape
        err = (got - want).abs().mean()
        others = [module.generate([r["prompt"]], seeds=[r["seed"] + 100])[0]]
        assert float(err) < 0.05 and float(err) < float((got - others[0]).abs().mean())


def test_predict_without_a_prompt_file_or_with_bad_counts_is_refused(tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a\n")
    with pytest.raises(ValueError, match="predict_samples_per_prompt must be a positive int, got 0"):
        RFVideoDataModule(train_prompts=str(prompts), predict_samples_per_prompt=0)
    with pytest.raises(ValueError, match="predict needs data.init_args.predict_prompts"):
        RFVideoDataModule(train_prompts=str(prompts)).predict_dataloader()
    with pytest.raises(ValueError, match="output_dir"):
        VideoPredictionWriter("")
    with pytest.raises(ValueError, match="contains '/'"):
        VideoPredictionWriter(str(tmp_path)).write_on_batch_end(
            None, None, {"prompt": ["a/b"], "video": torch.rand(1, 5, 3, 8, 8), "seed": [0]}, None, None, 0, 0
        )
