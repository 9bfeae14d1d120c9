"""tools/vbench_weights/dino_to_hf.py: a DINO ViT state dict (facebookresearch/dino's names, the file VBench
loads for subject consistency) becomes a transformers ViTModel whose CLS feature is DINO's.

Reference: DINO's forward written out here from its `vision_transformer.py` (patch conv, CLS + position
embeddings, pre-norm blocks with the fused qkv split as `reshape(b, n, 3, heads, d / heads)`, exact GELU,
LayerNorm eps 1e-6, final norm, token 0), on a tiny seeded random ViT.
Legend: `b` images, `n` tokens, `d` width, `e` heads, `c` head width.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

PATH = Path(__file__).resolve().parents[1] / "tools" / "vbench_weights" / "dino_to_hf.py"
SPEC = importlib.util.spec_from_file_location("dino_to_hf", PATH)
tool = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(tool)

TINY = {"width": 32, "depth": 2, "mlp": 48, "patch": 4, "image": 16}
HEADS = 4


def dino_forward(sd: dict[str, torch.Tensor], x: torch.Tensor, heads: int) -> torch.Tensor:
    """DINO's `VisionTransformer.forward` on images `(b 3 H W)` -> CLS feature `(b d)`."""
    d = sd["cls_token"].shape[-1]

    def ln(t, name):
        return F.layer_norm(t, (d,), sd[name + ".weight"], sd[name + ".bias"], eps=1e-6)

    def lin(t, name):
        return F.linear(t, sd[name + ".weight"], sd[name + ".bias"])

    patch = sd["patch_embed.proj.weight"].shape[-1]
    t = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=patch)
    t = t.flatten(2).transpose(1, 2)  # (b n d)
    t = torch.cat([sd["cls_token"].expand(len(x), -1, -1), t], dim=1) + sd["pos_embed"]
    i = 0
    while f"blocks.{i}.norm1.weight" in sd:
        p = f"blocks.{i}."
        b, n, _ = t.shape
        qkv = (
            lin(ln(t, p + "norm1"), p + "attn.qkv").reshape(b, n, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
        )
        q, k, v = qkv[0], qkv[1], qkv[2]  # (b e n c)
        attn = (q @ k.transpose(-2, -1) * (d // heads) ** -0.5).softmax(-1)
        t = t + lin((attn @ v).transpose(1, 2).reshape(b, n, d), p + "attn.proj")
        t = t + lin(F.gelu(lin(ln(t, p + "norm2"), p + "mlp.fc1")), p + "mlp.fc2")
        i += 1
    return ln(t, "norm")[:, 0]


def test_converted_vit_gives_dino_s_cls_feature(tmp_path):
    from transformers import ViTModel

    sd = tool.random_dino_state(3, **TINY)
    model = tool.dino_to_hf(sd, heads=HEADS)
    assert model.config.layer_norm_eps == 1e-6 and model.config.image_size == 16
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 4 - 2
    with torch.no_grad():
        ref = dino_forward(sd, x, HEADS)
        ours = model(pixel_values=x, interpolate_pos_encoding=True).last_hidden_state[:, 0]
    assert ref.std() > 0.1  # features that differ per channel, not a constant
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    # The saved folder is what `rfvideo vbench --backbone subject_consistency=DIR` loads.
    model.save_pretrained(tmp_path / "dino")
    from rfvideo.eval.backbones import HFDINO

    with torch.no_grad():
        torch.testing.assert_close(HFDINO(str(tmp_path / "dino"))(x), ref, atol=1e-5, rtol=1e-5)
    assert isinstance(ViTModel.from_pretrained(tmp_path / "dino"), ViTModel)


def test_swapped_qkv_would_be_caught():
    sd = tool.random_dino_state(3, **TINY)
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    bad = dict(sd)
    for i in range(TINY["depth"]):
        for t in ("weight", "bias"):
            q, k, v = sd[f"blocks.{i}.attn.qkv.{t}"].chunk(3)
            bad[f"blocks.{i}.attn.qkv.{t}"] = torch.cat([k, q, v])
    with torch.no_grad():
        ours = tool.dino_to_hf(bad, heads=HEADS)(pixel_values=x).last_hidden_state[:, 0]
    assert (ours - dino_forward(sd, x, HEADS)).abs().max() > 1e-3  # the reference tells q from k


def test_foreign_state_dicts_are_named():
    sd = tool.random_dino_state(0, **TINY)
    with pytest.raises(ValueError, match="no 'blocks.1.mlp.fc2.bias'"):
        tool.dino_to_hf({k: v for k, v in sd.items() if k != "blocks.1.mlp.fc2.bias"}, heads=HEADS)
    with pytest.raises(ValueError, match="does not have: .'extra.weight'"):
        tool.dino_to_hf({**sd, "extra.weight": torch.zeros(1)}, heads=HEADS)
    with pytest.raises(ValueError, match="no 'cls_token'"):
        tool.dino_to_hf({"visual.proj": torch.zeros(1)})
    assert tool.dino_to_hf({**sd, "head.weight": torch.zeros(3, 32)}, heads=HEADS) is not None  # head dropped
