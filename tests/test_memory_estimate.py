"""Memory estimate: fake-tensor estimate vs the live bytes of a real CPU step, and its bad inputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from helpers import tiny_wan_config
from rfvideo.memory import estimate_from_config, generator_step_peak
from rfvideo.models.causal_wan import CausalWanTransformer


def _write_config(tmp_path: Path, *, strategy: str | None = None, ema_decay: float = 0.0) -> Path:
    """A folder holding ONLY the generator's config.json (no weights) and an experiment YAML using it."""
    wan = tmp_path / "wan" / "transformer"
    wan.mkdir(parents=True)
    (wan / "config.json").write_text(
        json.dumps({"_class_name": "WanTransformer3DModel", **tiny_wan_config()})
    )
    cfg: dict[str, Any] = {
        "trainer": {"devices": 1, "precision": "32"},
        "model": {
            "init_args": {
                "generator": {"init_args": {"path": str(tmp_path / "wan"), "num_frames_per_chunk": 3}},
                "num_latent_frames": 6,
                "latent_size": [8, 8],
                "ema_decay": ema_decay,
                "text_encoder": {"init_args": {"max_length": 7}},
            }
        },
        "data": {"init_args": {"batch_size": 1}},
    }
    if strategy is not None:
        cfg["trainer"]["strategy"] = {"class_path": strategy}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("checkpointing", [False, True])
def test_estimate_matches_measured_cpu_step_within_15_percent(tmp_path: Path, checkpointing: bool) -> None:
    est = estimate_from_config([_write_config(tmp_path)])

    def build() -> torch.nn.Module:
        torch.manual_seed(0)
        return CausalWanTransformer(**tiny_wan_config(), num_frames_per_chunk=3)

    measured = generator_step_peak(
        build, (1, 4, 3, 8, 8), (1, 7, 24), checkpointing=checkpointing, fake=False
    )
    predicted = est.total(checkpointing) - est.kv_cache  # the measured step has no rollout cache
    assert abs(predicted - measured.total) <= 0.15 * measured.total, (predicted, measured.total)
    # Weights are exact: float32 parameters of the tiny model.
    n = sum(p.numel() for p in build().parameters())
    assert est.weights == 4 * n and est.optimizer == 8 * n and est.ema == 0


def test_fake_step_counts_the_same_bytes_as_the_real_step() -> None:
    def build() -> torch.nn.Module:
        return CausalWanTransformer(**tiny_wan_config(), num_frames_per_chunk=3)

    real = generator_step_peak(build, (1, 4, 3, 8, 8), (1, 7, 24), fake=False, checkpointing=True)
    fake = generator_step_peak(build, (1, 4, 3, 8, 8), (1, 7, 24), fake=True, checkpointing=True)
    assert fake == real
    plain = generator_step_peak(build, (1, 4, 3, 8, 8), (1, 7, 24), fake=True, checkpointing=False)
    assert fake.activations < plain.activations  # checkpointing frees the blocks' saved activations


def test_fsdp_shards_the_states_and_kv_cache_is_hand_computed(tmp_path: Path) -> None:
    path = _write_config(tmp_path, ema_decay=0.99)
    ddp = estimate_from_config([path], world_size=4, strategy="ddp")
    fsdp = estimate_from_config([path], world_size=4, strategy="fsdp")
    assert fsdp.weights == -(-ddp.weights // 4) and fsdp.optimizer == -(-ddp.optimizer // 4)
    assert fsdp.grads == -(-ddp.grads // 4) and fsdp.ema == fsdp.weights and ddp.ema == ddp.weights
    assert ddp.gathered == 0 and fsdp.gathered > 0 and fsdp.total() < ddp.total()
    # 2 layers x (K, V) x 6 frames x 16 tokens (8x8 latents, 2x2 patches) x width 32 x fp32 + text 7 tokens
    assert ddp.kv_cache == 2 * 2 * (6 * 16 + 7) * 32 * 4


def test_strategy_is_read_from_the_overlay(tmp_path: Path) -> None:
    path = _write_config(tmp_path, strategy="lightning.pytorch.strategies.ModelParallelStrategy")
    assert estimate_from_config([path]).strategy == "fsdp"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"world_size": 0}, "world_size 0"),
        ({"world_size": -2}, "world_size -2"),
        ({"strategy": "zero3"}, "zero3"),
    ],
)
def test_bad_world_size_or_strategy_names_the_value(
    tmp_path: Path, kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        estimate_from_config([_write_config(tmp_path)], **kwargs)


def test_unknown_strategy_class_in_config_names_it(tmp_path: Path) -> None:
    path = _write_config(tmp_path, strategy="my.pkg.DeepSpeedStrategy")
    with pytest.raises(ValueError, match="DeepSpeedStrategy"):
        estimate_from_config([path])


def test_missing_model_config_names_the_path(tmp_path: Path) -> None:
    path = _write_config(tmp_path)
    (tmp_path / "wan" / "transformer" / "config.json").unlink()
    with pytest.raises(ValueError, match="config.json"):
        estimate_from_config([path])


def test_cli_prints_the_table_and_rejects_bad_world_size(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from rfvideo.cli import main

    path = _write_config(tmp_path)
    assert main(["estimate-memory", "--config", str(path), "--world-size", "1", "2"]) == 0
    out = capsys.readouterr().out
    assert "world size 2" in out and "TOTAL with checkpointing" in out
    assert main(["estimate-memory", "--config", str(path), "--world-size", "0"]) == 2
    assert "--world-size 0" in capsys.readouterr().err
