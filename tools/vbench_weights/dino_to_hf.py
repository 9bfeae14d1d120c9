"""DINO ViT-B/16 in facebookresearch/dino's layout -> a transformers ViTModel folder for the in-loop code.

VBench scores subject consistency with DINO's own `VisionTransformer` (`torch.hub.load(
"facebookresearch/dino", "dino_vitb16")`, weights `dino_vitbase16_pretrain.pth`); rfvideo's in-loop code
reads a transformers `ViTModel` folder (`rfvideo vbench --backbone subject_consistency=DIR`). Converting
the file VBench loads makes both columns use the same weights (facebook/dino-vitb16 on the hub was made by
transformers' convert_dino_to_pytorch.py with ViTConfig's default LayerNorm eps 1e-12; DINO uses 1e-6).

    # the weights VBench uses (its cache, or torch hub's checkpoints folder)
    python tools/vbench_weights/dino_to_hf.py \
        --pth ~/.cache/torch/hub/checkpoints/dino_vitbase16_pretrain.pth \
        --out models/dino-vitb16 [--check-repo path/to/facebookresearch_dino_main]
    # offline check of the bridge: seeded random weights, written in DINO's layout too
    python tools/vbench_weights/dino_to_hf.py --random-seed 0 --write-pth dino_random.pth --out dino-random

`--check-repo` builds DINO's own model from a clone and compares its CLS feature with the converted
ViTModel's on a seeded random image (prints the max difference; exit 1 above 1e-4).
Legend: `d` width (768), `n` tokens (1 + 14 * 14 at 224 px).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import torch

WIDTH, DEPTH, HEADS, MLP, PATCH, IMAGE = 768, 12, 12, 3072, 16, 224
DINO_EPS = 1e-6  # DINO's norm_layer: partial(nn.LayerNorm, eps=1e-6)

# transformers renamed ViT's modules between versions: the first candidate present in the model is used.
BLOCK_NAMES = {
    "norm1": ["layers.{i}.layernorm_before", "encoder.layer.{i}.layernorm_before"],
    "norm2": ["layers.{i}.layernorm_after", "encoder.layer.{i}.layernorm_after"],
    "q": ["layers.{i}.attention.q_proj", "encoder.layer.{i}.attention.attention.query"],
    "k": ["layers.{i}.attention.k_proj", "encoder.layer.{i}.attention.attention.key"],
    "v": ["layers.{i}.attention.v_proj", "encoder.layer.{i}.attention.attention.value"],
    "proj": ["layers.{i}.attention.o_proj", "encoder.layer.{i}.attention.output.dense"],
    "fc1": ["layers.{i}.mlp.fc1", "encoder.layer.{i}.intermediate.dense"],
    "fc2": ["layers.{i}.mlp.fc2", "encoder.layer.{i}.output.dense"],
}


def random_dino_state(
    seed: int,
    *,
    width: int = WIDTH,
    depth: int = DEPTH,
    mlp: int = MLP,
    patch: int = PATCH,
    image: int = IMAGE,
) -> dict[str, torch.Tensor]:
    """Seeded random ViT weights under DINO's names (`vision_transformer.py`; ViT-B/16 by default)."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape: int, std: float = 0.02, mean: float = 0.0) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * std + mean

    n = (image // patch) ** 2 + 1
    sd = {
        "cls_token": rnd(1, 1, width),
        "pos_embed": rnd(1, n, width),
        "patch_embed.proj.weight": rnd(width, 3, patch, patch),
        "patch_embed.proj.bias": rnd(width),
        "norm.weight": rnd(width, std=0.1, mean=1.0),
        "norm.bias": rnd(width),
    }
    for i in range(depth):
        p = f"blocks.{i}."
        sd.update({
            p + "norm1.weight": rnd(width, std=0.1, mean=1.0), p + "norm1.bias": rnd(width),
            p + "attn.qkv.weight": rnd(3 * width, width), p + "attn.qkv.bias": rnd(3 * width),
            p + "attn.proj.weight": rnd(width, width), p + "attn.proj.bias": rnd(width),
            p + "norm2.weight": rnd(width, std=0.1, mean=1.0), p + "norm2.bias": rnd(width),
            p + "mlp.fc1.weight": rnd(mlp, width), p + "mlp.fc1.bias": rnd(mlp),
            p + "mlp.fc2.weight": rnd(width, mlp), p + "mlp.fc2.bias": rnd(width),
        })  # fmt: skip
    return sd


def _pick(model_keys: set[str], candidates: list[str], i: int) -> str:
    for c in candidates:
        name = c.format(i=i)
        if name + ".weight" in model_keys:
            return name
    raise ValueError(f"this transformers version's ViTModel has none of {candidates} (block {i})")


def dino_to_hf(state: dict[str, torch.Tensor], *, heads: int = HEADS):
    """A transformers `ViTModel` (no pooler) holding the DINO ViT `state`; strict (every key used once).

    Width, depth, MLP size, patch and image size are read from the tensors (ViT-B/16 for VBench's file);
    the head count is not in the weights (12 for ViT-B).

    Raises:
        ValueError: a key a DINO ViT does not have, or a missing one (names it).
    """
    from transformers import ViTConfig, ViTModel

    src = {k: v for k, v in state.items() if not k.startswith("head.")}  # a fine-tuned file's head

    def pop(key: str) -> torch.Tensor:
        if key not in src:
            raise ValueError(f"not a DINO ViT state dict: no {key!r}")
        return src.pop(key)

    for key in ("cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.0.mlp.fc1.weight"):
        if key not in src:
            raise ValueError(f"not a DINO ViT state dict: no {key!r}")
    width, patch = int(state["cls_token"].shape[-1]), int(state["patch_embed.proj.weight"].shape[-1])
    depth = len({k.split(".")[1] for k in src if k.startswith("blocks.")})
    grid = round((state["pos_embed"].shape[1] - 1) ** 0.5)  # pos_embed: (1 n d), n = 1 + grid^2
    cfg = ViTConfig(hidden_size=width, num_hidden_layers=depth, num_attention_heads=heads,
                    intermediate_size=int(state["blocks.0.mlp.fc1.weight"].shape[0]), image_size=grid * patch,
                    patch_size=patch, qkv_bias=True, hidden_act="gelu", layer_norm_eps=DINO_EPS)  # fmt: skip
    model = ViTModel(cfg, add_pooling_layer=False).eval()
    keys = set(model.state_dict())
    out: dict[str, torch.Tensor] = {
        "embeddings.cls_token": pop("cls_token"),
        "embeddings.position_embeddings": pop("pos_embed"),
        "embeddings.patch_embeddings.projection.weight": pop("patch_embed.proj.weight"),
        "embeddings.patch_embeddings.projection.bias": pop("patch_embed.proj.bias"),
        "layernorm.weight": pop("norm.weight"),
        "layernorm.bias": pop("norm.bias"),
    }
    for i in range(depth):
        p = f"blocks.{i}."
        name = {role: _pick(keys, c, i) for role, c in BLOCK_NAMES.items()}
        for t in ("weight", "bias"):
            q, k, v = pop(p + f"attn.qkv.{t}").chunk(3, dim=0)  # DINO's qkv rows: q, then k, then v
            out[f"{name['q']}.{t}"], out[f"{name['k']}.{t}"], out[f"{name['v']}.{t}"] = q, k, v
            for role, dino in (("norm1", "norm1"), ("norm2", "norm2"), ("proj", "attn.proj"),
                               ("fc1", "mlp.fc1"), ("fc2", "mlp.fc2")):  # fmt: skip
                out[f"{name[role]}.{t}"] = pop(p + f"{dino}.{t}")
    if src:
        raise ValueError(f"keys a DINO ViT does not have: {sorted(src)[:5]}")
    missing, unexpected = set(keys) - set(out), set(out) - set(keys)
    if missing or unexpected:
        raise ValueError(f"conversion left missing={sorted(missing)[:5]} unexpected={sorted(unexpected)[:5]}")
    model.load_state_dict(out, strict=True)
    return model


def check_against_dino(model, state: dict[str, torch.Tensor], repo: Path) -> float:
    """Max |CLS(DINO's own ViT) - CLS(converted ViTModel)| on a seeded random 224 px image."""
    spec = importlib.util.spec_from_file_location("dino_vision_transformer", repo / "vision_transformer.py")
    if spec is None or spec.loader is None:
        raise ValueError(f"no vision_transformer.py in {repo}")
    vits = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(repo))  # vision_transformer.py imports the clone's `utils`
    try:
        spec.loader.exec_module(vits)
    finally:
        sys.path.remove(str(repo))
    ref = vits.vit_base(patch_size=PATCH, num_classes=0).eval()
    ref.load_state_dict({k: v for k, v in state.items() if not k.startswith("head.")}, strict=True)
    x = torch.rand(2, 3, IMAGE, IMAGE, generator=torch.Generator().manual_seed(1)) * 4 - 2  # normalised px
    with torch.no_grad():
        a = ref(x)  # (b d): DINO's forward returns the CLS token after the final norm
        b = model(pixel_values=x, interpolate_pos_encoding=True).last_hidden_state[:, 0]
    return float((a - b).abs().max())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--pth", help="DINO checkpoint (dino_vitbase16_pretrain.pth)")
    src.add_argument("--random-seed", type=int, help="seeded random weights instead (offline checks)")
    p.add_argument("--write-pth", default=None, help="also save the DINO-layout weights here (random only)")
    p.add_argument("--out", required=True, help="transformers ViTModel folder to write")
    p.add_argument("--check-repo", default=None, help="a facebookresearch/dino clone: compare CLS features")
    a = p.parse_args(argv)
    if a.pth:
        state = torch.load(a.pth, map_location="cpu", weights_only=True)
        state = state.get("teacher", state) if isinstance(state, dict) else state  # training checkpoints
        state = {k.removeprefix("module.").removeprefix("backbone."): v for k, v in state.items()}
    else:
        state = random_dino_state(a.random_seed)
        if a.write_pth:
            Path(a.write_pth).parent.mkdir(parents=True, exist_ok=True)
            torch.save(state, a.write_pth)
            print(f"wrote {a.write_pth} (DINO layout)")
    model = dino_to_hf(state)
    model.save_pretrained(a.out)
    print(f"wrote {a.out} (transformers ViTModel, layer_norm_eps={DINO_EPS})")
    if a.check_repo:
        diff = check_against_dino(model, state, Path(a.check_repo))
        print(f"max |CLS DINO - CLS converted| = {diff:.2e}")
        return 0 if diff <= 1e-4 else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
