"""`rfvideo export`: a 1-step LoRA fit and a 1-step full fit on tiny components, exported as pipeline folders
and loaded back (`RFVideoPipeline.from_pretrained`, and the transformer with `CausalWanTransformer`): merged
== the unmerged EMA (fp32, 1e-6 of the output scale), the adapter file + base == the unmerged model bit for
bit, `--no-ema` takes the raw weights, a full fine-tune exports its EMA exactly and its pipeline generates
what the module generates, and a checkpoint from another config is refused naming the key or shape."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers import tiny_fit_yaml
from rfvideo.cli.app import main
from rfvideo.cli.lightning import RFVideoCLI, build_module, load_module_checkpoint
from rfvideo.models import CausalWanTransformer
from rfvideo.models.lora import load_adapters
from rfvideo.pipeline import RFVideoPipeline

OPTIONS = """    optimizer:
      class_path: torch.optim.AdamW
      init_args: {lr: 0.05, betas: [0.0, 0.999]}
    ema_decay: 0.5
"""
LORA = "    generator_lora: {rank: 4, alpha: 8.0}\n"


def _fit(root: Path, lora: str) -> tuple[Path, Path]:
    root.mkdir(parents=True)
    config = root / "run.yaml"
    config.write_text(tiny_fit_yaml(str(root), model_extra=OPTIONS + lora, epochs=2))
    RFVideoCLI(["fit", "--config", str(config)])
    return config, root / "ckpt" / "last.ckpt"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    root = tmp_path_factory.mktemp("export")
    return {"lora": _fit(root / "lora", LORA), "full": _fit(root / "full", "")}


def _inputs():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 2, 4, 4, generator=g)  # (b c f h w)
    return x, torch.tensor([[800.0, 300.0]]), torch.randn(1, 5, 24, generator=g)


def _trained(config: Path, ckpt: Path):
    return load_module_checkpoint(build_module([config]), ckpt)


def test_lora_export_merged_equals_the_unmerged_ema(runs, tmp_path, capsys):
    config, ckpt = runs["lora"]
    assert main(["export", "--config", str(config), "--ckpt", str(ckpt), "--out", str(tmp_path / "m")]) == 0
    assert "EMA weights, LoRA (rank 4) merged" in capsys.readouterr().out
    assert (tmp_path / "m" / "model_index.json").is_file()
    loaded = CausalWanTransformer.from_pretrained(tmp_path / "m", subfolder="transformer").eval()
    module = _trained(config, ckpt)
    plain_keys = build_module([runs["full"][0]]).generator.state_dict().keys()
    assert loaded.state_dict().keys() == plain_keys
    x, t, emb = _inputs()
    with torch.no_grad():
        want = module.generator_ema.eval()(x, t, emb)
        raw = module.generator.eval()(x, t, emb)
        got = loaded(x, t, emb)
    assert float((want - raw).abs().max()) > 1e-4  # the EMA differs from the raw weights: it was exported
    assert float((got - want).abs().max()) <= 1e-6 * float(want.abs().max())


def test_keep_adapters_and_no_ema(runs, tmp_path):
    config, ckpt = runs["lora"]
    out = tmp_path / "k"
    args = ["export", "--config", str(config), "--ckpt", str(ckpt), "--out", str(out), "--keep-adapters"]
    assert main([*args, "--no-ema"]) == 0
    assert (out / "adapter_model.safetensors").is_file() and (out / "adapter_config.json").is_file()
    base = CausalWanTransformer.from_pretrained(out).eval()
    module = _trained(config, ckpt)
    x, t, emb = _inputs()
    with torch.no_grad():
        # the unmerged base == the config's base (a fresh LoRA module: B = 0, bit for bit the base)
        assert torch.equal(base(x, t, emb), build_module([config]).generator.eval()(x, t, emb))
        adapted = load_adapters(base, out).eval()
        assert torch.equal(adapted(x, t, emb), module.generator.eval()(x, t, emb))


def test_full_finetune_exports_the_ema_exactly(runs, tmp_path):
    config, ckpt = runs["full"]
    assert main(["export", "--config", str(config), "--ckpt", str(ckpt), "--out", str(tmp_path / "f")]) == 0
    pipe = RFVideoPipeline.from_pretrained(tmp_path / "f")
    sd = torch.load(ckpt, weights_only=True)["state_dict"]
    ema = {k.removeprefix("generator_ema."): v for k, v in sd.items() if k.startswith("generator_ema.")}
    got = pipe.transformer.state_dict()
    assert got.keys() == ema.keys()
    for k in ema:
        assert torch.equal(got[k], ema[k]), k
    # the exported pipeline generates exactly what the trained module generates
    module = _trained(config, ckpt)
    want = module.generate(["a red square"], seeds=[3])
    g = torch.Generator().manual_seed(3)
    assert torch.equal(pipe("a red square", generator=[g], output_type="pt", progress=False).frames, want)


def test_refuses_another_configs_checkpoint_and_bad_output(runs, tmp_path, capsys):
    (lora_cfg, lora_ckpt), (full_cfg, full_ckpt) = runs["lora"], runs["full"]

    def export(config, ckpt, out, *extra) -> str:
        assert main(["export", "--config", str(config), "--ckpt", str(ckpt), "--out", str(out), *extra]) == 2
        return capsys.readouterr().err

    err = export(full_cfg, lora_ckpt, tmp_path / "a")
    assert "is not from this config" in err and "holds LoRA adapters ('blocks." in err
    assert "no generator_lora" in err
    err = export(lora_cfg, full_ckpt, tmp_path / "a")
    assert "sets generator_lora but the checkpoint holds no LoRA" in err and err.count("\n") == 1
    rank8 = tmp_path / "rank8.yaml"
    rank8.write_text(lora_cfg.read_text().replace("rank: 4", "rank: 8"))
    err = export(rank8, lora_ckpt, tmp_path / "b")
    assert "has shape (4, 32) in the checkpoint but (8, 32) in the config" in err
    err = export(full_cfg, full_ckpt, tmp_path / "c", "--keep-adapters")
    assert "trains no LoRA adapters" in err and err.count("\n") == 1
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("x")
    assert "exists and is not an empty folder" in export(full_cfg, full_ckpt, busy)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
