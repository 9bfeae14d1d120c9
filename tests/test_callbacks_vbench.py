"""VBenchCallback with a tiny fake LightningModule on a CPU Trainer: logged values = direct eval calls."""

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.loggers import Logger, TensorBoardLogger

from rfvideo.callbacks import VBenchCallback, load_prompt_suite
from rfvideo.eval import aggregate_scores, background_consistency, overall_consistency, temporal_flickering


class FakeGenerator(pl.LightningModule):
    """generate(): a deterministic function of (prompt, seed) -> (b F 3 H W) in [0, 1]."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.calls = []

    def generate(self, prompts, *, seeds, num_latent_frames=None, use_ema=True):
        self.calls.append((list(prompts), list(seeds), num_latent_frames, use_ema, self.training))
        out = []
        for p, s in zip(prompts, seeds):
            g = torch.Generator().manual_seed(s * 1000 + len(p))
            base = torch.rand(1, 3, 16, 16, generator=g)
            out.append((base + 0.05 * torch.rand(5, 3, 16, 16, generator=g)).clamp(0, 1))
        return torch.stack(out)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def train_dataloader(self):
        x = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=2)


class MemoryLogger(Logger):
    def __init__(self):
        super().__init__()
        self.records = []

    @property
    def name(self):
        return "memory"

    @property
    def version(self):
        return 0

    def log_metrics(self, metrics, step=None):
        self.records.append((step, dict(metrics)))

    def log_hyperparams(self, *args, **kwargs):
        pass


class TinyViCLIP:
    def encode_vision(self, x, test=False):
        return x.mean(dim=(1, 3, 4))

    def encode_text(self, text):
        return torch.tensor([[1.0, float(len(text) % 3), 0.5]])


PROMPTS = {
    "temporal_flickering": ["a still lake", "a quiet room"],
    "background_consistency": ["a quiet room", "a busy street", "a forest"],
    "overall_consistency": ["a busy street", "a cat playing piano"],
}


def _clip_image(x):
    return x.mean(dim=(2, 3)) * torch.tensor([1.0, -2.0, 0.5]) + x[:, :, 100, 100]


def test_logged_values_equal_direct_eval_calls(tmp_path):
    module = FakeGenerator()
    backbones_built = []

    def factory():
        backbones_built.append(1)
        return {"background_consistency": _clip_image, "overall_consistency": TinyViCLIP()}

    cb = VBenchCallback(list(PROMPTS), factory, PROMPTS, every_n_steps=2, seed=10, num_log_videos=1)
    logger = MemoryLogger()
    trainer = pl.Trainer(
        max_steps=4,
        logger=[logger, TensorBoardLogger(tmp_path)],
        callbacks=[cb],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
    )
    trainer.fit(module)
    vb = [(s, m) for s, m in logger.records if any(k.startswith("val/vbench/") for k in m)]
    assert [s for s, _ in vb] == [2, 4]
    assert len(backbones_built) == 1  # factory called once, lazily

    # Every evaluation used the same distinct prompts with the same seeds, in eval mode.
    distinct = ["a still lake", "a quiet room", "a busy street", "a forest", "a cat playing piano"]
    assert module.calls[0][0] == distinct and module.calls[0][1] == [10, 11, 12, 13, 14]
    assert module.calls[0][:2] == module.calls[1][:2] and module.calls[0][4] is False and module.training

    videos = module.generate(distinct, seeds=[10, 11, 12, 13, 14])
    sel = lambda ps: videos[[distinct.index(p) for p in ps]]
    expect = {
        "temporal_flickering": temporal_flickering(sel(PROMPTS["temporal_flickering"])).aggregate,
        "background_consistency": background_consistency(
            sel(PROMPTS["background_consistency"]), _clip_image
        ).aggregate,
        "overall_consistency": overall_consistency(
            sel(PROMPTS["overall_consistency"]), PROMPTS["overall_consistency"], TinyViCLIP()
        ).aggregate,
    }
    metrics = vb[0][1]
    for d, v in expect.items():
        assert metrics[f"val/vbench/{d}"] == pytest.approx(v, abs=1e-9)
    agg = aggregate_scores(expect)
    assert metrics["val/vbench/quality_subset"] == pytest.approx(agg.quality)
    assert metrics["val/vbench/semantic_subset"] == pytest.approx(agg.semantic)
    assert metrics["val/vbench/total_subset"] == pytest.approx(agg.total)
    assert vb[1][1] == pytest.approx(metrics)  # fixed prompts/seeds and a generator that does not train

    # TensorBoard got the scalars and a GIF image summary.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(tmp_path / "lightning_logs" / "version_0"), size_guidance={"images": 0})
    ea.Reload()
    assert "val/vbench/total_subset" in ea.Tags()["scalars"]
    img = ea.Images("val/vbench/sample_0")[0]
    assert img.encoded_image_string[:6] == b"GIF89a" and (img.width, img.height) == (16, 16)


def test_rank_split_pads_evenly():
    cb = VBenchCallback(["temporal_flickering"], {}, ["a", "b", "c", "d", "e"], every_n_steps=0)
    shares = [cb._local_share(r, 2) for r in range(2)]
    assert shares == [[0, 2, 4], [1, 3, 4]]  # rank 1 pads with the last prompt (weight 0 there)


def test_validation_and_errors(tmp_path):
    with pytest.raises(ValueError, match="not implemented"):
        VBenchCallback(["color"], {}, ["a"])
    with pytest.raises(ValueError, match="no prompts for dimensions"):
        VBenchCallback(["temporal_flickering", "overall_consistency"], {}, {"temporal_flickering": ["a"]})
    d = tmp_path / "prompts_per_dimension"
    d.mkdir()
    (d / "temporal_flickering.txt").write_text("a still lake\n\na quiet room\nthird\n")
    assert load_prompt_suite(d, ["temporal flickering"], max_per_dimension=2) == {
        "temporal_flickering": ["a still lake", "a quiet room"]
    }
    with pytest.raises(FileNotFoundError, match="scene"):
        load_prompt_suite(d, ["scene"])


def test_prompts_from_full_info(tmp_path):
    import json

    from rfvideo.callbacks import prompts_from_full_info

    info = [
        {
            "prompt_en": "a lake, Van Gogh style",
            "dimension": ["appearance_style"],
            "auxiliary_info": {"appearance_style": {"appearance_style": "Van Gogh style"}},
        },
        {"prompt_en": "a dog", "dimension": ["dynamic_degree", "motion_smoothness"]},
        {"prompt_en": "a cat", "dimension": ["dynamic_degree"]},
    ]
    path = tmp_path / "full.json"
    path.write_text(json.dumps(info))
    prompts, styles = prompts_from_full_info(
        path, ["dynamic degree", "appearance_style"], max_per_dimension=1
    )
    assert prompts == {"dynamic_degree": ["a dog"], "appearance_style": ["a lake, Van Gogh style"]}
    assert styles == {"a lake, Van Gogh style": "Van Gogh style"}
    with pytest.raises(ValueError, match="'scene'"):
        prompts_from_full_info(path, ["scene"])
