"""Original Wan / Self-Forcing checkpoints <-> diffusers names, on a tiny random config."""

from __future__ import annotations

import pytest
import torch
from diffusers import WanTransformer3DModel
from safetensors.torch import save_file

from helpers import randomize_, tiny_wan_config
from rfvideo.models import CausalWanTransformer
from rfvideo.models.convert import diffusers_to_wan, load_original_checkpoint, wan_to_diffusers

# Block keys of Wan2.1's wan/modules/model.py (WanAttentionBlock), written out by hand.
_WAN_BLOCK_KEYS = (
    [f"{a}.{p}.{w}" for a in ("self_attn", "cross_attn") for p in "qkvo" for w in ("weight", "bias")]
    + [f"{a}.norm_{p}.weight" for a in ("self_attn", "cross_attn") for p in "qk"]
    + ["norm3.weight", "norm3.bias", "ffn.0.weight", "ffn.0.bias", "ffn.2.weight", "ffn.2.bias", "modulation"]
)
_WAN_TOP_KEYS = [
    f"{m}.{w}"
    for m in (
        "patch_embedding",
        "text_embedding.0",
        "text_embedding.2",
        "time_embedding.0",
        "time_embedding.2",
        "time_projection.1",
        "head.head",
    )  # fmt: skip
    for w in ("weight", "bias")
] + ["head.modulation"]


def _ref(seed: int = 0) -> WanTransformer3DModel:
    return randomize_(WanTransformer3DModel(**tiny_wan_config()), torch.Generator().manual_seed(seed)).eval()


def test_diffusers_to_wan_gives_exactly_the_original_names_and_round_trips():
    sd = _ref().state_dict()
    wan = diffusers_to_wan(sd)
    expected = set(_WAN_TOP_KEYS) | {f"blocks.{i}.{k}" for i in range(2) for k in _WAN_BLOCK_KEYS}
    assert set(wan) == expected
    # Wan's norm3 (cross-attn LayerNorm, affine) is diffusers' norm2: same tensor, non-trivial
    assert torch.equal(wan["blocks.1.norm3.weight"], sd["blocks.1.norm2.weight"])
    assert not torch.allclose(sd["blocks.1.norm2.weight"], torch.ones_like(sd["blocks.1.norm2.weight"]))
    back = wan_to_diffusers(wan)
    assert back.keys() == sd.keys() and all(torch.equal(back[k], sd[k]) for k in sd)


@torch.no_grad()
def test_converted_original_weights_match_diffusers_output(tmp_path):
    ref = _ref(seed=2)
    # a Self-Forcing style file: {"generator": ..., "generator_ema": ...} with a "model." prefix
    wan = {f"model.{k}": v.clone() for k, v in diffusers_to_wan(ref.state_dict()).items()}
    other = {k: torch.zeros_like(v) for k, v in wan.items()}
    torch.save({"generator": other, "generator_ema": wan}, tmp_path / "sf.pt")
    model = CausalWanTransformer(**tiny_wan_config()).eval()
    load_original_checkpoint(tmp_path / "sf.pt", model=model)
    g = torch.Generator().manual_seed(3)
    x, text = torch.randn(1, 4, 3, 8, 8, generator=g), torch.randn(1, 5, 24, generator=g)
    t = torch.tensor([321.0])
    torch.testing.assert_close(model(x, t, text), ref(x, t, text, return_dict=False)[0], atol=1e-5, rtol=1e-5)
    # the plain original layout as safetensors
    save_file(
        {k.removeprefix("model."): v.contiguous() for k, v in wan.items()}, tmp_path / "wan.safetensors"
    )
    sd = load_original_checkpoint(tmp_path / "wan.safetensors")
    assert all(torch.equal(sd[k], v) for k, v in ref.state_dict().items())
    # swapping norm2/norm3 semantics would break strict loading or the output: check the gain is used
    model.blocks[0].norm2.weight.mul_(2.0)
    assert not torch.allclose(model(x, t, text), ref(x, t, text, return_dict=False)[0])


def test_unknown_keys_and_missing_generator_raise(tmp_path):
    wan = diffusers_to_wan(_ref().state_dict())
    wan["img_emb.proj.0.weight"] = torch.ones(2)
    wan["blocks.0.cross_attn.k_img.weight"] = torch.ones(2)
    with pytest.raises(ValueError, match="img_emb.proj.0.weight"):
        wan_to_diffusers(wan)
    with pytest.raises(ValueError, match="attn1.bogus.weight"):
        diffusers_to_wan({"blocks.0.attn1.bogus.weight": torch.ones(1)})
    torch.save({"critic": {"a": torch.ones(1)}, "step": torch.tensor(3)}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="generator_ema"):
        load_original_checkpoint(tmp_path / "x.pt")
    del wan["img_emb.proj.0.weight"], wan["blocks.0.cross_attn.k_img.weight"], wan["blocks.1.ffn.2.bias"]
    torch.save(wan, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match=r"missing 1 \['blocks.1.ffn.net.2.bias'\]"):
        load_original_checkpoint(tmp_path / "partial.pt", model=CausalWanTransformer(**tiny_wan_config()))
    with pytest.raises(ValueError, match="does not exist"):
        load_original_checkpoint(tmp_path / "missing.pt")
