"""RFVideoDataModule: sources, val split, batch format, mid-epoch resume through a Lightning checkpoint."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch

from rfvideo.data.datamodule import RFVideoDataModule
from rfvideo.data.shards import ShardWriter

PROMPTS = [f"prompt number {i}" for i in range(20)]


@pytest.fixture
def prompt_file(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("\n".join(PROMPTS[:10] + [""] + PROMPTS[10:]) + "\n")
    return path


class _Lookup:
    def get(self, prompts):
        emb = torch.stack([torch.full((3, 2), float(PROMPTS.index(p))) for p in prompts])  # (b n d)
        return emb, torch.ones(len(prompts), 3, dtype=torch.bool)


def _indices(loader):
    return [i for b in loader for i in b["index"].tolist()]


def test_prompt_source_batches_and_epochs(prompt_file):
    with pytest.warns(UserWarning, match="skipped 1 empty"):
        dm = RFVideoDataModule(
            train_prompts=str(prompt_file), batch_size=4, seed=1, prompt_embeddings=_Lookup()
        )
        dm.setup("fit")
    loader = dm.train_dataloader()
    batches = list(loader)
    assert len(batches) == len(loader) == 5
    b = batches[0]
    assert set(b) == {"prompt", "index", "prompt_embeds", "prompt_mask"}
    assert b["prompt"] == [PROMPTS[i] for i in b["index"].tolist()]
    assert b["prompt_embeds"][:, 0, 0].tolist() == b["index"].tolist()
    assert sorted(_indices(batches)) == list(range(20))
    # the shuffle follows the trainer's epoch; same seed, same order
    dm._epoch = 1
    assert _indices(loader) != _indices(batches)
    assert _indices(dm.train_dataloader()) == _indices(loader)


def test_val_split_and_separate_val_file(prompt_file, tmp_path):
    with pytest.warns(UserWarning):
        dm = RFVideoDataModule(train_prompts=str(prompt_file), val_split=0.25, batch_size=3, seed=0)
        dm.setup("fit")
    train = {p for b in dm.train_dataloader() for p in b["prompt"]}
    val = [p for b in dm.val_dataloader() for p in b["prompt"]]
    assert (
        len(train) == 15 and len(set(val)) == 5 and not train & set(val) and train | set(val) == set(PROMPTS)
    )
    with pytest.warns(UserWarning):
        dm = RFVideoDataModule(train_prompts=str(prompt_file), val_split=3.0, batch_size=3, seed=0)
        dm.setup("fit")
    assert len(dm.val_dataset) == 3 and len(dm.train_dataset) == 17
    val_file = tmp_path / "val.jsonl"
    val_file.write_text('{"prompt": "a held-out prompt"}\n')
    with pytest.warns(UserWarning):
        dm = RFVideoDataModule(train_prompts=str(prompt_file), val_prompts=str(val_file), batch_size=2)
        dm.setup("fit")
    assert [b["prompt"] for b in dm.val_dataloader()] == [["a held-out prompt"] * 2]  # padded by wrap
    with pytest.raises(ValueError, match="exactly one"):
        RFVideoDataModule(batch_size=2)
    with pytest.raises(ValueError, match="val_split"):
        RFVideoDataModule(train_prompts="x.txt", val_split=1.5)


def test_trajectory_shards_source(tmp_path):
    g = torch.Generator().manual_seed(0)
    ts = torch.tensor([1000.0, 937.5, 833.33, 625.0, 0.0])
    trajs = [torch.randn(5, 3, 4, 2, 2, generator=g) for _ in range(6)]
    with ShardWriter(tmp_path / "traj", shard_size=4) as w:
        for i, t in enumerate(trajs):
            w.add({"prompt": PROMPTS[i], "trajectory": t, "trajectory_timesteps": ts}, key=str(i))
    dm = RFVideoDataModule(train_shards=str(tmp_path / "traj"), batch_size=3, shuffle=False)
    dm.setup("fit")
    b = next(iter(dm.train_dataloader()))
    assert b["trajectory"].shape == (3, 5, 3, 4, 2, 2) and b["trajectory_timesteps"].shape == (5,)
    torch.testing.assert_close(b["trajectory"], torch.stack(trajs[:3]), rtol=0, atol=0)
    assert b["prompt"] == PROMPTS[:3]


class _Recorder(pl.LightningModule):
    """Trains a dummy parameter and records the sample indices of every training batch."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[list[int]] = []

    def training_step(self, batch, batch_idx):
        self.seen.append(batch["index"].tolist())
        return (self.w - 1).pow(2).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _trainer(tmp_path, **kw):
    return pl.Trainer(
        accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=tmp_path, **kw,
    )  # fmt: skip


def test_lightning_resume_mid_epoch_yields_exactly_the_remaining_samples(tmp_path):
    prompt_file = tmp_path / "clean.csv"
    prompt_file.write_text("prompt\n" + "\n".join(PROMPTS) + "\n")

    def dm():
        return RFVideoDataModule(train_prompts=str(prompt_file), batch_size=2, seed=3, num_workers=0)

    ref = _Recorder()
    _trainer(tmp_path / "ref", max_epochs=2).fit(ref, datamodule=dm())
    assert len(ref.seen) == 20  # 10 batches per epoch

    ckpt = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ck", every_n_train_steps=3, save_top_k=-1)
    first = _Recorder()
    # stops after step 4, one step after the step-3 checkpoint (so a prefetched batch exists then)
    _trainer(tmp_path / "a", max_steps=4, callbacks=[ckpt]).fit(first, datamodule=dm())
    assert first.seen == ref.seen[:4]
    path = next(p for p in (tmp_path / "ck").iterdir() if "step=3" in p.name)
    state = torch.load(path, weights_only=False)["RFVideoDataModule"]
    assert state == {"epoch": 0, "consumed": 6, "seed": 3}

    resumed = _Recorder()
    _trainer(tmp_path / "b", max_epochs=2).fit(resumed, datamodule=dm(), ckpt_path=str(path))
    assert resumed.seen == ref.seen[3:]


class _FakeTrainer:
    """The trainer attributes the DataModule reads (a 2-rank run without processes)."""

    def __init__(self, world_size: int, rank: int) -> None:
        self.world_size, self.global_rank = world_size, rank
        self.current_epoch, self.training, self.sanity_checking = 1, True, False


def test_two_ranks_position_and_resume_on_another_world_size(tmp_path):
    prompt_file = tmp_path / "p.jsonl"
    prompt_file.write_text("".join(f'{{"prompt": "{p}"}}\n' for p in PROMPTS))
    seen, states = [], []
    for rank in range(2):
        dm = RFVideoDataModule(train_prompts=str(prompt_file), batch_size=2, seed=9)
        dm.trainer = _FakeTrainer(2, rank)
        it = iter(dm.train_dataloader())
        for _ in range(3):  # 3 steps on each rank, then "checkpoint"
            seen += dm.on_before_batch_transfer(next(it), 0)["index"].tolist()
        states.append(dm.state_dict())
    assert states[0] == states[1] == {"epoch": 1, "consumed": 12, "seed": 9}
    dm = RFVideoDataModule(train_prompts=str(prompt_file), batch_size=4, seed=9)
    dm.trainer = _FakeTrainer(1, 0)
    dm.load_state_dict(states[0])
    rest = _indices(dm.train_dataloader())
    assert len(rest) == 8 and sorted(seen + rest) == list(range(20))
    with pytest.raises(ValueError, match="seed"):
        RFVideoDataModule(train_prompts=str(prompt_file), seed=1).load_state_dict(states[0])


def test_train_loader_speaks_lightnings_stateful_protocol(prompt_file):
    """Lightning warns "dataloader is not resumable" unless the loader has state_dict / load_state_dict."""
    from lightning.fabric.utilities.types import _Stateful

    with pytest.warns(UserWarning):
        dm = RFVideoDataModule(train_prompts=str(prompt_file), batch_size=4, seed=2)
        dm.setup("fit")
    loader = dm.train_dataloader()
    assert isinstance(loader, _Stateful)
    order = _indices(loader)
    dm._consumed = 8  # two batches taken by the training step
    state = loader.state_dict()
    assert state == dm.state_dict() == {"epoch": 0, "consumed": 8, "seed": 2}
    with pytest.warns(UserWarning):
        fresh = RFVideoDataModule(train_prompts=str(prompt_file), batch_size=4, seed=2)
        fresh.setup("fit")
    resumed = fresh.train_dataloader()
    resumed.load_state_dict(state)  # what Lightning's fit loop calls after building the loader
    assert _indices(resumed) == order[8:]


def test_no_val_dataloader_without_validation_data(prompt_file):
    """Lightning warns "You passed in a val_dataloader but have no validation_step" when one is defined."""
    from lightning.pytorch.utilities.model_helpers import is_overridden

    plain = RFVideoDataModule(train_prompts=str(prompt_file))
    split = RFVideoDataModule(train_prompts=str(prompt_file), val_split=0.25)
    assert not is_overridden("val_dataloader", plain, pl.LightningDataModule)
    assert is_overridden("val_dataloader", split, pl.LightningDataModule)
