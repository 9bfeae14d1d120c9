"""Memory estimate: fake-tensor estimate vs the live bytes of a real CPU step, LoRA, sharding, bad inputs.

The estimate table of one tiny config is computed once per module (`table`); the expensive checks (every
variant of the depth extrapolation, the real-size preset) are slow-marked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from helpers import tiny_wan_config
from rfvideo.memory import (
    MemoryEstimate,
    add_lora,
    depth_extrapolated_peak,
    estimate_from_config,
    estimate_table,
    format_table,
    generator_step_peak,
)
from rfvideo.models.causal_wan import CausalWanTransformer

LATENT, TEXT = (1, 4, 3, 8, 8), (1, 7, 24)


def _write_config(
    root: Path, *, strategy: str | None = None, ema_decay: float = 0.0, num_layers: int = 2, **model: Any
) -> Path:
    """A folder holding ONLY the generator's config.json (no weights) and an experiment YAML using it."""
    wan = root / "wan" / "transformer"
    wan.mkdir(parents=True, exist_ok=True)
    cfg_json = {"_class_name": "WanTransformer3DModel", **tiny_wan_config(num_layers=num_layers)}
    (wan / "config.json").write_text(json.dumps(cfg_json))
    cfg: dict[str, Any] = {
        "trainer": {"devices": 1, "precision": "32"},
        "model": {
            "init_args": {
                "generator": {"init_args": {"path": str(root / "wan"), "num_frames_per_chunk": 3}},
                "num_latent_frames": 6,
                "latent_size": [8, 8],
                "ema_decay": ema_decay,
                "text_encoder": {"init_args": {"max_length": 7}},
                **model,
            }
        },
        "data": {"init_args": {"batch_size": 1}},
    }
    if strategy is not None:
        cfg["trainer"]["strategy"] = {"class_path": strategy}
    path = root / "exp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _build(num_layers: int = 2) -> torch.nn.Module:
    torch.manual_seed(0)
    return CausalWanTransformer(**tiny_wan_config(num_layers=num_layers), num_frames_per_chunk=3)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_config(tmp_path_factory.mktemp("cfg"), ema_decay=0.99)


@pytest.fixture(scope="module")
def table(config: Path) -> dict[tuple[int | None, str, int], MemoryEstimate]:
    """Full fine-tune and LoRA r4 on DDP / FSDP x 1, 2, 4 GPUs: four fake steps in all."""
    ests = estimate_table([config], world_sizes=(1, 2, 4), lora_ranks=(None, 4))
    return {(e.lora_rank, e.strategy, e.world_size): e for e in ests}


@pytest.mark.parametrize("checkpointing", [pytest.param(False, marks=pytest.mark.slow), True])
def test_estimate_matches_measured_cpu_step_within_15_percent(table: dict, checkpointing: bool) -> None:
    est = table[(None, "ddp", 1)]
    measured = generator_step_peak(_build, LATENT, TEXT, checkpointing=checkpointing, fake=False)
    # the measured step has no rollout cache and no EMA copy
    predicted = est.total(checkpointing) - est.kv_cache - est.ema
    assert abs(predicted - measured.total) <= 0.15 * measured.total, (predicted, measured.total)
    # Weights are exact: float32 parameters of the tiny model.
    n = sum(p.numel() for p in _build().parameters())
    assert est.weights == 4 * n and est.optimizer == 8 * n and est.ema == 4 * n
    # The fake step of the estimate counted the very activation bytes of the real one.
    assert measured.activations == (est.activations_checkpointed if checkpointing else est.activations)
    assert est.activations_checkpointed < est.activations  # checkpointing frees the blocks' saved activations


def test_lora_fake_step_equals_real_and_trains_adapters_only(table: dict) -> None:
    real = generator_step_peak(_build, LATENT, TEXT, fake=False, lora_rank=4)
    assert real.activations == table[(4, "ddp", 1)].activations  # the estimate's fake step, same bytes
    model = add_lora(_build(), 4)
    adapters = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        n for n, _ in model.named_parameters() if "lora_" in n
    }
    tensors = sum(1 for n, _ in model.named_parameters() if "lora_" in n)
    # AdamW's two fp32 moments and its fp32 step counter, for the adapters only
    assert real.optimizer == 2 * 4 * adapters + 4 * tensors


def test_lora_states_are_the_adapters_by_hand(table: dict) -> None:
    full, lora = table[(None, "ddp", 1)], table[(4, "ddp", 1)]
    # adapters: r * (in + out) per targeted linear; per block q/k/v/o of 2 attentions (32 -> 32) and the FFN
    # (32 -> 64 -> 32), width 32, FFN 64, 2 blocks
    per_block = 2 * 4 * 4 * (32 + 32) + 4 * (32 + 64) + 4 * (64 + 32)
    adapters = 2 * per_block * 4  # bytes, fp32
    assert lora.weights == full.weights + adapters
    assert lora.grads == adapters and lora.ema == adapters and lora.optimizer == 2 * adapters
    assert lora.total() < full.total() and lora.total(False) < full.total(False)


def test_sharding_is_arithmetic_on_one_step(table: dict) -> None:
    for rank in (None, 4):
        ddp1 = table[(rank, "ddp", 1)]
        for ws in (1, 2, 4):
            ddp, fsdp = table[(rank, "ddp", ws)], table[(rank, "fsdp", ws)]
            assert ddp.total() == ddp1.total() and ddp.gathered == 0  # DDP replicas: no change with GPUs
            assert fsdp.weights == -(-ddp.weights // ws) and fsdp.optimizer == -(-ddp.optimizer // ws)
            assert fsdp.grads == -(-ddp.grads // ws) and fsdp.ema == -(-ddp.ema // ws)
            assert fsdp.gathered > 0 and fsdp.activations == ddp.activations
            assert fsdp.kv_cache == ddp.kv_cache
        assert table[(rank, "fsdp", 4)].total() < table[(rank, "fsdp", 1)].total()
    # 2 layers x (K, V) x 6 frames x 16 tokens (8x8 latents, 2x2 patches) x width 32 x fp32 + text 7 tokens
    assert ddp1.kv_cache == 2 * 2 * (6 * 16 + 7) * 32 * 4


def test_table_prints_every_row_and_column(table: dict) -> None:
    text = format_table(list(table.values()))
    lines = text.splitlines()
    assert len(lines) == 2 + 6  # header, rule, DDP and FSDP x 3 world sizes
    assert "LoRA r4, checkpointing" in lines[0] and "full fine-tune, no checkpointing" in lines[0]
    gib = table[(4, "fsdp", 2)].total(False) / 2**30
    assert "| FSDP | 2 |" in text and f"{gib:.1f} GiB" in [c.strip() for c in lines[6].split("|")]


def test_depth_extrapolation_equals_a_direct_count() -> None:
    def build() -> torch.nn.Module:
        return _build(num_layers=4)

    # probes of 2 and 3 blocks; a single block is not on the line (its peak falls elsewhere in the step)
    direct = generator_step_peak(build, LATENT, TEXT, checkpointing=True)
    assert depth_extrapolated_peak(build, 4, LATENT, TEXT, checkpointing=True) == direct


@pytest.mark.slow
@pytest.mark.parametrize("lora_rank", [None, 4])
@pytest.mark.parametrize("checkpointing", [False, True])
@pytest.mark.parametrize("autocast_dtype", [None, torch.bfloat16])
def test_depth_extrapolation_equals_a_direct_count_every_variant(
    lora_rank: int | None, checkpointing: bool, autocast_dtype: torch.dtype | None
) -> None:
    def build() -> torch.nn.Module:
        return _build(num_layers=6)

    kw = dict(checkpointing=checkpointing, autocast_dtype=autocast_dtype, lora_rank=lora_rank)
    direct = generator_step_peak(build, LATENT, TEXT, **kw)
    assert depth_extrapolated_peak(build, 6, LATENT, TEXT, **kw) == direct


def test_preset_sizes_the_paper_models_from_configs_only() -> None:
    from diffusers import WanTransformer3DModel

    from rfvideo.memory.config import frozen_bytes, generator_builder
    from rfvideo.memory.model_sizes import MODEL_SIZES

    preset = MODEL_SIZES["wan2.1-t2v-1.3b"]
    with torch.device("meta"):
        ours = generator_builder(preset["transformer"], {"num_frames_per_chunk": 3})()
        ref = WanTransformer3DModel.from_config(preset["transformer"])
    n = sum(p.numel() for p in ours.parameters())
    assert n == sum(p.numel() for p in ref.parameters()) and 1.2e9 < n < 1.5e9
    frozen = frozen_bytes(
        {
            "vae": {"init_args": {"path": "ABSENT"}},
            "text_encoder": {"init_args": {"path": "ABSENT"}},
            "rewards": {
                "init_args": {"terms": {"ir": {"class_path": "x.load_image_reward", "init_args": {}}}}
            },
        },
        preset,
    )
    assert frozen["vae"] == 4 * 126_892_531  # AutoencoderKLWan() on meta, fp32
    assert 5.5e9 < frozen["text_encoder"] / 2 < 5.9e9  # umT5-XXL encoder, bf16
    assert 4.3e8 < frozen["reward ir"] / 4 < 4.9e8  # BLIP ViT-L + BERT-base, fp32


@pytest.mark.slow
def test_paper_config_table_from_the_preset() -> None:
    from rfvideo.memory.model_sizes import MODEL_SIZES

    real = Path(__file__).resolve().parents[1] / "experiments"
    ests = estimate_table(
        [real / "wan2.1-1.3b" / "reward_forcing.yaml", real / "strategies" / "fsdp.yaml"],
        world_sizes=(1, 8),
        preset="wan2.1-t2v-1.3b",
    )
    by = {(e.lora_rank, e.strategy, e.world_size): e for e in ests}
    with torch.device("meta"):
        n = sum(
            p.numel()
            for p in CausalWanTransformer(**MODEL_SIZES["wan2.1-t2v-1.3b"]["transformer"]).parameters()
        )
    full = by[(None, "ddp", 1)]
    assert full.weights == 4 * n and all(v is not None for v in full.frozen.values())
    assert by[(None, "fsdp", 8)].total() < full.total() and by[(16, "ddp", 1)].total() < full.total()
    assert full.activations_checkpointed < full.activations


def test_strategy_and_lora_are_read_from_the_config(tmp_path: Path) -> None:
    path = _write_config(tmp_path, strategy="lightning.pytorch.strategies.ModelParallelStrategy")
    from rfvideo.memory.config import read_experiment

    assert read_experiment([path], None, None, None).strategy == "fsdp"
    path = _write_config(tmp_path / "l", generator_lora={"rank": 8})
    assert read_experiment([path], None, None, None).lora_rank == 8


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"world_size": 0}, "world_size 0"),
        ({"world_size": -2}, "world_size -2"),
        ({"strategy": "zero3"}, "zero3"),
        ({"lora_rank": 0}, "rank 0"),
        ({"preset": "wan9"}, "wan9"),
    ],
)
def test_bad_world_size_strategy_rank_or_preset_names_the_value(
    config: Path, kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        estimate_from_config([config], **kwargs)


def test_unknown_strategy_class_in_config_names_it(tmp_path: Path) -> None:
    path = _write_config(tmp_path, strategy="my.pkg.DeepSpeedStrategy")
    with pytest.raises(ValueError, match="DeepSpeedStrategy"):
        estimate_from_config([path])


def test_missing_model_config_names_the_path(tmp_path: Path) -> None:
    path = _write_config(tmp_path)
    (tmp_path / "wan" / "transformer" / "config.json").unlink()
    with pytest.raises(ValueError, match=r"transformer/config.json.*--preset"):
        estimate_from_config([path])


def test_cli_prints_the_table_and_rejects_bad_values(config: Path, capsys: pytest.CaptureFixture) -> None:
    from rfvideo.cli import main

    assert (
        main(["estimate-memory", "--config", str(config), "--world-size", "1", "2", "--lora-rank", "4"]) == 0
    )
    out = capsys.readouterr().out
    assert "world size 2, LoRA rank 4" in out and "TOTAL with checkpointing" in out
    assert "| DDP | 2 |" in out and "| FSDP | 1 |" in out and "extended linearly" in out
    for bad, msg in ((["--world-size", "0"], "--world-size 0"), (["--lora-rank", "-1"], "--lora-rank -1")):
        assert main(["estimate-memory", "--config", str(config), *bad]) == 2
        assert msg in capsys.readouterr().err
