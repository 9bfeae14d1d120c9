"""HPSv2: open_clip -> transformers CLIP key converter against a naive open_clip forward, round trip,
loading a checkpoint in the released format, hpsv2's letterbox and prompt cleaning. The cross-check against
the hpsv2 package itself is tests/reward_crosscheck (isolated environment)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import CLIPModel

from rfvideo.rewards.hps import HPSv2Reward, hf_to_open_clip, load_open_clip_state_dict, open_clip_to_hf
from rfvideo.rewards.preprocess import Letterbox
from test_rewards_clip import IMAGE, PROMPTS, tiny_clip_config, tiny_clip_tokenizer, tiny_processor

W, LAYERS, HEADS, MLP, PATCH, EMBED, VOCAB, CTX = 32, 2, 2, 64, 8, 16, 518, 16


def random_open_clip_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """An open_clip ViT CLIP state dict (names and layouts as open_clip writes them), seeded noise."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape: int, scale: float = 0.2, center: float = 0.0) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * scale + center

    grid = (IMAGE // PATCH) ** 2
    sd = {
        "visual.class_embedding": r(W),
        "visual.positional_embedding": r(grid + 1, W),
        "visual.proj": r(W, EMBED),
        "visual.conv1.weight": r(W, 3, PATCH, PATCH, scale=0.05),
        "visual.ln_pre.weight": r(W, center=1.0),
        "visual.ln_pre.bias": r(W),
        "visual.ln_post.weight": r(W, center=1.0),
        "visual.ln_post.bias": r(W),
        "token_embedding.weight": r(VOCAB, W),
        "positional_embedding": r(CTX, W),
        "ln_final.weight": r(W, center=1.0),
        "ln_final.bias": r(W),
        "text_projection": r(W, EMBED),
        "logit_scale": torch.tensor(2.3),
    }
    for tower in ("visual.", ""):
        for i in range(LAYERS):
            p = f"{tower}transformer.resblocks.{i}."
            sd.update({
                p + "ln_1.weight": r(W, center=1.0), p + "ln_1.bias": r(W),
                p + "attn.in_proj_weight": r(3 * W, W), p + "attn.in_proj_bias": r(3 * W),
                p + "attn.out_proj.weight": r(W, W), p + "attn.out_proj.bias": r(W),
                p + "ln_2.weight": r(W, center=1.0), p + "ln_2.bias": r(W),
                p + "mlp.c_fc.weight": r(MLP, W), p + "mlp.c_fc.bias": r(MLP),
                p + "mlp.c_proj.weight": r(W, MLP), p + "mlp.c_proj.bias": r(W),
            })  # fmt: skip
    return sd


def _naive_blocks(x: torch.Tensor, sd: dict[str, torch.Tensor], prefix: str, causal: bool) -> torch.Tensor:
    """open_clip's ResidualAttentionBlock stack, written out: x + attn(ln_1 x); x + mlp(ln_2 x)."""
    n, t, w = x.shape
    mask = torch.full((t, t), float("-inf")).triu(1) if causal else torch.zeros(t, t)
    for i in range(LAYERS):
        p = f"{prefix}transformer.resblocks.{i}."
        h = F.layer_norm(x, (w,), sd[p + "ln_1.weight"], sd[p + "ln_1.bias"])
        q, k, v = (h @ sd[p + "attn.in_proj_weight"].T + sd[p + "attn.in_proj_bias"]).chunk(3, -1)
        q, k, v = (z.view(n, t, HEADS, w // HEADS).transpose(1, 2) for z in (q, k, v))
        att = torch.softmax(q @ k.transpose(-1, -2) / (w // HEADS) ** 0.5 + mask, -1) @ v
        x = (
            x
            + att.transpose(1, 2).reshape(n, t, w) @ sd[p + "attn.out_proj.weight"].T
            + sd[p + "attn.out_proj.bias"]
        )
        h = F.layer_norm(x, (w,), sd[p + "ln_2.weight"], sd[p + "ln_2.bias"])
        h = F.gelu(h @ sd[p + "mlp.c_fc.weight"].T + sd[p + "mlp.c_fc.bias"])
        x = x + h @ sd[p + "mlp.c_proj.weight"].T + sd[p + "mlp.c_proj.bias"]
    return x


def naive_open_clip_logits(
    sd: dict[str, torch.Tensor], pixels: torch.Tensor, ids: torch.Tensor
) -> torch.Tensor:
    """open_clip CLIP.forward -> logits_per_image `(n_img n_txt)`."""
    x = F.conv2d(pixels, sd["visual.conv1.weight"], stride=PATCH).flatten(2).transpose(1, 2)  # (n grid w)
    x = (
        torch.cat([sd["visual.class_embedding"].expand(len(x), 1, W), x], 1)
        + sd["visual.positional_embedding"]
    )
    x = F.layer_norm(x, (W,), sd["visual.ln_pre.weight"], sd["visual.ln_pre.bias"])
    x = _naive_blocks(x, sd, "visual.", causal=False)
    img = (
        F.layer_norm(x[:, 0], (W,), sd["visual.ln_post.weight"], sd["visual.ln_post.bias"])
        @ sd["visual.proj"]
    )
    t = sd["token_embedding.weight"][ids] + sd["positional_embedding"][: ids.shape[1]]
    t = _naive_blocks(t, sd, "", causal=True)
    t = F.layer_norm(t, (W,), sd["ln_final.weight"], sd["ln_final.bias"])
    txt = t[torch.arange(len(t)), ids.argmax(-1)] @ sd["text_projection"]  # EOT has the largest id
    return sd["logit_scale"].exp() * F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).T


def _converted_model(sd: dict[str, torch.Tensor]) -> CLIPModel:
    model = CLIPModel(tiny_clip_config(projection_dim=EMBED)).eval()
    missing, unexpected = model.load_state_dict(open_clip_to_hf(sd), strict=False)
    assert not unexpected and all(k.endswith("position_ids") for k in missing), (missing, unexpected)
    return model


def test_converted_model_equals_naive_open_clip() -> None:
    sd = random_open_clip_state_dict()
    model = _converted_model(sd)
    pixels = torch.randn(3, 3, IMAGE, IMAGE, generator=torch.Generator().manual_seed(1))
    ids = tiny_clip_tokenizer()(PROMPTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        ours = model(pixel_values=pixels, **ids).logits_per_image
    ref = naive_open_clip_logits(sd, pixels, ids["input_ids"])
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)


def test_round_trip_and_unknown_keys() -> None:
    sd = random_open_clip_state_dict(2)
    back = hf_to_open_clip(open_clip_to_hf({"module." + k: v for k, v in sd.items()}))
    assert back.keys() == sd.keys()
    for k in sd:
        assert torch.equal(back[k], sd[k]), k
    hf = CLIPModel(tiny_clip_config(projection_dim=EMBED)).state_dict()
    again = open_clip_to_hf(hf_to_open_clip(hf))
    assert set(again) == {k for k in hf if not k.endswith("position_ids")}
    with pytest.raises(ValueError, match="visual.transformer.resblocks.0.ls_1.gamma"):
        open_clip_to_hf({**sd, "visual.transformer.resblocks.0.ls_1.gamma": torch.ones(W)})


def test_from_pretrained_released_format(tmp_path: Path) -> None:
    sd = random_open_clip_state_dict(3)
    torch.save(
        {"epoch": 1, "state_dict": {"module." + k: v for k, v in sd.items()}},
        tmp_path / "HPS_v2_compressed.pt",
    )
    assert load_open_clip_state_dict(tmp_path / "HPS_v2_compressed.pt").keys() == {"module." + k for k in sd}
    proc_dir = tmp_path / "vit_h_processor"
    tiny_clip_config(projection_dim=EMBED).save_pretrained(proc_dir)
    tiny_clip_tokenizer().save_pretrained(proc_dir)
    tiny_processor().save_pretrained(proc_dir)
    reward = HPSv2Reward.from_pretrained(tmp_path / "HPS_v2_compressed.pt", processor_path=proc_dir)
    assert reward.name == "hps" and reward.scale == "cosine"
    video = torch.rand(2, 2, 3, 40, 48, generator=torch.Generator().manual_seed(4)).requires_grad_(True)
    out = reward(video, PROMPTS)
    pre = Letterbox(size=IMAGE)  # hpsv2's transform: the whole 40x48 frame, padded, not a centre crop
    ids = tiny_clip_tokenizer()(PROMPTS, padding=True, return_tensors="pt")["input_ids"]
    ref = (
        torch.stack(
            [naive_open_clip_logits(sd, pre(video[:, i].detach()), ids).diagonal() for i in range(2)], 1
        ).mean(1)
        / sd["logit_scale"].exp()
    )
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    out.sum().backward()
    assert video.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="processor_path is required"):
        HPSv2Reward.from_pretrained(tmp_path / "HPS_v2_compressed.pt", processor_path=None)


def test_hps_scores_the_whole_letterboxed_frame() -> None:
    """hpsv2 letterboxes: a change in the side columns of a 480x832-shaped frame (outside the centre square
    that a CLIP processor's crop keeps) must change the score, and the default preprocess is the letterbox."""
    model = _converted_model(random_open_clip_state_dict(5))
    reward = HPSv2Reward(model, tiny_clip_tokenizer())
    assert reward.preprocess == Letterbox(size=IMAGE)
    video = torch.rand(2, 1, 3, 30, 52, generator=torch.Generator().manual_seed(6))  # 480x832 aspect
    edited = video.clone()
    edited[..., :, :8] = 1.0 - edited[..., :, :8]  # columns 0-7: outside the centre 30x30 square (11-40)
    before, after = reward(video, PROMPTS), reward(edited, PROMPTS)
    assert (before - after).abs().min() > 1e-4, (before, after)
    # Reference: the naive open_clip forward on the letterboxed frame.
    ids = tiny_clip_tokenizer()(PROMPTS, padding=True, return_tensors="pt")["input_ids"]
    sd = random_open_clip_state_dict(5)
    ref = naive_open_clip_logits(sd, Letterbox(size=IMAGE)(video[:, 0]), ids).diagonal()
    ref = ref / sd["logit_scale"].exp()
    torch.testing.assert_close(before, ref, atol=1e-4, rtol=1e-4)


def test_hps_cleans_prompts_like_open_clip() -> None:
    """Curly quotes and HTML entities reach the BPE as open_clip's tokenizer leaves them (ftfy + unescape)."""
    model = _converted_model(random_open_clip_state_dict(7))
    hps = HPSv2Reward(model, tiny_clip_tokenizer())
    raw = ["the cat\u2019s  toy &amp;amp; the dog", "a \u201cred\u201d car"]
    clean = ["the cat's toy & the dog", 'a "red" car']
    torch.testing.assert_close(hps.text_features(raw), hps.text_features(clean))
    # Without the cleaning (transformers' tokenizer alone) the same prompts embed differently.
    plain = HPSv2Reward(model, tiny_clip_tokenizer(), text_clean=lambda p: p)
    assert not torch.allclose(plain.text_features(raw), plain.text_features(clean), atol=1e-3)
