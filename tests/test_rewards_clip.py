"""CLIP-family rewards (CLIP score, PickScore, LAION aesthetic) on tiny random CLIP models built offline."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer
from transformers.convert_slow_tokenizer import bytes_to_unicode

from helpers import randomize_
from rfvideo.rewards.aesthetic import AestheticMLP, AestheticReward
from rfvideo.rewards.clip_score import ClipScoreReward
from rfvideo.rewards.pickscore import PickScoreReward
from rfvideo.rewards.preprocess import ImagePreprocess

IMAGE = 32


def tiny_clip_tokenizer() -> CLIPTokenizer:
    """Byte-level CLIP BPE with every byte (plain and word-final) and a few merges; EOS is the largest id."""
    chars = list(bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    merges = [("t", "h"), ("th", "e</w>"), ("a", "n"), ("an", "d</w>")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=merges)


def tiny_clip_config(vocab_size: int = 518, projection_dim: int = 16, **text: int) -> CLIPConfig:
    text_cfg = dict(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=16,
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
        hidden_act="gelu",
    )
    text_cfg.update(text)
    vision_cfg = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=IMAGE,
        patch_size=8,
        hidden_act="gelu",
    )
    return CLIPConfig(text_config=text_cfg, vision_config=vision_cfg, projection_dim=projection_dim)


def tiny_clip(seed: int = 0, **kw: int) -> CLIPModel:
    model = CLIPModel(tiny_clip_config(**kw)).eval()
    randomize_(model, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        model.logit_scale.fill_(2.5)  # exp -> 12.18, distinguishes "logit" from "cosine"
    return model


def tiny_processor() -> CLIPImageProcessor:
    return CLIPImageProcessor(size={"shortest_edge": IMAGE}, crop_size={"height": IMAGE, "width": IMAGE})


def _video(seed: int, b: int = 2, f: int = 2, h: int = 40, w: int = 56) -> torch.Tensor:
    return torch.rand(b, f, 3, h, w, generator=torch.Generator().manual_seed(seed))


PROMPTS = ["the cat and the dog", "a red car"]


@pytest.mark.parametrize("scale", ["cosine", "logit"])
def test_clip_score_equals_clip_logits(scale: str) -> None:
    model, tok = tiny_clip(), tiny_clip_tokenizer()
    pre = ImagePreprocess.from_processor(tiny_processor())
    reward = ClipScoreReward(model, tok, pre, scale=scale)
    video = _video(0)
    out = reward(video, PROMPTS)
    # Reference: CLIPModel's own forward on the same pixels, one frame at a time.
    per_frame = []
    for i in range(video.shape[1]):
        inputs = tok(PROMPTS, padding=True, return_tensors="pt")
        with torch.no_grad():
            logits = model(pixel_values=pre(video[:, i]), **inputs).logits_per_image.diagonal()
        per_frame.append(logits if scale == "logit" else logits / model.logit_scale.exp())
    torch.testing.assert_close(out, torch.stack(per_frame, 1).mean(1), atol=1e-5, rtol=1e-5)


def test_clip_score_close_to_processor_pipeline_on_uint8() -> None:
    model, tok, proc = tiny_clip(1), tiny_clip_tokenizer(), tiny_processor()
    reward = ClipScoreReward(model, tok, ImagePreprocess.from_processor(proc))
    frames = (_video(1, f=1) * 255).round().to(torch.uint8)
    pixels = proc(images=[im.permute(1, 2, 0).numpy() for im in frames[:, 0]], return_tensors="pt")[
        "pixel_values"
    ]
    with torch.no_grad():
        ref = model(pixel_values=pixels, **tok(PROMPTS, padding=True, return_tensors="pt")).logits_per_image
    out = reward(frames.float() / 255, PROMPTS)
    torch.testing.assert_close(out, ref.diagonal() / model.logit_scale.exp(), atol=5e-3, rtol=0)


def test_gradient_frozen_and_prompt_dependence() -> None:
    reward = ClipScoreReward(
        tiny_clip(2), tiny_clip_tokenizer(), ImagePreprocess(size=IMAGE, crop=(IMAGE, IMAGE))
    )
    assert not any(p.requires_grad for p in reward.parameters()) and not reward.model.training
    video = _video(2).requires_grad_(True)
    out = reward(video, PROMPTS)
    out.sum().backward()
    assert video.grad is not None and video.grad.abs().sum() > 0
    swapped = reward(video.detach(), PROMPTS[::-1])
    assert not torch.allclose(out.detach(), swapped)
    with pytest.raises(ValueError, match="scale"):
        ClipScoreReward(tiny_clip(2), tiny_clip_tokenizer(), scale="dot")


def test_from_pretrained_local_dirs(tmp_path: Path) -> None:
    model, tok, proc = tiny_clip(3), tiny_clip_tokenizer(), tiny_processor()
    model.save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "proc")
    proc.save_pretrained(tmp_path / "proc")
    built = PickScoreReward(model, tok, ImagePreprocess.from_processor(proc))
    loaded = PickScoreReward.from_pretrained(tmp_path / "model", processor_path=tmp_path / "proc")
    assert loaded.scale == "logit" and loaded.preprocess == built.preprocess
    video = _video(3)
    torch.testing.assert_close(loaded(video, PROMPTS), built(video, PROMPTS))
    # PickScore = exp(logit_scale) * cos
    plain = ClipScoreReward(model, tok, ImagePreprocess.from_processor(proc))
    torch.testing.assert_close(built(video, PROMPTS), plain(video, PROMPTS) * model.logit_scale.exp())
    tok.save_pretrained(tmp_path / "model")
    proc.save_pretrained(tmp_path / "model")
    clip = ClipScoreReward.from_pretrained(tmp_path / "model")
    torch.testing.assert_close(clip(video, PROMPTS), plain(video, PROMPTS))


def test_aesthetic_matches_naive_and_loads_pth(tmp_path: Path) -> None:
    clip = tiny_clip(4, projection_dim=768)
    head = randomize_(AestheticMLP(768), torch.Generator().manual_seed(5), scale=0.05)
    assert [k for k in head.state_dict()] == [
        f"layers.{i}.{p}" for i in (0, 2, 4, 6, 7) for p in ("weight", "bias")
    ]
    torch.save(head.state_dict(), tmp_path / "head.pth")
    pre = ImagePreprocess(size=IMAGE, crop=(IMAGE, IMAGE))
    reward = AestheticReward(clip, AestheticMLP.from_checkpoint(tmp_path / "head.pth"), pre)
    video = _video(6).requires_grad_(True)
    out = reward(video, PROMPTS)
    # naive: frames -> CLIP image embeds -> L2 norm -> five matmuls (no activations), frame mean
    sd = head.state_dict()
    ref = []
    for i in range(video.shape[1]):
        with torch.no_grad():
            e = F.normalize(
                clip(
                    pixel_values=pre(video[:, i].detach()), input_ids=torch.tensor([[516, 517]] * 2)
                ).image_embeds,
                dim=-1,
            )
        for j in (0, 2, 4, 6, 7):
            e = e @ sd[f"layers.{j}.weight"].T + sd[f"layers.{j}.bias"]
        ref.append(e[:, 0])
    torch.testing.assert_close(out, torch.stack(ref, 1).mean(1), atol=1e-5, rtol=1e-5)
    reward.train()
    torch.testing.assert_close(reward(video, PROMPTS), out)  # dropout stays off
    out.sum().backward()
    assert video.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="projection_dim"):
        AestheticReward(tiny_clip(4), head)
    clip.save_pretrained(tmp_path / "clip")
    tiny_processor().save_pretrained(tmp_path / "clip")
    loaded = AestheticReward.from_pretrained(tmp_path / "head.pth", tmp_path / "clip")
    torch.testing.assert_close(loaded(video.detach(), PROMPTS), out.detach())
    # The predictor's reference transform is OpenAI CLIP's torchvision one: crops placed like CenterCrop.
    assert loaded.preprocess.crop_offset == "round"
    assert AestheticReward(clip, head).preprocess.crop_offset == "round"
