"""FSDP2 (`ModelParallelStrategy` + `configure_model` -> `shard_generator`) on 2 CPU processes (gloo).

Reference: the same two training steps under plain DDP (every rank holds the whole generator) with the same
per-rank data and noise. Sharding must not change the math, so the gathered FSDP2 weights (generator and
EMA) must equal the DDP weights within float tolerance, be identical on both ranks, and differ from init.

Each run is two processes of this file launched as a script with Lightning's environment variables
(`LOCAL_RANK`, `MASTER_PORT`, ...): Lightning then joins them instead of re-launching pytest.
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
    from rfvideo.models.tiny import tiny_causal_wan, tiny_text_encoder, tiny_wan_vae
    from rfvideo.modules import RewardForcingModule
    from rfvideo.rewards import FrameSelector, RewardEnsemble

    def adam(params):
        return torch.optim.AdamW(params, lr=1e-3, betas=(0.0, 0.999), weight_decay=0.01)

    return RewardForcingModule(
        generator=tiny_causal_wan(num_frames_per_chunk=1, seed=1, init_scale=0.1),
        vae=tiny_wan_vae(seed=2),
        text_encoder=tiny_text_encoder(seed=3),
        rewards=RewardEnsemble({"c": PromptColorReward()}, {"c": 1.0}, FrameSelector(policy="last")),
        optimizer=adam,
        num_latent_frames=2,
        latent_size=(4, 4),
        ema_decay=0.5,
        grad_clip=1.0,
        activation_checkpointing=True,
    )


def _full(params) -> dict[str, torch.Tensor]:
    """Whole tensors on every rank (FSDP2 parameters are sharded DTensors; gathering is collective)."""
    from torch.distributed.tensor import DTensor

    return {k: (p.full_tensor() if isinstance(p, DTensor) else p).detach().float().clone() for k, p in params}


def _worker(strategy_name: str, prompts: str, out: str, precision: str = "32-true") -> None:
    """One rank: fit STEPS steps and save the gathered generator / EMA weights."""
    import lightning as L
    from lightning.pytorch.strategies import DDPStrategy, ModelParallelStrategy

    from rfvideo.data import RFVideoDataModule

    module = _module()
    strategy = (
        ModelParallelStrategy(data_parallel_size=2, tensor_parallel_size=1)
        if strategy_name == "fsdp"
        else DDPStrategy(process_group_backend="gloo")
    )
    trainer = L.Trainer(
        accelerator="cpu", devices=2, strategy=strategy, max_steps=STEPS, logger=False,
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
        deterministic=True, precision=precision,
    )  # fmt: skip
    trainer.fit(module, RFVideoDataModule(train_prompts=prompts, batch_size=1, seed=5))
    gen = _full(module.generator.named_parameters())
    ema = _full(module.generator_ema.named_parameters())
    sharded = any(type(p).__name__ == "DTensor" for p in module.generator.parameters())
    torch.save(
        {"generator": gen, "ema": ema, "sharded": sharded, "step": trainer.global_step},
        Path(out) / f"{strategy_name}_rank{trainer.global_rank}.pt",
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _launch(strategy_name: str, prompts: Path, out: Path, precision: str = "32-true") -> list[dict]:
    port = _free_port()
    procs = []
    for rank in range(2):
        env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), LOCAL_RANK=str(rank),
                   NODE_RANK="0", WORLD_SIZE="2", OMP_NUM_THREADS="1")  # fmt: skip
        procs.append(
            subprocess.Popen(
                [sys.executable, __file__, strategy_name, str(prompts), str(out), precision],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    logs = [p.communicate(timeout=300)[0] for p in procs]
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-4000:]
    return [torch.load(out / f"{strategy_name}_rank{r}.pt", weights_only=True) for r in range(2)]


@pytest.mark.slow
def test_fsdp2_on_two_cpu_processes_equals_ddp(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(
        "".join(f"a {c} square moving {m}\n" for c in ("red", "green", "blue") for m in ("left", "up"))
    )
    init = {k: p.detach().clone() for k, p in _module().generator.named_parameters()}
    fsdp = _launch("fsdp", prompts, tmp_path)
    ddp = _launch("ddp", prompts, tmp_path)
    assert fsdp[0]["sharded"] and fsdp[1]["sharded"] and not ddp[0]["sharded"]
    assert all(r["step"] == STEPS for r in fsdp + ddp)
    for which in ("generator", "ema"):
        a, b, ref = fsdp[0][which], fsdp[1][which], ddp[0][which]
        assert a.keys() == ref.keys() == init.keys()
        for k in ref:
            assert torch.equal(a[k], b[k]), (which, k)  # ranks agree
            assert torch.equal(ddp[1][which][k], ref[k]), (which, k)
            torch.testing.assert_close(a[k], ref[k], rtol=1e-4, atol=1e-5, msg=f"{which} {k}")
    moved = max(float((fsdp[0]["generator"][k] - init[k]).abs().max()) for k in init)
    assert moved > 1e-4  # it trained (lr 1e-3, 2 steps)


@pytest.mark.slow
def test_fsdp2_bf16_mixed_on_two_cpu_processes_trains(tmp_path):
    """The real configs' setting (bf16-mixed: bf16 gathered parameters, fp32 stored weights and reduction).

    Not compared with DDP: its autocast rounds differently, and Adam's first steps (beta1 = 0) move each
    weight by about +-lr whatever the gradient's size, so a rounding-level difference in a near-zero
    gradient flips a whole step."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"a {c} square\n" for c in ("red", "green", "blue", "yellow")))
    init = {k: p.detach().clone() for k, p in _module().generator.named_parameters()}
    a, b = _launch("fsdp", prompts, tmp_path, "bf16-mixed")
    assert a["sharded"] and a["step"] == b["step"] == STEPS
    for which in ("generator", "ema"):
        for k in init:
            assert a[which][k].dtype == torch.float32 and bool(torch.isfinite(a[which][k]).all()), k
            assert torch.equal(a[which][k], b[which][k]), (which, k)
    moved = max(float((a["generator"][k] - init[k]).abs().max()) for k in init)
    # AdamW with beta1 = 0, beta2 = 0.999 moves a weight by at most lr in step 1 and lr sqrt(1.999) in step 2
    assert STEPS == 2 and 1e-4 < moved <= 1e-3 * (1 + 1.999**0.5) * 1.01


if __name__ == "__main__":
    cli = argparse.ArgumentParser()
    cli.add_argument("strategy", choices=["fsdp", "ddp"])
    cli.add_argument("prompts")
    cli.add_argument("out")
    cli.add_argument("precision")
    a = cli.parse_args()
    _worker(a.strategy, a.prompts, a.out, a.precision)
