"""FSDP2 + LoRA (`ModelParallelStrategy` -> `configure_model` -> `shard_generator`, activation checkpointing
on) on 2 CPU processes (gloo): two steps train the adapters only, identically on both ranks, and the gathered
frozen base is bit-identical to its initial weights (generator and EMA).

Each run is two processes of this file launched as a script with Lightning's environment variables, as in
tests/test_distributed_fsdp.py.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

STEPS = 2


def _module():
    from rfvideo.demo.world.prompt_color import PromptColorReward
    from rfvideo.models.lora import LoraOptions
    from rfvideo.models.tiny import tiny_causal_wan, tiny_text_encoder, tiny_wan_vae
    from rfvideo.modules import RewardForcingModule
    from rfvideo.rewards import FrameSelector, RewardEnsemble

    return RewardForcingModule(
        generator=tiny_causal_wan(num_frames_per_chunk=1, seed=1, init_scale=0.1),
        vae=tiny_wan_vae(seed=2),
        text_encoder=tiny_text_encoder(seed=3),
        rewards=RewardEnsemble({"c": PromptColorReward()}, {"c": 1.0}, FrameSelector(policy="last")),
        optimizer=lambda p: torch.optim.AdamW(p, lr=1e-2, betas=(0.0, 0.999), weight_decay=0.0),
        num_latent_frames=2,
        latent_size=(4, 4),
        ema_decay=0.5,
        activation_checkpointing=True,
        generator_lora=LoraOptions(rank=4, seed=0),
    )


def _full(params) -> dict[str, torch.Tensor]:
    from torch.distributed.tensor import DTensor

    return {k: (p.full_tensor() if isinstance(p, DTensor) else p).detach().float().clone() for k, p in params}


def _worker(prompts: str, out: str) -> None:
    import lightning as L
    from lightning.pytorch.strategies import ModelParallelStrategy

    from rfvideo.data import RFVideoDataModule

    module = _module()
    strategy = ModelParallelStrategy(data_parallel_size=2, tensor_parallel_size=1)
    trainer = L.Trainer(
        accelerator="cpu", devices=2, strategy=strategy,
        max_steps=STEPS, logger=False, enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False, deterministic=True,
    )  # fmt: skip
    trainer.fit(module, RFVideoDataModule(train_prompts=prompts, batch_size=1, seed=5))
    torch.save(
        {
            "generator": _full(module.generator.named_parameters()),
            "ema": _full(module.generator_ema.named_parameters()),
            "sharded": any(type(p).__name__ == "DTensor" for p in module.generator.parameters()),
            "step": trainer.global_step,
        },
        Path(out) / f"rank{trainer.global_rank}.pt",
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_fsdp2_lora_on_two_cpu_processes_trains_adapters_identically(tmp_path):
    from rfvideo.models.lora import is_adapter_key

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"a {c} square\n" for c in ("red", "green", "blue", "yellow")))
    init = {k: p.detach().clone() for k, p in _module().generator.named_parameters()}
    port = _free_port()
    procs = []
    for rank in range(2):
        env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), LOCAL_RANK=str(rank),
                   NODE_RANK="0", WORLD_SIZE="2", OMP_NUM_THREADS="1")  # fmt: skip
        procs.append(
            subprocess.Popen(
                [sys.executable, __file__, str(prompts), str(tmp_path)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )  # fmt: skip
        )
    logs = [p.communicate(timeout=600)[0] for p in procs]
    for p, log in zip(procs, logs, strict=True):
        assert p.returncode == 0, log[-4000:]
    a, b = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2))
    assert a["sharded"] and b["sharded"] and a["step"] == b["step"] == STEPS
    for which in ("generator", "ema"):
        assert a[which].keys() == init.keys()
        for k in init:
            assert torch.equal(a[which][k], b[which][k]), (which, k)  # ranks agree
            if not is_adapter_key(k):
                assert torch.equal(a[which][k], init[k]), (which, k)  # the base stays frozen
    moved = [k for k in init if "lora_B" in k and not torch.equal(a["generator"][k], init[k])]
    assert moved  # the adapters trained
    assert any(not torch.equal(a["ema"][k], init[k]) for k in moved)


if __name__ == "__main__":
    cli = argparse.ArgumentParser()
    cli.add_argument("prompts")
    cli.add_argument("out")
    a = cli.parse_args()
    _worker(a.prompts, a.out)
