"""A recipe checkpoint back into a module (`load_from_checkpoint`, given the built models) and into a pipeline
(`pipeline_from_config`), both against the checkpoint's own tensors; the one-line refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers import tiny_fit_yaml
from rfvideo.cli.lightning import RFVideoCLI
from rfvideo.demo.world.prompt_color import PromptColorReward
from rfvideo.models.tiny import tiny_causal_wan, tiny_text_encoder, tiny_wan_vae
from rfvideo.modules import RewardForcingModule, pipeline_from_config
from rfvideo.rewards import RewardEnsemble

OPTIONS = """    optimizer:
      class_path: torch.optim.AdamW
      init_args: {lr: 0.05, betas: [0.0, 0.999]}
    ema_decay: 0.5
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("fit")
    config = root / "run.yaml"
    config.write_text(tiny_fit_yaml(str(root), model_extra=OPTIONS, epochs=2))
    RFVideoCLI(["fit", "--config", str(config)])
    return config, root / "ckpt" / "last.ckpt"


def components() -> dict:
    """The config's models, built as its class_paths build them (fresh weights)."""
    return {
        "generator": tiny_causal_wan(num_frames_per_chunk=1, seed=1, init_scale=0.1),
        "vae": tiny_wan_vae(seed=2),
        "text_encoder": tiny_text_encoder(seed=3),
        "rewards": RewardEnsemble(terms={"c": PromptColorReward()}, weights={"c": 1.0}),
    }


def test_load_from_checkpoint_round_trip(run) -> None:
    _, ckpt = run
    module = RewardForcingModule.load_from_checkpoint(ckpt, **components())
    stored = torch.load(ckpt, weights_only=True)["state_dict"]
    got = module.state_dict()
    assert got.keys() == stored.keys()
    assert all(torch.equal(got[k], stored[k]) for k in stored)
    # the stored hyperparameters came back too (not the class defaults)
    assert module.ema_decay == 0.5 and module.num_latent_frames == 2 and module.latent_size == (4, 4)


def test_load_from_checkpoint_refusals_are_one_line(run, tmp_path) -> None:
    _, ckpt = run
    with pytest.raises(TypeError, match=r"needs the built \['generator', 'vae', 'rewards'\]") as e:
        RewardForcingModule.load_from_checkpoint(ckpt)
    assert "pipeline_from_config" in str(e.value) and "\n" not in str(e.value)
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint")
    with pytest.raises(ValueError) as e:
        RewardForcingModule.load_from_checkpoint(text, **components())
    assert "notes.ckpt" in str(e.value) and "\n" not in str(e.value)


def test_pipeline_from_config_takes_the_checkpoint_s_ema(run) -> None:
    config, ckpt = run
    stored = torch.load(ckpt, weights_only=True)["state_dict"]
    ema = {k.removeprefix("generator_ema."): v for k, v in stored.items() if k.startswith("generator_ema.")}
    raw = {k.removeprefix("generator."): v for k, v in stored.items() if k.startswith("generator.")}
    assert any(not torch.equal(ema[k], raw[k]) for k in ema)  # they differ: the choice is visible
    for use_ema, want in ((True, ema), (False, raw)):
        pipe = pipeline_from_config(config, ckpt, use_ema=use_ema)
        got = pipe.transformer.state_dict()
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    assert pipe.config.num_frames == 5 and (pipe.config.height, pipe.config.width) == (32, 32)


def test_an_original_self_forcing_file_goes_through_the_same_path(run, tmp_path) -> None:
    """A Self-Forcing-layout `.pt` (original Wan key names under `model.`, in `generator_ema`) passed as the
    checkpoint is converted by `load_original_checkpoint` and loads strictly."""
    from rfvideo.models.convert import diffusers_to_wan

    config, _ = run
    trained = tiny_causal_wan(num_frames_per_chunk=1, seed=9, init_scale=0.3).state_dict()
    original = {"model." + k: v for k, v in diffusers_to_wan(trained).items()}
    path = tmp_path / "self_forcing.pt"
    torch.save({"generator_ema": original, "generator": original}, path)
    pipe = pipeline_from_config(config, path)
    got = pipe.transformer.state_dict()
    assert got.keys() == trained.keys() and all(torch.equal(got[k], trained[k]) for k in trained)
