"""ImageReward on a tiny random checkpoint in the official BLIP key layout.

The reference below is an independent plain-torch implementation of BLIP's ViT + cross-attention BERT + MLP
read straight from the official-format state dict (no transformers), so a wrong key mapping, a swapped
LayerNorm, a causal mask or a wrong token position changes the output.

Shapes: n images, t tokens, d width, l text length.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import BertTokenizer

from rfvideo.rewards.image_reward import (
    CLIP_MEAN,
    CLIP_STD,
    IMAGE_REWARD_MEAN,
    IMAGE_REWARD_STD,
    ImageReward,
    convert_image_reward_state_dict,
    resize_center_crop,
)

VIT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128)
IMAGE_SIZE, PATCH = 32, 16
MED = dict(
    vocab_size=15,  # 13 words + [DEC] + [ENC]
    hidden_size=24,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=48,
    max_position_embeddings=40,
    hidden_act="gelu",
    layer_norm_eps=1e-12,
    add_cross_attention=True,
    encoder_width=768,  # BLIP overrides this with the ViT width; the loader must too
)
MAX_LEN = 35
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "cat", "dog", "red", "on", "the", "mat", "##s"]
PROMPTS = ["a red cat on the mats", "the dog"]


def official_state_dict(gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Tiny ImageReward.pt in the original layout (BLIP vit.py / med.py / ImageReward MLP names)."""
    d, dt, ff, dv = VIT["hidden_size"], MED["hidden_size"], MED["intermediate_size"], VIT["intermediate_size"]
    shapes: dict[str, tuple[int, ...]] = {
        "blip.visual_encoder.cls_token": (1, 1, d),
        "blip.visual_encoder.pos_embed": (1, 1 + (IMAGE_SIZE // PATCH) ** 2, d),
        "blip.visual_encoder.patch_embed.proj.weight": (d, 3, PATCH, PATCH),
        "blip.visual_encoder.patch_embed.proj.bias": (d,),
        "blip.visual_encoder.norm.weight": (d,),
        "blip.visual_encoder.norm.bias": (d,),
        "blip.text_encoder.embeddings.word_embeddings.weight": (MED["vocab_size"], dt),
        "blip.text_encoder.embeddings.position_embeddings.weight": (MED["max_position_embeddings"], dt),
        "blip.text_encoder.embeddings.LayerNorm.weight": (dt,),
        "blip.text_encoder.embeddings.LayerNorm.bias": (dt,),
        "blip.vision_proj.weight": (16, d),
        "blip.vision_proj.bias": (16,),
        "blip.text_proj.weight": (16, dt),
        "blip.text_proj.bias": (16,),
    }
    for i in range(VIT["num_hidden_layers"]):
        p = f"blip.visual_encoder.blocks.{i}."
        for n, s in [("norm1", (d,)), ("norm2", (d,))]:
            shapes[p + n + ".weight"], shapes[p + n + ".bias"] = s, s
        for n, o, k in [("attn.qkv", 3 * d, d), ("attn.proj", d, d), ("mlp.fc1", dv, d), ("mlp.fc2", d, dv)]:
            shapes[p + n + ".weight"], shapes[p + n + ".bias"] = (o, k), (o,)
    for i in range(MED["num_hidden_layers"]):
        p = f"blip.text_encoder.encoder.layer.{i}."
        lin = [
            ("attention.self.query", dt, dt),
            ("attention.self.key", dt, dt),
            ("attention.self.value", dt, dt),
            ("attention.output.dense", dt, dt),
            ("crossattention.self.query", dt, dt),
            ("crossattention.self.key", dt, d),
            ("crossattention.self.value", dt, d),
            ("crossattention.output.dense", dt, dt),
            ("intermediate.dense", ff, dt),
            ("output.dense", dt, ff),
        ]
        for n, o, k in lin:
            shapes[p + n + ".weight"], shapes[p + n + ".bias"] = (o, k), (o,)
        for n in ["attention.output.LayerNorm", "crossattention.output.LayerNorm", "output.LayerNorm"]:
            shapes[p + n + ".weight"], shapes[p + n + ".bias"] = (dt,), (dt,)
    for idx, (o, k) in zip([0, 2, 4, 6, 7], [(1024, dt), (128, 1024), (64, 128), (16, 64), (1, 16)]):
        shapes[f"mlp.layers.{idx}.weight"], shapes[f"mlp.layers.{idx}.bias"] = (o, k), (o,)
    state: dict[str, torch.Tensor] = {}
    for key, shape in shapes.items():
        fan_in = shape[1] if len(shape) == 2 else 1
        scale = min(0.3, 1.5 / math.sqrt(fan_in)) if len(shape) == 2 else 0.2
        t = torch.randn(shape, generator=gen) * scale
        if ("norm" in key.lower()) and key.endswith("weight"):
            t = t + 1.0
        state[key] = t
    # An original-checkpoint buffer the converter must drop.
    state["blip.text_encoder.embeddings.position_ids"] = torch.arange(MED["max_position_embeddings"])[None]
    return state


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("image_reward")
    state = official_state_dict(torch.Generator().manual_seed(0))
    torch.save(state, root / "ImageReward.pt")
    (root / "med_config.json").write_text(json.dumps(MED))
    tok_dir = root / "bert-base-uncased"
    tok_dir.mkdir()
    (tok_dir / "vocab.txt").write_text("\n".join(WORDS) + "\n")
    BertTokenizer(vocab=str(tok_dir / "vocab.txt")).save_pretrained(tok_dir)
    return {"ckpt": root / "ImageReward.pt", "med": root / "med_config.json", "tok": tok_dir}


@pytest.fixture(scope="module")
def model(files: dict[str, Path]) -> ImageReward:
    return ImageReward.from_pretrained(
        files["ckpt"], med_config=files["med"], tokenizer=files["tok"], vit=VIT, image_size=IMAGE_SIZE
    )


# ---------------------------------------------------------------- independent reference (plain torch)
def _ln(x: torch.Tensor, sd: dict[str, torch.Tensor], p: str, eps: float) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], sd[p + ".weight"], sd[p + ".bias"], eps)


def _lin(x: torch.Tensor, sd: dict[str, torch.Tensor], p: str) -> torch.Tensor:
    return x @ sd[p + ".weight"].T + sd[p + ".bias"]


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, bias: torch.Tensor | None):
    n, tq, d = q.shape
    hd = d // heads
    q, k, v = (x.reshape(n, -1, heads, hd).transpose(1, 2) for x in (q, k, v))
    logits = q @ k.transpose(-1, -2) / math.sqrt(hd)
    if bias is not None:
        logits = logits + bias
    return (logits.softmax(-1) @ v).transpose(1, 2).reshape(n, tq, d)


def ref_vit(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    p = "blip.visual_encoder."
    heads = VIT["num_attention_heads"]
    x = F.conv2d(x, sd[p + "patch_embed.proj.weight"], sd[p + "patch_embed.proj.bias"], stride=PATCH)
    x = x.flatten(2).transpose(1, 2)  # (n t d)
    x = torch.cat([sd[p + "cls_token"].expand(x.shape[0], -1, -1), x], 1) + sd[p + "pos_embed"]
    for i in range(VIT["num_hidden_layers"]):
        b = f"{p}blocks.{i}."
        h = _ln(x, sd, b + "norm1", 1e-6)
        q, k, v = _lin(h, sd, b + "attn.qkv").chunk(3, dim=-1)
        x = x + _lin(_attend(q, k, v, heads, None), sd, b + "attn.proj")
        h = _ln(x, sd, b + "norm2", 1e-6)
        x = x + _lin(F.gelu(_lin(h, sd, b + "mlp.fc1")), sd, b + "mlp.fc2")
    return _ln(x, sd, p + "norm", 1e-6)


def ref_text(sd: dict[str, torch.Tensor], ids: torch.Tensor, mask: torch.Tensor, img: torch.Tensor):
    p = "blip.text_encoder."
    heads = MED["num_attention_heads"]
    x = sd[p + "embeddings.word_embeddings.weight"][ids]
    x = x + sd[p + "embeddings.position_embeddings.weight"][: ids.shape[1]]
    x = _ln(x, sd, p + "embeddings.LayerNorm", 1e-12)
    pad_bias = (1.0 - mask[:, None, None, :].to(x.dtype)) * -10000.0  # BLIP's extended mask
    for i in range(MED["num_hidden_layers"]):
        b = f"{p}encoder.layer.{i}."
        a = b + "attention."
        q, k, v = (_lin(x, sd, a + f"self.{n}") for n in ("query", "key", "value"))
        ctx = _attend(q, k, v, heads, pad_bias)
        x = _ln(_lin(ctx, sd, a + "output.dense") + x, sd, a + "output.LayerNorm", 1e-12)
        c = b + "crossattention."
        q, k, v = (
            _lin(x, sd, c + "self.query"),
            _lin(img, sd, c + "self.key"),
            _lin(img, sd, c + "self.value"),
        )
        ctx = _attend(q, k, v, heads, None)
        x = _ln(_lin(ctx, sd, c + "output.dense") + x, sd, c + "output.LayerNorm", 1e-12)
        h = F.gelu(_lin(x, sd, b + "intermediate.dense"))
        x = _ln(_lin(h, sd, b + "output.dense") + x, sd, b + "output.LayerNorm", 1e-12)
    return x


def ref_reward(sd: dict[str, torch.Tensor], images: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor):
    """images: (n 3 s s) already preprocessed."""
    h = ref_text(sd, ids, mask, ref_vit(sd, images))[:, 0]
    for idx in (0, 2, 4, 6, 7):
        h = _lin(h, sd, f"mlp.layers.{idx}")
    return (h.squeeze(-1) - IMAGE_REWARD_MEAN) / IMAGE_REWARD_STD


def ref_tokens(prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Hand tokenisation: [CLS] words [SEP], zero-padded to 35 (bert-base-uncased style, our tiny vocab)."""
    vocab = {w: i for i, w in enumerate(WORDS)}
    ids = torch.zeros(len(prompts), MAX_LEN, dtype=torch.long)
    for r, p in enumerate(prompts):
        toks = []
        for w in p.split():
            toks += [w[:-1], "##s"] if w not in vocab and w.endswith("s") else [w]
        row = [vocab["[CLS]"], *[vocab[t] for t in toks], vocab["[SEP]"]]
        ids[r, : len(row)] = torch.tensor(row)
    return ids, (ids != 0).long()


def ref_preprocess(frames: torch.Tensor) -> torch.Tensor:
    """(n 3 40 56) -> (n 3 32 32): shorter side 40 -> 32, longer 56 -> int(44.8) = 44, crop cols 6:38."""
    x = F.interpolate(frames, size=(32, 44), mode="bicubic", align_corners=False, antialias=True)[..., 6:38]
    mean = torch.tensor(CLIP_MEAN, dtype=frames.dtype).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=frames.dtype).view(1, 3, 1, 1)
    return (x - mean) / std


# ---------------------------------------------------------------- tests
def test_converter_maps_every_key_and_nothing_else(files: dict[str, Path]) -> None:
    state = torch.load(files["ckpt"], weights_only=True)
    vision, text, mlp = convert_image_reward_state_dict(state)
    n_proj = sum(k.startswith(("blip.vision_proj.", "blip.text_proj.")) for k in state)
    # Every tensor lands somewhere except the 4 projection tensors and the position_ids buffer.
    assert len(vision) + len(text) + len(mlp) == len(state) - n_proj - 1
    with pytest.raises(ValueError, match="blip.itm_head.weight"):
        convert_image_reward_state_dict({**state, "blip.itm_head.weight": torch.zeros(2, 24)})
    with pytest.raises(ValueError, match="text_encoder.*pooler|pooler"):
        convert_image_reward_state_dict({**state, "blip.text_encoder.pooler.dense.weight": torch.zeros(2)})


def test_missing_key_raises(files: dict[str, Path], tmp_path: Path) -> None:
    state = torch.load(files["ckpt"], weights_only=True)
    del state["blip.visual_encoder.blocks.1.attn.qkv.bias"]
    torch.save(state, tmp_path / "broken.pt")
    with pytest.raises(ValueError, match=r"encoder\.layers\.1\.self_attn\.qkv\.bias"):
        ImageReward.from_pretrained(
            tmp_path / "broken.pt",
            med_config=files["med"],
            tokenizer=files["tok"],
            vit=VIT,
            image_size=IMAGE_SIZE,
        )


def test_tokenizer_matches_imagereward(model: ImageReward) -> None:
    ids, mask = model.tokenize(PROMPTS, torch.device("cpu"))
    ref_ids, ref_mask = ref_tokens(PROMPTS)
    assert torch.equal(ids, ref_ids) and torch.equal(mask, ref_mask)
    # BLIP's added tokens follow the vocabulary: [DEC] then [ENC].
    assert model.tokenizer.convert_tokens_to_ids("[ENC]") == len(WORDS) + 1


def test_matches_reference(model: ImageReward, files: dict[str, Path]) -> None:
    sd = torch.load(files["ckpt"], weights_only=True)
    gen = torch.Generator().manual_seed(1)
    video = torch.rand(2, 3, 3, 40, 56, generator=gen)  # (b f 3 H W)
    got = model(video, PROMPTS)
    assert got.shape == (2,)
    ids, mask = ref_tokens(PROMPTS)
    per_frame = torch.stack(
        [ref_reward(sd, ref_preprocess(video[:, j]), ids, mask) for j in range(video.shape[1])], dim=1
    )  # (b f)
    torch.testing.assert_close(got, per_frame.mean(1), atol=1e-5, rtol=1e-5)
    # The rewards are not trivially equal across samples/frames (a dropped tensor would show).
    assert per_frame.std() > 1e-3


def test_first_token_enc_variant(files: dict[str, Path], model: ImageReward) -> None:
    enc = ImageReward.from_pretrained(
        files["ckpt"], med_config=files["med"], tokenizer=files["tok"], vit=VIT, image_size=IMAGE_SIZE,
        first_token="enc",
    )  # fmt: skip
    sd = torch.load(files["ckpt"], weights_only=True)
    video = torch.rand(2, 1, 3, 40, 56, generator=torch.Generator().manual_seed(2))
    ids, mask = ref_tokens(PROMPTS)
    ids[:, 0] = len(WORDS) + 1
    torch.testing.assert_close(
        enc(video, PROMPTS), ref_reward(sd, ref_preprocess(video[:, 0]), ids, mask), atol=1e-5, rtol=1e-5
    )
    assert not torch.allclose(enc(video, PROMPTS), model(video, PROMPTS))


def test_resize_close_to_pil() -> None:
    """Our float resize vs torchvision's path (PIL bicubic on uint8): within about one 8-bit step.

    A smooth image, as decoded frames are: on white noise PIL's clipping of the overshoot to uint8 between
    its horizontal and vertical passes adds up to ~7 grey levels at single pixels (0.3 on average).
    """
    rng = np.random.default_rng(0)
    walk = np.cumsum(np.cumsum(rng.normal(size=(50, 70, 3)), 0), 1) * 3 + 128
    img = np.clip(walk, 0, 255).astype(np.uint8)
    # torchvision Resize(32): short side 50 -> 32, long 70 -> int(32 * 70 / 50) = 44; CenterCrop cols 6:38.
    pil = np.asarray(Image.fromarray(img).resize((44, 32), Image.BICUBIC), dtype=np.float32)[:, 6:38] / 255
    ours = resize_center_crop(torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255, 32)[0]
    diff = np.abs(ours.clamp(0, 1).permute(1, 2, 0).numpy() - pil)
    assert ours.shape == (3, 32, 32)
    assert diff.max() < 1.5 / 255, diff.max()


def test_gradcheck_float64(files: dict[str, Path]) -> None:
    m = ImageReward.from_pretrained(
        files["ckpt"], med_config=files["med"], tokenizer=files["tok"], vit=VIT, image_size=IMAGE_SIZE,
        dtype=torch.float64,
    )  # fmt: skip
    video = torch.rand(1, 1, 3, 6, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    video.requires_grad_(True)
    # `score_images` is the float64 math; `forward`/`score` add validation and the contract's float32 cast.
    # fast_mode checks a random projection of the Jacobian: two forwards instead of one per input element.
    assert torch.autograd.gradcheck(
        lambda v: m.score_images(v[:, 0], PROMPTS[:1]), (video,), eps=1e-6, atol=1e-6, fast_mode=True
    )


def test_grad_flows_and_frozen(model: ImageReward) -> None:
    video = torch.rand(2, 2, 3, 40, 56, generator=torch.Generator().manual_seed(4), requires_grad=True)
    model(video, PROMPTS).sum().backward()
    assert video.grad is not None and torch.isfinite(video.grad).all() and video.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in model.parameters())
    assert not model.training


@pytest.mark.parametrize(
    ("shape", "prompts", "match"),
    [
        ((2, 3, 40, 56), PROMPTS, "b f 3 H W"),
        ((2, 1, 4, 40, 56), PROMPTS, "b f 3 H W"),
        ((2, 1, 3, 40, 56), PROMPTS[:1], "1 prompts for a batch of 2"),
        ((1, 1, 3, 40, 56), "a cat", "list of str"),
    ],
)
def test_bad_inputs(model: ImageReward, shape: tuple[int, ...], prompts, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        model(torch.rand(shape, generator=torch.Generator().manual_seed(5)), prompts)


def test_out_of_range_video_raises(model: ImageReward) -> None:
    video = torch.rand(1, 1, 3, 40, 56, generator=torch.Generator().manual_seed(6)) * 2 - 0.5
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model(video, ["a cat"])


def test_bad_constructor_args(model: ImageReward) -> None:
    with pytest.raises(ValueError, match="first_token"):
        ImageReward(model.vision, model.text, model.mlp, model.tokenizer, first_token="sep")
    with pytest.raises(ValueError, match="vit"):
        from rfvideo.rewards.blip import blip_vision_config

        blip_vision_config("huge")


def test_in_ensemble_scores_last_frame(model: ImageReward) -> None:
    from rfvideo.rewards.ensemble import RewardEnsemble
    from rfvideo.rewards.frames import FrameSelector

    ens = RewardEnsemble({"image_reward": model}, {"image_reward": 1.0}, FrameSelector(policy="last"))
    video = torch.rand(2, 3, 3, 40, 56, generator=torch.Generator().manual_seed(7))
    out = ens(video, PROMPTS)
    torch.testing.assert_close(out.terms["image_reward"], model(video[:, -1:], PROMPTS))
    assert not torch.allclose(out.terms["image_reward"], model(video[:, :1], PROMPTS))
