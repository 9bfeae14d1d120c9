"""The real Wan2.1-1.3B configs (experiments/wan2.1-1.3b/*.yaml) instantiate and train one step.

Each YAML is copied with only its placeholder tokens (WAN, STAGE1_CKPT, IMAGEREWARD_*, BERT_TOKENIZER, the
data paths) replaced by tiny files this test writes: a diffusers-layout Wan folder (transformer, vae,
text_encoder, tokenizer), a stage-1 Lightning checkpoint, ImageReward files in the official layout, a
prompt file and ODE-trajectory shards. Everything else comes from the YAML; the command line only moves
the run to CPU and shrinks the latent video (3 latent frames = one chunk, 8x8 latents).

Legend: `N` trajectories, `s` trajectory states, `f` latent frames, `c` latent channels, `h w` latent size.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKLWan, WanTransformer3DModel
from transformers import BertTokenizer, ByT5Tokenizer, UMT5Config, UMT5EncoderModel

from helpers import randomize_, tiny_wan_config
from rfvideo.callbacks import VideoLogger
from rfvideo.cli.lightning import RFVideoCLI
from rfvideo.models import CausalWanTransformer
from rfvideo.modules import ODEInitModule, RewardForcingModule
from rfvideo.modules.trajectories import write_trajectory_shards
from rfvideo.rewards.image_reward import ImageReward
from rfvideo.sampling import FlowMatchSchedule
from test_rewards_image_reward import IMAGE_SIZE, MED, VIT, WORDS, official_state_dict

REAL = Path(__file__).resolve().parents[1] / "experiments" / "wan2.1-1.3b"
CHUNK, LATENT_HW = 3, 8  # the YAML's chunk size (3 frames); 8x8 latents = 64x64 pixels
CPU = ["--trainer.accelerator=cpu", "--trainer.devices=1", "--trainer.precision=32"]
SMALL = [
    f"--model.init_args.num_latent_frames={CHUNK}",
    f"--model.init_args.latent_size=[{LATENT_HW},{LATENT_HW}]",
]
PROMPTS = ["a red cat on the mats", "the dog on the mat", "a red dog"]


def _transformer_state(path: Path) -> dict[str, torch.Tensor]:
    return WanTransformer3DModel.from_pretrained(path, subfolder="transformer").state_dict()


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny stand-ins for every file the real configs name (all seeded, none trivial)."""
    root = tmp_path_factory.mktemp("real_configs")
    wan = root / "Wan2.1-T2V-1.3B-Diffusers"
    cfg = tiny_wan_config()
    torch.manual_seed(0)  # the VAE / umT5 constructors draw their init from the global RNG
    randomize_(WanTransformer3DModel(**cfg), torch.Generator().manual_seed(1)).save_pretrained(
        wan / "transformer"
    )
    z = cfg["in_channels"]
    AutoencoderKLWan(
        base_dim=4, z_dim=z, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
        latents_mean=[0.1, -0.2, 0.05, 0.3][:z], latents_std=[1.5, 0.7, 2.0, 1.1][:z],
    ).save_pretrained(wan / "vae")  # fmt: skip
    umt5 = UMT5Config(vocab_size=384, d_model=cfg["text_dim"], d_kv=8, d_ff=32, num_layers=1, num_heads=2)
    UMT5EncoderModel(umt5).save_pretrained(wan / "text_encoder")
    ByT5Tokenizer().save_pretrained(wan / "tokenizer")

    # Stage-1 checkpoint exactly as ODEInitModule checkpoints it: generator and EMA differ, so a test can
    # tell which one load_causal_wan took.
    gen = randomize_(
        CausalWanTransformer(**cfg, num_frames_per_chunk=CHUNK), torch.Generator().manual_seed(2)
    )
    stage1 = ODEInitModule(generator=gen, vae=torch.nn.Linear(1, 1), text_encoder=None, ema_decay=0.99)
    randomize_(stage1.generator_ema, torch.Generator().manual_seed(3))
    torch.save({"state_dict": stage1.state_dict()}, root / "stage1.ckpt")

    torch.save(official_state_dict(torch.Generator().manual_seed(0)), root / "ImageReward.pt")
    (root / "med_config.json").write_text(json.dumps(MED))
    tok = root / "bert-base-uncased"
    tok.mkdir()
    (tok / "vocab.txt").write_text("\n".join(WORDS) + "\n")
    BertTokenizer(vocab=str(tok / "vocab.txt")).save_pretrained(tok)

    (root / "prompts.txt").write_text("\n".join(PROMPTS) + "\n")
    g = torch.Generator().manual_seed(4)
    keep = [*FlowMatchSchedule().timesteps.tolist(), 0.0]
    traj = {
        "prompt": PROMPTS[:2],
        "seed": [0, 1],
        "trajectory": torch.randn(2, len(keep), CHUNK, z, LATENT_HW, LATENT_HW, generator=g),  # (N s f c h w)
        "timesteps": torch.tensor(keep),
    }
    write_trajectory_shards(traj, root / "ode_trajectories")
    return {"root": root, "wan": wan, "stage1": root / "stage1.ckpt", "ir": root / "ImageReward.pt",
            "med": root / "med_config.json", "tok": tok, "prompts": root / "prompts.txt",
            "shards": root / "ode_trajectories"}  # fmt: skip


def _filled_copy(name: str, assets: dict[str, Path], dest: Path) -> Path:
    """The shipped YAML with its placeholder tokens (and nothing else) replaced by the tiny files."""
    text = (REAL / name).read_text()
    subs = {
        r"\bWAN\b": assets["wan"],
        r"\bSTAGE1_CKPT\b": assets["stage1"],
        r"\bIMAGEREWARD_PT\b": assets["ir"],
        r"\bIMAGEREWARD_MED_CONFIG\b": assets["med"],
        r"\bBERT_TOKENIZER\b": assets["tok"],
        r"(?<=train_shards: )data/ode_trajectories\b": assets["shards"],
        r"(?<=train_prompts: )data/prompts\.txt\b": assets["prompts"],
    }
    used = 0
    for pattern, value in subs.items():
        text, n = re.subn(pattern, str(value), text)
        used += n
    assert used > 0
    out = dest / name
    out.write_text(text)
    return out


def _build(config: Path, tmp_path: Path, *extra: str):
    return RFVideoCLI(
        ["--config", str(config), *CPU, f"--trainer.default_root_dir={tmp_path}", *extra], run=False
    )


def _assert_paper_optimizer(trainer) -> None:
    (opt,) = trainer.optimizers
    assert isinstance(opt, torch.optim.AdamW)
    group = opt.param_groups[0]
    assert group["lr"] == 2.0e-6 and tuple(group["betas"]) == (0.0, 0.999) and group["weight_decay"] == 0.01


def _params(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _assert_one_adam_step(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> None:
    """AdamW with beta1 = 0 moves each weight by at most lr (1 + wd |w|) in its first step, and it moved."""
    moved = 0.0
    for k, w0 in before.items():
        d = (after[k] - w0).abs()
        bound = 2.0e-6 * (1 + 0.01 * w0.abs()) * 1.001 + 1e-7
        assert bool((d <= bound).all()), k
        moved = max(moved, float(d.max()))
    assert moved > 1e-6


def test_placeholders_are_the_only_changes(assets, tmp_path):
    for name in ("ode_init.yaml", "reward_forcing.yaml"):
        original = (REAL / name).read_text().splitlines()
        filled = _filled_copy(name, assets, tmp_path).read_text().splitlines()
        changed = [(a, b) for a, b in zip(original, filled, strict=True) if a != b]
        assert changed
        placeholder = re.compile(r"WAN|STAGE1_CKPT|IMAGEREWARD_\w+|BERT_TOKENIZER|data/")
        assert all(placeholder.search(a) for a, _ in changed)


def test_ode_init_config_instantiates_and_trains_one_step(assets, tmp_path):
    cli = _build(
        _filled_copy("ode_init.yaml", assets, tmp_path), tmp_path, "--trainer.fast_dev_run=1", *SMALL
    )
    model = cli.model
    assert isinstance(model, ODEInitModule)
    assert model.generator.num_frames_per_chunk == CHUNK
    assert model.ema_decay == 0.99 and model.grad_clip == 10.0 and model.activation_checkpointing
    want = _transformer_state(assets["wan"])
    got = model.generator.state_dict()
    assert got.keys() == want.keys()
    for k in want:
        assert torch.equal(got[k], want[k]), k
    assert cli.datamodule.train_shards == str(assets["shards"])
    before = _params(model.generator)
    cli.trainer.fit(model, cli.datamodule)
    assert cli.trainer.global_step == 1
    _assert_paper_optimizer(cli.trainer)
    assert any(isinstance(c, VideoLogger) for c in cli.trainer.callbacks)  # sample videos in TensorBoard
    _assert_one_adam_step(before, _params(model.generator))


def test_reward_forcing_config_instantiates_and_trains_one_step(assets, tmp_path):
    ir = "--model.init_args.rewards.init_args.terms.image_reward.init_args."
    tiny_ir = [f"{ir}vit={json.dumps(VIT)}", f"{ir}image_size={IMAGE_SIZE}"]
    cli = _build(
        _filled_copy("reward_forcing.yaml", assets, tmp_path), tmp_path, "--trainer.fast_dev_run=1",
        *SMALL, *tiny_ir,
    )  # fmt: skip
    model = cli.model
    assert isinstance(model, RewardForcingModule)
    # load_causal_wan: diffusers weights first, then the stage-1 checkpoint's EMA generator on top.
    sd = torch.load(assets["stage1"], weights_only=True)["state_dict"]
    ema = {k[len("generator_ema.") :]: v for k, v in sd.items() if k.startswith("generator_ema.")}
    got = model.generator.state_dict()
    assert got.keys() == ema.keys()
    for k in ema:
        assert torch.equal(got[k], ema[k]), k
    assert not torch.equal(got["proj_out.weight"], sd["generator.proj_out.weight"])
    assert isinstance(model.rewards.terms["image_reward"], ImageReward)
    assert model.rewards.frames.policy == "last"
    assert model.anchor_weight == 0.0 and model.checkpoint_decoder
    assert cli.datamodule.train_prompts == str(assets["prompts"])
    before = _params(model.generator)
    cli.trainer.fit(model, cli.datamodule)
    assert cli.trainer.global_step == 1
    _assert_paper_optimizer(cli.trainer)
    assert any(isinstance(c, VideoLogger) for c in cli.trainer.callbacks)  # sample videos in TensorBoard
    _assert_one_adam_step(before, _params(model.generator))


@pytest.mark.parametrize("overlay", ["ddp.yaml", "fsdp.yaml"])
def test_strategy_overlays_instantiate_on_a_real_config(assets, tmp_path, overlay):
    """Each strategy YAML builds its Lightning strategy on top of a filled real config (one CPU process)."""
    from lightning.pytorch.strategies import DDPStrategy, ModelParallelStrategy

    strategy = REAL.parent / "strategies" / overlay
    size = ["--trainer.strategy.init_args.data_parallel_size=1"] if overlay == "fsdp.yaml" else []
    cli = _build(_filled_copy("ode_init.yaml", assets, tmp_path), tmp_path, "--config", str(strategy), *size)
    want = ModelParallelStrategy if overlay == "fsdp.yaml" else DDPStrategy
    assert isinstance(cli.trainer.strategy, want)
    assert isinstance(cli.model, ODEInitModule)


def test_reward_forcing_config_skips_a_nan_reward_by_default(assets, tmp_path):
    """With the shipped stage-2 settings a NaN from ImageReward skips and counts the step, not end the run."""
    ir = "--model.init_args.rewards.init_args.terms.image_reward.init_args."
    cli = _build(
        _filled_copy("reward_forcing.yaml", assets, tmp_path), tmp_path, "--trainer.fast_dev_run=1",
        *SMALL, f"{ir}vit={json.dumps(VIT)}", f"{ir}image_size={IMAGE_SIZE}",
    )  # fmt: skip
    model = cli.model
    term = model.rewards.terms["image_reward"]
    term.score_images = lambda images, prompts: torch.full((images.shape[0],), float("nan"))
    before = _params(model.generator)
    cli.trainer.fit(model, cli.datamodule)
    assert int(model.skipped_steps) == 1 and cli.trainer.global_step == 0
    for k, v in _params(model.generator).items():
        assert torch.equal(v, before[k]), k
