"""VideoAlign-style video reward on transformers' Qwen2-VL, differentiable in the pixels.

VideoAlign's VideoReward (KwaiVGI, arXiv 2501.13918) is Qwen2-VL-2B with a linear reward head read at
special tokens appended to the prompt (`<|VQ_reward|>`, `<|MQ_reward|>`, `<|TA_reward|>`): head k is the
reward head applied to the last hidden state at the position of token k (a head with one output is shared
by all tokens; a head with K outputs gives head k from output k). Inputs: frames at 2 fps, smart-resized
to at most 448x448 pixels, CLIP mean/std.

To reproduce VideoAlign's own inference (KwaiVGI/VideoAlign inference.py, prompt_template.py):
    - `template`: Qwen2-VL's chat format around VideoAlign's `DETAILED_PROMPT_WITH_SPECIAL_TOKEN` text,
      i.e. "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n{video}" + that
      text with its `{text_prompt}` renamed `{prompt}` + "<|im_end|>\n<|im_start|>assistant\n" (the reward
      tokens sit inside that text, after each section; copy the text from the checkpoint's repository,
      it is not shipped here).
    - `sampling=FrameSampling(source_fps=16, target_fps=2, uniform=True, min_frames=4, multiple_of=2)`
      (qwen_vl_utils' fps rule; VideoAlign's data_config fps is 2), `preprocess=VideoPreprocess(
      max_pixels=data_config.max_frame_pixels)`.
    - `head_norm` from the checkpoint's `model_config.json` `inference_config` (VQ/MQ/TA mean and std);
      VideoAlign's "Overall" is the sum of the normalised heads (our default weights).
    - Weights: VideoAlign trains a LoRA/partly-unfrozen Qwen2-VL-2B with a reward head and loads it with
      its own `load_model_from_checkpoint`; export the merged model with `save_pretrained` (loadable by
      `Qwen2VLForConditionalGeneration.from_pretrained(dir)`, no remote code) and the head as a Linear
      state dict, then pass both here.
Unverified without the real weights and model class (not in the public index we read): that VideoAlign
reads its head at each special token exactly as here (its "detailed_special" template places one token per
head, and a public port configures `output_dim=1` with these tokens), and its own frame sampler
(`vision_process.py`). The plumbing (patchify, token layout, M-RoPE token types, head read-out) is tested
on a tiny random Qwen2-VL against transformers' own image processor.

Shapes: t frames, c channels, h w pixels, p patch (14), tp temporal patch (2), m spatial merge (2),
N = (t/tp)(h/p)(w/p) patches.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from rfvideo.rewards.video_reward import FrameSampling, VideoPreprocess, VideoReward

__all__ = ["VIDEOALIGN_REWARD_TOKENS", "Qwen2VLVideoReward", "patchify_video"]

VIDEOALIGN_REWARD_TOKENS = ("<|VQ_reward|>", "<|MQ_reward|>", "<|TA_reward|>")


def patchify_video(
    clip: torch.Tensor, *, patch_size: int = 14, temporal_patch_size: int = 2, merge_size: int = 2
) -> tuple[torch.Tensor, torch.Tensor]:
    """Qwen2-VL's flattening of a normalised clip into `pixel_values_videos` (differentiable reshape).

    Args:
        clip: (t c h w) normalised; t a multiple of `temporal_patch_size`, h and w multiples of
            `patch_size * merge_size`.

    Returns:
        pixel values (N, c*tp*p*p) ordered by (t, h-blocks, w-blocks, merge row, merge col), and grid (3,)
        = (t/tp, h/p, w/p).
    """
    t, c, h, w = clip.shape
    if t % temporal_patch_size or h % (patch_size * merge_size) or w % (patch_size * merge_size):
        raise ValueError(
            f"clip (t c h w) = {tuple(clip.shape)} needs t % {temporal_patch_size} == 0 and h, w multiples "
            f"of {patch_size * merge_size}"
        )
    gt, gh, gw = t // temporal_patch_size, h // patch_size, w // patch_size
    x = clip.reshape(gt, temporal_patch_size, c, gh // merge_size, merge_size, patch_size, gw // merge_size,
                     merge_size, patch_size)  # fmt: skip
    # -> (gt, gh/m, gw/m, m, m, c, tp, p, p): merged 2x2 neighbours stay adjacent, as the merger expects.
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return x.reshape(gt * gh * gw, c * temporal_patch_size * patch_size * patch_size), torch.tensor(
        [gt, gh, gw]
    )


class Qwen2VLVideoReward(VideoReward):
    """A Qwen2-VL reward model scored at special reward tokens (VideoAlign's VideoReward layout).

    Args:
        model: a `Qwen2VLForConditionalGeneration` (or its `Qwen2VLModel`), frozen here.
        reward_head: Linear(hidden, 1) shared by the reward tokens, or Linear(hidden, K) (output k is
            head k).
        tokenizer: the model's tokenizer, with the reward tokens and Qwen2-VL's vision tokens in its vocab.
        template: the full text fed to the tokenizer; `{video}` (vision start, video pads, vision end),
            `{prompt}` and optionally `{reward_tokens}` (all reward tokens, in order) are substituted. Each
            reward token must occur exactly once in the result (checked per call). The default is a bare
            layout for tests; for VideoAlign use its chat-formatted "detailed_special" prompt (below).
        reward_tokens: one token per head, in `heads` order.
        heads: head names (VQ, MQ, TA).
        sampling, preprocess: see `VideoReward` (defaults: 16 -> 2 fps, pairs; smart resize to 448^2).
        **kwargs: head_weights, head_norm, name.
    """

    def __init__(
        self,
        model: nn.Module,
        reward_head: nn.Linear,
        tokenizer: Any,
        *,
        template: str = "{video}{prompt}{reward_tokens}",
        reward_tokens: Sequence[str] = VIDEOALIGN_REWARD_TOKENS,
        heads: Sequence[str] = ("VQ", "MQ", "TA"),
        sampling: FrameSampling | None = None,
        preprocess: VideoPreprocess | None = None,
        name: str = "videoalign",
        **kwargs: Any,
    ) -> None:
        super().__init__(
            heads=heads,
            sampling=sampling or FrameSampling(source_fps=16, target_fps=2, multiple_of=2),
            preprocess=preprocess or VideoPreprocess(factor=28, max_pixels=448 * 448),
            name=name,
            **kwargs,
        )
        if len(reward_tokens) != len(self.heads):
            raise ValueError(f"{len(reward_tokens)} reward_tokens for {len(self.heads)} heads")
        if reward_head.out_features not in (1, len(self.heads)):
            raise ValueError(
                f"reward_head has {reward_head.out_features} outputs; expected 1 or {len(self.heads)}"
            )
        for key in ("{video}", "{prompt}"):
            if key not in template:
                raise ValueError(f"template lacks {key}: {template!r}")
        cfg = model.config
        self.model = model
        self.reward_head = reward_head
        self.tokenizer = tokenizer
        self.template = template
        self.reward_tokens = tuple(reward_tokens)
        self.reward_token_ids = [int(i) for i in tokenizer.convert_tokens_to_ids(list(reward_tokens))]
        self.video_token_id = int(cfg.video_token_id)
        self.vision_start = tokenizer.convert_ids_to_tokens(int(cfg.vision_start_token_id))
        self.vision_end = tokenizer.convert_ids_to_tokens(int(cfg.vision_end_token_id))
        self.video_token = tokenizer.convert_ids_to_tokens(self.video_token_id)
        vis = cfg.vision_config
        self.patch_size, self.temporal_patch_size = int(vis.patch_size), int(vis.temporal_patch_size)
        self.merge_size = int(vis.spatial_merge_size)
        self.freeze()

    def build_inputs(self, prompt: str, num_video_tokens: int) -> torch.Tensor:
        """Token ids (1 l) of one prompt with `num_video_tokens` video placeholders."""
        video = self.vision_start + self.video_token * num_video_tokens + self.vision_end
        text = self.template.format(video=video, prompt=prompt, reward_tokens="".join(self.reward_tokens))
        ids = self.tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
        if int((ids == self.video_token_id).sum()) != num_video_tokens:
            raise ValueError("the tokenizer split the video placeholders; check its special tokens")
        return ids

    def score_clip(self, clip: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        """(b t c h w) normalised -> (b k). One forward per video (prompts differ in length)."""
        rows = []
        for video, prompt in zip(clip, prompts):
            pixels, grid = patchify_video(
                video, patch_size=self.patch_size, temporal_patch_size=self.temporal_patch_size,
                merge_size=self.merge_size,
            )  # fmt: skip
            ids = self.build_inputs(prompt, len(pixels) // self.merge_size**2).to(clip.device)
            out = self.model(
                input_ids=ids,
                pixel_values_videos=pixels.to(self.reward_head.weight.dtype),
                video_grid_thw=grid[None].to(clip.device),
                mm_token_type_ids=(ids == self.video_token_id).int() * 2,  # text 0, image 1, video 2
                output_hidden_states=True,
            )
            hidden = out.hidden_states[-1][0]  # (l d)
            scores = []
            for k, tok in enumerate(self.reward_token_ids):
                pos = (ids[0] == tok).nonzero()
                if len(pos) != 1:
                    raise ValueError(f"reward token {self.reward_tokens[k]!r} occurs {len(pos)} times")
                logits = self.reward_head(hidden[pos[0, 0]])
                scores.append(logits[0] if self.reward_head.out_features == 1 else logits[k])
            rows.append(torch.stack(scores))
        return torch.stack(rows)  # (b k)
