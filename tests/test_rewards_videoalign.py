"""Qwen2-VL video reward (VideoAlign layout) on a tiny random Qwen2-VL: patchify parity with transformers'
image processor, reward-token read-out against a hand-built forward, gradients to the pixels.

Shapes: b batch, f frames, N patches.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace
from torch import nn
from transformers import PreTrainedTokenizerFast, Qwen2VLConfig, Qwen2VLForConditionalGeneration

from rfvideo.rewards.video_reward import FrameSampling, VideoPreprocess
from rfvideo.rewards.videoalign import VIDEOALIGN_REWARD_TOKENS, Qwen2VLVideoReward, patchify_video

SPECIAL = ["<|vision_start|>", "<|video_pad|>", "<|vision_end|>", "<|image_pad|>", *VIDEOALIGN_REWARD_TOKENS]
WORDS = ["[UNK]", "a", "cat", "dog", "runs", "rate", "this", "video"]


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tok.pre_tokenizer = Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")
    fast.add_tokens(SPECIAL, special_tokens=True)
    return fast


def tiny_reward(seed: int = 0, out_features: int = 1) -> Qwen2VLVideoReward:
    torch.manual_seed(seed)  # transformers initialises weights from the global RNG
    tok = tiny_tokenizer()
    ids = tok.convert_tokens_to_ids(SPECIAL[:4])
    cfg = Qwen2VLConfig(
        text_config=dict(
            vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256, rope_theta=10000.0,
            rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]},
        ),
        vision_config=dict(
            depth=2, embed_dim=32, hidden_size=32, num_heads=2, mlp_ratio=2, patch_size=14,
            temporal_patch_size=2, spatial_merge_size=2, in_channels=3,
        ),
        vision_start_token_id=ids[0], video_token_id=ids[1], vision_end_token_id=ids[2],
        image_token_id=ids[3],
    )  # fmt: skip
    model = Qwen2VLForConditionalGeneration(cfg).eval()
    head = nn.Linear(32, out_features)
    return Qwen2VLVideoReward(
        model,
        head,
        tok,
        template="rate this video {video} {prompt} {reward_tokens}",
        sampling=FrameSampling(source_fps=16, target_fps=8, multiple_of=2),
        preprocess=VideoPreprocess(factor=28, min_pixels=28 * 28, max_pixels=56 * 84),
    )


def test_patchify_matches_transformers_image_processor() -> None:
    pil_mod = pytest.importorskip("transformers.models.qwen2_vl.image_processing_pil_qwen2_vl")
    proc = pil_mod.Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=56 * 84)
    img = np.random.default_rng(0).integers(0, 256, (56, 84, 3)).astype(np.uint8)
    want = proc(images=[Image.fromarray(img)], return_tensors="pt")
    x = torch.from_numpy(img).permute(2, 0, 1).float() / 255
    x = VideoPreprocess(size=(56, 84))(x[None, None].expand(1, 2, 3, 56, 84))[0]  # image = 2 equal frames
    got, grid = patchify_video(x)
    assert grid.tolist() == want["image_grid_thw"][0].tolist() == [1, 4, 6]
    torch.testing.assert_close(got, want["pixel_values"].float(), atol=1e-5, rtol=1e-5)


def test_matches_hand_built_forward() -> None:
    reward = tiny_reward()
    gen = torch.Generator().manual_seed(1)
    video = torch.rand(2, 4, 3, 56, 84, generator=gen)
    prompts = ["a cat runs", "dog"]
    got = reward.head_scores(video, prompts)
    # Hand path for sample 1: 16 -> 8 fps keeps frames 0, 2 (already a pair); 56x84 needs no resize.
    clip = VideoPreprocess(size=(56, 84))(video[1:2, [0, 2]])[0]
    pixels, grid = patchify_video(clip)
    tok = reward.tokenizer
    n = len(pixels) // 4
    text = (
        "rate this video <|vision_start|>"
        + "<|video_pad|>" * n
        + "<|vision_end|> dog "
        + "".join(VIDEOALIGN_REWARD_TOKENS)
    )
    ids = tok(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    types = (ids == reward.video_token_id).int() * 2
    out = reward.model(input_ids=ids, pixel_values_videos=pixels, video_grid_thw=grid[None],
                       mm_token_type_ids=types, output_hidden_states=True)  # fmt: skip
    hidden = out.hidden_states[-1][0]
    last3 = reward.reward_head(hidden[-3:]).squeeze(-1)  # the three reward tokens end the sequence
    for k, h in enumerate(("VQ", "MQ", "TA")):
        torch.testing.assert_close(got[h][1], last3[k], atol=1e-5, rtol=1e-5)
    assert len({round(float(got[h][0]), 5) for h in got}) == 3  # heads differ


def test_gradients_and_multi_output_head() -> None:
    reward = tiny_reward(out_features=3)
    video = torch.rand(1, 4, 3, 56, 84, generator=torch.Generator().manual_seed(2), requires_grad=True)
    out = reward(video, ["a cat"])
    out.sum().backward()
    per_frame = video.grad.abs().sum((0, 2, 3, 4))
    assert (per_frame[[0, 2]] > 0).all() and per_frame[[1, 3]].eq(0).all()
    assert not any(p.requires_grad for p in reward.parameters())


def test_bad_config() -> None:
    reward = tiny_reward()
    with pytest.raises(ValueError, match="template lacks"):
        Qwen2VLVideoReward(reward.model, reward.reward_head, reward.tokenizer, template="{video} only")
    no_tokens = Qwen2VLVideoReward(
        reward.model, reward.reward_head, reward.tokenizer, template="{video}{prompt}"
    )
    with pytest.raises(ValueError, match="occurs 0 times"):
        no_tokens(torch.rand(1, 2, 3, 56, 56, generator=torch.Generator().manual_seed(4)), ["a cat"])
    with pytest.raises(ValueError, match="outputs"):
        Qwen2VLVideoReward(reward.model, nn.Linear(32, 2), reward.tokenizer)
    with pytest.raises(ValueError, match="multiples"):
        patchify_video(torch.rand(2, 3, 30, 56, generator=torch.Generator().manual_seed(3)))
