"""Distilling a TinyVideoDecoder from a frozen Wan VAE on latent shards: the loss falls and the held-out PSNR
against the teacher rises, the teacher stays frozen and out of checkpoints, the exported student loads
through the registry, the shipped YAML runs, and bench/decoder_psnr.py reports on the held-out split.

Legend: `b` batch, `f` latent frames, `c` latent channels, `h w` latent size.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import einops
import lightning as L
import pytest
import torch
from diffusers import AutoencoderKLWan

from helpers import randomize_
from rfvideo.cli.lightning import RFVideoCLI
from rfvideo.data import RFVideoDataModule
from rfvideo.data.shards import ShardWriter
from rfvideo.decoders import TinyVideoDecoder, build_decoder, reconstruction_psnr
from rfvideo.models.vae import WanVAE
from rfvideo.modules.decoder_distill import DecoderDistillModule

ROOT = Path(__file__).resolve().parents[1]
YAML = ROOT / "experiments" / "decoders" / "tiny_decoder.yaml"
WIDTHS = [16, 8, 8, 8]


def tiny_teacher(z_dim: int) -> AutoencoderKLWan:
    torch.manual_seed(0)  # the constructor draws its init from the global RNG; then every weight is seeded
    stats = torch.randn(2, z_dim, generator=torch.Generator().manual_seed(4))
    vae = AutoencoderKLWan(
        base_dim=4, z_dim=z_dim, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
        latents_mean=(0.3 * stats[0]).tolist(), latents_std=(1.0 + 0.2 * stats[1].abs()).tolist(),
    )  # fmt: skip
    return randomize_(vae, torch.Generator().manual_seed(1), scale=0.1)  # type: ignore[return-value]


def write_latent_shards(path: Path, *, n: int, c: int, f: int = 2, hw: int = 2) -> list[torch.Tensor]:
    """`n` latent videos (f c h w) as `rfvideo precompute latents` stores them."""
    gen = torch.Generator().manual_seed(3)
    lat = [torch.randn(f, c, hw, hw, generator=gen) for _ in range(n)]
    with ShardWriter(path, shard_size=4, prefix="latents", meta={"kind": "latents"}) as w:
        for i, z in enumerate(lat):
            w.add({"prompt": f"clip {i}", "latents": z}, key=str(i))
    return lat


def test_loss_falls_teacher_frozen_and_student_exports(tmp_path):
    c = 4
    lat = write_latent_shards(tmp_path / "latents", n=10, c=c)
    teacher = WanVAE(tiny_teacher(c))
    torch.manual_seed(0)
    student = TinyVideoDecoder(latent_channels=c, widths=WIDTHS)
    module = DecoderDistillModule(
        student=student,
        teacher=teacher,
        optimizer=lambda p: torch.optim.Adam(p, lr=1e-2),
        export_path=str(tmp_path / "student.safetensors"),
    )
    held_out = [einops.rearrange(z, "f c h w -> 1 c f h w") for z in lat[-2:]]
    before_loss = float(module._losses(torch.cat(held_out))["loss"].detach())
    before = reconstruction_psnr(student, teacher, held_out).psnr_mean
    frozen = {k: v.clone() for k, v in teacher.state_dict().items()}
    dm = RFVideoDataModule(train_shards=str(tmp_path / "latents"), batch_size=2, seed=0)
    trainer = L.Trainer(
        accelerator="cpu", max_steps=12, logger=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(module, dm)
    after_loss = float(module._losses(torch.cat(held_out))["loss"].detach())
    after = reconstruction_psnr(student, teacher, held_out).psnr_mean
    assert after_loss < 0.5 * before_loss and after > before + 3.0, (before_loss, after_loss, before, after)
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in frozen.items())
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    # the checkpoint holds the student only; it resumes into a module with a live teacher
    (ckpt,) = (tmp_path / "checkpoints").glob("*.ckpt")
    sd = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    assert sd and all(k.startswith("student.") for k in sd)
    fresh = DecoderDistillModule(student=TinyVideoDecoder(latent_channels=c, widths=WIDTHS), teacher=teacher)
    fresh.on_load_checkpoint({"state_dict": sd})
    fresh.load_state_dict(sd, strict=True)
    # the exported student is a TAEHV-layout file the registry loads
    loaded = build_decoder("tae", tmp_path / "student.safetensors", widths=WIDTHS, latent_channels=c)
    torch.testing.assert_close(loaded.decode(held_out[0]), student.decode(held_out[0]), atol=0, rtol=0)


def test_mismatched_student_and_bad_settings_fail_clearly():
    teacher = WanVAE(tiny_teacher(4))
    with pytest.raises(ValueError, match="latent_channels=16 differs from the teacher's 4"):
        DecoderDistillModule(student=TinyVideoDecoder(widths=WIDTHS), teacher=teacher)
    with pytest.raises(ValueError, match="clip_latent_frames"):
        DecoderDistillModule(
            student=TinyVideoDecoder(latent_channels=4, widths=WIDTHS), teacher=teacher, clip_latent_frames=0
        )


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_shipped_yaml_runs_one_step_and_psnr_script_reports(tmp_path, capsys):
    """The YAML with its placeholders (WAN, data/latents, outputs/) pointed at tiny files, on the CPU."""
    tiny_teacher(16).save_pretrained(tmp_path / "wan" / "vae")
    write_latent_shards(tmp_path / "latents", n=10, c=16)
    text = YAML.read_text().replace("path: WAN", f"path: {tmp_path / 'wan'}")
    text = text.replace("data/latents", str(tmp_path / "latents")).replace("outputs/", f"{tmp_path}/out/")
    cfg = tmp_path / "tiny_decoder.yaml"
    cfg.write_text(text)
    cli = RFVideoCLI(
        [
            "--config", str(cfg), "--trainer.accelerator=cpu", "--trainer.fast_dev_run=1",
            f"--model.init_args.student.init_args.widths=[{','.join(map(str, WIDTHS))}]",
        ],
        run=False,
    )  # fmt: skip
    assert isinstance(cli.model, DecoderDistillModule) and isinstance(cli.model.teacher, WanVAE)
    cli.trainer.fit(cli.model, cli.datamodule)
    cli.model.export_student(tmp_path / "student.safetensors")
    report = _load_script("decoder_psnr").main(
        [
            "--teacher", f"wan:{tmp_path / 'wan'}", "--student", str(tmp_path / "student.safetensors"),
            "--widths", ",".join(map(str, WIDTHS)), "--shards", str(tmp_path / "latents"),
            "--held-out", "8", "--device", "cpu",
        ]
    )  # fmt: skip
    assert len(report.psnr_per_video) == 8 and all(p == p for p in report.psnr_per_video)
    assert "mean +- std (8 videos)" in capsys.readouterr().out
