"""LoRA on the causal generator (rfvideo.models.lora), no Lightning: the adapted model equals its base bit
for bit at init, merging equals the unmerged model (fp32, 1e-6) and saves a folder `from_pretrained` loads,
adapters round-trip through their own file, the parameter count matches rank * (in + out) per target (also
on a meta-device model at the real 1.3B size), and bad options raise one-line ValueErrors."""

from __future__ import annotations

import copy

import pytest
import torch

from helpers import randomize_, tiny_wan_config
from rfvideo.models import CausalWanTransformer
from rfvideo.models.lora import (
    DEFAULT_TARGET_MODULES,
    LoraOptions,
    apply_lora,
    is_adapter_key,
    load_adapters,
    lora_parameter_count,
    lora_state_dict,
    merge_lora,
    remove_lora,
    save_adapters,
)


def _model(seed: int = 0) -> CausalWanTransformer:
    m = CausalWanTransformer(**tiny_wan_config(), num_frames_per_chunk=1)
    return randomize_(m, torch.Generator().manual_seed(seed)).eval()


def _inputs(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 4, 3, 4, 4, generator=g)  # (b c f h w)
    t = torch.rand(2, 3, generator=g) * 1000  # (b f)
    emb = torch.randn(2, 5, 24, generator=g)  # (b n d)
    return x, t, emb


def _randomize_adapters(model: torch.nn.Module, seed: int = 2) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if is_adapter_key(name):
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)


def test_adapted_model_equals_base_bit_for_bit_at_init_and_freezes_the_base():
    base = _model()
    adapted = apply_lora(copy.deepcopy(base), LoraOptions(rank=4, alpha=8.0))
    assert isinstance(adapted, CausalWanTransformer)
    x, t, emb = _inputs()
    for mode in ("full", "block_causal"):
        assert torch.equal(adapted(x, t, emb, attention_mode=mode), base(x, t, emb, attention_mode=mode)), (
            mode
        )
    trainable = [n for n, p in adapted.named_parameters() if p.requires_grad]
    assert trainable and all(is_adapter_key(n) for n in trainable)
    # 2 blocks x 6 targets (attn1 q/k/v/o, attn2 q/k/v/o, ffn in/out) x (A, B)
    assert len(trainable) == 2 * (8 + 2) * 2
    assert sum(p.numel() for n, p in adapted.named_parameters() if p.requires_grad) == lora_parameter_count(
        base, LoraOptions(rank=4)
    )


def test_adapter_init_is_seeded_not_global():
    a = apply_lora(_model(), LoraOptions(rank=4, seed=3))
    torch.manual_seed(123)  # a different global state must not matter
    b = apply_lora(_model(), LoraOptions(rank=4, seed=3))
    c = apply_lora(_model(), LoraOptions(rank=4, seed=4))
    sa, sb, sc = lora_state_dict(a), lora_state_dict(b), lora_state_dict(c)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa if "lora_A" in k)
    assert all(float(v.abs().max()) == 0.0 for k, v in sa.items() if "lora_B" in k)


def test_merged_equals_unmerged_and_saves_a_plain_diffusers_folder(tmp_path):
    base = _model()
    adapted = apply_lora(copy.deepcopy(base), LoraOptions(rank=4, alpha=2.0))
    _randomize_adapters(adapted)
    x, t, emb = _inputs()
    with torch.no_grad():
        want = adapted(x, t, emb, attention_mode="block_causal")
        assert (want - base(x, t, emb, attention_mode="block_causal")).abs().max() > 1e-3  # adapters matter
        lora_sd = lora_state_dict(adapted)
        merged = merge_lora(adapted)
        got = merged(x, t, emb, attention_mode="block_causal")
    # Weights: W' = W + (alpha / r) B A, against a float64 reference.
    q = "blocks.1.ffn.net.2"
    a64, b64 = lora_sd[f"{q}.lora_A.weight"].double(), lora_sd[f"{q}.lora_B.weight"].double()
    ref = base.state_dict()[f"{q}.weight"].double() + 0.5 * b64 @ a64
    torch.testing.assert_close(merged.state_dict()[f"{q}.weight"].double(), ref, rtol=0, atol=1e-6)
    # Outputs: 1e-6 of the output's scale (the fp32 model itself is 1.7e-6 from its float64 run here).
    assert float((got - want).abs().max()) <= 1e-6 * float(want.abs().max())
    assert merged.state_dict().keys() == base.state_dict().keys()
    assert not hasattr(merged, "peft_config")
    merged.save_pretrained(tmp_path / "out", safe_serialization=True)
    assert (tmp_path / "out" / "diffusion_pytorch_model.safetensors").is_file()
    loaded = CausalWanTransformer.from_pretrained(tmp_path / "out").eval()
    assert loaded.config.num_frames_per_chunk == 1
    with torch.no_grad():
        assert torch.equal(loaded(x, t, emb, attention_mode="block_causal"), got)


def test_adapters_round_trip_through_their_file_and_remove_restores_the_base(tmp_path):
    base = _model()
    adapted = apply_lora(
        copy.deepcopy(base), LoraOptions(rank=3, dropout=0.1, target_modules=("to_q", "to_v"))
    )
    _randomize_adapters(adapted)
    adapted.eval()
    save_adapters(adapted, tmp_path)
    again = load_adapters(copy.deepcopy(base), tmp_path).eval()
    x, t, emb = _inputs()
    with torch.no_grad():
        assert torch.equal(again(x, t, emb), adapted(x, t, emb))
        plain = remove_lora(adapted)
        assert torch.equal(plain(x, t, emb), base(x, t, emb))
    assert plain.state_dict().keys() == base.state_dict().keys()


def test_real_size_adapter_count_on_meta_device():
    """Wan2.1-1.3B (width 1536, FFN 8960, 30 blocks), rank 16, no memory allocated."""
    with torch.device("meta"):
        real = CausalWanTransformer(
            num_attention_heads=12, attention_head_dim=128, ffn_dim=8960, num_layers=30, text_dim=4096
        )
    per_block = 8 * 16 * (1536 + 1536) + 16 * (1536 + 8960) + 16 * (8960 + 1536)
    assert lora_parameter_count(real, LoraOptions(rank=16)) == 30 * per_block == 21_872_640
    apply_lora(real, LoraOptions(rank=16))
    assert sum(p.numel() for p in real.parameters() if p.requires_grad) == 30 * per_block


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rank": 0}, "rank must be an int > 0, got 0"),
        ({"rank": -2}, "got -2"),
        ({"rank": 2.5}, "got 2.5"),
        ({"alpha": 0.0}, "alpha must be a number > 0 or None, got 0.0"),
        ({"alpha": -1}, "got -1"),
        ({"dropout": 1.0}, r"dropout must lie in \[0, 1\), got 1.0"),
        ({"dropout": -0.1}, "got -0.1"),
        ({"target_modules": ()}, "target_modules must be non-empty"),
        ({"target_modules": "to_q"}, "'to_q'"),
    ],
)
def test_bad_options_raise_naming_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LoraOptions(**kwargs)


def test_bad_targets_raise_before_any_adapter_is_added():
    model = _model()
    with pytest.raises(ValueError, match="'to_qq' matches no module"):
        apply_lora(model, LoraOptions(target_modules=("to_q", "to_qq")))
    with pytest.raises(
        ValueError, match=r"'ffn.net.0' matches 'blocks.0.ffn.net.0', a GELU, not an nn.Linear"
    ):
        apply_lora(model, LoraOptions(target_modules=("ffn.net.0",)))
    assert not any(is_adapter_key(n) for n, _ in model.named_parameters())
    apply_lora(model, LoraOptions())
    with pytest.raises(ValueError, match="already has LoRA adapters"):
        apply_lora(model, LoraOptions())
    with pytest.raises(ValueError, match="has no LoRA adapters"):
        merge_lora(_model())
    assert set(DEFAULT_TARGET_MODULES) >= {"to_q", "ffn.net.2"}
