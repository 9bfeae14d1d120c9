"""`rfvideo convert` on tiny random generators saved in each peer's release layout (written here from their
documented key names): strict key maps, LongLive's LoRA merged or kept, the preset written with the weights.

Shapes: `b` batch, `c` latent channels, `f` latent frames, `h w` latent size, `n d` text tokens / width.
"""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import WanTransformer3DModel

from helpers import randomize_, tiny_wan_config
from rfvideo.cli.app import main
from rfvideo.models import CausalWanTransformer
from rfvideo.models.convert import diffusers_to_wan, load_longlive_lora, load_peer_checkpoint
from rfvideo.models.lora import load_adapters
from rfvideo.pipeline.presets import get_preset, read_folder_preset

# Every nn.Linear of a Wan attention block (LongLive's LoRA targets), in Wan's names.
_BLOCK_LINEARS = [f"{a}.{p}" for a in ("self_attn", "cross_attn") for p in "qkvo"] + ["ffn.0", "ffn.2"]
RANK, ALPHA = 4, 8.0


def _ref(seed: int) -> WanTransformer3DModel:
    return randomize_(WanTransformer3DModel(**tiny_wan_config()), torch.Generator().manual_seed(seed)).eval()


def _wan(model: torch.nn.Module, prefix: str = "model.") -> dict[str, torch.Tensor]:
    """The model's weights in Wan's original names under the peers' wrapper prefix."""
    return {prefix + k: v.clone() for k, v in diffusers_to_wan(model.state_dict()).items()}


def _lora_file(path, *, seed: int = 5, extra: dict | None = None) -> dict[str, torch.Tensor]:
    """LongLive's lora.pt: peft keys of the generator's CausalWanModel under `generator_lora`."""
    g = torch.Generator().manual_seed(seed)
    width, ffn = 32, 64
    sd = {}
    for i in range(2):
        for lin in _BLOCK_LINEARS:
            fan_in = ffn if lin == "ffn.2" else width
            fan_out = ffn if lin == "ffn.0" else width
            base = f"base_model.model.blocks.{i}.{lin}"
            sd[f"{base}.lora_A.weight"] = torch.randn(RANK, fan_in, generator=g) * 0.3
            sd[f"{base}.lora_B.weight"] = torch.randn(fan_out, RANK, generator=g) * 0.3
    sd.update(extra or {})
    torch.save({"generator_lora": sd, "critic_lora": {"x": torch.ones(1)}, "step": 600}, path)
    return sd


def _inputs():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 4, 3, 8, 8, generator=g)  # (b c f h w)
    return x, torch.tensor([400.0]), torch.randn(1, 5, 24, generator=g)  # t (b,), text (b n d)


@torch.no_grad()
def _same_output(folder, ref: WanTransformer3DModel) -> CausalWanTransformer:
    model = CausalWanTransformer.from_pretrained(folder).eval()
    x, t, text = _inputs()
    torch.testing.assert_close(model(x, t, text), ref(x, t, text, return_dict=False)[0], atol=1e-5, rtol=1e-5)
    return model


def _convert(*argv) -> int:
    return main(["convert", *map(str, argv), "--attention-head-dim", "16"])


@pytest.mark.parametrize("peer", ["self-forcing", "causvid", "reward-forcing-lu"])
def test_each_peer_layout_converts_strictly_with_its_preset(tmp_path, peer):
    ref, other = _ref(1), _ref(2)
    if peer == "self-forcing":  # self_forcing_dmd.pt: generator + generator_ema; the EMA is the release
        torch.save({"generator": _wan(other), "generator_ema": _wan(ref)}, tmp_path / "in.pt")
    elif peer == "causvid":  # autoregressive_checkpoint/model.pt
        torch.save({"generator": _wan(ref)}, tmp_path / "in.pt")
    else:  # rewardforcing.pt: the generator wrapper's state dict itself
        torch.save(_wan(ref), tmp_path / "in.pt")
    assert _convert(tmp_path / "in.pt", tmp_path / "out", "--from", peer) == 0
    model = _same_output(tmp_path / "out", ref)
    preset = get_preset(peer)
    assert read_folder_preset(tmp_path / "out") is preset
    assert model.causal_options == preset.causal_options()
    info = json.loads((tmp_path / "out" / "rfvideo_preset.json").read_text())
    assert info["schedule"]["denoising_steps"] == list(preset.schedule["denoising_steps"])


def test_longlive_base_with_lora_merged_and_kept(tmp_path):
    ref = _ref(1)
    torch.save({"generator": _wan(ref), "generator_ema": _wan(_ref(2), "model._fsdp_wrapped_module.")},
               tmp_path / "longlive_base.pt")  # fmt: skip
    lora = _lora_file(tmp_path / "lora.pt")
    # reference: peft's merge written out by hand, W + (alpha / r) B A, on the Wan-named weights
    merged = diffusers_to_wan(ref.state_dict())
    for i in range(2):
        for lin in _BLOCK_LINEARS:
            a, b = (lora[f"base_model.model.blocks.{i}.{lin}.lora_{x}.weight"] for x in "AB")
            merged[f"blocks.{i}.{lin}.weight"] = merged[f"blocks.{i}.{lin}.weight"] + ALPHA / RANK * b @ a
    want = _ref(0)
    from rfvideo.models.convert import wan_to_diffusers

    want.load_state_dict(wan_to_diffusers(merged), strict=True)
    base = tmp_path / "longlive_base.pt"
    assert _convert(base, tmp_path / "m", "--from", "longlive", "--lora", tmp_path / "lora.pt",
                    "--lora-alpha", ALPHA) == 0  # fmt: skip
    model = _same_output(tmp_path / "m", want)
    assert model.causal_options == get_preset("longlive").causal_options()
    assert _convert(base, tmp_path / "k", "--from", "longlive", "--lora", tmp_path / "lora.pt",
                    "--lora-alpha", ALPHA, "--keep-adapters") == 0  # fmt: skip
    _same_output(tmp_path / "k", ref)  # the base folder alone is the base model
    kept = load_adapters(CausalWanTransformer.from_pretrained(tmp_path / "k"), tmp_path / "k").eval()
    x, t, text = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(kept(x, t, text), model(x, t, text), atol=1e-5, rtol=1e-5)
    # the preset can be swapped for rfvideo's own choices
    assert _convert(base, tmp_path / "r", "--from", "longlive", "--preset", "rfvideo") == 0
    assert read_folder_preset(tmp_path / "r").name == "rfvideo"


def test_longlive_lora_keys_are_peft_keys():
    """The adapter names we read are the ones peft writes for a module laid out like Wan's blocks."""
    import peft
    from peft import get_peft_model_state_dict

    block = torch.nn.Module()
    block.self_attn = torch.nn.Module()
    block.self_attn.q = torch.nn.Linear(32, 32)
    block.ffn = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.GELU(), torch.nn.Linear(64, 32))
    root = torch.nn.Module()
    root.blocks = torch.nn.ModuleList([block])
    targets = ["blocks.0.self_attn.q", "blocks.0.ffn.0", "blocks.0.ffn.2"]
    wrapped = peft.get_peft_model(root, peft.LoraConfig(r=RANK, lora_alpha=RANK, target_modules=targets))
    sd = get_peft_model_state_dict(wrapped)
    assert sorted(sd) == sorted(f"base_model.model.{t}.lora_{x}.weight" for t in targets for x in "AB")
    from rfvideo.models.convert import longlive_lora_to_diffusers

    names = longlive_lora_to_diffusers(sd)
    assert sorted(names) == ["blocks.0.attn1.to_q", "blocks.0.ffn.net.0.proj", "blocks.0.ffn.net.2"]


def test_strict_loading_names_what_is_wrong(tmp_path):
    ref = _ref(1)
    wan = _wan(ref)
    torch.save(
        {"generator": {**wan, "model.blocks.0.cross_attn.k_img.weight": torch.ones(2)}}, tmp_path / "x.pt"
    )
    with pytest.raises(ValueError, match="k_img"):
        load_peer_checkpoint(tmp_path / "x.pt", "causvid")
    assert _convert(tmp_path / "x.pt", tmp_path / "o1", "--from", "causvid") == 2  # UsageError
    del wan["model.blocks.1.ffn.2.bias"]
    torch.save({"generator": wan}, tmp_path / "missing.pt")
    assert _convert(tmp_path / "missing.pt", tmp_path / "o2", "--from", "causvid") == 2
    assert not (tmp_path / "o2").exists() or not any((tmp_path / "o2").iterdir())
    _lora_file(
        tmp_path / "extra.pt", extra={"base_model.model.head.head.lora_A.weight": torch.ones(RANK, 32)}
    )
    with pytest.raises(ValueError, match="head.head.lora_A"):
        load_longlive_lora(tmp_path / "extra.pt")
    sd = _lora_file(tmp_path / "half.pt")
    del sd["base_model.model.blocks.1.ffn.0.lora_B.weight"]
    torch.save({"generator_lora": sd}, tmp_path / "half.pt")
    with pytest.raises(ValueError, match=r"blocks.1.ffn.net.0.proj' has lora_A only"):
        load_longlive_lora(tmp_path / "half.pt")
    torch.save({"generator": _wan(ref)}, tmp_path / "ok.pt")
    assert (
        _convert(tmp_path / "ok.pt", tmp_path / "o3", "--from", "causvid", "--lora", tmp_path / "half.pt")
        == 2
    )
    assert _convert(tmp_path / "ok.pt", tmp_path / "o4", "--from", "causvid", "--preset", "nope") == 2


def test_convert_with_wan_writes_a_pipeline_folder_that_generates(tmp_path):
    """`--wan WAN`: a pipeline folder with the preset's options and schedule, the VAE / umT5 / tokenizer
    referenced in WAN (a tiny Wan diffusers folder written here in the real layout)."""
    from rfvideo.models.tiny import tiny_text_encoder, tiny_wan_vae
    from rfvideo.pipeline import RFVideoPipeline

    wan = tmp_path / "wan"
    tiny_wan_vae(seed=2).save_pretrained(wan / "vae")
    text = tiny_text_encoder(seed=3)
    text.text_encoder.save_pretrained(wan / "text_encoder")
    text.tokenizer.save_pretrained(wan / "tokenizer")
    index = {
        "_class_name": "WanPipeline",
        "vae": ["diffusers", "AutoencoderKLWan"],
        "text_encoder": ["transformers", type(text.text_encoder).__name__],
        "tokenizer": ["transformers", type(text.tokenizer).__name__],
    }
    (wan / "model_index.json").write_text(json.dumps(index))
    ref = _ref(1)
    torch.save({"generator": _wan(ref)}, tmp_path / "in.pt")
    assert _convert(tmp_path / "in.pt", tmp_path / "out", "--from", "causvid", "--wan", wan) == 0
    assert not (tmp_path / "out" / "vae").exists()  # referenced, not copied
    pipe = RFVideoPipeline.from_pretrained(tmp_path / "out")
    preset = get_preset("causvid")
    assert pipe.transformer.causal_options == preset.causal_options()
    assert pipe.scheduler.schedule == preset.flow_schedule()
    out = pipe("a red fox", num_frames=9, height=16, width=16, output_type="pt", progress=False,
               generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert out.frames.shape == (1, 9, 3, 16, 16) and torch.isfinite(out.frames).all()
